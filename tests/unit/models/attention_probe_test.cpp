// CAG attention variants and the chunked cost maps against naive full-matrix computations on
// tiny cases (tolerance 1e-5 absolute, fp32).
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "models/attention_probe.h"

namespace t4g {
namespace {

constexpr int64_t kText = 3;
const TokenGrid kGrid{3, 2, 3};  // 3 frames of 6 tokens

struct Qkv {
  torch::Tensor q, k, v;
};

Qkv random_qkv(int64_t batch = 2, int64_t heads = 2, int64_t dim = 8) {
  torch::manual_seed(3);
  const int64_t n = kText + kGrid.video_tokens();
  return {torch::randn({batch, heads, n, dim}), torch::randn({batch, heads, n, dim}),
          torch::randn({batch, heads, n, dim})};
}

// [N, N] bool: allowed attention under CAG (text rows/cols, same frame).
torch::Tensor naive_allowed() {
  const int64_t n = kText + kGrid.video_tokens();
  auto allowed = torch::zeros({n, n}, torch::kBool);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const int64_t fi = i < kText ? -1 : (i - kText) / kGrid.tokens_per_frame();
      const int64_t fj = j < kText ? -1 : (j - kText) / kGrid.tokens_per_frame();
      allowed[i][j] = fi == -1 || fj == -1 || fi == fj;
    }
  }
  return allowed;
}

torch::Tensor naive_probs(const Qkv& x) {
  return torch::softmax(torch::matmul(x.q, x.k.transpose(-1, -2)) / std::sqrt(8.0), -1);
}

TEST(CagAttention, RenormalizedEqualsMinusInfMask) {
  const auto x = random_qkv();
  const auto allowed = naive_allowed();
  const auto logits = torch::matmul(x.q, x.k.transpose(-1, -2)) / std::sqrt(8.0);
  const auto expected = torch::matmul(torch::softmax(logits.masked_fill(~allowed, -INFINITY), -1), x.v);
  const auto got = cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kRenormalized);
  EXPECT_TRUE(torch::allclose(got, expected, 1e-5, 1e-5));
}

TEST(CagAttention, DropWithoutRenormZeroesCrossFrameProbabilities) {
  const auto x = random_qkv();
  const auto expected = torch::matmul(naive_probs(x) * naive_allowed().to(torch::kFloat32), x.v);
  const auto reference =
      cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kDropWithoutRenorm, {}, CagKernel::kReference);
  EXPECT_TRUE(torch::allclose(reference, expected, 1e-5, 1e-5));
  // The fused form (attention over text + own frame rescaled by exp(LSE_frame - LSE_all)).
  const auto fused = cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kDropWithoutRenorm);
  EXPECT_TRUE(torch::allclose(fused, expected, 1e-5, 1e-5)) << (fused - expected).abs().max().item<double>();
  // The dropped mass makes it differ from the renormalised variant.
  EXPECT_FALSE(
      torch::allclose(fused, cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kRenormalized), 1e-3, 1e-3));
}

TEST(CagAttention, FusedDropMatchesReferenceInDoubleWithoutTextAndOnSubsets) {
  auto x = random_qkv(3, 2, 16);
  for (auto* t : {&x.q, &x.k, &x.v}) *t = t->to(torch::kFloat64) * 2.0;  // sharper softmax
  const auto reference =
      cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kDropWithoutRenorm, {0, 2}, CagKernel::kReference);
  const auto fused = cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kDropWithoutRenorm, {0, 2});
  EXPECT_TRUE(torch::allclose(fused, reference, 1e-10, 1e-10)) << (fused - reference).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(fused[1], at::scaled_dot_product_attention(x.q, x.k, x.v)[1], 1e-12, 1e-12));
  // No text tokens at all.
  const auto video = [&](const torch::Tensor& t) { return t.slice(2, kText).contiguous(); };
  const auto ref0 = cag_attention(video(x.q), video(x.k), video(x.v), 0, kGrid, CagMode::kDropWithoutRenorm, {},
                                  CagKernel::kReference);
  const auto fused0 = cag_attention(video(x.q), video(x.k), video(x.v), 0, kGrid, CagMode::kDropWithoutRenorm);
  EXPECT_TRUE(torch::allclose(fused0, ref0, 1e-10, 1e-10));
}

// The fused kernels on a GPU (flash with LSE in bf16, memory-efficient in fp32) against the
// chunked reference: fp32 1e-5, bf16 2e-2 (bf16 inputs, outputs of magnitude ~1).
TEST(CagAttention, FusedDropMatchesReferenceOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto x = random_qkv(2, 2, 64);
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const auto q = x.q.to(torch::kCUDA, dtype), k = x.k.to(torch::kCUDA, dtype), v = x.v.to(torch::kCUDA, dtype);
    const auto reference = cag_attention(q, k, v, kText, kGrid, CagMode::kDropWithoutRenorm, {1}, CagKernel::kReference)
                               .to(torch::kFloat32);
    const auto fused = cag_attention(q, k, v, kText, kGrid, CagMode::kDropWithoutRenorm, {1}).to(torch::kFloat32);
    const double tol = dtype == torch::kFloat32 ? 1e-5 : 2e-2;
    EXPECT_TRUE(torch::allclose(fused, reference, tol, tol))
        << dtype << ": " << (fused - reference).abs().max().item<double>();
  }
}

TEST(CagAttention, SemanticsTextSeesAllVideoSeesTextAndOwnFrame) {
  const auto x = random_qkv();
  const auto base = cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kRenormalized);
  // Change keys and values of frame 2 only.
  auto k2 = x.k.clone();
  auto v2 = x.v.clone();
  const int64_t begin = kText + 2 * kGrid.tokens_per_frame();
  k2.slice(2, begin) += 1.0;
  v2.slice(2, begin) += 1.0;
  const auto moved = cag_attention(x.q, k2, v2, kText, kGrid, CagMode::kRenormalized);
  // Video queries of frames 0 and 1 do not see frame 2.
  EXPECT_TRUE(torch::allclose(moved.slice(2, kText, begin), base.slice(2, kText, begin), 1e-6, 1e-6));
  // Text queries and frame 2's own queries do.
  EXPECT_FALSE(torch::allclose(moved.slice(2, 0, kText), base.slice(2, 0, kText)));
  EXPECT_FALSE(torch::allclose(moved.slice(2, begin), base.slice(2, begin)));
}

TEST(CagAttention, OnlyListedBatchElementsArePerturbed) {
  const auto x = random_qkv(3);
  const auto plain = at::scaled_dot_product_attention(x.q, x.k, x.v);
  const auto got = cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kRenormalized, {2});
  EXPECT_TRUE(torch::allclose(got.slice(0, 0, 2), plain.slice(0, 0, 2), 1e-6, 1e-6));
  const auto all = cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kRenormalized);
  EXPECT_TRUE(torch::allclose(got[2], all[2], 1e-6, 1e-6));
  EXPECT_THROW(cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kRenormalized, {3}), Error);
  EXPECT_THROW(cag_attention(x.q.slice(2, 1), x.k, x.v, kText, kGrid, CagMode::kRenormalized), Error);
}

TEST(CagAttention, RenormalizedIsDifferentiable) {
  auto x = random_qkv();
  x.q.requires_grad_(true);
  const auto out = cag_attention(x.q, x.k, x.v, kText, kGrid, CagMode::kRenormalized, {1});
  out.sum().backward();
  ASSERT_TRUE(x.q.grad().defined());
  EXPECT_GT(x.q.grad().abs().sum().item<double>(), 0.0);
}

TEST(CostMaps, MatchNaiveSoftmaxOverTargetFrame) {
  const auto x = random_qkv();
  const int64_t n = kGrid.tokens_per_frame();
  const std::vector<std::pair<int64_t, int64_t>> pairs = {{0, 1}, {2, 0}, {1, 1}};
  CostMapOptions options;
  options.query_chunk = 4;  // does not divide 6
  options.scale = 0.3;
  const auto maps = attention_cost_maps(x.q, x.k, kText, kGrid, pairs, options);
  ASSERT_EQ(maps.size(), pairs.size());
  const auto logits = torch::matmul(x.q, x.k.transpose(-1, -2)) * 0.3;  // full [B, h, N, N], naive
  for (size_t p = 0; p < pairs.size(); ++p) {
    const auto [i, j] = pairs[p];
    const auto block = logits.slice(2, kText + i * n, kText + (i + 1) * n).slice(3, kText + j * n, kText + (j + 1) * n);
    const auto expected = torch::softmax(block, -1);
    ASSERT_EQ(maps[p].sizes(), (std::vector<int64_t>{2, 2, n, n}));
    EXPECT_TRUE(torch::allclose(maps[p], expected, 1e-5, 1e-5)) << "pair " << i << "," << j;
  }
  options.mean_over_heads = true;
  options.scale = 0.0;  // default 1/sqrt(head_dim)
  const auto mean = attention_cost_maps(x.q, x.k, kText, kGrid, {{0, 2}}, options);
  const auto block = (torch::matmul(x.q, x.k.transpose(-1, -2)) / std::sqrt(8.0))
                         .slice(2, kText, kText + n)
                         .slice(3, kText + 2 * n, kText + 3 * n);
  EXPECT_TRUE(torch::allclose(mean[0], torch::softmax(block, -1).mean(1, true), 1e-5, 1e-5));
  EXPECT_THROW(attention_cost_maps(x.q, x.k, kText, kGrid, {{0, 3}}), Error);
}

TEST(CostMaps, Bf16InputsAreComputedInFloat32) {
  const auto x = random_qkv();
  const auto maps = attention_cost_maps(x.q.to(torch::kBFloat16), x.k.to(torch::kBFloat16), kText, kGrid, {{0, 1}});
  EXPECT_EQ(maps[0].scalar_type(), torch::kFloat32);
  // Rows are distributions.
  EXPECT_TRUE(torch::allclose(maps[0].sum(-1), torch::ones({2, 2, 6}), 1e-5, 1e-5));
}

}  // namespace
}  // namespace t4g
