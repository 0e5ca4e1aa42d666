// The Track4Gen refiner: Dirac-initialised convolutions joined by identity-initialised PReLUs,
// a zero projection back to tokens, the residual hook that evaluates both once per forward, and
// its own safetensors file (the configuration rides in the header metadata).
#include "models/refiner.h"

#include "common/error.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "common/shape_string.h"
#include "models/diffusers_layout.h"

namespace t4g {
namespace nn = torch::nn;

namespace {

constexpr const char* kMetadataKey = "t4g_refiner";  // safetensors metadata entry holding the config

void check_video_hidden(const torch::Tensor& hidden, const TokenGrid& grid, int64_t channels) {
  ErrorContext ctx;
  ctx.tensor = "video_hidden";
  ctx.expected = t4g::str("[B, ", grid.video_tokens(), ", ", channels, "]");
  ctx.got = shape_string(hidden.sizes());
  T4G_CHECK_CTX(hidden.dim() == 3 && hidden.size(1) == grid.video_tokens() && hidden.size(2) == channels, ctx,
                "refiner input does not match the token grid ", grid.frames, "x", grid.height, "x", grid.width,
                " and the refiner's channels");
}

Json config_to_json(const RefinerConfig& config, int64_t channels) {
  return Json{{"block", config.block},
              {"layers", config.layers},
              {"conv", refiner_conv_name(config.conv)},
              {"kernel", config.kernel},
              {"channels", channels}};
}

struct StoredRefiner {
  RefinerConfig config;
  int64_t channels = 0;
};

StoredRefiner read_stored_config(const SafetensorsFile& file) {
  ErrorContext ctx;
  ctx.file = file.path();
  ctx.key = t4g::str("__metadata__.", kMetadataKey);
  const auto it = file.metadata().find(kMetadataKey);
  T4G_CHECK_CTX(it != file.metadata().end(), ctx, "not a refiner file (no refiner configuration in its metadata)");
  const JsonObject json(parse_json(it->second, file.path() + " metadata"), file.path(), ctx.key);
  StoredRefiner stored;
  stored.config.block = json.get_int("block");
  stored.config.layers = json.get_int("layers");
  stored.config.conv = parse_refiner_conv(json.get_string("conv"));
  stored.config.kernel = json.get_int("kernel");
  stored.channels = json.get_int("channels");
  try {
    stored.config.validate();
  } catch (const Error& e) {
    throw Error(e.message(), ctx);
  }
  T4G_CHECK_CTX(stored.channels > 0, ctx, "channels must be positive, got ", stored.channels);
  return stored;
}

}  // namespace

void RefinerConfig::validate() const {
  ErrorContext ctx;
  ctx.key = "refiner";
  T4G_CHECK_CTX(block >= 0, ctx, "refiner block must be >= 0, got ", block);
  T4G_CHECK_CTX(layers >= 1, ctx, "refiner layers must be >= 1, got ", layers);
  T4G_CHECK_CTX(kernel >= 1 && kernel % 2 == 1, ctx, "refiner kernel must be odd and positive, got ", kernel);
}

std::string refiner_conv_name(RefinerConv conv) { return conv == RefinerConv::k2d ? "2d" : "3d"; }

RefinerConv parse_refiner_conv(const std::string& name) {
  if (name == "2d") return RefinerConv::k2d;
  if (name == "3d") return RefinerConv::k3d;
  ErrorContext ctx;
  ctx.expected = "2d or 3d";
  ctx.got = name;
  throw Error("unknown refiner convolution", ctx);
}

torch::Tensor RefinedFeatures::video() const {
  T4G_CHECK(defined(), "the refined features are empty: the transformer forward did not run the refiner's hook");
  return map.view({batch, grid.frames, map.size(1), grid.height, grid.width});
}

RefinerImpl::RefinerImpl(const RefinerConfig& config, int64_t channels) : config_(config), channels_(channels) {
  config_.validate();
  T4G_CHECK(channels > 0, "refiner channels must be positive, got ", channels);
  const int64_t k = config.kernel;
  convs = register_module("convs", nn::ModuleList());
  activations = register_module("activations", nn::ModuleList());
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < config.layers; ++i) {
    if (config.conv == RefinerConv::k2d) {
      auto conv = nn::Conv2d(nn::Conv2dOptions(channels, channels, k).padding(k / 2));
      nn::init::dirac_(conv->weight);
      conv->bias.zero_();
      convs->push_back(conv);
    } else {
      auto conv = nn::Conv3d(nn::Conv3dOptions(channels, channels, k).padding(k / 2));
      nn::init::dirac_(conv->weight);
      conv->bias.zero_();
      convs->push_back(conv);
    }
    if (i + 1 < config.layers) {
      activations->push_back(nn::PReLU(nn::PReLUOptions().num_parameters(channels).init(1.0)));
    }
  }
  proj = register_module("proj", nn::Linear(channels, channels));
  proj->weight.zero_();
  proj->bias.zero_();
}

torch::Tensor RefinerImpl::forward(const torch::Tensor& video_hidden, const TokenGrid& grid) {
  check_video_hidden(video_hidden, grid, channels_);
  const int64_t b = video_hidden.size(0);
  const int64_t f = grid.frames, h = grid.height, w = grid.width, c = channels_;
  const auto tokens = video_hidden.to(proj->weight.scalar_type()).view({b, f, h, w, c});
  const bool three_d = config_.conv == RefinerConv::k3d;
  // 2D: [B*F, C, h, w]; 3D: [B, C, F, h, w].
  auto x = three_d ? tokens.permute({0, 4, 1, 2, 3}).contiguous()
                   : tokens.permute({0, 1, 4, 2, 3}).reshape({b * f, c, h, w}).contiguous();
  for (int64_t i = 0; i < config_.layers; ++i) {
    const auto& layer = convs[static_cast<size_t>(i)];
    x = three_d ? layer->as<nn::Conv3d>()->forward(x) : layer->as<nn::Conv2d>()->forward(x);
    if (i + 1 < config_.layers) x = activations[static_cast<size_t>(i)]->as<nn::PReLU>()->forward(x);
  }
  if (three_d) x = x.permute({0, 2, 1, 3, 4}).reshape({b * f, c, h, w});
  return x;
}

torch::Tensor RefinerImpl::project(const torch::Tensor& map, int64_t batch, const TokenGrid& grid) {
  const int64_t c = channels_;
  T4G_CHECK(map.dim() == 4 && map.size(0) == batch * grid.frames && map.size(1) == c && map.size(2) == grid.height &&
                map.size(3) == grid.width,
            "refined map is ", map.sizes(), ", expected [", batch * grid.frames, ", ", c, ", ", grid.height, ", ",
            grid.width, "]");
  // Detached: the diffusion loss must not train the refiner (see the class comment).
  const auto tokens = map.detach()
                          .view({batch, grid.frames, c, grid.height, grid.width})
                          .permute({0, 1, 3, 4, 2})
                          .reshape({batch, grid.video_tokens(), c});
  return proj(tokens);
}

ResidualHook RefinerImpl::residual_hook(std::shared_ptr<RefinedFeatures> out) {
  T4G_CHECK(out != nullptr, "the refiner's residual hook needs somewhere to put the refined features");
  // The hook holds a shared pointer to this module, so it stays valid as long as the hook does.
  auto self = std::dynamic_pointer_cast<RefinerImpl>(shared_from_this());
  return [self, out](const torch::Tensor& video_hidden, const TokenGrid& grid) {
    out->map = self->forward(video_hidden, grid);
    out->grid = grid;
    out->batch = video_hidden.size(0);
    return self->project(out->map, out->batch, grid);
  };
}

ResidualHook RefinerImpl::inference_residual() {
  auto self = std::dynamic_pointer_cast<RefinerImpl>(shared_from_this());
  return [self](const torch::Tensor& video_hidden, const TokenGrid& grid) {
    return self->project(self->forward(video_hidden, grid), video_hidden.size(0), grid);
  };
}

void RefinerImpl::install(ProbeOptions& probes, std::shared_ptr<RefinedFeatures> out) {
  probes.residual_hooks[config_.block] = residual_hook(std::move(out));
}

void save_refiner(const std::string& path, Refiner& refiner) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& item : refiner->named_parameters()) tensors[item.key()] = item.value().detach();
  save_safetensors(path, tensors,
                   {{"format", "pt"}, {kMetadataKey, config_to_json(refiner->config(), refiner->channels()).dump()}});
}

Refiner load_refiner(const std::string& path) {
  const StoredRefiner stored = read_stored_config(SafetensorsFile(path));
  Refiner refiner(stored.config, stored.channels);
  load_module_weights(*refiner, SafetensorsCheckpoint(path));
  return refiner;
}

void load_refiner_weights(Refiner& refiner, const std::string& path) {
  const SafetensorsFile file(path);
  const StoredRefiner stored = read_stored_config(file);
  const Json want = config_to_json(refiner->config(), refiner->channels());
  const Json got = config_to_json(stored.config, stored.channels);
  for (const auto& [key, value] : want.items()) {
    ErrorContext ctx;
    ctx.file = path;
    ctx.key = key;
    ctx.expected = value.dump();
    ctx.got = got.at(key).dump();
    T4G_CHECK_CTX(got.at(key) == value, ctx, "the refiner file was written for another refiner configuration");
  }
  load_module_weights(*refiner, SafetensorsCheckpoint(path));
}

}  // namespace t4g
