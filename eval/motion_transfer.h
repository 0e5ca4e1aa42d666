// Motion transfer with Attention Motion Flow (DiTFlow, research/methods.md 3.3): the CogVideoX
// sampling loop (eval/sampler.h) whose first denoising steps each run a few Adam iterations that
// pull the generated video's soft AMF towards the reference video's argmax AMF, optimising either
// the latents or the positional embeddings (RoPE tables for the 5B form, the sin-cos video table
// for 2B); the optimised embeddings can be saved and reused with other prompts without
// optimising again (zero-shot transfer).
//
// KV injection is on by default, as in the reference code (ditflow configs/guidance_config.yaml:
// injection_blocks: [0]; motion_guidance.py turns it off only with --no_injection), so that the
// default run is the one DiTFlow's code makes. At every guided step (and only there:
// Guidance.run, `is_guidance_step`) the reference latents are noised to the step's timestep t
// with the generation's own initial noise z_T (scheduler.add_noise(motion_latent, init_latents,
// t)), run through one forward with the target prompt's embedding and the model's default
// positions, and the video tokens' K (after qk-norm and RoPE) and V of the injection blocks are
// copied (InjectionProcessor, copy_kv). They replace the generation's video K/V in those blocks in
// every forward of that step: the AMF loss forwards and both CFG branches (inject_kv). Text tokens
// keep their own K/V. With injection_blocks empty the run is the AMF guidance alone; with
// iterations 0 it is the reference's "Injection" baseline (--no_guidance).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "eval/attention_motion_flow.h"
#include "eval/sampler.h"

namespace t4g {

// What the guidance optimises.
enum class TransferTarget {
  kLatents,    // z_t itself, a fresh Adam every guided step ("DiTFlow (-z_t)", the default)
  kPositions,  // the positional embeddings, carried over from one guided step to the next ("DiTFlow (-rho_t)")
};

// One guided sampling call. Defaults are DiTFlow's (configs/guidance_config.yaml of the reference).
struct MotionTransferOptions {
  SampleOptions sample;                              // the denoising call (steps, CFG, seed, frames, ...)
  TransferTarget target = TransferTarget::kLatents;  // what is optimised
  std::vector<int64_t> blocks;                       // AMF blocks, losses averaged (empty: default_amf_block)
  int64_t guidance_steps = -1;                       // first steps that are guided (-1: 20% of steps, 10 of 50)
  int64_t iterations = 5;                            // Adam iterations per guided step
  double lr_start = 2e-3;                            // lr of guided step i = linspace(lr_start, lr_end, guided + 1)[i]
  double lr_end = 1e-3;                              // ... (the reference's [0.002, 0.001] over 11 points)
  AmfOptions amf;                                    // temperature (2) of the AMF softmax
  bool threshold = true;                             // loss only where the reference displacement is non-zero
  int64_t reference_timestep = 0;                    // timestep of the reference forward (clean latents)
  std::vector<int64_t> injection_blocks = {0};       // KV injection blocks on the guided steps (empty: off)
};

// Positional embeddings per guided timestep: what the kPositions target learns and what zero-shot
// transfer reuses.
struct LearnedPositions {
  enum class Kind { kRope, kSinCos };
  Kind kind = Kind::kRope;
  // timestep -> RoPE: float32 [2 (q, k), 2 (cos, sin), video tokens, head_dim] (the reference's
  // layout); sin-cos: float32 [1, video tokens, inner_dim].
  std::map<int64_t, torch::Tensor> tables;
};

// Writes `positions` to a safetensors file atomically: tensors "rope.<t>" or "pos_embedding.<t>",
// metadata format = "t4g-ditflow-positions", kind = "rope" | "sincos".
void save_learned_positions(const std::string& path, const LearnedPositions& positions);
// Reads a file written by save_learned_positions; errors name the file and the bad tensor.
LearnedPositions load_learned_positions(const std::string& path);

// One Adam iteration's record.
struct TransferIteration {
  int64_t step = 0;       // denoising step index
  int64_t timestep = 0;   // scheduler timestep
  int64_t iteration = 0;  // 0-based within the step
  double lr = 0;          // learning rate of this step
  double loss = 0;        // AMF loss before this iteration's update
};

// What a call returns.
struct MotionTransferResult {
  SampleResult sample;                             // latents, frames (decoded), step times
  std::vector<TransferIteration> iterations;       // every optimiser iteration, in order
  std::vector<int64_t> guided_timesteps;           // timesteps that were guided (or reused positions)
  LearnedPositions positions;                      // kPositions: the optimised (or reused) tables per timestep
  std::map<int64_t, torch::Tensor> reference_amf;  // block -> argmax AMF of the reference
  double guidance_seconds = 0;                     // wall time of the optimisation (inside the step times)
};

// Resolves guidance_steps (-1 -> max(1, round(0.2 * steps)); must be in [0, steps]) and checks
// iterations >= 0, the learning rates, blocks, injection blocks and the reference timestep; errors
// name the option. An injection block may not be an AMF block while optimising: the reference's
// guidance step switches that block's processor from injecting to copying (motion_guidance.py
// Guidance.guidance_step), so the pair has no defined meaning there.
int64_t resolve_guidance_steps(const MotionTransferOptions& options);
void check_transfer_options(const CogVideoXTransformerConfig& config, const MotionTransferOptions& options);

// The guided generation. reference_latents: the reference video's latents [1, F, C, h, w] (as
// encode_frames_to_latents makes them) with F, h, w equal to the generation's latent size;
// prompts: one video (B = 1); empty_prompt_embeds: [1, L, D], the text encoder's output for ""
// (the reference forward's condition). With `reuse` (zero-shot transfer, target kPositions) the
// saved tables are used at the guided steps, nothing is optimised, and reference_latents may be
// undefined unless KV injection is on (it needs them, as the reference's zero-shot run does).
MotionTransferResult transfer_motion(ModelComponents& components, const torch::Tensor& reference_latents,
                                     const PromptEmbeddings& prompts, const torch::Tensor& empty_prompt_embeds,
                                     const MotionTransferOptions& options, const LearnedPositions* reuse = nullptr);

}  // namespace t4g
