// Attention probes: the one mechanism through which training taps, DiffTrack analysis, zero-shot
// tracking, CAG sampling and DiTFlow's KV injection look into (or change) the CogVideoX
// transformer. A ProbeOptions is
// passed to the forward; captured tensors come back in a ProbeCapture. Also the cost-map helper
// (per-head softmax(Q_i K_j^T * scale) between frames, research/methods.md 1.3) and the CAG
// attention variants (methods.md 1.8), which never build the full token-by-token matrix.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace t4g {

// The video token grid after patching: tokens are ordered (frame, row, col), text tokens first.
struct TokenGrid {
  int64_t frames = 0;  // latent frames / patch_size_t
  int64_t height = 0;  // latent height / patch_size
  int64_t width = 0;   // latent width / patch_size
  int64_t tokens_per_frame() const { return height * width; }
  int64_t video_tokens() const { return frames * height * width; }
};

// How chosen layers change attention for CAG's perturbed branch (methods.md 1.8, ambiguity 10).
// Both drop video-to-video attention between DIFFERENT frames; text<->all and same-frame
// video<->video attention are kept.
enum class CagMode {
  kNone,               // ordinary attention
  kRenormalized,       // -inf mask: video queries softmax over text + own frame (DiffTrack's no-CFG path)
  kDropWithoutRenorm,  // full softmax, cross-frame probabilities zeroed, no renormalisation
                       // (DiffTrack's released CFG path)
};

// The video tokens' K and V of one block's attention: what DiTFlow's KV injection copies from a
// forward of the noised reference video and writes into the generation's forwards (ditflow
// guidance_utils/custom_modules.py, InjectionProcessor.__call__: the key after qk-norm and RoPE,
// the value as projected; text tokens keep their own). [1 or B, heads, video tokens, head_dim];
// one batch element is used for every element of the forward it is written into.
struct VideoKeyValue {
  torch::Tensor key;
  torch::Tensor value;
};

// The joint-sequence key and value [B, heads, text_len + video tokens, head_dim] with the video
// tokens' part replaced by `replacement` (out of place, so autograd flows to the text part only).
// Errors name the tensor and the expected shape.
std::pair<torch::Tensor, torch::Tensor> replace_video_key_value(const torch::Tensor& key, const torch::Tensor& value,
                                                                int64_t text_len, const VideoKeyValue& replacement);

// Adds a residual after a block: given the block's video output [B, video tokens, D] and the token
// grid, returns what to add (same shape). This is where the refiner routes its output back.
using ResidualHook = std::function<torch::Tensor(const torch::Tensor& video_hidden, const TokenGrid& grid)>;

// What to capture or change during one transformer forward. Layer indices are 0-based block
// indices; an index outside [0, num_layers) is an error.
struct ProbeOptions {
  std::set<int64_t> query_key_layers;              // capture Q and K as fed to SDPA (after qk-norm and RoPE)
  std::set<int64_t> hidden_layers;                 // capture the video hidden states output by these blocks
  std::set<int64_t> key_value_layers;              // capture K and V as fed to SDPA (DiTFlow's KV injection)
  std::set<int64_t> cag_layers;                    // layers whose attention follows cag_mode
  CagMode cag_mode = CagMode::kNone;               // how cag_layers attend
  std::vector<int64_t> cag_batch_indices;          // batch elements perturbed by CAG; empty = all
  std::map<int64_t, ResidualHook> residual_hooks;  // after block L: video hidden += hook(output)
  std::map<int64_t, VideoKeyValue> video_key_values;  // block L's video K/V replaced (every batch element)
  // End the forward after the last layer that captures Q/K, K/V or hidden states (TransformerOutput's
  // sample is then left undefined): feature extraction (tracking, analysis) does not pay for the
  // blocks above its probes or the output head.
  bool stop_after_last_capture = false;
};

// Tensors captured by a forward. query/key/value: [B, heads, text + video tokens, head_dim] in the
// compute dtype, text first, exactly what enters scaled_dot_product_attention (after any K/V
// replacement). hidden: [B, video
// tokens, D], the block's output before any residual hook adds to it. Q/K are detached when the
// block ran under gradient checkpointing; otherwise every captured tensor keeps its autograd
// history (the caller detaches when it wants features only).
struct ProbeCapture {
  std::map<int64_t, torch::Tensor> query;
  std::map<int64_t, torch::Tensor> key;
  std::map<int64_t, torch::Tensor> value;
  std::map<int64_t, torch::Tensor> hidden;
};

// How kDropWithoutRenorm is computed (methods.md 1.8).
enum class CagKernel {
  kAuto,       // fused (two attention calls with log-sum-exp) unless a gradient is needed
  kReference,  // always the reference's chunked full softmax (128 query rows per chunk)
};

// Scaled dot-product attention over [B, heads, S, head_dim] with the CAG variant applied to the
// batch elements listed in `batch_indices` (empty = all): text queries attend to everything,
// video queries of frame f to text and frame f only. kRenormalized runs one SDPA over all frames
// folded into the batch (exact, differentiable). kDropWithoutRenorm, when no gradient is needed,
// rescales the per-frame attention by exp(LSE_frame - LSE_all) from two fused attention calls;
// with a gradient (or CagKernel::kReference) it computes the reference's full softmax in query
// chunks of 128 rows (128 x 17,776 x 48 heads fp32 = 0.44 GB per batch element at 5B size) and
// zeroes the cross-frame probabilities.
torch::Tensor cag_attention(const torch::Tensor& query, const torch::Tensor& key, const torch::Tensor& value,
                            int64_t text_len, const TokenGrid& grid, CagMode mode,
                            const std::vector<int64_t>& batch_indices = {}, CagKernel kernel = CagKernel::kAuto);

// Options of the cost-map helper.
struct CostMapOptions {
  double scale = 0.0;            // softmax scale; 0 = 1/sqrt(head_dim). DiffTrack's tracking code uses 1/sqrt(heads)
  bool mean_over_heads = false;  // average the per-head softmaxes (DiffTrack averages after softmax)
  int64_t query_chunk = 4096;    // query tokens per chunk: bounds the working set to chunk x tokens_per_frame
  bool float32 = true;           // compute the products and softmax in float32 (the reference used bf16)
};

// Per head, softmax over target tokens of (Q_frame_i . K_frame_j^T * scale) for each (i, j) in
// `pairs`. query and key are the captured [B, heads, text_len + video tokens, head_dim]; text
// tokens are skipped. Returns one tensor per pair, [B, heads, tokens_per_frame (query i),
// tokens_per_frame (key j)] (heads dimension 1 with mean_over_heads). Only the requested frame
// pairs are ever computed.
std::vector<torch::Tensor> attention_cost_maps(const torch::Tensor& query, const torch::Tensor& key, int64_t text_len,
                                               const TokenGrid& grid,
                                               const std::vector<std::pair<int64_t, int64_t>>& pairs,
                                               const CostMapOptions& options = {});

}  // namespace t4g
