// Position and timestep encodings of the CogVideoX transformer: the timestep sinusoid and MLP,
// the 3D sin-cos table (2B; I2V off-size), and the 3D rotary embedding (5B family) computed from
// the config and the latent size exactly as diffusers' pipeline does (research/cogvideox.md 2.3,
// 2.4, 2.6). Precision choices follow diffusers: sinusoids in fp32, the sin-cos table in fp64,
// RoPE tables in fp32 and applied in fp32.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <utility>

#include "models/cogvideox_config.h"

namespace t4g {

// diffusers get_timestep_embedding: [B] timesteps (any numeric dtype) -> float32 [B, dim].
// With flip_sin_to_cos the layout is [cos | sin]; frequencies exp(-ln(10000) i / (dim/2 - shift)).
torch::Tensor timestep_sinusoid(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos, double freq_shift);

// diffusers TimestepEmbedding: linear_1 -> SiLU -> linear_2 (parameter names linear_1, linear_2).
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim);
  torch::Tensor forward(const torch::Tensor& sample);

  torch::nn::Linear linear_1{nullptr};
  torch::nn::Linear linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// diffusers get_3d_sincos_pos_embed (output_type "pt"): float64 [frames, grid_h * grid_w, embed_dim]
// with channels [temporal (D/4) | width coordinate (3D/8) | height coordinate (3D/8)], each block
// [sin | cos]; positions are float32 arange / interpolation scale, frequencies float64.
torch::Tensor sincos_pos_embed_3d(int64_t embed_dim, int64_t grid_h, int64_t grid_w, int64_t frames,
                                  double spatial_interpolation_scale, double temporal_interpolation_scale);

// The video rows of CogVideoXPatchEmbed's sin-cos table for a latent grid of `latent_frames` x
// `latent_h` x `latent_w` (before patching): float64 [frames * (h/p) * (w/p), D]. The text rows of
// diffusers' joint table are zero and are not returned.
torch::Tensor cogvideox_sincos_video_table(const CogVideoXTransformerConfig& config, int64_t latent_frames,
                                           int64_t latent_h, int64_t latent_w);

// Rotary tables for the video tokens, each float32 [video tokens, head_dim].
struct RotaryEmbedding {
  torch::Tensor cos;
  torch::Tensor sin;
  // True for tables built from angles (rotary_pos_embed_3d): cos[:, 2i] == cos[:, 2i + 1] and the
  // same for sin, so a pair rotates as one complex number (apply_rotary_emb_joint's fast path).
  // Tables that are learned or edited (DiTFlow) must leave it false.
  bool pairs_share_angle = false;
  bool defined() const { return cos.defined(); }
};

// Which grid diffusers' get_3d_rotary_pos_embed builds positions on.
enum class RopeGrid {
  kLinspace,  // CogVideoX 1.0: crop region of the base grid, float32 linspace positions
  kSlice,     // CogVideoX 1.5: integer positions sliced from a max grid
};

// diffusers get_resize_crop_region_for_grid: ((top, left), (bottom, right)) of `grid` (h, w)
// resized into the base grid keeping its aspect ratio; Python round (half to even).
std::pair<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>> resize_crop_region_for_grid(int64_t grid_h,
                                                                                                int64_t grid_w,
                                                                                                int64_t base_w,
                                                                                                int64_t base_h);

// diffusers get_3d_rotary_pos_embed(use_real=True, theta=10000): head_dim split t | h | w =
// dim/4, 3dim/8, 3dim/8, each frequency repeated twice (interleaved pairs).
// `crop` is used for kLinspace, `max_h`/`max_w` for kSlice.
RotaryEmbedding rotary_pos_embed_3d(int64_t head_dim,
                                    std::pair<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>> crop,
                                    int64_t grid_h, int64_t grid_w, int64_t temporal_size, RopeGrid grid_type,
                                    int64_t max_h = 0, int64_t max_w = 0);

// The pipeline's _prepare_rotary_positional_embeddings for latents of `latent_frames` x `latent_h`
// x `latent_w` (the transformer's input size): the tables every block uses. On `device`.
RotaryEmbedding cogvideox_rotary_embedding(const CogVideoXTransformerConfig& config, int64_t latent_frames,
                                           int64_t latent_h, int64_t latent_w,
                                           const torch::Device& device = torch::kCPU);

// diffusers apply_rotary_emb (use_real, unbind dim -1): x [B, heads, S, head_dim] with interleaved
// (real, imag) pairs; computed in float32 and returned in x's dtype.
torch::Tensor apply_rotary_emb(const torch::Tensor& x, const RotaryEmbedding& rope);

// The same rotation for the joint sequence in the projection layout: x [B, text_len + video, heads,
// head_dim]; the first text_len tokens pass unchanged, the video tokens rotate by `rope`. One pass
// over the whole tensor in float32 (no slicing of q/k or concatenation), so the result is x's
// values for text and apply_rotary_emb's for video (to float32 rounding), for any tables.
torch::Tensor apply_rotary_emb_joint(const torch::Tensor& x, const RotaryEmbedding& rope, int64_t text_len);

}  // namespace t4g
