// head_layer_norm against at::layer_norm: values and the gradients of input, weight and bias.
// On CPU it is at::layer_norm (bit-equal). On a GPU the project's kernels: float32 within 1e-5
// (values O(1); two-pass float32 statistics instead of Welford), gradients within 1e-4 (weight
// and bias gradients sum ~1000 rows in another order); bf16 within 3e-2 (a few bf16 steps at
// |y| ~ 2-4); weight gradients identical between two runs (a fixed summation order).
#include "models/head_layer_norm.h"

#include <gtest/gtest.h>

namespace t4g {
namespace {

struct Grads {
  torch::Tensor y, dx, dw, db;
};

Grads run(bool ours, const torch::Tensor& x0, const torch::Tensor& w0, const torch::Tensor& b0,
          const torch::Tensor& dy) {
  auto x = x0.detach().clone().requires_grad_(true);
  auto w = w0.detach().clone().requires_grad_(true);
  auto b = b0.detach().clone().requires_grad_(true);
  auto y = ours ? head_layer_norm(x, w, b, 1e-6) : at::layer_norm(x, {x.size(-1)}, w, b, 1e-6);
  y.backward(dy);
  return {y.detach(), x.grad(), w.grad(), b.grad()};
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat32) - b.to(torch::kFloat32)).abs().max().item<double>();
}

TEST(HeadLayerNorm, IsAtLayerNormOnCpu) {
  torch::manual_seed(0);
  const auto x = torch::randn({2, 7, 3, 64});
  const auto w = torch::randn({64}), b = torch::randn({64});
  EXPECT_FALSE(head_layer_norm_uses_kernel(x, w, b));
  const auto dy = torch::randn_like(x);
  const auto ours = run(true, x, w, b, dy), ref = run(false, x, w, b, dy);
  EXPECT_TRUE(torch::equal(ours.y, ref.y));
  EXPECT_TRUE(torch::equal(ours.dx, ref.dx));
  EXPECT_TRUE(torch::equal(ours.dw, ref.dw));
}

TEST(HeadLayerNorm, KernelsMatchAtLayerNormOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(1);
  for (const int64_t d : {64, 40, 200}) {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(dtype);
      // 1001 rows: not a multiple of the 8 rows a block handles; offset mean and scale.
      const auto x = (torch::randn({7, 11, 13, d}) * 3 + 1).to(opts);
      const auto w = (torch::randn({d}) * 0.5 + 1).to(opts), b = torch::randn({d}).to(opts);
      ASSERT_TRUE(head_layer_norm_uses_kernel(x, w, b)) << d << " " << dtype;
      const auto dy = torch::randn({7, 11, 13, d}).to(opts);
      const auto ours = run(true, x, w, b, dy), ref = run(false, x, w, b, dy);
      const bool fp32 = dtype == torch::kFloat32;
      EXPECT_LE(max_diff(ours.y, ref.y), fp32 ? 1e-5 : 3e-2) << d << " " << dtype;
      EXPECT_LE(max_diff(ours.dx, ref.dx), fp32 ? 1e-4 : 3e-2) << d << " " << dtype;
      // bf16 weight/bias gradients sum 1001 products: compare relative to their size.
      const double scale = fp32 ? 1.0 : std::max(1.0, ref.dw.abs().max().item<double>());
      EXPECT_LE(max_diff(ours.dw, ref.dw) / scale, fp32 ? 1e-4 : 3e-2) << d << " " << dtype;
      EXPECT_LE(max_diff(ours.db, ref.db) / scale, fp32 ? 1e-4 : 3e-2) << d << " " << dtype;
      const auto again = run(true, x, w, b, dy);
      EXPECT_TRUE(torch::equal(again.dw, ours.dw)) << "weight gradient not deterministic";
    }
  }
}

}  // namespace
}  // namespace t4g
