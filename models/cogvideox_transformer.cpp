// CogVideoXTransformer3DModel (research/cogvideox.md section 2), module for module after diffusers
// so that parameter names and numerics match. Gradient checkpointing is a custom autograd
// Function that runs a block under no-grad in forward and reruns it with grad in backward. Every
// Linear runs through linear_forward (models/lora.h) so that LoRA adapters attached to it apply.
#include "models/cogvideox_transformer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "common/error.h"
#include "models/head_layer_norm.h"
#include "models/lora.h"

namespace t4g {
namespace nn = torch::nn;

namespace {

nn::LayerNorm make_layer_norm(int64_t dim, double eps, bool affine) {
  return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(eps).elementwise_affine(affine));
}

nn::Linear make_linear(int64_t in, int64_t out, bool bias = true) {
  return nn::Linear(nn::LinearOptions(in, out).bias(bias));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Patch embedding

CogVideoXPatchEmbedImpl::CogVideoXPatchEmbedImpl(const CogVideoXTransformerConfig& config) : config_(config) {
  const int64_t d = config.inner_dim();
  const int64_t p = config.patch_size;
  if (!config.patch_size_t) {
    proj_conv = register_module(
        "proj", nn::Conv2d(nn::Conv2dOptions(config.in_channels, d, p).stride(p).bias(config.patch_bias)));
  } else {
    // CogVideoX 1.5 always uses a biased Linear (patch_bias only affects the Conv2d).
    proj_linear = register_module("proj", make_linear(config.in_channels * p * p * *config.patch_size_t, d));
  }
  text_proj = register_module("text_proj", make_linear(config.text_embed_dim, d));
  if (config.use_learned_positional_embeddings) {
    // A persistent buffer in diffusers (stored in the I2V checkpoint), initialised like diffusers
    // with the sin-cos table of the sample size (text rows zero).
    const int64_t frames = config.sample_latent_frames();
    const auto video = cogvideox_sincos_video_table(config, frames, config.sample_height, config.sample_width);
    auto table = torch::zeros({1, config.max_text_seq_length + video.size(0), d}, torch::kFloat32);
    table.slice(1, config.max_text_seq_length).copy_(video.unsqueeze(0));
    pos_embedding = register_buffer("pos_embedding", table);
  }
}

torch::Tensor CogVideoXPatchEmbedImpl::forward(const torch::Tensor& text, const torch::Tensor& latents,
                                               const torch::Tensor& video_table) {
  const auto text_embeds = linear_forward(text_proj, text);
  const int64_t b = latents.size(0);
  const int64_t f = latents.size(1);
  const int64_t c = latents.size(2);
  const int64_t h = latents.size(3);
  const int64_t w = latents.size(4);
  const int64_t p = config_.patch_size;
  torch::Tensor video;
  if (!config_.patch_size_t) {
    video = proj_conv(latents.reshape({-1, c, h, w}));
    video = video.view({b, f, video.size(1), video.size(2), video.size(3)}).flatten(3).transpose(2, 3).flatten(1, 2);
  } else {
    const int64_t pt = *config_.patch_size_t;
    video = latents.permute({0, 1, 3, 4, 2})
                .reshape({b, f / pt, pt, h / p, p, w / p, p, c})
                .permute({0, 1, 3, 5, 7, 2, 4, 6})
                .flatten(4, 7)
                .flatten(1, 3);
    video = linear_forward(proj_linear, video);
  }
  auto embeds = torch::cat({text_embeds, video}, 1).contiguous();
  if (video_table.defined()) {
    T4G_CHECK(config_.uses_sincos_positions(),
              "a replacement video positional table was given, but this model has no sin-cos positions (",
              config_.use_rotary_positional_embeddings ? "it uses RoPE" : "learned table", ")");
    const int64_t text_len = text.size(1);
    T4G_CHECK(video_table.dim() == 3 && video_table.size(1) == video.size(1) && video_table.size(2) == video.size(2) &&
                  (video_table.size(0) == 1 || video_table.size(0) == b),
              "the video positional table must be [1 or ", b, ", ", video.size(1), ", ", video.size(2), "], got ",
              video_table.sizes());
    return torch::cat({embeds.slice(1, 0, text_len), embeds.slice(1, text_len) + video_table.to(embeds.scalar_type())},
                      1);
  }
  if (!config_.uses_sincos_positions() && !config_.use_learned_positional_embeddings) return embeds;

  const int64_t text_len = text.size(1);
  const int64_t pixel_frames = (f - 1) * config_.temporal_compression_ratio + 1;
  const bool sample_size =
      h == config_.sample_height && w == config_.sample_width && pixel_frames == config_.sample_frames;
  if (config_.use_learned_positional_embeddings) {
    T4G_CHECK(h == config_.sample_height && w == config_.sample_width,
              "the learned positional table (I2V form) "
              "only fits latents of ",
              config_.sample_height, "x", config_.sample_width, ", got ", h, "x", w);
    if (sample_size) {
      T4G_CHECK(text_len == config_.max_text_seq_length, "the learned positional table needs exactly ",
                config_.max_text_seq_length, " text tokens, got ", text_len);
      return embeds + pos_embedding.to(embeds.scalar_type());
    }
    // diffusers' quirk: another frame count silently replaces the learned table by sin-cos.
  }
  // Sin-cos: text rows of diffusers' joint table are zero, so only the video rows are added.
  const torch::Tensor& table = sincos_table(f, h, w, embeds);
  return torch::cat({embeds.slice(1, 0, text_len), embeds.slice(1, text_len) + table.unsqueeze(0)}, 1);
}

const torch::Tensor& CogVideoXPatchEmbedImpl::sincos_table(int64_t frames, int64_t height, int64_t width,
                                                           const torch::Tensor& like) {
  const std::string key = t4g::str(frames, "x", height, "x", width, "@", like.device(), ":", like.scalar_type());
  auto it = sincos_cache_.find(key);
  if (it == sincos_cache_.end()) {
    // Same computation and casts as before caching (float64 table -> device -> dtype), so the
    // values are identical to the reference's.
    torch::Tensor table =
        cogvideox_sincos_video_table(config_, frames, height, width).to(like.device()).to(like.scalar_type());
    it = sincos_cache_.emplace(key, std::move(table)).first;
  }
  return it->second;
}

// ---------------------------------------------------------------------------------------------
// Norms

CogVideoXLayerNormZeroImpl::CogVideoXLayerNormZeroImpl(int64_t conditioning_dim, int64_t dim, bool elementwise_affine,
                                                       double eps) {
  linear = register_module("linear", make_linear(conditioning_dim, 6 * dim));
  norm = register_module("norm", make_layer_norm(dim, eps, elementwise_affine));
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> CogVideoXLayerNormZeroImpl::forward(
    const torch::Tensor& hidden, const torch::Tensor& encoder, const torch::Tensor& temb) {
  const auto chunks = linear_forward(linear, torch::silu(temb)).chunk(6, 1);
  const auto& shift = chunks[0];
  const auto& scale = chunks[1];
  const auto& gate = chunks[2];
  const auto& enc_shift = chunks[3];
  const auto& enc_scale = chunks[4];
  const auto& enc_gate = chunks[5];
  return {modulated_norm(hidden, scale, shift), modulated_norm(encoder, enc_scale, enc_shift), gate.unsqueeze(1),
          enc_gate.unsqueeze(1)};
}

torch::Tensor CogVideoXLayerNormZeroImpl::modulated_norm(const torch::Tensor& x, const torch::Tensor& scale,
                                                         const torch::Tensor& shift) {
  // diffusers: norm(x) * (1 + scale) + shift, three passes over x. The modulation is per sample
  // and channel, so it folds into the LayerNorm's affine: w' = w (1 + scale), b' = b (1 + scale) +
  // shift. With one sample that is a single LayerNorm kernel; with several, LayerNorm without
  // affine and one addcmul. Same math; in bf16 the rounding points move (fp32 parity unchanged).
  const auto& options = norm->options;
  const auto one_plus = 1 + scale;  // [B, D]
  torch::Tensor weight = one_plus, bias = shift;
  if (options.elementwise_affine()) {
    weight = norm->weight * one_plus;
    bias = torch::addcmul(shift, norm->bias, one_plus);
  }
  if (x.size(0) == 1) {
    return at::layer_norm(x, options.normalized_shape(), weight[0], bias[0], options.eps());
  }
  const auto normed = at::layer_norm(x, options.normalized_shape(), {}, {}, options.eps());
  return torch::addcmul(bias.unsqueeze(1), normed, weight.unsqueeze(1));
}

CogVideoXAdaLayerNormImpl::CogVideoXAdaLayerNormImpl(int64_t embedding_dim, int64_t output_dim, bool elementwise_affine,
                                                     double eps) {
  linear = register_module("linear", make_linear(embedding_dim, output_dim));
  norm = register_module("norm", make_layer_norm(output_dim / 2, eps, elementwise_affine));
}

torch::Tensor CogVideoXAdaLayerNormImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  const auto chunks = linear_forward(linear, torch::silu(temb)).chunk(2, 1);
  // chunk_dim=1 order: shift first, then scale.
  return norm(x) * (1 + chunks[1].unsqueeze(1)) + chunks[0].unsqueeze(1);
}

// ---------------------------------------------------------------------------------------------
// Attention

CogVideoXAttentionImpl::CogVideoXAttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, bool bias)
    : heads_(heads), head_dim_(head_dim) {
  const int64_t inner = heads * head_dim;
  to_q = register_module("to_q", make_linear(dim, inner, bias));
  to_k = register_module("to_k", make_linear(dim, inner, bias));
  to_v = register_module("to_v", make_linear(dim, inner, bias));
  // diffusers Attention(qk_norm="layer_norm", eps=1e-6) with its default elementwise_affine=True.
  norm_q = register_module("norm_q", make_layer_norm(head_dim, 1e-6, true));
  norm_k = register_module("norm_k", make_layer_norm(head_dim, 1e-6, true));
  out_proj_ = make_linear(inner, dim, true);
  to_out = register_module("to_out", nn::ModuleList(out_proj_, nn::Dropout(0.0)));
}

std::pair<torch::Tensor, torch::Tensor> CogVideoXAttentionImpl::forward(const torch::Tensor& hidden,
                                                                        const torch::Tensor& encoder,
                                                                        const BlockAttentionCall& call) {
  const int64_t text_len = encoder.size(1);
  const auto x = torch::cat({encoder, hidden}, 1);
  const int64_t b = x.size(0);
  // [B, S, heads, head_dim] -> [B, heads, S, head_dim] as a view. The per-head LayerNorm runs
  // before the transpose, on contiguous memory (diffusers normalises the transposed view, which
  // costs LayerNorm a copy of q and of k); the values are the same.
  auto split_heads = [&](const torch::Tensor& t) { return t.view({b, -1, heads_, head_dim_}); };
  // The per-head norm and, with RoPE, the rotation of the video tokens: one fused kernel on CUDA.
  const bool has_rope = call.rope != nullptr && call.rope->defined();
  auto norm_heads = [&](nn::Linear& proj, nn::LayerNorm& norm, const RotaryEmbedding* rope) {
    const auto t = split_heads(linear_forward(proj, x));
    const double eps = norm->options.eps();
    return rope != nullptr ? head_layer_norm_rope(t, norm->weight, norm->bias, eps, *rope, text_len)
                           : head_layer_norm(t, norm->weight, norm->bias, eps);
  };
  const RotaryEmbedding* key_rope = !has_rope                                              ? nullptr
                                    : call.key_rope != nullptr && call.key_rope->defined() ? call.key_rope
                                                                                           : call.rope;
  const auto q = norm_heads(to_q, norm_q, has_rope ? call.rope : nullptr).transpose(1, 2);
  auto k = norm_heads(to_k, norm_k, key_rope).transpose(1, 2);
  auto v = split_heads(linear_forward(to_v, x)).transpose(1, 2);
  if (call.video_key_value != nullptr) std::tie(k, v) = replace_video_key_value(k, v, text_len, *call.video_key_value);
  if (call.query_out != nullptr) *call.query_out = q;
  if (call.key_out != nullptr) *call.key_out = k;
  if (call.value_out != nullptr) *call.value_out = v;
  torch::Tensor out;
  if (call.cag_mode != CagMode::kNone) {
    out = cag_attention(q, k, v, text_len, call.grid, call.cag_mode, call.cag_batch_indices);
  } else if (call.kept != nullptr && call.kept->defined()) {
    out = kept_attention(q, k, v, *call.kept);
  } else if (call.keep_attention != nullptr) {
    *call.keep_attention = attention_to_keep(q, k, v);
    out = call.keep_attention->defined() ? call.keep_attention->out : at::scaled_dot_product_attention(q, k, v);
  } else {
    out = at::scaled_dot_product_attention(q, k, v);
  }
  out = out.transpose(1, 2).reshape({b, -1, heads_ * head_dim_});
  out = to_out[1]->as<nn::Dropout>()->forward(linear_forward(out_proj_, out));
  return {out.slice(1, text_len), out.slice(1, 0, text_len)};
}

// ---------------------------------------------------------------------------------------------
// Feed-forward and block

CogVideoXFeedForwardImpl::CogVideoXFeedForwardImpl(int64_t dim, int64_t inner_dim, bool tanh_gelu, double dropout)
    : tanh_gelu_(tanh_gelu) {
  // net.0 is diffusers' GELU module, whose only parameter holder is `proj`.
  auto gelu = std::make_shared<nn::Module>("GELU");
  proj_ = gelu->register_module("proj", make_linear(dim, inner_dim));
  drop1_ = nn::Dropout(dropout);
  out_ = make_linear(inner_dim, dim);
  drop2_ = nn::Dropout(dropout);
  net = register_module("net", nn::ModuleList(gelu, drop1_, out_, drop2_));
}

torch::Tensor CogVideoXFeedForwardImpl::forward(const torch::Tensor& x) {
  torch::Tensor h;
  if (tanh_gelu_ && x.is_cuda() && !torch::GradMode::is_enabled() && proj_->bias.defined() &&
      !has_lora_adapter(proj_)) {
    // Inference: cuBLASLt's bias + tanh-GELU epilogue inside the GEMM saves a pass over the
    // [tokens, 4 D] activation. No autograd formula, so training keeps the separate GELU.
    const auto x2d = x.reshape({-1, x.size(-1)});
    h = at::_addmm_activation(proj_->bias, x2d, proj_->weight.t(), 1, 1, /*use_gelu=*/true);
    auto sizes = x.sizes().vec();
    sizes.back() = h.size(-1);
    h = h.view(sizes);
  } else {
    h = torch::gelu(linear_forward(proj_, x), tanh_gelu_ ? "tanh" : "none");
  }
  return drop2_(linear_forward(out_, drop1_(h)));
}

CogVideoXBlockImpl::CogVideoXBlockImpl(const CogVideoXTransformerConfig& config) {
  const int64_t d = config.inner_dim();
  norm1 = register_module(
      "norm1", CogVideoXLayerNormZero(config.time_embed_dim, d, config.norm_elementwise_affine, config.norm_eps));
  attn1 = register_module(
      "attn1", CogVideoXAttention(d, config.num_attention_heads, config.attention_head_dim, config.attention_bias));
  norm2 = register_module(
      "norm2", CogVideoXLayerNormZero(config.time_embed_dim, d, config.norm_elementwise_affine, config.norm_eps));
  ff =
      register_module("ff", CogVideoXFeedForward(d, 4 * d, config.activation_fn == "gelu-approximate", config.dropout));
}

std::pair<torch::Tensor, torch::Tensor> CogVideoXBlockImpl::forward(const torch::Tensor& hidden,
                                                                    const torch::Tensor& encoder,
                                                                    const torch::Tensor& temb,
                                                                    const BlockAttentionCall& call) {
  const int64_t text_len = encoder.size(1);
  auto [nh, ne, gate, enc_gate] = norm1(hidden, encoder, temb);
  auto [attn_h, attn_e] = attn1(nh, ne, call);
  // Gated residuals as one addcmul each (diffusers: a multiply, then an add).
  auto h = torch::addcmul(hidden, gate, attn_h);
  auto e = torch::addcmul(encoder, enc_gate, attn_e);
  auto [nh2, ne2, gate_ff, enc_gate_ff] = norm2(h, e, temb);
  const auto ff_out = ff(torch::cat({ne2, nh2}, 1));
  h = torch::addcmul(h, gate_ff, ff_out.slice(1, text_len));
  e = torch::addcmul(e, enc_gate_ff, ff_out.slice(1, 0, text_len));
  return {h, e};
}

// ---------------------------------------------------------------------------------------------
// Gradient checkpointing

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Runs one block without keeping activations; backward reruns it with grad and differentiates
// the rerun. Parameters are explicit inputs so that their gradients come back through this node
// (autograd::grad and backward() both work). The block must outlive the backward pass.
// With keep_attention, the block's attention output and kernel state are saved too, and the
// rerun takes them instead of running the attention kernel again (models/kept_attention.h).
struct CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
  static constexpr size_t kKeptFirst = 5;  // saved: hidden, encoder, temb, cos, sin, then the kept tensors

  static variable_list forward(AutogradContext* ctx, CogVideoXBlockImpl* block, const BlockAttentionCall* call,
                               bool keep_attention, const torch::Tensor& hidden, const torch::Tensor& encoder,
                               const torch::Tensor& temb, at::TensorList params) {
    ctx->saved_data["block"] = reinterpret_cast<int64_t>(block);
    ctx->saved_data["cag_mode"] = static_cast<int64_t>(call->cag_mode);
    ctx->saved_data["cag_batch"] = c10::IValue(call->cag_batch_indices);
    ctx->saved_data["grid"] = c10::IValue(std::vector<int64_t>{call->grid.frames, call->grid.height, call->grid.width});
    ctx->saved_data["grad_mask"] =
        c10::IValue(std::vector<bool>{hidden.requires_grad(), encoder.requires_grad(), temb.requires_grad()});
    const bool has_rope = call->rope != nullptr && call->rope->defined();
    ctx->saved_data["has_rope"] = has_rope;
    ctx->saved_data["rope_paired"] = has_rope && call->rope->pairs_share_angle;
    BlockAttentionCall plain = *call;
    plain.query_out = nullptr;
    plain.key_out = nullptr;
    KeptAttention kept;
    plain.keep_attention = keep_attention ? &kept : nullptr;
    auto [h, e] = block->forward(hidden, encoder, temb, plain);
    std::vector<torch::Tensor> saved{hidden, encoder, temb, has_rope ? call->rope->cos : torch::Tensor(),
                                     has_rope ? call->rope->sin : torch::Tensor()};
    for (const auto& t : kept.tensors()) saved.push_back(t);
    ctx->save_for_backward(saved);
    ctx->saved_data["kept_kernel"] = static_cast<int64_t>(kept.kernel);
    ctx->saved_data["kept_max"] = c10::IValue(std::vector<int64_t>{kept.max_q, kept.max_k});
    return {h, e};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto* block = reinterpret_cast<CogVideoXBlockImpl*>(ctx->saved_data["block"].toInt());
    const auto saved = ctx->get_saved_variables();
    const auto mask = ctx->saved_data["grad_mask"].toBoolList();
    const auto grid = ctx->saved_data["grid"].toIntVector();
    RotaryEmbedding rope;
    if (ctx->saved_data["has_rope"].toBool()) rope = {saved[3], saved[4], ctx->saved_data["rope_paired"].toBool()};
    BlockAttentionCall call;
    call.rope = &rope;
    call.grid = {grid[0], grid[1], grid[2]};
    call.cag_mode = static_cast<CagMode>(ctx->saved_data["cag_mode"].toInt());
    call.cag_batch_indices = ctx->saved_data["cag_batch"].toIntVector();
    const auto kept_max = ctx->saved_data["kept_max"].toIntVector();
    const auto kept = KeptAttention::from(static_cast<KeptAttention::Kernel>(ctx->saved_data["kept_kernel"].toInt()),
                                          {saved.begin() + kKeptFirst, saved.end()}, kept_max[0], kept_max[1]);
    call.kept = &kept;

    torch::AutoGradMode enable_grad(true);
    std::vector<torch::Tensor> inputs(3);
    for (size_t i = 0; i < 3; ++i) inputs[i] = saved[i].detach().requires_grad_(mask[i]);
    auto [h, e] = block->forward(inputs[0], inputs[1], inputs[2], call);

    // Differentiate with respect to whatever requires grad: the three inputs, then the parameters.
    std::vector<torch::Tensor> wrt;
    std::vector<size_t> slot;  // position in the returned gradient list
    for (size_t i = 0; i < 3; ++i) {
      if (mask[i]) {
        wrt.push_back(inputs[i]);
        slot.push_back(3 + i);
      }
    }
    const auto params = block->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i].requires_grad()) {
        wrt.push_back(params[i]);
        slot.push_back(6 + i);
      }
    }
    variable_list result(6 + params.size());
    if (wrt.empty()) return result;
    const auto grads = torch::autograd::grad({h, e}, wrt, {grad_outputs[0], grad_outputs[1]},
                                             /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t i = 0; i < grads.size(); ++i) result[slot[i]] = grads[i];
    return result;
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// The model

CogVideoXTransformer3DModelImpl::CogVideoXTransformer3DModelImpl(const CogVideoXTransformerConfig& config)
    : config_(config) {
  config_.validate();
  const int64_t d = config.inner_dim();
  patch_embed = register_module("patch_embed", CogVideoXPatchEmbed(config));
  embedding_dropout = register_module("embedding_dropout", nn::Dropout(config.dropout));
  time_embedding = register_module("time_embedding", TimestepEmbedding(d, config.time_embed_dim));
  if (config.ofs_embed_dim) {
    ofs_embedding = register_module("ofs_embedding", TimestepEmbedding(*config.ofs_embed_dim, *config.ofs_embed_dim));
  }
  transformer_blocks = register_module("transformer_blocks", nn::ModuleList());
  for (int64_t i = 0; i < config.num_layers; ++i) {
    blocks_.push_back(CogVideoXBlock(config));
    transformer_blocks->push_back(blocks_.back());
  }
  norm_final = register_module("norm_final", make_layer_norm(d, config.norm_eps, config.norm_elementwise_affine));
  norm_out = register_module(
      "norm_out", CogVideoXAdaLayerNorm(config.time_embed_dim, 2 * d, config.norm_elementwise_affine, config.norm_eps));
  const int64_t p = config.patch_size;
  const int64_t out_dim = p * p * config.patch_size_t.value_or(1) * config.out_channels;
  proj_out = register_module("proj_out", make_linear(d, out_dim));
}

TokenGrid CogVideoXTransformer3DModelImpl::token_grid(int64_t frames, int64_t height, int64_t width) const {
  return {frames / config_.patch_size_t.value_or(1), height / config_.patch_size, width / config_.patch_size};
}

std::pair<torch::Tensor, torch::Tensor> CogVideoXTransformer3DModelImpl::run_block(int64_t index,
                                                                                   const torch::Tensor& hidden,
                                                                                   const torch::Tensor& encoder,
                                                                                   const torch::Tensor& temb,
                                                                                   const BlockAttentionCall& call) {
  auto& block = blocks_[static_cast<size_t>(index)];
  const bool capturing = call.query_out != nullptr || call.key_out != nullptr || call.value_out != nullptr;
  // The checkpoint function returns gradients for its inputs and the block's parameters only, and
  // recomputes with one RoPE table pair and no K/V replacement; a block whose RoPE tables are being
  // optimised, whose K has tables of its own, or whose video K/V are replaced runs plainly.
  const bool rope_trains = call.rope != nullptr && call.rope->defined() &&
                           (call.rope->cos.requires_grad() || call.rope->sin.requires_grad());
  const bool own_key_rope = call.key_rope != nullptr && call.key_rope->defined();
  const bool replaced_kv = call.video_key_value != nullptr;
  if (!gradient_checkpointing_ || !torch::GradMode::is_enabled() || capturing || rope_trains || own_key_rope ||
      replaced_kv) {
    return block->forward(hidden, encoder, temb, call);
  }
  T4G_CHECK(!is_training() || config_.dropout == 0.0,
            "gradient checkpointing with dropout > 0 in training mode would recompute different dropout masks");
  const auto params = block->parameters();
  const auto out = CheckpointedBlock::apply(block.get(), &call, checkpoint_keeps_attention_, hidden, encoder, temb,
                                            at::TensorList(params));
  return {out[0], out[1]};
}

TransformerOutput CogVideoXTransformer3DModelImpl::forward(const torch::Tensor& hidden_states,
                                                           const torch::Tensor& encoder_hidden_states,
                                                           const torch::Tensor& timestep,
                                                           const TransformerForwardOptions& options) {
  const auto& c = config_;
  T4G_CHECK(hidden_states.dim() == 5, "hidden_states must be [B, F, C, H, W], got ", hidden_states.sizes());
  const int64_t b = hidden_states.size(0);
  const int64_t f = hidden_states.size(1);
  const int64_t h = hidden_states.size(3);
  const int64_t w = hidden_states.size(4);
  T4G_CHECK(hidden_states.size(2) == c.in_channels, "hidden_states has ", hidden_states.size(2),
            " channels, the config says in_channels = ", c.in_channels);
  T4G_CHECK(h % c.patch_size == 0 && w % c.patch_size == 0, "latent size ", h, "x", w,
            " is not divisible by patch_size ", c.patch_size);
  T4G_CHECK(!c.patch_size_t || f % *c.patch_size_t == 0, "latent frames ", f, " not divisible by patch_size_t ",
            c.patch_size_t.value_or(1), " (the pipeline pads the front frame)");
  T4G_CHECK(encoder_hidden_states.dim() == 3 && encoder_hidden_states.size(0) == b &&
                encoder_hidden_states.size(2) == c.text_embed_dim,
            "encoder_hidden_states must be [", b, ", S, ", c.text_embed_dim, "], got ", encoder_hidden_states.sizes());
  T4G_CHECK(timestep.dim() <= 1 && (timestep.dim() == 0 || timestep.size(0) == b), "timestep must be a scalar or [", b,
            "], got ", timestep.sizes());

  const auto dtype = proj_out->weight.scalar_type();
  const auto device = proj_out->weight.device();
  const auto x = hidden_states.to(device, dtype);
  const auto text = encoder_hidden_states.to(device, dtype);
  const auto t = (timestep.dim() == 0 ? timestep.expand({b}) : timestep).to(device);
  const TokenGrid grid = token_grid(f, h, w);
  const int64_t text_len = text.size(1);

  // 1. Time (and ofs) embedding: sinusoid in fp32, cast to the compute dtype.
  auto emb = time_embedding(timestep_sinusoid(t, c.inner_dim(), c.flip_sin_to_cos, c.freq_shift).to(dtype));
  if (c.ofs_embed_dim) {
    T4G_CHECK(options.ofs.defined(), "this model (ofs_embed_dim set, CogVideoX1.5-I2V) needs the ofs input");
    const auto ofs = (options.ofs.dim() == 0 ? options.ofs.expand({b}) : options.ofs).to(device);
    emb = emb + ofs_embedding(timestep_sinusoid(ofs, *c.ofs_embed_dim, c.flip_sin_to_cos, c.freq_shift).to(dtype));
  }

  // 2. Patch embedding, positional tables.
  auto seq = embedding_dropout(patch_embed(text, x, options.video_pos_embedding));
  auto encoder = seq.slice(1, 0, text_len);
  auto hidden = seq.slice(1, text_len);

  RotaryEmbedding rope = options.rope;
  if (c.use_rotary_positional_embeddings && !rope.defined()) {
    rope = cogvideox_rotary_embedding(c, f, h, w, device);
  }
  const RotaryEmbedding& key_rope = options.key_rope;
  T4G_CHECK(!key_rope.defined() || rope.defined(), "K's RoPE tables were given, but this model has no RoPE");
  for (const RotaryEmbedding* r : {static_cast<const RotaryEmbedding*>(&rope), &key_rope}) {
    if (!r->defined()) continue;
    for (const torch::Tensor* t : {&r->cos, &r->sin}) {
      T4G_CHECK(
          t->defined() && t->dim() == 2 && t->size(0) == grid.video_tokens() && t->size(1) == c.attention_head_dim,
          "RoPE tables are ", t->defined() ? t->sizes() : c10::IntArrayRef{}, ", expected [", grid.video_tokens(), ", ",
          c.attention_head_dim, "]");
    }
  }
  T4G_CHECK(options.last_block >= -1 && options.last_block < c.num_layers, "last_block ", options.last_block,
            " outside [-1, ", c.num_layers, ")");

  // 3. Blocks, with probes.
  static const ProbeOptions kNoProbes;
  const ProbeOptions& probes = options.probes != nullptr ? *options.probes : kNoProbes;
  auto check_layers = [&](const auto& layers, const char* what) {
    for (const int64_t layer : layers) {
      T4G_CHECK(layer >= 0 && layer < c.num_layers, what, " layer ", layer, " outside [0, ", c.num_layers, ")");
    }
  };
  check_layers(probes.query_key_layers, "query/key probe");
  check_layers(probes.hidden_layers, "hidden-state probe");
  check_layers(probes.cag_layers, "CAG");
  check_layers(probes.key_value_layers, "key/value probe");
  for (const auto& [layer, kv] : probes.video_key_values) {
    T4G_CHECK(layer >= 0 && layer < c.num_layers, "K/V replacement layer ", layer, " outside [0, ", c.num_layers, ")");
  }
  for (const auto& [layer, hook] : probes.residual_hooks) {
    T4G_CHECK(layer >= 0 && layer < c.num_layers, "residual hook layer ", layer, " outside [0, ", c.num_layers, ")");
    T4G_CHECK(static_cast<bool>(hook), "residual hook at layer ", layer, " is empty");
  }

  // The last block that must run when the caller wants captures only.
  int64_t last_layer = c.num_layers - 1;
  if (probes.stop_after_last_capture) {
    last_layer = -1;
    if (!probes.query_key_layers.empty()) last_layer = std::max(last_layer, *probes.query_key_layers.rbegin());
    if (!probes.hidden_layers.empty()) last_layer = std::max(last_layer, *probes.hidden_layers.rbegin());
    if (!probes.key_value_layers.empty()) last_layer = std::max(last_layer, *probes.key_value_layers.rbegin());
  }

  TransformerOutput result;
  // An explicit last block (DiTFlow's loss forwards) stops there too.
  if (options.last_block >= 0) last_layer = std::min(last_layer, options.last_block);
  for (int64_t i = 0; i <= last_layer; ++i) {
    BlockAttentionCall call;
    call.rope = rope.defined() ? &rope : nullptr;
    call.key_rope = key_rope.defined() ? &key_rope : nullptr;
    call.grid = grid;
    if (probes.cag_layers.count(i) != 0) {
      call.cag_mode = probes.cag_mode;
      call.cag_batch_indices = probes.cag_batch_indices;
    }
    if (probes.query_key_layers.count(i) != 0) {
      call.query_out = &result.captured.query[i];
      call.key_out = &result.captured.key[i];
    }
    if (probes.key_value_layers.count(i) != 0) {
      call.key_out = &result.captured.key[i];
      call.value_out = &result.captured.value[i];
    }
    const auto replaced = probes.video_key_values.find(i);
    if (replaced != probes.video_key_values.end()) call.video_key_value = &replaced->second;
    std::tie(hidden, encoder) = run_block(i, hidden, encoder, emb, call);
    if (probes.hidden_layers.count(i) != 0) result.captured.hidden[i] = hidden;
    // The call's hook, else the model's own residual (not after the last block of an early stop).
    const ResidualHook* hook = nullptr;
    if (const auto it = probes.residual_hooks.find(i); it != probes.residual_hooks.end()) {
      hook = &it->second;
    } else if (const auto own = block_residuals_.find(i);
               own != block_residuals_.end() && !((probes.stop_after_last_capture || options.last_block >= 0) && i == last_layer)) {
      hook = &own->second;
    }
    if (hook != nullptr) {
      const auto add = (*hook)(hidden, grid);
      T4G_CHECK(add.sizes() == hidden.sizes(), "residual hook at layer ", i, " returned ", add.sizes(), ", expected ",
                hidden.sizes());
      hidden = hidden + add.to(hidden.scalar_type());
    }
  }

  if (probes.stop_after_last_capture || options.last_block >= 0) return result;  // probes only

  // 4. Output head (video tokens only) and unpatchify.
  hidden = linear_forward(proj_out, norm_out(norm_final(hidden), emb));
  const int64_t p = c.patch_size;
  if (!c.patch_size_t) {
    result.sample =
        hidden.reshape({b, f, h / p, w / p, -1, p, p}).permute({0, 1, 4, 2, 5, 3, 6}).flatten(5, 6).flatten(3, 4);
  } else {
    const int64_t pt = *c.patch_size_t;
    result.sample = hidden.reshape({b, (f + pt - 1) / pt, h / p, w / p, -1, pt, p, p})
                        .permute({0, 1, 5, 4, 2, 6, 3, 7})
                        .flatten(6, 7)
                        .flatten(4, 5)
                        .flatten(1, 2);
  }
  return result;
}

void CogVideoXTransformer3DModelImpl::set_block_residual(int64_t block, ResidualHook hook) {
  T4G_CHECK(block >= 0 && block < config_.num_layers, "residual block ", block, " outside [0, ", config_.num_layers, ")");
  if (hook) {
    block_residuals_[block] = std::move(hook);
  } else {
    block_residuals_.erase(block);
  }
}

void init_random_weights(torch::nn::Module& module, uint64_t seed, double std) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::NoGradGuard no_grad;
  auto fill = [&](const std::string& name, torch::Tensor& t) {
    auto noise = at::normal(0.0, std, t.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat32));
    const bool is_norm_weight = t.dim() == 1 && name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
    if (is_norm_weight) noise = noise + 1.0;
    t.copy_(noise);
  };
  for (auto& item : module.named_parameters()) fill(item.key(), item.value());
  for (auto& item : module.named_buffers()) fill(item.key(), item.value());
}

}  // namespace t4g
