// CogVideoXTransformer3DModel in LibTorch: the 2B (sin-cos PE), 5B (3D RoPE), 5B-I2V (learned PE,
// 32 input channels) and 1.5 (temporal patches, ofs embedding) forms, and any tiny config.
// Submodule and parameter names are exactly diffusers' state-dict names
// (transformer_blocks.0.attn1.to_q.weight, ff.net.0.proj.weight, norm_out.linear.weight, ...),
// so loading a diffusers checkpoint is a strict name-to-name copy. The forward takes probes
// (models/attention_probe.h) and can recompute each block in backward (gradient checkpointing).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <optional>
#include <utility>

#include "models/attention_probe.h"
#include "models/cogvideox_config.h"
#include "models/embeddings.h"
#include "models/kept_attention.h"

namespace t4g {

// How one block's attention runs: RoPE tables (undefined for the 2B form), the CAG variant, a
// replacement of the video tokens' K/V, and where to put the captured Q/K/V (null = do not capture).
struct BlockAttentionCall {
  const RotaryEmbedding* rope = nullptr;
  const RotaryEmbedding* key_rope = nullptr;  // K's tables when they differ from Q's (null = rope)
  TokenGrid grid;
  CagMode cag_mode = CagMode::kNone;
  std::vector<int64_t> cag_batch_indices;
  const VideoKeyValue* video_key_value = nullptr;  // replaces the video K (after qk-norm, RoPE) and V
  torch::Tensor* query_out = nullptr;
  torch::Tensor* key_out = nullptr;
  torch::Tensor* value_out = nullptr;
  // Gradient checkpointing that keeps attention (models/kept_attention.h): the no-grad forward
  // fills *keep_attention; the recompute in backward hands it back as `kept` and skips the kernel.
  KeptAttention* keep_attention = nullptr;
  const KeptAttention* kept = nullptr;
};

// diffusers CogVideoXPatchEmbed: `proj` (Conv2d k=s=patch for 1.0, Linear over 2x2x2 patches for
// 1.5), `text_proj`, and for the I2V form the learned `pos_embedding` buffer [1, S + N, D].
class CogVideoXPatchEmbedImpl : public torch::nn::Module {
 public:
  explicit CogVideoXPatchEmbedImpl(const CogVideoXTransformerConfig& config);
  // text [B, S, text_embed_dim], latents [B, F, C, H, W] -> joint sequence [B, S + N, D] with the
  // positional table added (2B / I2V forms). `video_table` ([1 or B, N, D], any float dtype)
  // replaces the sin-cos rows of the video tokens (DiTFlow optimises them); undefined = the table.
  torch::Tensor forward(const torch::Tensor& text, const torch::Tensor& latents, const torch::Tensor& video_table = {});

  torch::nn::Conv2d proj_conv{nullptr};    // registered as "proj" (1.0)
  torch::nn::Linear proj_linear{nullptr};  // registered as "proj" (1.5)
  torch::nn::Linear text_proj{nullptr};
  torch::Tensor pos_embedding;  // learned table (I2V form only), registered buffer

 private:
  // The sin-cos table of a latent grid, on the embeddings' device and dtype. Built once per
  // (frames, height, width, device, dtype) and kept: building it is float64 work on the CPU plus a
  // copy to the GPU, which cost a quarter of a 2B forward when done every call.
  const torch::Tensor& sincos_table(int64_t frames, int64_t height, int64_t width, const torch::Tensor& like);

  CogVideoXTransformerConfig config_;
  std::map<std::string, torch::Tensor> sincos_cache_;  // not a buffer: derived, never saved
};
TORCH_MODULE(CogVideoXPatchEmbed);

// diffusers CogVideoXLayerNormZero: one LayerNorm shared by both streams, six modulation chunks
// (shift, scale, gate, enc_shift, enc_scale, enc_gate) from `linear(SiLU(temb))`.
class CogVideoXLayerNormZeroImpl : public torch::nn::Module {
 public:
  CogVideoXLayerNormZeroImpl(int64_t conditioning_dim, int64_t dim, bool elementwise_affine, double eps);
  // Returns (normed video, normed text, gate [B,1,D], enc_gate [B,1,D]).
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> forward(const torch::Tensor& hidden,
                                                                                 const torch::Tensor& encoder,
                                                                                 const torch::Tensor& temb);

  torch::nn::Linear linear{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  // norm(x) * (1 + scale) + shift with scale, shift [B, D].
  torch::Tensor modulated_norm(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& shift);
};
TORCH_MODULE(CogVideoXLayerNormZero);

// diffusers Attention with CogVideoXAttnProcessor2_0: joint attention over [text | video], per-head
// LayerNorm on q and k (eps 1e-6), RoPE on the video part, SDPA, to_out.0.
class CogVideoXAttentionImpl : public torch::nn::Module {
 public:
  CogVideoXAttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, bool bias);
  // Returns (video output, text output).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& hidden, const torch::Tensor& encoder,
                                                  const BlockAttentionCall& call);

  torch::nn::Linear to_q{nullptr};
  torch::nn::Linear to_k{nullptr};
  torch::nn::Linear to_v{nullptr};
  torch::nn::LayerNorm norm_q{nullptr};
  torch::nn::LayerNorm norm_k{nullptr};
  torch::nn::ModuleList to_out{nullptr};  // [Linear, Dropout]: names to_out.0.weight / .bias

 private:
  int64_t heads_;
  int64_t head_dim_;
  torch::nn::Linear out_proj_{nullptr};  // to_out[0]
};
TORCH_MODULE(CogVideoXAttention);

// diffusers CogVideoXFeedForward with GELU(approximate=tanh): net.0.proj -> GELU -> net.1 dropout ->
// net.2 -> net.3 dropout.
class CogVideoXFeedForwardImpl : public torch::nn::Module {
 public:
  CogVideoXFeedForwardImpl(int64_t dim, int64_t inner_dim, bool tanh_gelu, double dropout);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::ModuleList net{nullptr};

 private:
  bool tanh_gelu_;
  torch::nn::Linear proj_{nullptr};    // net.0.proj
  torch::nn::Dropout drop1_{nullptr};  // net.1
  torch::nn::Linear out_{nullptr};     // net.2
  torch::nn::Dropout drop2_{nullptr};  // net.3
};
TORCH_MODULE(CogVideoXFeedForward);

// diffusers CogVideoXBlock.
class CogVideoXBlockImpl : public torch::nn::Module {
 public:
  CogVideoXBlockImpl(const CogVideoXTransformerConfig& config);
  // (video [B,N,D], text [B,S,D], temb [B,time_embed_dim]) -> (video, text).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& hidden, const torch::Tensor& encoder,
                                                  const torch::Tensor& temb, const BlockAttentionCall& call);

  CogVideoXLayerNormZero norm1{nullptr};
  CogVideoXAttention attn1{nullptr};
  CogVideoXLayerNormZero norm2{nullptr};
  CogVideoXFeedForward ff{nullptr};
};
TORCH_MODULE(CogVideoXBlock);

// diffusers CogVideoXAdaLayerNorm(chunk_dim=1) as used for norm_out: shift first, then scale.
class CogVideoXAdaLayerNormImpl : public torch::nn::Module {
 public:
  CogVideoXAdaLayerNormImpl(int64_t embedding_dim, int64_t output_dim, bool elementwise_affine, double eps);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb);

  torch::nn::Linear linear{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(CogVideoXAdaLayerNorm);

// Per-call options of the transformer forward.
struct TransformerForwardOptions {
  // RoPE tables; when undefined and the config uses RoPE they are computed from the config and the
  // input latent size as diffusers' pipeline does (cogvideox_rotary_embedding).
  RotaryEmbedding rope;
  // K's RoPE tables when they differ from Q's (DiTFlow optimises the two separately); undefined =
  // `rope` for both. Blocks run un-checkpointed while any RoPE table requires grad, so that its
  // gradient comes back.
  RotaryEmbedding key_rope;
  // Replaces the sin-cos table added to the video tokens (2B form), [1 or B, video tokens, D];
  // undefined = the model's table. An error for a model without sin-cos positions.
  torch::Tensor video_pos_embedding;
  // >= 0: run blocks 0..last_block only and skip the output head; `sample` is then undefined
  // (callers that want the probes only, e.g. DiTFlow's loss forwards). -1 = every block.
  int64_t last_block = -1;
  // CogVideoX1.5-I2V "ofs" values [B] (the pipeline passes 2.0); required iff ofs_embed_dim is set.
  torch::Tensor ofs;
  // Probes: captures, CAG, residual hooks. Null = a plain forward.
  const ProbeOptions* probes = nullptr;
};

// Output of a forward: the prediction and whatever the probes captured.
struct TransformerOutput {
  torch::Tensor sample;  // [B, F, out_channels, H, W] in the compute dtype (undefined with last_block)
  ProbeCapture captured;
};

// The model. Compute dtype = the parameters' dtype (cast the module with ->to(torch::kBFloat16));
// inputs are cast to it on entry, timestep sinusoids / RoPE / sin-cos tables are made in higher
// precision and cast as in diffusers.
class CogVideoXTransformer3DModelImpl : public torch::nn::Module {
 public:
  explicit CogVideoXTransformer3DModelImpl(const CogVideoXTransformerConfig& config);

  // hidden_states [B, F, C_in, H, W], encoder_hidden_states [B, S, text_embed_dim], timestep [B]
  // (integer or float) or a scalar broadcast over the batch.
  TransformerOutput forward(const torch::Tensor& hidden_states, const torch::Tensor& encoder_hidden_states,
                            const torch::Tensor& timestep, const TransformerForwardOptions& options = {});

  // Recompute every block in backward instead of keeping its activations (only takes effect
  // while grad mode is on). Blocks whose Q/K are captured run un-checkpointed so the captures
  // keep their autograd history. With keep_attention, each block also keeps its attention output
  // and log-sum-exp, and the recompute skips the attention kernel (models/kept_attention.h): one
  // more activation per block, a backward shorter by about one attention forward per block.
  void set_gradient_checkpointing(bool enabled, bool keep_attention = false) {
    gradient_checkpointing_ = enabled;
    checkpoint_keeps_attention_ = enabled && keep_attention;
  }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }
  bool checkpoint_keeps_attention() const { return checkpoint_keeps_attention_; }

  // Residuals that are part of the model (a trained model's refiner: proj(refiner(block output)),
  // models/trained_model.h): every forward adds hook(video output of block L) after block L, as
  // training added it, unless the call's probes give a residual hook for the same block (training
  // itself, which keeps the refined map). An empty hook removes the block's residual. A forward
  // that stops early (stop_after_last_capture, last_block) skips the residual of its last block, whose output
  // nothing reads.
  void set_block_residual(int64_t block, ResidualHook hook);
  const std::map<int64_t, ResidualHook>& block_residuals() const { return block_residuals_; }

  const CogVideoXTransformerConfig& config() const { return config_; }
  // Token grid of latents [B, F, C, H, W] under this config.
  TokenGrid token_grid(int64_t frames, int64_t height, int64_t width) const;

  CogVideoXPatchEmbed patch_embed{nullptr};
  torch::nn::Dropout embedding_dropout{nullptr};
  TimestepEmbedding time_embedding{nullptr};
  TimestepEmbedding ofs_embedding{nullptr};  // CogVideoX1.5-I2V only
  torch::nn::ModuleList transformer_blocks{nullptr};
  torch::nn::LayerNorm norm_final{nullptr};
  CogVideoXAdaLayerNorm norm_out{nullptr};
  torch::nn::Linear proj_out{nullptr};

 private:
  std::pair<torch::Tensor, torch::Tensor> run_block(int64_t index, const torch::Tensor& hidden,
                                                    const torch::Tensor& encoder, const torch::Tensor& temb,
                                                    const BlockAttentionCall& call);

  CogVideoXTransformerConfig config_;
  std::vector<CogVideoXBlock> blocks_;
  bool gradient_checkpointing_ = false;
  bool checkpoint_keeps_attention_ = false;
  std::map<int64_t, ResidualHook> block_residuals_;
};
TORCH_MODULE(CogVideoXTransformer3DModel);

// Fills every parameter (and the learned positional table) with reproducible random values for
// tests and benchmarks: Linear/Conv weights N(0, std), biases N(0, std), LayerNorm weights 1 +
// N(0, std), LayerNorm biases N(0, std). Non-zero everywhere so that no path is silently unused.
void init_random_weights(torch::nn::Module& module, uint64_t seed, double std = 0.02);

}  // namespace t4g
