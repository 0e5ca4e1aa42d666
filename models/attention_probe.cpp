// CAG attention variants and the chunked frame-pair cost maps. Both work frame by frame (or in
// query chunks) so that the N x N attention of a real-size model (17,776^2 per head) is never
// materialised; only the per-frame blocks the caller asked for are.
#include "models/attention_probe.h"

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

torch::Tensor renormalized_cag(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t text_len,
                               const TokenGrid& grid) {
  const int64_t n = grid.tokens_per_frame();
  std::vector<torch::Tensor> outs;
  outs.reserve(grid.frames + 1);
  if (text_len > 0) {
    outs.push_back(at::scaled_dot_product_attention(q.slice(2, 0, text_len), k, v));
  }
  const auto k_text = k.slice(2, 0, text_len);
  const auto v_text = v.slice(2, 0, text_len);
  for (int64_t f = 0; f < grid.frames; ++f) {
    const int64_t begin = text_len + f * n;
    const auto kf = torch::cat({k_text, k.slice(2, begin, begin + n)}, 2);
    const auto vf = torch::cat({v_text, v.slice(2, begin, begin + n)}, 2);
    outs.push_back(at::scaled_dot_product_attention(q.slice(2, begin, begin + n), kf, vf));
  }
  return torch::cat(outs, 2);
}

torch::Tensor unrenormalized_cag(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 int64_t text_len, const TokenGrid& grid, int64_t query_chunk) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const auto frames = token_frames(text_len, grid, q.device());
  const auto key_frames = frames.view({1, 1, 1, -1});
  const auto kt = k.to(torch::kFloat32).transpose(-1, -2);
  const auto vf = v.to(torch::kFloat32);
  const int64_t total = q.size(2);
  std::vector<torch::Tensor> outs;
  for (int64_t begin = 0; begin < total; begin += query_chunk) {
    const int64_t end = std::min(total, begin + query_chunk);
    auto probs = torch::softmax(torch::matmul(q.slice(2, begin, end).to(torch::kFloat32), kt) * scale, -1);
    const auto query_frames = frames.slice(0, begin, end).view({1, 1, -1, 1});
    const auto keep = (query_frames == -1) | (key_frames == -1) | (query_frames == key_frames);
    probs = probs * keep.to(probs.scalar_type());
    outs.push_back(torch::matmul(probs, vf));
  }
  return torch::cat(outs, 2).to(q.scalar_type());
}

torch::Tensor cag_all(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t text_len,
                      const TokenGrid& grid, CagMode mode, int64_t query_chunk) {
  switch (mode) {
    case CagMode::kNone:
      return at::scaled_dot_product_attention(q, k, v);
    case CagMode::kRenormalized:
      return renormalized_cag(q, k, v, text_len, grid);
    case CagMode::kDropWithoutRenorm:
      return unrenormalized_cag(q, k, v, text_len, grid, query_chunk);
  }
  throw Error("unknown CAG mode");
}

}  // namespace

torch::Tensor cag_attention(const torch::Tensor& query, const torch::Tensor& key, const torch::Tensor& value,
                            int64_t text_len, const TokenGrid& grid, CagMode mode,
                            const std::vector<int64_t>& batch_indices, int64_t query_chunk) {
  check_qkv(query, "query", text_len, grid);
  check_qkv(key, "key", text_len, grid);
  T4G_CHECK(query_chunk > 0, "query_chunk must be positive, got ", query_chunk);
  if (batch_indices.empty() || mode == CagMode::kNone) {
    return cag_all(query, key, value, text_len, grid, mode, query_chunk);
  }
  for (const int64_t b : batch_indices) {
    T4G_CHECK(b >= 0 && b < query.size(0), "CAG batch index ", b, " outside the batch of ", query.size(0));
  }
  const auto index = torch::tensor(batch_indices, torch::kLong).to(query.device());
  const auto plain = at::scaled_dot_product_attention(query, key, value);
  const auto perturbed = cag_all(query.index_select(0, index), key.index_select(0, index), value.index_select(0, index),
                                 text_len, grid, mode, query_chunk);
  // index_copy (out of place) keeps autograd through both branches.
  return plain.index_copy(0, index, perturbed);
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
