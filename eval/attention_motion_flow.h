// Attention Motion Flow (AMF, DiTFlow, research/methods.md 3.2-3.3): per-patch displacements read
// from the cross-frame attention of one transformer block. Heads are averaged on the logits (before
// the softmax, unlike DiffTrack's cost maps, so models/attention_probe.h's attention_cost_maps does
// not fit), the softmax runs over one target frame at a time with a temperature multiplier, and
// the displacement of a source patch towards frame j is the argmax (reference video) or the
// expectation (generated video, differentiable). Computed one source frame at a time, so the full
// token-by-token matrix never exists at once in the forward pass.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <vector>

#include "models/attention_probe.h"
#include "models/cogvideox_transformer.h"

namespace t4g {

// How displacements are read from a source patch's attention over a target frame.
enum class AmfReadout {
  kArgmax,  // position of the most attended patch minus the source's (integer patch units): the reference
  kSoft,    // attention-weighted mean of the relative positions: the generated video ("soft AMF")
};

// Options of the AMF read-out.
struct AmfOptions {
  double temperature = 2.0;  // softmax(temperature * logits) per target frame (DiTFlow's motion_temp)
  int64_t batch_index = -1;  // batch element to read (-1: the last, as the reference)
  int64_t query_chunk = 0;   // source tokens per chunk (0: one latent frame); bounds chunk x video tokens
};

// The AMF of captured Q/K ([B, heads, text_len + video tokens, head_dim], after qk-norm and RoPE):
// logits A = mean_h(Q_h K_h^T) / sqrt(head_dim) in float32, softmax over each target frame's
// tokens, displacement for every ordered frame pair (i, j), i = j included. Returns float32
// [frames * frames, tokens_per_frame, 2] as (dx, dy) in patch units, pairs ordered (i, j)
// row-major; token n of a frame sits at (n mod width, n div width). kSoft keeps autograd.
torch::Tensor attention_motion_flow(const torch::Tensor& query, const torch::Tensor& key, int64_t text_len,
                                    const TokenGrid& grid, AmfReadout readout, const AmfOptions& options = {});

// DiTFlow's loss between a reference AMF (argmax) and a generated one (soft), both
// [pairs, tokens, 2]: mean squared error over every component, restricted (threshold = true, the
// reference's threshloss) to the entries whose reference displacement is non-zero. An error when
// the threshold leaves nothing (a reference without motion) or the shapes differ.
torch::Tensor amf_loss(const torch::Tensor& reference, const torch::Tensor& generated, bool threshold = true);

// The guidance block DiTFlow uses for a model: 20 for CogVideoX-5B (RoPE, 42 blocks), 15 for 2B
// (30 blocks); for any other model the middle block, num_layers / 2 (15 of 30, as 2B).
int64_t default_amf_block(const CogVideoXTransformerConfig& config);

// Checks AMF blocks (non-empty, each in [0, num_layers)) and a timestep in [0, 1000); errors name
// the option ("amf block", "reference timestep").
void check_amf_blocks(const CogVideoXTransformerConfig& config, const std::vector<int64_t>& blocks);
void check_amf_timestep(int64_t timestep, int64_t num_train_timesteps = 1000);

// How the reference AMF is extracted.
struct ReferenceAmfOptions {
  std::vector<int64_t> blocks;  // guidance blocks (empty: default_amf_block)
  int64_t timestep = 0;         // the reference forward's timestep (DiTFlow: 0, clean latents, no noise)
  AmfOptions amf;               // temperature etc.
};

// One forward of the (clean) reference latents [1, F, C, h, w] with the empty prompt's
// embeddings [1, L, D] at `timestep`, without autograd, stopping after the last block asked for;
// returns the argmax AMF of each block. `positions` carries the RoPE tables (or sin-cos table)
// the forward uses (default: the model's) and any probes, kept as in amf_guidance_loss.
std::map<int64_t, torch::Tensor> extract_reference_amf(CogVideoXTransformer3DModel& transformer,
                                                       const torch::Tensor& latents,
                                                       const torch::Tensor& empty_prompt_embeds,
                                                       const ReferenceAmfOptions& options,
                                                       const TransformerForwardOptions& positions = {});

// The guidance loss of DiTFlow at one step: forward of `latents` (may require grad) with the
// conditional embeddings at `timestep` (stopping after the last reference block), soft AMF of each
// block against its reference, averaged over the blocks. `positions` carries the RoPE / sin-cos
// replacements being optimised, if any, and may carry probes (the step's injected video K/V), to
// which the AMF blocks' Q/K captures are added. Keeps autograd.
torch::Tensor amf_guidance_loss(CogVideoXTransformer3DModel& transformer, const torch::Tensor& latents,
                                const torch::Tensor& prompt_embeds, int64_t timestep,
                                const std::map<int64_t, torch::Tensor>& reference, const AmfOptions& options,
                                bool threshold, const TransformerForwardOptions& positions = {});

}  // namespace t4g
