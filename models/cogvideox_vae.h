// diffusers' AutoencoderKLCogVideoX: the 3D causal VAE of CogVideoX (research/cogvideox.md 3).
// Parameter names equal diffusers' state-dict names (encoder.conv_in.conv.weight, ...), so a vae/
// folder loads strictly by name. encode/decode replicate the reference exactly: videos are run in
// frame chunks (encoder: 8 + r frames then 8 at a time; decoder: 2 + r latents then 2 at a time)
// with each causal conv's temporal cache carried from chunk to chunk and GroupNorm statistics per
// chunk, so 49 frames <-> 13 latents give the reference's numbers, not those of a one-pass model.
// Optional spatial tiling (vae_tiling.h) bounds memory for large frames.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "models/causal_conv3d.h"
#include "models/cogvideox_vae_blocks.h"
#include "models/cogvideox_vae_config.h"
#include "models/vae_tiling.h"

namespace t4g {

// diffusers enable_tiling(). Tiling is used only when a frame is larger than one tile.
struct VaeTilingOptions {
  bool enabled = false;                    // off by default, as in the CogVideoX pipelines
  int64_t tile_sample_min_height = 0;      // pixel tile height; 0: config sample_height / 2 (240)
  int64_t tile_sample_min_width = 0;       // pixel tile width; 0: config sample_width / 2 (360)
  double overlap_factor_height = 1.0 / 6;  // share of a tile's height blended with the next tile, in (0, 1)
  double overlap_factor_width = 1.0 / 5;   // share of a tile's width blended with the next tile, in (0, 1)
};

// How encode and decode run. Defaults are the reference's; other chunk sizes change the results
// (the VAE was trained with these).
struct VaeOptions {
  VaeTilingOptions tiling;              // spatial tiling
  int64_t sample_frames_per_chunk = 8;  // diffusers num_sample_frames_batch_size (a multiple of the ratio)
  int64_t latent_frames_per_chunk = 2;  // diffusers num_latent_frames_batch_size
};

// Latent frames the VAE makes from `frames` video frames with these options (no model needed):
// (frames - 1) / ratio + 1; throws t4g::Error naming tensor "video" and the 4k+1 rule for frame
// counts the reference does not map that way.
int64_t vae_latent_frames(int64_t frames, const CogVideoXVaeConfig& config, const VaeOptions& options = {});
// Video frames decode() makes from `latent_frames` latents (any count >= 1): with the defaults
// 4(f - 1) + 1 for odd f and 4f for even f (chunks of 2 latents decode to 8 frames each).
int64_t vae_decoded_frames(int64_t latent_frames, const CogVideoXVaeConfig& config, const VaeOptions& options = {});

// The encoder's output distribution (diffusers DiagonalGaussianDistribution).
struct VaePosterior {
  torch::Tensor mean;    // [B, latent_channels, f, h, w]
  torch::Tensor logvar;  // same shape, clamped to [-30, 20]

  // exp(0.5 * logvar).
  torch::Tensor std() const;
  // mean + std * eps with eps = randn(mean's shape) drawn from `generator` in mean's dtype on the
  // generator's device (then moved to mean's device), as diffusers' posterior.sample(generator)
  // does: the same seed gives the same sample.
  torch::Tensor sample(torch::Generator generator) const;
};

// Which latent encode_latents returns.
enum class LatentSampling { kMean, kSample };

// diffusers CogVideoXEncoder3D: conv_in, down_blocks, mid_block, norm_out, conv_out. One call
// encodes one frame chunk: [B, in, T, H, W] -> [B, 2 * latent, t, H / s, W / s].
class CogVideoXEncoder3DImpl : public torch::nn::Module {
 public:
  explicit CogVideoXEncoder3DImpl(const CogVideoXVaeConfig& config);
  torch::Tensor forward(const torch::Tensor& x, ConvCache* cache);

 private:
  CausalConv3d conv_in_{nullptr};
  std::vector<CogVideoXDownBlock3D> down_blocks_;
  CogVideoXMidBlock3D mid_block_{nullptr};
  torch::nn::GroupNorm norm_out_{nullptr};
  CausalConv3d conv_out_{nullptr};
};
TORCH_MODULE(CogVideoXEncoder3D);

// diffusers CogVideoXDecoder3D: conv_in, mid_block, up_blocks, norm_out, conv_out. One call
// decodes one latent chunk z (which also conditions every spatial norm).
class CogVideoXDecoder3DImpl : public torch::nn::Module {
 public:
  explicit CogVideoXDecoder3DImpl(const CogVideoXVaeConfig& config);
  torch::Tensor forward(const torch::Tensor& z, ConvCache* cache);

 private:
  CausalConv3d conv_in_{nullptr};
  CogVideoXMidBlock3D mid_block_{nullptr};
  std::vector<CogVideoXUpBlock3D> up_blocks_;
  CogVideoXSpatialNorm3D norm_out_{nullptr};
  CausalConv3d conv_out_{nullptr};
};
TORCH_MODULE(CogVideoXDecoder3D);

// The VAE. Inputs are converted to the parameters' device and dtype; outputs are in that dtype.
// Run it under torch::NoGradGuard or InferenceMode (load_cogvideox_vae also freezes the
// parameters, so no graph is recorded for inputs that do not require grad).
class AutoencoderKLCogVideoXImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLCogVideoXImpl(const CogVideoXVaeConfig& config, const VaeOptions& options = {});

  const CogVideoXVaeConfig& config() const { return config_; }
  const VaeOptions& options() const { return options_; }
  // Replaces the run options (validated: chunk sizes, tile sizes and overlaps).
  void set_options(const VaeOptions& options);

  // video [B, in_channels, F, H, W] in [-1, 1], F = 4k + 1 (for ratio 4), H and W multiples of 8
  // (the spatial compression) -> posterior over [B, latent_channels, k + 1, H / 8, W / 8].
  VaePosterior encode(const torch::Tensor& video);
  // z [B, latent_channels, f, h, w] (unscaled) -> video [B, out_channels, F, 8h, 8w] with
  // F = decoded_frames(f): 4(f - 1) + 1 for odd f, 4f for even f (the reference's chunking).
  torch::Tensor decode(const torch::Tensor& z);

  // The diffusion latents: posterior mean or a sample (then `generator` is required), times
  // scaling_factor; still [B, C, F, H, W] (see vae_to_transformer_layout).
  torch::Tensor encode_latents(const torch::Tensor& video, LatentSampling sampling = LatentSampling::kMean,
                               std::optional<torch::Generator> generator = std::nullopt);
  // decode(1 / scaling_factor * latents), as the CogVideoX pipelines do.
  torch::Tensor decode_latents(const torch::Tensor& latents);

  // vae_latent_frames / vae_decoded_frames with this model's config and options.
  int64_t latent_frames(int64_t frames) const { return vae_latent_frames(frames, config_, options_); }
  int64_t decoded_frames(int64_t latents) const { return vae_decoded_frames(latents, config_, options_); }

  CogVideoXEncoder3D encoder{nullptr};
  CogVideoXDecoder3D decoder{nullptr};

 private:
  torch::Tensor encode_frames(const torch::Tensor& x);  // frame chunks with one conv cache
  torch::Tensor decode_frames(const torch::Tensor& z);  // latent chunks with one conv cache
  TileGrid encode_grid() const;
  TileGrid decode_grid() const;
  int64_t tile_sample_height() const;
  int64_t tile_sample_width() const;
  torch::Tensor to_parameters(const torch::Tensor& x) const;

  CogVideoXVaeConfig config_;
  VaeOptions options_;
};
TORCH_MODULE(AutoencoderKLCogVideoX);

// How load_cogvideox_vae builds the model.
struct VaeLoadOptions {
  torch::Dtype dtype = torch::kFloat32;  // compute dtype; stored fp32/fp16/bf16 weights are converted
  torch::Device device = torch::kCPU;    // where the parameters live
  VaeOptions run;                        // chunking and tiling
};

// Builds the VAE from a diffusers pipeline root (its vae/ component) or a vae folder
// (config.json + diffusion_pytorch_model.safetensors, single or sharded), loads the weights
// strictly by name, and returns it in eval mode with frozen parameters.
AutoencoderKLCogVideoX load_cogvideox_vae(const std::string& path, const VaeLoadOptions& options = {});

// [B, C, F, H, W] (VAE) <-> [B, F, C, H, W] (transformer); both return contiguous tensors.
torch::Tensor vae_to_transformer_layout(const torch::Tensor& latents);
torch::Tensor transformer_to_vae_layout(const torch::Tensor& latents);

}  // namespace t4g
