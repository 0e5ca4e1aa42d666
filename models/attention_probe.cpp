// CAG attention variants, the chunked frame-pair cost maps and DiTFlow's video K/V replacement.
// The first two work frame by frame (or in query chunks) so that the N x N attention of a
// real-size model (17,776^2 per head) is never materialised; only the per-frame blocks the caller
// asked for are.
#include "models/attention_probe.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace t4g {
namespace {

void check_qkv(const torch::Tensor& t, const char* name, int64_t text_len, const TokenGrid& grid) {
  T4G_CHECK(t.dim() == 4, name, " must be [B, heads, tokens, head_dim], got ", t.sizes());
  T4G_CHECK(t.size(2) == text_len + grid.video_tokens(), name, " has ", t.size(2), " tokens, expected text ", text_len,
            " + video ", grid.video_tokens(), " (grid ", grid.frames, "x", grid.height, "x", grid.width, ")");
}

// Frame of every joint-sequence token: -1 for text tokens.
torch::Tensor token_frames(int64_t text_len, const TokenGrid& grid, const torch::Device& device) {
  auto frames = torch::full({text_len + grid.video_tokens()}, -1, torch::TensorOptions().dtype(torch::kLong));
  frames.slice(0, text_len) = torch::arange(grid.frames, torch::kLong).repeat_interleave(grid.tokens_per_frame());
  return frames.to(device);
}

// [B, heads, text + F * n, D] -> the video tokens regrouped per frame: [B * F, heads, n, D].
torch::Tensor video_by_frame(const torch::Tensor& t, int64_t text_len, const TokenGrid& grid) {
  return t.slice(2, text_len).unflatten(2, {grid.frames, grid.tokens_per_frame()}).transpose(1, 2).flatten(0, 1);
}

// Inverse of video_by_frame for [B * F, heads, n] or [B * F, heads, n, D] -> [B, heads, F * n(, D)].
torch::Tensor frames_to_video(const torch::Tensor& t, int64_t batch, const TokenGrid& grid) {
  return t.unflatten(0, {batch, grid.frames}).transpose(1, 2).flatten(2, 3);
}

// Keys (or values) each frame's video queries may see: the text tokens, then that frame's own
// tokens: [B * F, heads, text + n, D].
torch::Tensor text_and_own_frame(const torch::Tensor& t, int64_t text_len, const TokenGrid& grid) {
  const auto own = video_by_frame(t, text_len, grid);
  if (text_len == 0) return own;
  const int64_t b = t.size(0), heads = t.size(1), d = t.size(3);
  const auto text = t.slice(2, 0, text_len)
                        .unsqueeze(1)
                        .expand({b, grid.frames, heads, text_len, d})
                        .reshape({b * grid.frames, heads, text_len, d});
  return torch::cat({text, own}, 2);
}

// Attention output and its log-sum-exp per query row ([B, heads, S], float32), from the fused
// kernels that return it: flash on CUDA half types, memory-efficient on CUDA float32, the CPU
// flash kernel otherwise.
std::pair<torch::Tensor, torch::Tensor> attention_with_lse(const torch::Tensor& q, const torch::Tensor& k,
                                                           const torch::Tensor& v) {
  if (q.is_cuda()) {
    if (q.scalar_type() == torch::kBFloat16 || q.scalar_type() == torch::kHalf) {
      auto r = at::_scaled_dot_product_flash_attention(q, k, v);
      return {std::get<0>(r), std::get<1>(r)};
    }
    auto r = at::_scaled_dot_product_efficient_attention(q, k, v, {}, /*compute_log_sumexp=*/true);
    return {std::get<0>(r), std::get<1>(r).slice(2, 0, q.size(2))};  // the kernel pads the rows
  }
  auto r = at::_scaled_dot_product_flash_attention_for_cpu(q, k, v);
  return {std::get<0>(r), std::get<1>(r)};
}

torch::Tensor renormalized_cag(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t text_len,
                               const TokenGrid& grid) {
  // All frames in one SDPA call, frames folded into the batch.
  const auto local = at::scaled_dot_product_attention(video_by_frame(q, text_len, grid),
                                                      text_and_own_frame(k, text_len, grid),
                                                      text_and_own_frame(v, text_len, grid));
  const auto video = frames_to_video(local, q.size(0), grid);
  if (text_len == 0) return video;
  return torch::cat({at::scaled_dot_product_attention(q.slice(2, 0, text_len), k, v), video}, 2);
}

// kDropWithoutRenorm without the [queries, keys] probabilities: for a video query of frame f the
// reference's output is sum over allowed keys j of exp(s_j - LSE_all) v_j, which is the attention
// over the allowed keys (text + frame f) times exp(LSE_allowed - LSE_all). Two fused attention
// calls (all keys; per frame) instead of a materialised softmax. Inference only (the fused
// kernels' log-sum-exp has no gradient).
torch::Tensor unrenormalized_cag_fused(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                       int64_t text_len, const TokenGrid& grid) {
  const auto [full, full_lse] = attention_with_lse(q, k, v);
  const auto [local, local_lse] = attention_with_lse(video_by_frame(q, text_len, grid),
                                                     text_and_own_frame(k, text_len, grid),
                                                     text_and_own_frame(v, text_len, grid));
  const int64_t b = q.size(0);
  const auto compute = torch::promote_types(q.scalar_type(), torch::kFloat32);
  const auto kept =
      (frames_to_video(local_lse.to(compute), b, grid) - full_lse.to(compute).slice(2, text_len)).exp().unsqueeze(-1);
  const auto video = (frames_to_video(local, b, grid).to(compute) * kept).to(q.scalar_type());
  if (text_len == 0) return video;
  return torch::cat({full.slice(2, 0, text_len), video}, 2);
}

torch::Tensor unrenormalized_cag(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 int64_t text_len, const TokenGrid& grid) {
  constexpr int64_t query_chunk = 128;  // the reference's
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const auto frames = token_frames(text_len, grid, q.device());
  const auto key_frames = frames.view({1, 1, 1, -1});
  // float32 as the reference (float64 inputs stay float64).
  const auto compute = torch::promote_types(q.scalar_type(), torch::kFloat32);
  const auto kt = k.to(compute).transpose(-1, -2);
  const auto vf = v.to(compute);
  const int64_t total = q.size(2);
  std::vector<torch::Tensor> outs;
  for (int64_t begin = 0; begin < total; begin += query_chunk) {
    const int64_t end = std::min(total, begin + query_chunk);
    auto probs = torch::softmax(torch::matmul(q.slice(2, begin, end).to(compute), kt) * scale, -1);
    const auto query_frames = frames.slice(0, begin, end).view({1, 1, -1, 1});
    const auto keep = (query_frames == -1) | (key_frames == -1) | (query_frames == key_frames);
    probs = probs * keep.to(probs.scalar_type());
    outs.push_back(torch::matmul(probs, vf));
  }
  return torch::cat(outs, 2).to(q.scalar_type());
}

torch::Tensor cag_all(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t text_len,
                      const TokenGrid& grid, CagMode mode, CagKernel kernel) {
  switch (mode) {
    case CagMode::kNone:
      return at::scaled_dot_product_attention(q, k, v);
    case CagMode::kRenormalized:
      return renormalized_cag(q, k, v, text_len, grid);
    case CagMode::kDropWithoutRenorm: {
      const bool needs_grad =
          torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
      if (needs_grad || kernel == CagKernel::kReference) return unrenormalized_cag(q, k, v, text_len, grid);
      return unrenormalized_cag_fused(q, k, v, text_len, grid);
    }
  }
  throw Error("unknown CAG mode");
}

}  // namespace

torch::Tensor cag_attention(const torch::Tensor& query, const torch::Tensor& key, const torch::Tensor& value,
                            int64_t text_len, const TokenGrid& grid, CagMode mode,
                            const std::vector<int64_t>& batch_indices, CagKernel kernel) {
  check_qkv(query, "query", text_len, grid);
  check_qkv(key, "key", text_len, grid);
  if (batch_indices.empty() || mode == CagMode::kNone) {
    return cag_all(query, key, value, text_len, grid, mode, kernel);
  }
  for (const int64_t b : batch_indices) {
    T4G_CHECK(b >= 0 && b < query.size(0), "CAG batch index ", b, " outside the batch of ", query.size(0));
  }
  std::vector<int64_t> others;
  for (int64_t b = 0; b < query.size(0); ++b) {
    if (std::find(batch_indices.begin(), batch_indices.end(), b) == batch_indices.end()) others.push_back(b);
  }
  const auto index = torch::tensor(batch_indices, torch::kLong).to(query.device());
  auto select = [&](const torch::Tensor& t, const torch::Tensor& i) { return t.index_select(0, i); };
  const auto perturbed =
      cag_all(select(query, index), select(key, index), select(value, index), text_len, grid, mode, kernel);
  // Ordinary attention only for the batch elements CAG leaves alone; index_copy (out of place)
  // keeps autograd through both branches.
  auto out = torch::zeros({query.size(0), query.size(1), query.size(2), value.size(3)}, perturbed.options())
                 .index_copy(0, index, perturbed);
  if (others.empty()) return out;
  const auto rest = torch::tensor(others, torch::kLong).to(query.device());
  return out.index_copy(0, rest,
                        at::scaled_dot_product_attention(select(query, rest), select(key, rest), select(value, rest)));
}

std::pair<torch::Tensor, torch::Tensor> replace_video_key_value(const torch::Tensor& key, const torch::Tensor& value,
                                                                int64_t text_len, const VideoKeyValue& replacement) {
  const int64_t b = key.size(0);
  auto video_part = [&](const torch::Tensor& own, const torch::Tensor& given, const char* name) {
    T4G_CHECK(given.defined() && given.dim() == 4 && (given.size(0) == 1 || given.size(0) == b) &&
                  given.size(1) == own.size(1) && given.size(2) == own.size(2) - text_len &&
                  given.size(3) == own.size(3),
              "the replacement video ", name, " must be [1 or ", b, ", ", own.size(1), ", ", own.size(2) - text_len,
              ", ", own.size(3), "] (heads, video tokens, head_dim of this block), got ",
              given.defined() ? given.sizes() : c10::IntArrayRef{});
    // DiTFlow's InjectionProcessor writes the copied K/V into the video rows of each forward;
    // concatenating instead of writing in place keeps the text rows' autograd history intact.
    return torch::cat({own.slice(2, 0, text_len), given.to(own.scalar_type()).expand({b, -1, -1, -1})}, 2);
  };
  return {video_part(key, replacement.key, "key"), video_part(value, replacement.value, "value")};
}

std::vector<torch::Tensor> attention_cost_maps(const torch::Tensor& query, const torch::Tensor& key, int64_t text_len,
                                               const TokenGrid& grid,
                                               const std::vector<std::pair<int64_t, int64_t>>& pairs,
                                               const CostMapOptions& options) {
  check_qkv(query, "query", text_len, grid);
  check_qkv(key, "key", text_len, grid);
  T4G_CHECK(options.query_chunk > 0, "cost-map query_chunk must be positive, got ", options.query_chunk);
  const int64_t n = grid.tokens_per_frame();
  const double scale = options.scale > 0.0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(query.size(-1)));
  auto frame = [&](const torch::Tensor& t, int64_t f) {
    const auto x = t.slice(2, text_len + f * n, text_len + (f + 1) * n);
    return options.float32 ? x.to(torch::kFloat32) : x;
  };
  std::vector<torch::Tensor> maps;
  maps.reserve(pairs.size());
  for (const auto& [i, j] : pairs) {
    T4G_CHECK(i >= 0 && i < grid.frames && j >= 0 && j < grid.frames, "cost-map frame pair (", i, ", ", j,
              ") outside the ", grid.frames, " token frames");
    const auto q = frame(query, i);
    const auto kt = frame(key, j).transpose(-1, -2);
    std::vector<torch::Tensor> chunks;
    for (int64_t begin = 0; begin < n; begin += options.query_chunk) {
      const int64_t end = std::min(n, begin + options.query_chunk);
      auto p = torch::softmax(torch::matmul(q.slice(2, begin, end), kt) * scale, -1);
      if (options.mean_over_heads) p = p.mean(1, /*keepdim=*/true);
      chunks.push_back(p);
    }
    maps.push_back(torch::cat(chunks, 2));
  }
  return maps;
}

}  // namespace t4g
