// Encode and decode safetensors files with the CogVideoX VAE: the library side of `t4g vae`,
// for parity checks by hand against diffusers and for precomputing latents outside training.
// Inputs and outputs are plain safetensors files in the VAE layout [B, C, F, H, W].
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "models/cogvideox_vae.h"

namespace t4g {

enum class VaeFileMode { kEncode, kDecode };

struct VaeFileOptions {
  VaeFileMode mode = VaeFileMode::kEncode;
  std::string model;                     // diffusers pipeline root or vae/ folder
  std::string input;                     // .safetensors with the input tensor
  std::string output;                    // .safetensors written atomically
  std::string tensor;                    // input tensor name; "" = the file's only tensor, else "video" / "latents"
  torch::Dtype dtype = torch::kFloat32;  // compute dtype
  std::string device = "cpu";            // cpu, cuda or cuda:N
  bool tiled = false;                    // spatial tiling with the reference's tile sizes
  bool sample = false;                   // encode: latents from a posterior sample (needs seed) instead of the mean
  uint64_t seed = 0;   // encode with sample: seed of the CPU generator (as torch.Generator().manual_seed)
  bool scaled = true;  // decode: input is scaled latents (divided by scaling_factor first)
};

// What was done, for the one log line of the command.
struct VaeFileReport {
  std::string input_tensor;  // the tensor name read
  std::vector<int64_t> input_shape;
  std::vector<int64_t> output_shape;  // of "latents" (encode) or "video" (decode)
  double seconds = 0;                 // model time, excluding loading
};

// Encode: reads a video [B, C, F, H, W] in [-1, 1] and writes float32 "latents" (mean or sample
// times scaling_factor), "mean" and "logvar". Decode: reads latents and writes float32 "video".
// Errors name the file and the tensor.
VaeFileReport run_vae_file(const VaeFileOptions& options);

// "fp32" | "float32" | "bf16" | "bfloat16" | "fp16" | "float16"; throws t4g::Error otherwise.
torch::Dtype parse_compute_dtype(const std::string& name);

}  // namespace t4g
