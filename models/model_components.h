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
#include "models/refiner.h"

namespace t4g {

// Which components to build (the VAE is large; flows that read precomputed latents skip it).
struct ComponentRequest {
  bool transformer = true;
  bool vae = true;
  bool refiner = true;  // a trained model's refiner (models/trained_model.h); false = its backbone alone
  int cuda_index = 0;   // which GPU when the device is CUDA (one process per GPU: LOCAL_RANK)
};

// A loaded model. `vae` is null when not requested. Modules are in eval mode with frozen
// parameters; the caller decides what trains. A trained t4g model also has its refiner, whose
// residual the transformer adds after the refiner's block on every forward (attach_refiner).
struct ModelComponents {
  CogVideoXTransformer3DModel transformer{nullptr};
  AutoencoderKLCogVideoX vae{nullptr};
  CogVideoXScheduler scheduler;
  Refiner refiner{nullptr};               // attached to the transformer; null for a plain backbone
  std::string source;                     // model.path, "tiny" or "preset:2b"/"preset:5b"
  std::string text_root;                  // folder holding text_encoder/ and tokenizer/ ("" = none)
  bool tiny = false;                      // the random tiny model (or a model trained from it)
  bool random_weights = false;            // tiny or preset base: no text encoder, prompts are zeros
  std::string weights;                    // a trained model's: "ema" or "raw" ("" for a plain model)
  torch::Device device = torch::kCPU;     // where the modules live
  torch::ScalarType dtype = torch::kFloat32;  // compute dtype
  int64_t text_tokens = 226;              // text sequence length the model expects
  int64_t text_embed_dim = 4096;          // width of the text embeddings

  // The tiny stand-ins have no text encoder (their prompts are empty); presets neither.
  bool is_tiny() const { return tiny; }
  bool has_random_weights() const { return random_weights; }
};

// The size a model is made for: its config's sample size (CogVideoX 1.0: 49 x 480 x 720, 1.5:
// 81 x 768 x 1360; the tiny model: the recipe's data size), which sampling, tracking and analysis
// default to.
struct ModelSampleSize {
  int64_t frames = 0;
  int64_t height = 0;  // pixels
  int64_t width = 0;   // pixels
};
ModelSampleSize model_sample_size(const ModelComponents& components);

// One warning line when `height` x `width` (and `frames` when > 0) is not the size the model was
// trained at: it runs (positions are rebuilt for the grid), but quality is untested there.
void warn_if_untrained_size(const ModelComponents& components, int64_t frames, int64_t height, int64_t width,
                            const std::string& what);

// kAuto -> CUDA when available, else CPU. kCuda without a GPU is an error naming model.device.
torch::Device resolve_device(DeviceKind kind, int cuda_index = 0);
// kAuto -> bf16 on CUDA, fp32 on the CPU (the CPU has no fast bf16 path).
torch::ScalarType resolve_dtype(DType dtype, const torch::Device& device);

// The tiny transformer and VAE configs a recipe's model.tiny describes (2B form unless RoPE is on;
// the VAE has 4 blocks, so 8x spatial and 4x temporal compression like the real one).
CogVideoXTransformerConfig tiny_transformer_config(const TinyModelConfig& tiny);
CogVideoXVaeConfig tiny_vae_config(const TinyModelConfig& tiny);

// Builds or loads what `request` asks for. model.path: a diffusers pipeline root (transformer/,
// vae/, scheduler/), for the transformer alone a transformer folder, or a trained t4g model (a
// run's export/ or checkpoint folder: models/trained_model.h, which ignores `seed`). Empty path:
// tiny random modules seeded from `seed` (same seed, same weights) and the 2B scheduler defaults.
ModelComponents load_model_components(const ModelConfig& config, uint64_t seed, const ComponentRequest& request = {});

// The same for everything but trained t4g models (what a trained model's base is loaded with).
ModelComponents load_base_model_components(const ModelConfig& config, uint64_t seed,
                                           const ComponentRequest& request = {});

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
