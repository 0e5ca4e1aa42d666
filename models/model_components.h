// The models a recipe names, built in one place: the transformer, VAE and scheduler of a diffusers
// pipeline folder (model.path), or their tiny random stand-ins built from model.tiny with a fixed
// seed (the CPU demo and the tests). Training, tracking, analysis and sampling all start here, so
// "which model, which device, which dtype" is decided once. Also the pixel <-> latent conversions
// every flow needs (uint8 frames -> scaled transformer latents and back).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "common/config.h"
#include "models/cogvideox_scheduler.h"
#include "models/cogvideox_transformer.h"
#include "models/cogvideox_vae.h"

namespace t4g {

// Which components to build (the VAE is large; flows that read precomputed latents skip it).
struct ComponentRequest {
  bool transformer = true;
  bool vae = true;
  int cuda_index = 0;  // which GPU when the device is CUDA (one process per GPU: LOCAL_RANK)
};

// A loaded model. `vae` is null when not requested. Modules are in eval mode with frozen
// parameters; the caller decides what trains.
struct ModelComponents {
  CogVideoXTransformer3DModel transformer{nullptr};
  AutoencoderKLCogVideoX vae{nullptr};
  CogVideoXScheduler scheduler;
  std::string source;                     // model.path, or "tiny"
  torch::Device device = torch::kCPU;     // where the modules live
  torch::ScalarType dtype = torch::kFloat32;  // compute dtype
  int64_t text_tokens = 226;              // text sequence length the model expects
  int64_t text_embed_dim = 4096;          // width of the text embeddings

  // The tiny stand-ins have no text encoder (their prompts are empty); presets neither.
  bool is_tiny() const { return source == "tiny"; }
  bool has_random_weights() const { return source == "tiny" || source.rfind("preset:", 0) == 0; }
};

// kAuto -> CUDA when available, else CPU. kCuda without a GPU is an error naming model.device.
torch::Device resolve_device(DeviceKind kind, int cuda_index = 0);
torch::ScalarType to_scalar_type(DType dtype);

// The tiny transformer and VAE configs a recipe's model.tiny describes (2B form unless RoPE is on;
// the VAE has 4 blocks, so 8x spatial and 4x temporal compression like the real one).
CogVideoXTransformerConfig tiny_transformer_config(const TinyModelConfig& tiny);
CogVideoXVaeConfig tiny_vae_config(const TinyModelConfig& tiny);

// Builds or loads what `request` asks for. model.path: a diffusers pipeline root (transformer/,
// vae/, scheduler/) or, for the transformer alone, a transformer folder. Empty path: tiny random
// modules seeded from `seed` (same seed, same weights) and the 2B scheduler defaults.
ModelComponents load_model_components(const ModelConfig& config, uint64_t seed, const ComponentRequest& request = {});

// uint8 frames [B, F, H, W, 3] RGB (data/ layout) -> the VAE's input [B, 3, F, H, W] in [-1, 1],
// on `device` in `dtype`.
torch::Tensor frames_to_vae_input(const torch::Tensor& frames, torch::Device device, torch::ScalarType dtype);
// The VAE's output [B, 3, F, H, W] in [-1, 1] -> uint8 frames [B, F, H, W, 3] on the CPU.
torch::Tensor vae_output_to_frames(const torch::Tensor& video);

// uint8 frames [B, F, H, W, 3] -> transformer latents [B, F', C, H/8, W/8] (posterior mean times
// scaling_factor), without autograd. F must be 4k+1 for the 4x temporal VAE.
torch::Tensor encode_frames_to_latents(AutoencoderKLCogVideoX& vae, const torch::Tensor& frames);

// Encodes each frame on its own (a 1-frame video -> 1 latent frame), as DiffTrack's tracking does
// (research/methods.md 1.4): [B, F, H, W, 3] -> [B, F, C, H/8, W/8], no temporal compression.
torch::Tensor encode_frames_one_by_one(AutoencoderKLCogVideoX& vae, const torch::Tensor& frames);

// The text embeddings the tiny model is conditioned on: zeros [B, text_tokens, text_embed_dim]
// (it has no text encoder; its prompts are empty, like DiffTrack's tracking prompts).
torch::Tensor tiny_text_embeddings(const ModelComponents& components, int64_t batch);

}  // namespace t4g
