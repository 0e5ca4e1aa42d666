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

// Norm + RoPE: the fused kernels against the composition, including the gradient of x through
// the transposed rotation. Tables with unequal pair entries (DiTFlow-like) and text tokens.
Grads run_rope(bool fused, const torch::Tensor& x0, const torch::Tensor& w0, const torch::Tensor& b0,
               const RotaryEmbedding& rope, int64_t text_len, const torch::Tensor& dy) {
  auto x = x0.detach().clone().requires_grad_(true);
  auto w = w0.detach().clone().requires_grad_(true);
  auto b = b0.detach().clone().requires_grad_(true);
  auto y = fused ? head_layer_norm_rope(x, w, b, 1e-6, rope, text_len)
                 : apply_rotary_emb_joint(at::layer_norm(x, {x.size(-1)}, w, b, 1e-6), rope, text_len);
  y.backward(dy);
  return {y.detach(), x.grad(), w.grad(), b.grad()};
}

TEST(HeadLayerNorm, RopeIsTheCompositionOnCpu) {
  torch::manual_seed(2);
  const auto x = torch::randn({2, 9, 3, 64});
  const auto w = torch::randn({64}), b = torch::randn({64});
  const RotaryEmbedding rope{torch::randn({6, 64}), torch::randn({6, 64}), false};
  EXPECT_FALSE(head_layer_norm_rope_uses_kernel(x, w, b, rope, 3));
  const auto dy = torch::randn_like(x);
  const auto ours = run_rope(true, x, w, b, rope, 3, dy), ref = run_rope(false, x, w, b, rope, 3, dy);
  EXPECT_TRUE(torch::allclose(ours.y, ref.y, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(ours.dx, ref.dx, 1e-5, 1e-5));
}

TEST(HeadLayerNorm, RopeKernelsMatchTheCompositionOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(3);
  for (const int64_t d : {64, 40}) {
    for (const int64_t text_len : {int64_t{0}, int64_t{5}}) {
      for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
        const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(dtype);
        const int64_t seq = 37, heads = 3;
        const auto x = (torch::randn({2, seq, heads, d}) * 3 + 1).to(opts);
        const auto w = (torch::randn({d}) * 0.5 + 1).to(opts), b = torch::randn({d}).to(opts);
        const auto f32 = torch::TensorOptions().device(torch::kCUDA);
        // General tables: every entry independent, as after DiTFlow's optimisation.
        const RotaryEmbedding rope{torch::randn({seq - text_len, d}, f32), torch::randn({seq - text_len, d}, f32),
                                   false};
        ASSERT_TRUE(head_layer_norm_rope_uses_kernel(x, w, b, rope, text_len));
        const auto dy = torch::randn({2, seq, heads, d}).to(opts);
        const auto ours = run_rope(true, x, w, b, rope, text_len, dy);
        const auto ref = run_rope(false, x, w, b, rope, text_len, dy);
        const bool fp32 = dtype == torch::kFloat32;
        const std::string at =
            "d " + std::to_string(d) + " text " + std::to_string(text_len) + " " + std::string(c10::toString(dtype));
        // Rotated values reach |cos| + |sin| (up to ~8 with these random tables) times the
        // normalised ones, so bf16 is compared relative to the largest value: ~2 bf16 steps.
        const double y_scale = fp32 ? 1.0 : std::max(1.0, ref.y.abs().max().item<double>());
        const double dx_scale = fp32 ? 1.0 : std::max(1.0, ref.dx.abs().max().item<double>());
        EXPECT_LE(max_diff(ours.y, ref.y) / y_scale, fp32 ? 1e-5 : 1.6e-2) << at;
        EXPECT_LE(max_diff(ours.dx, ref.dx) / dx_scale, fp32 ? 1e-4 : 1.6e-2) << at;
        const double scale = fp32 ? 1.0 : std::max(1.0, ref.dw.abs().max().item<double>());
        EXPECT_LE(max_diff(ours.dw, ref.dw) / scale, fp32 ? 1e-4 : 3e-2) << at;
        EXPECT_LE(max_diff(ours.db, ref.db) / scale, fp32 ? 1e-4 : 3e-2) << at;
        if (text_len > 0) {  // text tokens are normalised only
          const auto plain = at::layer_norm(x, {d}, w, b, 1e-6).slice(1, 0, text_len);
          EXPECT_LE(max_diff(ours.y.slice(1, 0, text_len), plain), fp32 ? 1e-5 : 3e-2) << at;
        }
      }
    }
  }
  // Tables that require grad (DiTFlow's optimisation) take the composition, which differentiates them.
  const auto x = torch::randn({1, 4, 2, 64}, torch::kCUDA);
  const auto w = torch::ones({64}, torch::kCUDA), b = torch::zeros({64}, torch::kCUDA);
  const RotaryEmbedding learned{torch::randn({4, 64}, torch::kCUDA).requires_grad_(true),
                                torch::randn({4, 64}, torch::kCUDA).requires_grad_(true), false};
  EXPECT_FALSE(head_layer_norm_rope_uses_kernel(x, w, b, learned, 0));
  head_layer_norm_rope(x, w, b, 1e-6, learned, 0).sum().backward();
  EXPECT_TRUE(learned.cos.grad().defined());
}

}  // namespace
}  // namespace t4g
