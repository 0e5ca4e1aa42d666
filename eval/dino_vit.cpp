// DINO ViT in LibTorch. Attention goes through scaled_dot_product_attention (same math as DINO's
// explicit softmax(q k^T * scale) v, with fused kernels on GPUs); everything else is DINO's
// arithmetic in DINO's order, so fp32 outputs agree with the reference to float rounding.
#include "eval/dino_vit.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "common/shape_string.h"
#include "eval/video_frames.h"
#include "models/diffusers_layout.h"

namespace t4g {

void DinoVitConfig::validate() const {
  auto check_positive = [](int64_t value, const char* key) {
    ErrorContext ctx;
    ctx.key = key;
    ctx.expected = "a positive integer";
    ctx.got = std::to_string(value);
    T4G_CHECK_CTX(value > 0, ctx, "DINO ViT config: out of range");
  };
  check_positive(image_size, "image_size");
  check_positive(patch_size, "patch_size");
  check_positive(dim, "dim");
  check_positive(depth, "depth");
  check_positive(heads, "heads");
  check_positive(mlp_hidden, "mlp_hidden");
  ErrorContext ctx;
  ctx.key = "heads";
  ctx.expected = str("a divisor of dim ", dim);
  ctx.got = std::to_string(heads);
  T4G_CHECK_CTX(dim % heads == 0, ctx, "DINO ViT config: heads must divide dim");
  ctx.key = "image_size";
  ctx.expected = str("at least patch_size ", patch_size);
  ctx.got = std::to_string(image_size);
  T4G_CHECK_CTX(image_size >= patch_size, ctx, "DINO ViT config: image smaller than a patch");
  ctx.key = "layer_norm_eps";
  ctx.expected = "> 0";
  ctx.got = std::to_string(layer_norm_eps);
  T4G_CHECK_CTX(layer_norm_eps > 0, ctx, "DINO ViT config: out of range");
}

namespace {

torch::nn::LayerNorm make_norm(const DinoVitConfig& config) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.dim}).eps(config.layer_norm_eps));
}

}  // namespace

DinoAttentionImpl::DinoAttentionImpl(const DinoVitConfig& config) : heads_(config.heads) {
  qkv = register_module("qkv",
                        torch::nn::Linear(torch::nn::LinearOptions(config.dim, 3 * config.dim).bias(config.qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(config.dim, config.dim));
}

torch::Tensor DinoAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), n = x.size(1), c = x.size(2);
  // DINO: qkv(x).reshape(B, N, 3, heads, C/heads).permute(2, 0, 3, 1, 4).
  const torch::Tensor qkv_heads = qkv->forward(x).reshape({b, n, 3, heads_, c / heads_}).permute({2, 0, 3, 1, 4});
  const torch::Tensor out = at::scaled_dot_product_attention(qkv_heads[0], qkv_heads[1], qkv_heads[2]);
  return proj->forward(out.transpose(1, 2).reshape({b, n, c}));
}

DinoMlpImpl::DinoMlpImpl(const DinoVitConfig& config) {
  fc1 = register_module("fc1", torch::nn::Linear(config.dim, config.mlp_hidden));
  fc2 = register_module("fc2", torch::nn::Linear(config.mlp_hidden, config.dim));
}

torch::Tensor DinoMlpImpl::forward(const torch::Tensor& x) { return fc2->forward(torch::gelu(fc1->forward(x))); }

DinoBlockImpl::DinoBlockImpl(const DinoVitConfig& config) {
  norm1 = register_module("norm1", make_norm(config));
  attn = register_module("attn", DinoAttention(config));
  norm2 = register_module("norm2", make_norm(config));
  mlp = register_module("mlp", DinoMlp(config));
}

torch::Tensor DinoBlockImpl::forward(const torch::Tensor& x) {
  const torch::Tensor y = x + attn->forward(norm1->forward(x));
  return y + mlp->forward(norm2->forward(y));
}

DinoPatchEmbedImpl::DinoPatchEmbedImpl(const DinoVitConfig& config) {
  proj = register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, config.dim, config.patch_size).stride(config.patch_size)));
}

torch::Tensor DinoPatchEmbedImpl::forward(const torch::Tensor& x) {
  return proj->forward(x).flatten(2).transpose(1, 2);
}

DinoVitImpl::DinoVitImpl(const DinoVitConfig& config) : config_(config) {
  config_.validate();
  grid_ = config_.image_size / config_.patch_size;
  // Zeros as DINO's constructor leaves them before its own init; weights come from a file.
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, config_.dim}));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, grid_ * grid_ + 1, config_.dim}));
  patch_embed = register_module("patch_embed", DinoPatchEmbed(config_));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.depth; ++i) blocks->push_back(DinoBlock(config_));
  norm = register_module("norm", make_norm(config_));
}

torch::Tensor DinoVitImpl::interpolate_pos_encoding(int64_t height, int64_t width) {
  const int64_t p = config_.patch_size;
  const int64_t rows = height / p, cols = width / p;
  const int64_t trained = grid_ * grid_;
  // DINO names the input's dims (w, h) = (H, W) and returns pos_embed as is when npatch == N and
  // w == h, i.e. for square inputs of the trained patch count.
  if (rows * cols == trained && height == width) return pos_embed;
  const int64_t dim = config_.dim;
  const torch::Tensor class_pos = pos_embed.slice(1, 0, 1);
  const torch::Tensor patch_pos = pos_embed.slice(1, 1).reshape({1, grid_, grid_, dim}).permute({0, 3, 1, 2});
  // The 0.1 keeps floor(n * scale) at the wanted size despite rounding (dino issue #8); the
  // kernel gets the scale factors themselves, as F.interpolate(scale_factor=...) passes them.
  const double root = std::sqrt(static_cast<double>(trained));
  const double scale_h = (static_cast<double>(rows) + 0.1) / root;
  const double scale_w = (static_cast<double>(cols) + 0.1) / root;
  const auto out_h = static_cast<int64_t>(std::floor(static_cast<double>(grid_) * scale_h));
  const auto out_w = static_cast<int64_t>(std::floor(static_cast<double>(grid_) * scale_w));
  T4G_CHECK(out_h == rows && out_w == cols, "DINO ViT: positional grid interpolation gave ", out_h, "x", out_w, " for ",
            rows, "x", cols, " patches");
  const torch::Tensor resized = at::upsample_bicubic2d(patch_pos, {out_h, out_w}, false, scale_h, scale_w);
  return torch::cat({class_pos, resized.permute({0, 2, 3, 1}).reshape({1, rows * cols, dim})}, 1);
}

torch::Tensor DinoVitImpl::forward(const torch::Tensor& images) {
  ErrorContext ctx;
  ctx.tensor = "images";
  ctx.expected = str("float [B, 3, H, W] with H, W >= ", config_.patch_size);
  ctx.got = std::string(c10::toString(images.scalar_type())) + " " + shape_string(images.sizes());
  T4G_CHECK_CTX(images.dim() == 4 && images.size(1) == 3 && images.size(2) >= config_.patch_size &&
                    images.size(3) >= config_.patch_size && images.is_floating_point(),
                ctx, "DINO ViT: wrong input");
  const int64_t b = images.size(0);
  torch::Tensor x = patch_embed->forward(images);
  x = torch::cat({cls_token.expand({b, -1, -1}), x}, 1);
  x = x + interpolate_pos_encoding(images.size(2), images.size(3));
  for (const auto& block : *blocks) x = block->as<DinoBlock>()->forward(x);
  return norm->forward(x).select(1, 0);
}

namespace {

// The shape of tensor `name` of `file`, which must exist with `dims` dimensions.
const std::vector<int64_t>& required_shape(const SafetensorsFile& file, const std::string& name, size_t dims) {
  ErrorContext ctx;
  ctx.file = file.path();
  ctx.tensor = name;
  ctx.expected = str(dims, "-D tensor");
  T4G_CHECK_CTX(file.contains(name), ctx, "not a DINO ViT state dict: missing tensor");
  const std::vector<int64_t>& shape = file.info(name).shape;
  ctx.got = shape_string(shape);
  T4G_CHECK_CTX(shape.size() == dims, ctx, "not a DINO ViT state dict: wrong rank");
  return shape;
}

}  // namespace

DinoVitConfig dino_vit_config_from_file(const std::string& path) {
  ErrorContext file_ctx;
  file_ctx.file = path;
  T4G_CHECK_CTX(path_exists(path), file_ctx, "DINO weights file not found");
  const SafetensorsFile file(path);
  DinoVitConfig config;
  config.dim = required_shape(file, "cls_token", 3)[2];
  config.patch_size = required_shape(file, "patch_embed.proj.weight", 4)[2];
  const int64_t rows = required_shape(file, "pos_embed", 3)[1] - 1;
  const auto grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(rows))));
  ErrorContext ctx = file_ctx;
  ctx.tensor = "pos_embed";
  ctx.expected = "1 + a square number of rows";
  ctx.got = std::to_string(rows + 1);
  T4G_CHECK_CTX(grid * grid == rows && grid > 0, ctx, "not a DINO ViT state dict");
  config.image_size = grid * config.patch_size;
  config.depth = 0;
  while (file.contains(str("blocks.", config.depth, ".norm1.weight"))) ++config.depth;
  config.mlp_hidden = required_shape(file, "blocks.0.mlp.fc1.weight", 2)[0];
  config.qkv_bias = file.contains("blocks.0.attn.qkv.bias");
  const auto heads = file.metadata().find("num_heads");
  ctx = file_ctx;
  ctx.key = "__metadata__.num_heads";
  if (heads != file.metadata().end()) {
    ctx.got = heads->second;
    ctx.expected = "a positive integer";
    try {
      size_t used = 0;
      config.heads = std::stoll(heads->second, &used);
      T4G_CHECK_CTX(used == heads->second.size(), ctx, "not an integer");
    } catch (const std::logic_error&) {
      throw Error("not an integer", ctx);
    }
  } else {
    ctx.got = std::to_string(config.dim);
    ctx.expected = "dim divisible by 64 (or metadata num_heads)";
    T4G_CHECK_CTX(config.dim % 64 == 0, ctx, "DINO ViT: cannot infer the head count");
    config.heads = config.dim / 64;
  }
  try {
    config.validate();
  } catch (const Error& e) {
    ErrorContext c = e.context();
    c.file = path;
    throw Error(e.message(), c);
  }
  return config;
}

DinoVit load_dino_vit(const std::string& path, const torch::Device& device) {
  DinoVit model(dino_vit_config_from_file(path));
  load_module_weights(*model, path);
  model->to(device, torch::kFloat32);
  model->eval();
  return model;
}

torch::Tensor dino_features_batched(DinoVit& model, const torch::Tensor& frames, int64_t batch_size,
                                   const DinoPreprocess& preprocess) {
  check_video_frames(frames, "frames");
  T4G_CHECK(batch_size > 0, "DINO features: batch size must be positive, got ", batch_size);
  const torch::Device device = model->cls_token.device();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> features;
  for (int64_t begin = 0; begin < frames.size(0); begin += batch_size) {
    const int64_t end = std::min(frames.size(0), begin + batch_size);
    features.push_back(model->forward(preprocess(frames.slice(0, begin, end).to(device))));
  }
  return torch::cat(features, 0);
}

}  // namespace t4g
