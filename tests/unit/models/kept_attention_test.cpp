// kept_attention against scaled_dot_product_attention: the kept output is SDPA's output, and the
// kept kernel's backward gives SDPA's gradients of q, k and v. CPU (the flash kernel for CPUs):
// float32 within 1e-6 (output) and 1e-5 (gradients). CUDA: bf16 goes through the kernel SDPA
// picks (cuDNN on Hopper), float32 through the memory-efficient one; within 2e-2 (bf16) and
// 1e-4 (float32) of SDPA's own autograd, which runs the same kernels.
#include "models/kept_attention.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace t4g {
namespace {

struct Result {
  torch::Tensor out, dq, dk, dv;
};

Result run(bool kept, const torch::Tensor& q0, const torch::Tensor& k0, const torch::Tensor& v0,
           const torch::Tensor& grad) {
  auto q = q0.detach().clone().requires_grad_(true);
  auto k = k0.detach().clone().requires_grad_(true);
  auto v = v0.detach().clone().requires_grad_(true);
  torch::Tensor out;
  if (kept) {
    const auto saved = attention_to_keep(q, k, v);
    EXPECT_TRUE(saved.defined());
    out = kept_attention(q, k, v, saved);
  } else {
    out = at::scaled_dot_product_attention(q, k, v);
  }
  out.backward(grad);
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat32) - b.to(torch::kFloat32)).abs().max().item<double>();
}

// q, k, v as the transformer gives them: transposed views of [B, S, heads, D].
std::vector<torch::Tensor> inputs(const torch::TensorOptions& opts) {
  std::vector<torch::Tensor> t;
  for (int i = 0; i < 4; ++i) t.push_back(torch::randn({2, 37, 3, 64}).to(opts).transpose(1, 2));
  return t;
}

TEST(KeptAttention, MatchesSdpaOnCpu) {
  torch::manual_seed(0);
  const auto t = inputs(torch::TensorOptions());
  EXPECT_EQ(attention_to_keep(t[0], t[1], t[2]).kernel, KeptAttention::Kernel::kCpuFlash);
  const auto ours = run(true, t[0], t[1], t[2], t[3]), ref = run(false, t[0], t[1], t[2], t[3]);
  EXPECT_LE(max_diff(ours.out, ref.out), 1e-6);
  EXPECT_LE(max_diff(ours.dq, ref.dq), 1e-5);
  EXPECT_LE(max_diff(ours.dk, ref.dk), 1e-5);
  EXPECT_LE(max_diff(ours.dv, ref.dv), 1e-5);
  // The kept state round-trips through the tensor list an autograd context saves.
  const auto kept = attention_to_keep(t[0], t[1], t[2]);
  const auto back = KeptAttention::from(kept.kernel, kept.tensors(), kept.max_q, kept.max_k);
  EXPECT_TRUE(torch::equal(back.out, kept.out));
  EXPECT_TRUE(torch::equal(back.lse, kept.lse));
  EXPECT_THROW(kept_attention(t[0], t[1], t[2], KeptAttention{}), Error);
  EXPECT_THROW(kept_attention(t[0].slice(2, 0, 5), t[1], t[2], kept), Error);
}

TEST(KeptAttention, MatchesSdpaOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(1);
  for (const auto dtype : {torch::kBFloat16, torch::kFloat32}) {
    const auto t = inputs(torch::TensorOptions().device(torch::kCUDA).dtype(dtype));
    const auto kept = attention_to_keep(t[0], t[1], t[2]);
    ASSERT_TRUE(kept.defined()) << dtype;
    std::cout << "kernel for " << dtype << ": " << static_cast<int>(kept.kernel) << "\n";
    const auto ours = run(true, t[0], t[1], t[2], t[3]), ref = run(false, t[0], t[1], t[2], t[3]);
    const double tol = dtype == torch::kFloat32 ? 1e-4 : 2e-2;
    EXPECT_LE(max_diff(ours.out, ref.out), tol) << dtype;
    EXPECT_LE(max_diff(ours.dq, ref.dq), tol) << dtype;
    EXPECT_LE(max_diff(ours.dk, ref.dk), tol) << dtype;
    EXPECT_LE(max_diff(ours.dv, ref.dv), tol) << dtype;
  }
}

}  // namespace
}  // namespace t4g
