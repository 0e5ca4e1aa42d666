// The configuration of diffusers' AutoencoderKLCogVideoX (vae/config.json), read and validated in
// one place: every problem is a t4g::Error naming the file and the key. Defaults are those of the
// released CogVideoX VAEs except scaling_factor, which differs between 2B (1.15258426) and 5B (0.7)
// and is therefore always taken from the file when present (research/cogvideox.md 1.2).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/json.h"

namespace t4g {

struct CogVideoXVaeConfig {
  int64_t in_channels = 3;                                         // pixel channels in
  int64_t out_channels = 3;                                        // pixel channels out
  std::vector<int64_t> block_out_channels = {128, 256, 256, 512};  // channels per down block (up: reversed)
  int64_t latent_channels = 16;                                    // channels of the latent (posterior mean)
  int64_t layers_per_block = 3;                                    // resnets per down block; up blocks have one more
  double norm_eps = 1e-6;                                          // GroupNorm eps inside the resnets
  int64_t norm_num_groups = 32;                                    // GroupNorm groups everywhere
  int64_t temporal_compression_ratio = 4;                          // frames per latent after the first (1, 2, 4 or 8)
  int64_t sample_height = 480;                                     // default tile height is half of it
  int64_t sample_width = 720;                                      // default tile width is half of it
  double scaling_factor = 1.15258426;                              // latents for the transformer = z * scaling_factor
  bool invert_scale_latents = false;                               // CogVideoX 1.5 I2V image latents: divide instead

  // Pixels per latent along height and width: 2^(number of blocks - 1).
  int64_t spatial_compression() const;
  // Number of ×2 temporal stages: log2(temporal_compression_ratio).
  int64_t temporal_compress_levels() const;
};

// Parses and validates a config object (`file` names it in errors). Checks the class name
// (AutoencoderKLCogVideoX when present), block types, act_fn (silu/swish), channel counts divisible
// by norm_num_groups, the compression ratio against the number of blocks, and refuses
// use_quant_conv / use_post_quant_conv (no released CogVideoX VAE has them). shift_factor,
// latents_mean/std and force_upcast are not used by the CogVideoX pipelines and are ignored.
CogVideoXVaeConfig parse_vae_config(const JsonObject& json);
// The config as diffusers writes vae/config.json (parse_vae_config reads it back).
Json vae_config_to_json(const CogVideoXVaeConfig& config);
// Reads vae/config.json.
CogVideoXVaeConfig read_vae_config(const std::string& path);
// The same checks on a config built in code; `source` names it in errors.
void validate_vae_config(const CogVideoXVaeConfig& config, const std::string& source);

}  // namespace t4g
