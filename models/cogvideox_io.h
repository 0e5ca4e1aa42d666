// Loading a CogVideoX transformer from a diffusers folder (strict name-to-name copy of the
// safetensors weights, any stored dtype) and running it on tensors read from a safetensors file:
// the library side of `t4g forward transformer`.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>

#include "models/cogvideox_transformer.h"

namespace t4g {

// Where and how the loaded model runs.
struct TransformerLoadOptions {
  torch::ScalarType dtype = torch::kFloat32;  // compute dtype: kFloat32 or kBFloat16
  torch::Device device = torch::kCPU;         // cpu or cuda
};

// Loads `path`: a diffusers pipeline root (its transformer/ is used), a transformer folder
// (config.json + safetensors, single or sharded), strictly: missing, unexpected or mis-shaped
// tensors are one t4g::Error listing them. The model is returned in eval mode.
CogVideoXTransformer3DModel load_cogvideox_transformer(const std::string& path,
                                                       const TransformerLoadOptions& options = {});

// `t4g forward transformer`: inputs hold `hidden_states` [B,F,C,H,W], `encoder_hidden_states`
// [B,S,D], `timestep` [B] (and `ofs` [B] for CogVideoX1.5-I2V). The output file gets `sample`
// and, with a probe layer N, `query_L{N}` and `key_L{N}` [B, heads, S + video tokens, head_dim]
// (text first), all float32. RoPE comes from the config and the input's latent size.
struct ForwardTransformerFileOptions {
  std::string model;                   // diffusers transformer folder (or pipeline root)
  std::string inputs;                  // input safetensors file
  std::string output;                  // output safetensors file, written atomically
  std::optional<int64_t> probe_layer;  // capture Q/K at this block
  TransformerLoadOptions load;
};
void forward_transformer_file(const ForwardTransformerFileOptions& options);

}  // namespace t4g
