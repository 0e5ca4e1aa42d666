// Text-to-video sampling with a CogVideoX model: the denoising loop of diffusers'
// CogVideoXPipeline.__call__ (research/cogvideox.md 5) step for step, so that the same seed, prompt
// embeddings and model give the reference's latents, plus DiffTrack's Cross-Attention Guidance
// (research/methods.md 1.8): a third, perturbed batch element whose chosen layers attend only
// within each frame. Inputs are prompt EMBEDDINGS; where they come from (a file, T5) is the
// caller's business, so this file never needs a text encoder.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "models/attention_probe.h"
#include "models/model_components.h"

namespace t4g {

// Which update rule the loop uses.
enum class SamplerKind {
  kFromConfig,  // the model's scheduler_config.json class (CogVideoXDDIMScheduler or CogVideoXDPMScheduler)
  kDdim,        // deterministic DDIM (eta 0)
  kDpm,         // DPM-Solver++(2M)-SDE: stochastic, draws from the sampling generator
};

// Text conditioning of a batch of B videos: T5 hidden states [B, L, D], L = the model's
// max_text_seq_length (226), D = its text_embed_dim (4096).
struct PromptEmbeddings {
  torch::Tensor positive;  // the prompts
  torch::Tensor negative;  // the negative prompts (diffusers: T5 of ""); needed when CFG is on
};

// What the per-step callback sees (references valid during the call only).
struct SampleStep {
  int64_t index = 0;          // 0-based step
  int64_t timestep = 0;       // scheduler timestep (999, ...)
  double guidance_scale = 0;  // CFG scale of this step (dynamic CFG changes it per step)
  const torch::Tensor* latents = nullptr;     // after the step, cast to the latent dtype
  const torch::Tensor* prediction = nullptr;  // guided v prediction (float32) the scheduler stepped with
  double seconds = 0;         // wall time of this step (the device synchronised)
};
using SampleStepCallback = std::function<void(const SampleStep&)>;

// What a before-step hook changes for one step (DiTFlow's guidance, eval/motion_transfer.h).
struct StepOverrides {
  torch::Tensor latents;              // replaces the latents from this step on (undefined = keep)
  RotaryEmbedding rope;               // this step's RoPE tables for Q (undefined = the model's)
  RotaryEmbedding key_rope;           // this step's RoPE tables for K (undefined = rope)
  torch::Tensor video_pos_embedding;  // this step's sin-cos video table [1, N, D] (undefined = the model's)
  std::map<int64_t, VideoKeyValue> video_key_values;  // this step's video K/V per block, in every
                                                      // batch element (CFG branches); empty = none
};
// Called before step `index` (scheduler timestep `timestep`) with the current latents; at index 0
// these are the initial latents (the seeded noise z_T or SampleOptions::initial_latents). It runs
// inside the loop's no-grad scope: a hook that optimises enables autograd itself.
using BeforeStepHook =
    std::function<StepOverrides(int64_t index, int64_t timestep, const torch::Tensor& latents)>;

// One sampling call. Defaults are the pipeline's; frames/height/width 0 take the model's
// sample size (config sample_frames, sample_height * 8, sample_width * 8), as diffusers does.
struct SampleOptions {
  int64_t steps = 50;                // denoising steps (trailing timesteps 999 ... )
  double guidance_scale = 6.0;       // CFG scale; CFG is on iff > 1 (then negative embeddings are needed)
  bool dynamic_cfg = false;          // diffusers use_dynamic_cfg: 1 + g (1 - cos(pi ((N - t) / N)^5)) / 2 per step
  std::set<int64_t> cag_layers;      // CAG: blocks whose perturbed branch attends within frames; empty = off
  double cag_scale = 1.0;            // CAG scale s: + s (cond - perturbed); used only with cag_layers
  std::optional<CagMode> cag_mode;   // CAG variant; unset ("auto"): as DiffTrack, per resolve_cag_mode
  uint64_t seed = 42;                // seeds one CPU generator: the initial noise, then the DPM's noise
  int64_t frames = 0;                // video frames, 4k+1 (0: the model's sample_frames)
  int64_t height = 0;                // pixels, a multiple of 8 * patch_size (0: sample_height * 8)
  int64_t width = 0;                 // pixels, a multiple of 8 * patch_size (0: sample_width * 8)
  SamplerKind sampler = SamplerKind::kFromConfig;  // update rule
  std::optional<torch::ScalarType> latent_dtype;  // noise and latents between steps (diffusers: the
                                                  // prompt embeddings' dtype); default the model's dtype
  bool decode = true;                // false: latents only (diffusers output_type "latent")
  bool keep_video = false;           // with decode: also return the decoded video in [-1, 1] (SampleResult.video)
  torch::Tensor initial_latents;     // given starting latents [B, F_lat, C, h, w]; undefined: seeded noise
  bool progress = true;              // a progress bar over the steps on stderr
  SampleStepCallback on_step;        // called after every step (tests, benchmarks)
  BeforeStepHook before_step;        // called before every step's model call (motion transfer)
};

// The sizes one call works at, after defaults and checks.
struct SampleGeometry {
  int64_t frames = 0;             // video frames the VAE makes (4k+1)
  int64_t height = 0;             // pixels
  int64_t width = 0;              // pixels
  int64_t latent_frames = 0;      // (frames - 1) / 4 + 1, plus padding frames for CogVideoX 1.5
  int64_t padding_frames = 0;     // latent frames added for patch_size_t and dropped before decoding
  int64_t latent_channels = 0;    // the transformer's in_channels
  int64_t latent_height = 0;      // height / 8
  int64_t latent_width = 0;       // width / 8
  std::vector<int64_t> latent_shape(int64_t batch) const;  // [B, F_lat, C, h, w]
};

// What a call returns.
struct SampleResult {
  torch::Tensor latents;            // final latents [B, F_lat, C, h, w] in the latent dtype (padding kept)
  torch::Tensor frames;             // uint8 [B, F, H, W, 3] RGB on the CPU; undefined when not decoded
  torch::Tensor video;              // with keep_video: the VAE's output [B, 3, F, H, W] in [-1, 1] (VAE dtype)
  std::vector<int64_t> timesteps;   // the timesteps that were run
  std::vector<double> step_seconds; // wall time per step
  double decode_seconds = 0;        // VAE decode and conversion to uint8
};

// The CAG variant a call uses: options.cag_mode when set, else the one DiffTrack's pipeline picks
// (pipelines/pag/pag_utils.py, PAGMixin._set_pag_attn_processor): with CFG (guidance_scale > 1)
// PAGCFGJointAttnProcessor2_0_CogVideoX, the full softmax with the cross-frame probabilities dropped
// and not renormalised (kDropWithoutRenorm); without CFG PAGJointAttnProcessor2_0_CogVideoX, an
// additive -inf mask, i.e. renormalised over text + own frame (kRenormalized). Decided once per call
// from the base scale, as the pipeline chooses its processors before the loop (dynamic CFG aside).
CagMode resolve_cag_mode(const SampleOptions& options);

// The command-line names of the CAG variants: "auto" (unset), "drop", "renorm"; anything else is
// an error naming `flag` and the choices.
std::optional<CagMode> parse_cag_mode(const std::string& name, const std::string& flag = "--cag-mode");
// "drop", "renorm" or "none" (reports, HDF5 attributes).
const char* cag_mode_name(CagMode mode);

// Resolves the defaults and checks every option against the model before any work: steps >= 1,
// frames 4k+1 (the error names the rule), height/width multiples of 8 * patch_size, CAG layers in
// [0, num_layers), a text-to-video transformer. Throws t4g::Error naming the option.
SampleGeometry resolve_sample_geometry(const CogVideoXTransformerConfig& config, const SampleOptions& options);

// Checks the embeddings against the model: prompt_embeds [B, max_text_seq_length, text_embed_dim],
// and with CFG (guidance_scale > 1) negative_prompt_embeds of the same shape. Errors name the tensor.
void check_prompt_embeddings(const PromptEmbeddings& prompts, const CogVideoXTransformerConfig& config,
                             const SampleOptions& options);

// Gaussian noise as diffusers' randn_tensor with a CPU generator: torch.randn(shape, generator,
// dtype) drawn on the CPU in `dtype` (so the same seed gives torch's values), then moved.
torch::Tensor initial_noise(const std::vector<int64_t>& shape, torch::ScalarType dtype, torch::Generator& generator,
                            torch::Device device = torch::kCPU);

// The per-step scale of diffusers' use_dynamic_cfg, reproduced literally: `timestep` is the raw
// timestep (999, ...), not the step index, and the power of a negative base is kept.
double dynamic_guidance_scale(double guidance_scale, int64_t timestep, int64_t steps);

// Denoises: seeded noise (or options.initial_latents) -> latents after options.steps steps. One
// CPU generator seeded with options.seed makes the noise and then the DPM's draws, as the pipeline
// does with its `generator`. Fills `result` (timesteps, step times) when given.
torch::Tensor denoise_latents(CogVideoXTransformer3DModel& transformer, const CogVideoXScheduler& scheduler,
                              const PromptEmbeddings& prompts, const SampleOptions& options,
                              SampleResult* result = nullptr);

// The pipeline's decode: drop the padding latent frames, [B, F, C, h, w] -> [B, C, F, h, w],
// VAE decode of latents / scaling_factor -> video [B, 3, frames, H, W] in [-1, 1] (VAE dtype).
torch::Tensor decode_latents_to_video(AutoencoderKLCogVideoX& vae, const torch::Tensor& latents,
                                      int64_t padding_frames = 0);

// The whole call: denoise with the components' transformer and scheduler, then (options.decode)
// the VAE and conversion to uint8 frames. Embeddings are moved to the model's device and dtype.
SampleResult sample_video(ModelComponents& components, const PromptEmbeddings& prompts, const SampleOptions& options);

}  // namespace t4g
