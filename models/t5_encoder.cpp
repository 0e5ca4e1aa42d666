// T5 encoder forward and loading. The ops follow transformers' modeling_t5 (4.x eager path) one
// for one, including where dtypes change (fp32 variance in the norm, softmax in fp32, wo's input
// cast, the fp16 clamp), so fp32 matches to float rounding and fp16/bf16 take the same roundings.
// Attention is explicit matmul-softmax-matmul: at 226 tokens it is a few percent of the work
// (the feed-forward dominates), and it keeps the reference's bf16 rounding of the scores.
#include "models/t5_encoder.h"

#include <cmath>
#include <limits>

#include "common/error.h"
#include "common/json.h"
#include "common/log.h"
#include "models/diffusers_layout.h"

namespace t4g {
namespace {

torch::TensorOptions options_of(const T5InitOptions& init) {
  return torch::TensorOptions().dtype(init.dtype).device(init.device);
}

T5Activation parse_activation(const std::string& name, const JsonObject& config, const std::string& key) {
  if (name == "relu") return T5Activation::kRelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return T5Activation::kGeluTanh;
  if (name == "gelu") return T5Activation::kGelu;
  ErrorContext ctx;
  ctx.file = config.file();
  ctx.key = key;
  ctx.expected = "relu, gelu, gelu_new or gelu_pytorch_tanh";
  ctx.got = name;
  throw Error("unsupported T5 activation", ctx);
}

torch::Tensor activate(const torch::Tensor& x, T5Activation activation) {
  switch (activation) {
    case T5Activation::kRelu:
      return torch::relu(x);
    case T5Activation::kGeluTanh:
      return torch::gelu(x, "tanh");
    case T5Activation::kGelu:
      return torch::gelu(x);
  }
  return x;
}

// The reference's fp16 overflow guard after every sub-layer.
torch::Tensor clamp_fp16(const torch::Tensor& x) {
  if (x.scalar_type() != torch::kFloat16) return x;
  const double max = 65504.0;
  const double limit = torch::isinf(x).any().item<bool>() ? max - 1000.0 : max;
  return torch::clamp(x, -limit, limit);
}

}  // namespace

T5EncoderConfig load_t5_encoder_config(const std::string& config_json) {
  const JsonObject c = JsonObject::from_file(config_json);
  T5EncoderConfig config;
  config.vocab_size = c.get_int("vocab_size");
  config.d_model = c.get_int("d_model");
  config.d_kv = c.get_int("d_kv");
  config.num_heads = c.get_int("num_heads");
  config.d_ff = c.get_int("d_ff");
  config.num_layers = c.get_int("num_layers");
  config.relative_attention_num_buckets = c.get_int("relative_attention_num_buckets", 32);
  config.relative_attention_max_distance = c.get_int("relative_attention_max_distance", 128);
  config.layer_norm_epsilon = c.get_double("layer_norm_epsilon", 1e-6);

  // T5Config: "gated-ACT" or "ACT"; "gated-gelu" means gelu_new (tanh) for backward compatibility.
  const std::string proj = c.get_string("feed_forward_proj", "relu");
  const bool gated = proj.rfind("gated-", 0) == 0;
  const std::string act = gated ? proj.substr(6) : proj;
  ErrorContext ctx;
  ctx.file = c.file();
  ctx.key = "feed_forward_proj";
  ctx.expected = "\"ACT\" or \"gated-ACT\"";
  ctx.got = proj;
  T4G_CHECK_CTX(!act.empty() && act.find('-') == std::string::npos, ctx, "bad T5 feed-forward form");
  config.gated = c.get_bool("is_gated_act", gated);
  const std::string dense_act = c.get_string("dense_act_fn", proj == "gated-gelu" ? "gelu_new" : act);
  config.activation = parse_activation(dense_act, c, c.has("dense_act_fn") ? "dense_act_fn" : "feed_forward_proj");

  for (const auto& [key, value] : {std::pair<const char*, int64_t>{"vocab_size", config.vocab_size},
                                   {"d_model", config.d_model},
                                   {"d_kv", config.d_kv},
                                   {"num_heads", config.num_heads},
                                   {"d_ff", config.d_ff},
                                   {"num_layers", config.num_layers},
                                   {"relative_attention_num_buckets", config.relative_attention_num_buckets},
                                   {"relative_attention_max_distance", config.relative_attention_max_distance}}) {
    ErrorContext e;
    e.file = c.file();
    e.key = key;
    e.expected = "a positive integer";
    e.got = std::to_string(value);
    T4G_CHECK_CTX(value > 0, e, "bad T5 config value");
  }
  return config;
}

torch::Tensor t5_relative_position_bucket(const torch::Tensor& relative_position, bool bidirectional,
                                          int64_t num_buckets, int64_t max_distance) {
  torch::Tensor rel = relative_position.to(torch::kLong);
  torch::Tensor buckets = torch::zeros_like(rel);
  if (bidirectional) {
    num_buckets /= 2;
    buckets = buckets + (rel > 0).to(torch::kLong) * num_buckets;
    rel = torch::abs(rel);
  } else {
    rel = -torch::min(rel, torch::zeros_like(rel));
  }
  const int64_t max_exact = num_buckets / 2;
  const torch::Tensor is_small = rel < max_exact;
  // float32 log as the reference; log(0) = -inf only occurs where is_small picks the exact bucket.
  torch::Tensor large =
      max_exact + (torch::log(rel.to(torch::kFloat) / static_cast<double>(max_exact)) /
                   std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)) *
                   static_cast<double>(num_buckets - max_exact))
                      .to(torch::kLong);
  large = torch::min(large, torch::full_like(large, num_buckets - 1));
  return buckets + torch::where(is_small, rel, large);
}

T5LinearImpl::T5LinearImpl(int64_t in, int64_t out, const T5InitOptions& init) {
  // Frozen by design: the text encoder is never trained here, so no autograd graph by accident.
  weight = register_parameter("weight", torch::empty({out, in}, options_of(init)), /*requires_grad=*/false);
}

torch::Tensor T5LinearImpl::forward(const torch::Tensor& x) { return torch::nn::functional::linear(x, weight); }

T5EmbeddingImpl::T5EmbeddingImpl(int64_t rows, int64_t dim, const T5InitOptions& init) {
  weight = register_parameter("weight", torch::empty({rows, dim}, options_of(init)), /*requires_grad=*/false);
}

torch::Tensor T5EmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }

T5LayerNormImpl::T5LayerNormImpl(int64_t dim, double eps, const T5InitOptions& init) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}, options_of(init)), /*requires_grad=*/false);
}

torch::Tensor T5LayerNormImpl::forward(const torch::Tensor& x) {
  const torch::Tensor variance = x.to(torch::kFloat32).pow(2).mean(-1, /*keepdim=*/true);
  torch::Tensor y = x * torch::rsqrt(variance + eps_);
  if (weight.scalar_type() == torch::kFloat16 || weight.scalar_type() == torch::kBFloat16) {
    y = y.to(weight.scalar_type());
  }
  return weight * y;
}

T5AttentionImpl::T5AttentionImpl(const T5EncoderConfig& config, bool has_relative_attention_bias,
                                 const T5InitOptions& init)
    : config_(config) {
  const int64_t inner = config.inner_dim();
  q = register_module("q", T5Linear(config.d_model, inner, init));
  k = register_module("k", T5Linear(config.d_model, inner, init));
  v = register_module("v", T5Linear(config.d_model, inner, init));
  o = register_module("o", T5Linear(inner, config.d_model, init));
  if (has_relative_attention_bias) {
    relative_attention_bias = register_module(
        "relative_attention_bias", T5Embedding(config.relative_attention_num_buckets, config.num_heads, init));
  }
}

torch::Tensor T5AttentionImpl::compute_bias(int64_t length) const {
  T4G_CHECK(!relative_attention_bias.is_empty(), "T5 attention: only block 0 has the relative position table");
  const auto device = relative_attention_bias->weight.device();
  const auto positions = torch::arange(length, torch::TensorOptions().dtype(torch::kLong).device(device));
  const auto relative = positions.unsqueeze(0) - positions.unsqueeze(1);  // [query, key] = key - query
  const auto buckets = t5_relative_position_bucket(relative, /*bidirectional=*/true,
                                                   config_.relative_attention_num_buckets,
                                                   config_.relative_attention_max_distance);
  return torch::embedding(relative_attention_bias->weight, buckets).permute({2, 0, 1}).unsqueeze(0);  // [1, H, L, L]
}

torch::Tensor T5AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& bias) {
  const int64_t batch = x.size(0);
  const int64_t length = x.size(1);
  const auto heads = [&](const torch::Tensor& t) {
    return t.view({batch, length, config_.num_heads, config_.d_kv}).transpose(1, 2);
  };
  const auto query = heads(q(x));
  const auto key = heads(k(x));
  const auto value = heads(v(x));
  // No 1/sqrt(d_kv): T5 folds the scale into its initialisation.
  const auto scores = torch::matmul(query, key.transpose(2, 3)) + bias;
  const auto probs = torch::softmax(scores.to(torch::kFloat32), -1).to(scores.scalar_type());
  const auto out = torch::matmul(probs, value).transpose(1, 2).reshape({batch, length, config_.inner_dim()});
  return o(out);
}

T5LayerSelfAttentionImpl::T5LayerSelfAttentionImpl(const T5EncoderConfig& config, bool has_relative_attention_bias,
                                                   const T5InitOptions& init) {
  SelfAttention = register_module("SelfAttention", T5Attention(config, has_relative_attention_bias, init));
  layer_norm = register_module("layer_norm", T5LayerNorm(config.d_model, config.layer_norm_epsilon, init));
}

torch::Tensor T5LayerSelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& bias) {
  return x + SelfAttention(layer_norm(x), bias);
}

T5DenseReluDenseImpl::T5DenseReluDenseImpl(const T5EncoderConfig& config, const T5InitOptions& init)
    : config_(config) {
  if (config.gated) {
    wi_0 = register_module("wi_0", T5Linear(config.d_model, config.d_ff, init));
    wi_1 = register_module("wi_1", T5Linear(config.d_model, config.d_ff, init));
  } else {
    wi = register_module("wi", T5Linear(config.d_model, config.d_ff, init));
  }
  wo = register_module("wo", T5Linear(config.d_ff, config.d_model, init));
}

torch::Tensor T5DenseReluDenseImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = config_.gated ? activate(wi_0(x), config_.activation) * wi_1(x) : activate(wi(x), config_.activation);
  if (h.scalar_type() != wo->weight.scalar_type()) h = h.to(wo->weight.scalar_type());
  return wo(h);
}

T5LayerFFImpl::T5LayerFFImpl(const T5EncoderConfig& config, const T5InitOptions& init) {
  DenseReluDense = register_module("DenseReluDense", T5DenseReluDense(config, init));
  layer_norm = register_module("layer_norm", T5LayerNorm(config.d_model, config.layer_norm_epsilon, init));
}

torch::Tensor T5LayerFFImpl::forward(const torch::Tensor& x) { return x + DenseReluDense(layer_norm(x)); }

T5BlockImpl::T5BlockImpl(const T5EncoderConfig& config, bool has_relative_attention_bias, const T5InitOptions& init) {
  attention_ = T5LayerSelfAttention(config, has_relative_attention_bias, init);
  ff_ = T5LayerFF(config, init);
  layer = register_module("layer", torch::nn::ModuleList(attention_, ff_));
}

torch::Tensor T5BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& bias) {
  return clamp_fp16(ff_(clamp_fp16(attention_(x, bias))));
}

torch::Tensor T5BlockImpl::position_bias(int64_t length) const { return attention_->SelfAttention->compute_bias(length); }

T5StackImpl::T5StackImpl(const T5EncoderConfig& config, T5Embedding embed, const T5InitOptions& init)
    : config_(config) {
  embed_tokens = register_module("embed_tokens", std::move(embed));
  block = register_module("block", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_layers; ++i) {
    blocks_.push_back(T5Block(config, /*has_relative_attention_bias=*/i == 0, init));
    block->push_back(blocks_.back());
  }
  final_layer_norm = register_module("final_layer_norm", T5LayerNorm(config.d_model, config.layer_norm_epsilon, init));
}

torch::Tensor T5StackImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  ErrorContext ctx;
  ctx.tensor = "input_ids";
  ctx.expected = "int64 [B, L]";
  ctx.got = std::string(c10::toString(input_ids.scalar_type())) + " with " + std::to_string(input_ids.dim()) + " dims";
  T4G_CHECK_CTX(input_ids.dim() == 2 && input_ids.scalar_type() == torch::kLong, ctx, "T5 encoder input");
  const auto device = embed_tokens->weight.device();
  const auto ids = input_ids.to(device);
  T4G_CHECK(ids.numel() == 0 || (ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < config_.vocab_size),
            "T5 encoder: token ids must lie in [0, ", config_.vocab_size, ")");
  torch::Tensor x = embed_tokens(ids);
  // The relative position bias of block 0, computed once and shared by every block.
  torch::Tensor bias = blocks_.front()->position_bias(ids.size(1));
  if (attention_mask.defined()) {
    T4G_CHECK(attention_mask.sizes() == ids.sizes(), "T5 encoder: attention_mask must have the shape of input_ids");
    const auto dtype = bias.scalar_type();
    const double lowest = dtype == torch::kFloat16    ? -65504.0
                          : dtype == torch::kBFloat16 ? -3.3895313892515355e38
                                                      : static_cast<double>(std::numeric_limits<float>::lowest());
    const auto keep = attention_mask.to(device).to(dtype).unsqueeze(1).unsqueeze(1);  // [B, 1, 1, L]
    bias = bias + (1.0 - keep) * lowest;
  }
  for (auto& b : blocks_) x = b(x, bias);
  return final_layer_norm(x);
}

T5EncoderModelImpl::T5EncoderModelImpl(const T5EncoderConfig& config, const T5InitOptions& init) : config_(config) {
  shared = register_module("shared", T5Embedding(config.vocab_size, config.d_model, init));
  encoder = register_module("encoder", T5Stack(config, shared, init));
}

torch::Tensor T5EncoderModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  return encoder(input_ids, attention_mask);
}

void T5EncoderModelImpl::set_compute_dtype(torch::ScalarType dtype) {
  to(dtype);
  if (dtype != torch::kFloat16) return;
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* ff = module->as<T5DenseReluDenseImpl>()) ff->wo->to(torch::kFloat32);
  }
}

T5EncoderModel load_t5_encoder(const std::string& folder, const T5LoadOptions& options) {
  const auto layout = resolve_diffusers_layout(folder);
  const DiffusersComponent& component =
      layout.kind == DiffusersLayoutKind::kPipeline ? layout.component("text_encoder") : layout.components.at(0);
  ErrorContext ctx;
  ctx.file = component.folder;
  T4G_CHECK_CTX(!component.config_path.empty(), ctx, "no config.json next to the text encoder weights");
  T4G_CHECK_CTX(!component.weights_path.empty(), ctx, "no safetensors weights in the text encoder folder");
  T4G_CHECK_CTX(options.dtype == torch::kFloat32 || options.dtype == torch::kBFloat16 ||
                    options.dtype == torch::kFloat16,
                ctx, "the T5 encoder runs in fp32, bf16 or fp16");
  const T5EncoderConfig config = load_t5_encoder_config(component.config_path);
  // Allocated straight in the compute dtype on the device; the loader converts each stored tensor into it.
  T5EncoderModel model(config, T5InitOptions{options.dtype, options.device});
  model->set_compute_dtype(options.dtype);
  load_module_weights(*model, component.weights_path);
  model->eval();
  return model;
}

void randomize_t5_encoder(T5EncoderModel& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  const auto& c = model->config();
  const double d = static_cast<double>(c.d_model);
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    const auto ends = [&](const std::string& s) {
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (ends("layer_norm.weight")) {
      p.fill_(1.0);
    } else if (ends("SelfAttention.q.weight")) {
      p.normal_(0.0, 1.0 / std::sqrt(d * static_cast<double>(c.d_kv)));
    } else if (ends("SelfAttention.o.weight")) {
      p.normal_(0.0, 1.0 / std::sqrt(static_cast<double>(c.inner_dim())));
    } else if (ends("DenseReluDense.wo.weight")) {
      p.normal_(0.0, 1.0 / std::sqrt(static_cast<double>(c.d_ff)));
    } else if (name == "shared.weight" || name == "encoder.embed_tokens.weight") {
      p.normal_(0.0, 1.0);
    } else {
      p.normal_(0.0, 1.0 / std::sqrt(d));  // k, v, wi*, relative_attention_bias
    }
  }
}

}  // namespace t4g
