// Timestep sinusoid and MLP, 3D sin-cos table and 3D RoPE of CogVideoX. Each function follows
// the diffusers function named in its header comment op for op (same dtypes, same operation
// order), because the parity fixtures compare against diffusers at ~1e-6.
#include "models/embeddings.h"

#include <cmath>

#include "common/error.h"
#include "models/lora.h"

namespace t4g {

torch::Tensor timestep_sinusoid(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos, double freq_shift) {
  T4G_CHECK(timesteps.dim() == 1, "timesteps must be a 1-D tensor [B], got ", timesteps.sizes());
  const int64_t half = dim / 2;
  auto exponent = torch::arange(0, half, torch::TensorOptions().dtype(torch::kFloat32).device(timesteps.device())) *
                  (-std::log(10000.0));
  exponent = exponent / (static_cast<double>(half) - freq_shift);
  auto emb = timesteps.unsqueeze(1).to(torch::kFloat32) * torch::exp(exponent).unsqueeze(0);
  emb = flip_sin_to_cos ? torch::cat({torch::cos(emb), torch::sin(emb)}, -1)
                        : torch::cat({torch::sin(emb), torch::cos(emb)}, -1);
  if (dim % 2 == 1) emb = torch::nn::functional::pad(emb, torch::nn::functional::PadFuncOptions({0, 1, 0, 0}));
  return emb;
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim) {
  linear_1 = register_module("linear_1", torch::nn::Linear(in_channels, time_embed_dim));
  linear_2 = register_module("linear_2", torch::nn::Linear(time_embed_dim, time_embed_dim));
}

torch::Tensor TimestepEmbeddingImpl::forward(const torch::Tensor& sample) {
  return linear_forward(linear_2, torch::silu(linear_forward(linear_1, sample)));
}

namespace {

// diffusers get_1d_sincos_pos_embed_from_grid: [M] positions -> float64 [M, dim] as [sin | cos].
torch::Tensor sincos_1d(int64_t dim, const torch::Tensor& pos) {
  auto omega = torch::arange(dim / 2, torch::TensorOptions().dtype(torch::kFloat64).device(pos.device()));
  omega = omega / (static_cast<double>(dim) / 2.0);
  omega = torch::pow(10000.0, omega).reciprocal();
  const auto out = torch::outer(pos.reshape(-1).to(torch::kFloat64), omega);
  return torch::cat({torch::sin(out), torch::cos(out)}, 1);
}

// diffusers get_1d_rotary_pos_embed(use_real, repeat_interleave_real): float32 ([S, dim], [S, dim]).
std::pair<torch::Tensor, torch::Tensor> rotary_1d(int64_t dim, const torch::Tensor& pos) {
  auto freqs = torch::arange(0, dim, 2, torch::TensorOptions().dtype(torch::kFloat32).device(pos.device())) /
               static_cast<double>(dim);
  freqs = torch::pow(10000.0, freqs).reciprocal();
  freqs = torch::outer(pos, freqs);
  return {freqs.cos().repeat_interleave(2, 1), freqs.sin().repeat_interleave(2, 1)};
}

}  // namespace

torch::Tensor sincos_pos_embed_3d(int64_t embed_dim, int64_t grid_h, int64_t grid_w, int64_t frames,
                                  double spatial_interpolation_scale, double temporal_interpolation_scale) {
  T4G_CHECK(embed_dim % 16 == 0, "sin-cos positional embedding width must be a multiple of 16, got ", embed_dim);
  const int64_t dim_spatial = 3 * embed_dim / 4;
  const int64_t dim_temporal = embed_dim / 4;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  const auto h = torch::arange(grid_h, f32) / spatial_interpolation_scale;
  const auto w = torch::arange(grid_w, f32) / spatial_interpolation_scale;
  // Token (row, col) order: the width coordinate varies fastest.
  const auto w_coord = w.unsqueeze(0).expand({grid_h, grid_w});
  const auto h_coord = h.unsqueeze(1).expand({grid_h, grid_w});
  // diffusers names the first half "emb_h" but feeds it the width grid: [x | y].
  const auto spatial = torch::cat({sincos_1d(dim_spatial / 2, w_coord), sincos_1d(dim_spatial / 2, h_coord)}, 1);
  const auto t = torch::arange(frames, f32) / temporal_interpolation_scale;
  const auto temporal = sincos_1d(dim_temporal, t);  // [T, D/4]
  const int64_t hw = grid_h * grid_w;
  return torch::cat({temporal.unsqueeze(1).expand({frames, hw, dim_temporal}),
                     spatial.unsqueeze(0).expand({frames, hw, dim_spatial})},
                    -1);
}

torch::Tensor cogvideox_sincos_video_table(const CogVideoXTransformerConfig& config, int64_t latent_frames,
                                           int64_t latent_h, int64_t latent_w) {
  const int64_t p = config.patch_size;
  return sincos_pos_embed_3d(config.inner_dim(), latent_h / p, latent_w / p, latent_frames,
                             config.spatial_interpolation_scale, config.temporal_interpolation_scale)
      .flatten(0, 1);
}

std::pair<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>> resize_crop_region_for_grid(int64_t grid_h,
                                                                                                int64_t grid_w,
                                                                                                int64_t base_w,
                                                                                                int64_t base_h) {
  const double tw = static_cast<double>(base_w);
  const double th = static_cast<double>(base_h);
  const double h = static_cast<double>(grid_h);
  const double w = static_cast<double>(grid_w);
  const double r = h / w;
  int64_t resize_h = 0;
  int64_t resize_w = 0;
  // std::nearbyint under the default rounding mode rounds half to even, like Python's round().
  if (r > th / tw) {
    resize_h = base_h;
    resize_w = static_cast<int64_t>(std::nearbyint(th / h * w));
  } else {
    resize_w = base_w;
    resize_h = static_cast<int64_t>(std::nearbyint(tw / w * h));
  }
  const int64_t top = static_cast<int64_t>(std::nearbyint((th - static_cast<double>(resize_h)) / 2.0));
  const int64_t left = static_cast<int64_t>(std::nearbyint((tw - static_cast<double>(resize_w)) / 2.0));
  return {{top, left}, {top + resize_h, left + resize_w}};
}

RotaryEmbedding rotary_pos_embed_3d(int64_t head_dim,
                                    std::pair<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>> crop,
                                    int64_t grid_h, int64_t grid_w, int64_t temporal_size, RopeGrid grid_type,
                                    int64_t max_h, int64_t max_w) {
  T4G_CHECK(head_dim % 16 == 0, "3D RoPE needs attention_head_dim divisible by 16, got ", head_dim);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  torch::Tensor pos_h;
  torch::Tensor pos_w;
  torch::Tensor pos_t;
  if (grid_type == RopeGrid::kLinspace) {
    const auto [start, stop] = crop;
    // The end point is stop * (n - 1) / n (Python float64), then float32 linspace.
    pos_h = torch::linspace(static_cast<double>(start.first),
                            static_cast<double>(stop.first * (grid_h - 1)) / static_cast<double>(grid_h), grid_h, f32);
    pos_w = torch::linspace(static_cast<double>(start.second),
                            static_cast<double>(stop.second * (grid_w - 1)) / static_cast<double>(grid_w), grid_w, f32);
    pos_t = torch::linspace(
        0.0, static_cast<double>(temporal_size * (temporal_size - 1)) / static_cast<double>(temporal_size),
        temporal_size, f32);
  } else {
    T4G_CHECK(grid_h <= max_h && grid_w <= max_w, "latent grid ", grid_h, "x", grid_w,
              " (after patching) exceeds the RoPE base grid ", max_h, "x", max_w,
              " (sample_height/patch, sample_width/patch)");
    pos_h = torch::arange(max_h, f32).slice(0, 0, grid_h);
    pos_w = torch::arange(max_w, f32).slice(0, 0, grid_w);
    pos_t = torch::arange(temporal_size, f32);
  }
  const int64_t dim_t = head_dim / 4;
  const int64_t dim_h = head_dim / 8 * 3;
  const int64_t dim_w = head_dim / 8 * 3;
  const auto [t_cos, t_sin] = rotary_1d(dim_t, pos_t);
  const auto [h_cos, h_sin] = rotary_1d(dim_h, pos_h);
  const auto [w_cos, w_sin] = rotary_1d(dim_w, pos_w);
  auto combine = [&](const torch::Tensor& t, const torch::Tensor& h, const torch::Tensor& w) {
    return torch::cat({t.view({temporal_size, 1, 1, dim_t}).expand({temporal_size, grid_h, grid_w, dim_t}),
                       h.view({1, grid_h, 1, dim_h}).expand({temporal_size, grid_h, grid_w, dim_h}),
                       w.view({1, 1, grid_w, dim_w}).expand({temporal_size, grid_h, grid_w, dim_w})},
                      -1)
        .reshape({temporal_size * grid_h * grid_w, head_dim});
  };
  return {combine(t_cos, h_cos, w_cos), combine(t_sin, h_sin, w_sin), /*pairs_share_angle=*/true};
}

RotaryEmbedding cogvideox_rotary_embedding(const CogVideoXTransformerConfig& config, int64_t latent_frames,
                                           int64_t latent_h, int64_t latent_w, const torch::Device& device) {
  const int64_t p = config.patch_size;
  const int64_t grid_h = latent_h / p;
  const int64_t grid_w = latent_w / p;
  const int64_t base_w = config.sample_width / p;
  const int64_t base_h = config.sample_height / p;
  RotaryEmbedding rope;
  if (!config.patch_size_t) {
    rope = rotary_pos_embed_3d(config.attention_head_dim, resize_crop_region_for_grid(grid_h, grid_w, base_w, base_h),
                               grid_h, grid_w, latent_frames, RopeGrid::kLinspace);
  } else {
    const int64_t pt = *config.patch_size_t;
    rope = rotary_pos_embed_3d(config.attention_head_dim, {}, grid_h, grid_w, (latent_frames + pt - 1) / pt,
                               RopeGrid::kSlice, base_h, base_w);
  }
  rope.cos = rope.cos.to(device);
  rope.sin = rope.sin.to(device);
  return rope;
}

torch::Tensor apply_rotary_emb(const torch::Tensor& x, const RotaryEmbedding& rope) {
  const auto pairs = x.reshape({x.size(0), x.size(1), x.size(2), -1, 2});
  const auto x_real = pairs.select(-1, 0);
  const auto x_imag = pairs.select(-1, 1);
  const auto rotated = torch::stack({-x_imag, x_real}, -1).flatten(3);
  const auto cos = rope.cos.to(x.device()).unsqueeze(0).unsqueeze(0);
  const auto sin = rope.sin.to(x.device()).unsqueeze(0).unsqueeze(0);
  return (x.to(torch::kFloat32) * cos + rotated.to(torch::kFloat32) * sin).to(x.scalar_type());
}

torch::Tensor apply_rotary_emb_joint(const torch::Tensor& x, const RotaryEmbedding& rope, int64_t text_len) {
  T4G_CHECK(x.dim() == 4 && x.size(-1) % 2 == 0, "RoPE input must be [B, S, heads, even head_dim], got ", x.sizes());
  T4G_CHECK(rope.cos.dim() == 2 && rope.cos.size(0) + text_len == x.size(1) && rope.cos.size(1) == x.size(-1),
            "RoPE tables are [", rope.cos.sizes(), "], the input has ", x.size(1), " tokens (", text_len,
            " text) of head_dim ", x.size(-1));
  // Tables over the joint sequence: text rows rotate by nothing (cos 1, sin 0), which leaves them
  // exactly as they are. Every table entry is used as given (DiTFlow optimises the tables, so the
  // two entries of a (real, imag) pair need not be equal).
  auto joint = [&](const torch::Tensor& table, double text_value) {
    const auto t = table.to(x.device(), torch::kFloat32);
    if (text_len == 0) return t;
    return torch::cat({torch::full({text_len, t.size(1)}, text_value, t.options()), t}, 0);
  };
  const auto xf = x.to(torch::kFloat32);
  if (rope.pairs_share_angle && !rope.cos.requires_grad() && !rope.sin.requires_grad()) {
    // One complex multiply by cos + i sin of each pair's angle (three kernels instead of six).
    const auto angle_cos = joint(rope.cos.slice(1, 0, c10::nullopt, 2), 1.0);
    const auto angle_sin = joint(rope.sin.slice(1, 0, c10::nullopt, 2), 0.0);
    const auto rotation = torch::complex(angle_cos, angle_sin).unsqueeze(1);  // [S, 1, D / 2]
    const auto pairs = torch::view_as_complex(xf.contiguous().unflatten(-1, {x.size(-1) / 2, 2}));
    return torch::view_as_real(pairs * rotation).flatten(-2).to(x.scalar_type());
  }
  const auto cos = joint(rope.cos, 1.0).unsqueeze(1);  // [S, 1, D]: broadcast over heads
  const auto sin = joint(rope.sin, 0.0).unsqueeze(1);
  const auto pairs = xf.unflatten(-1, {x.size(-1) / 2, 2});
  const auto rotated = torch::stack({pairs.select(-1, 1).neg(), pairs.select(-1, 0)}, -1).flatten(-2);
  return torch::addcmul(xf * cos, rotated, sin).to(x.scalar_type());
}

}  // namespace t4g
