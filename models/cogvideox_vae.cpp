// CogVideoX's 3D causal VAE: encoder, decoder, frame chunking, tiling and loading (see
// cogvideox_vae.h). The chunk loops and tile arithmetic follow diffusers 0.42.1
// (autoencoder_kl_cogvideox.py: _encode, _decode, tiled_encode, tiled_decode) line by line,
// because any other chunking gives different numbers.
#include "models/cogvideox_vae.h"

#include <algorithm>

#include "common/error.h"
#include "common/shape_string.h"
#include "common/log.h"
#include "models/diffusers_layout.h"

namespace t4g {
namespace {

[[noreturn]] void bad_tensor(const std::string& tensor, const std::string& message, const std::string& expected,
                             const std::string& got) {
  ErrorContext ctx;
  ctx.tensor = tensor;
  ctx.expected = expected;
  ctx.got = got;
  throw Error(message, ctx);
}

// Frame counts through the ×2 temporal stages, as the reference's resamplers compute them.
int64_t pooled_frames(int64_t t, int64_t levels) {
  for (int64_t i = 0; i < levels; ++i) t = t % 2 == 1 ? 1 + (t - 1) / 2 : t / 2;
  return t;
}
int64_t upsampled_frames(int64_t t, int64_t levels) {
  for (int64_t i = 0; i < levels; ++i) t = t == 1 ? 1 : (t % 2 == 1 ? 2 * t - 1 : 2 * t);
  return t;
}

// The reference's chunk bounds: chunk 0 = [0, n + r), chunk i = [n i + r, n (i + 1) + r), with
// r = total mod n and max(total / n, 1) chunks (the end of a lone chunk is clipped to `total`).
std::vector<std::pair<int64_t, int64_t>> frame_chunks(int64_t total, int64_t n) {
  const int64_t count = std::max<int64_t>(total / n, 1);
  const int64_t r = total % n;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t start = n * i + (i == 0 ? 0 : r);
    chunks.emplace_back(start, std::min(total, n * (i + 1) + r));
  }
  return chunks;
}

}  // namespace

torch::Tensor VaePosterior::std() const { return torch::exp(logvar * 0.5); }

torch::Tensor VaePosterior::sample(torch::Generator generator) const {
  const torch::Tensor eps =
      torch::randn(mean.sizes(), generator, mean.options().device(generator.device())).to(mean.device());
  return mean + std() * eps;
}

CogVideoXEncoder3DImpl::CogVideoXEncoder3DImpl(const CogVideoXVaeConfig& c) {
  const auto& ch = c.block_out_channels;
  const int64_t blocks = static_cast<int64_t>(ch.size());
  conv_in_ = register_module("conv_in", CausalConv3d(c.in_channels, ch[0], 3));
  auto list = register_module("down_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < blocks; ++i) {
    VaeBlockOptions o;
    o.in_channels = i == 0 ? ch[0] : ch[static_cast<size_t>(i - 1)];
    o.out_channels = ch[static_cast<size_t>(i)];
    o.num_layers = c.layers_per_block;
    o.groups = c.norm_num_groups;
    o.eps = c.norm_eps;
    o.resample = i < blocks - 1;
    o.compress_time = i < c.temporal_compress_levels();
    down_blocks_.push_back(CogVideoXDownBlock3D(o));
    list->push_back(down_blocks_.back());
  }
  VaeBlockOptions mid;
  mid.in_channels = mid.out_channels = ch.back();
  mid.num_layers = 2;
  mid.groups = c.norm_num_groups;
  mid.eps = c.norm_eps;
  mid_block_ = register_module("mid_block", CogVideoXMidBlock3D(mid));
  // The reference hard-codes eps 1e-6 here, whatever norm_eps says.
  norm_out_ = register_module(
      "norm_out", torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.norm_num_groups, ch.back()).eps(1e-6)));
  conv_out_ = register_module("conv_out", CausalConv3d(ch.back(), 2 * c.latent_channels, 3));
}

torch::Tensor CogVideoXEncoder3DImpl::forward(const torch::Tensor& x, ConvCache* cache) {
  torch::Tensor h = conv_in_->forward(x, cache);
  for (auto& block : down_blocks_) h = block->forward(h, cache);
  h = mid_block_->forward(h, torch::Tensor(), cache);
  h = norm_out_->forward(h);
  h = h.requires_grad() ? torch::silu(h) : torch::silu_(h);
  return conv_out_->forward(h, cache);
}

CogVideoXDecoder3DImpl::CogVideoXDecoder3DImpl(const CogVideoXVaeConfig& c) {
  std::vector<int64_t> ch(c.block_out_channels.rbegin(), c.block_out_channels.rend());
  const int64_t blocks = static_cast<int64_t>(ch.size());
  conv_in_ = register_module("conv_in", CausalConv3d(c.latent_channels, ch[0], 3));
  VaeBlockOptions mid;
  mid.in_channels = mid.out_channels = ch[0];
  mid.num_layers = 2;
  mid.groups = c.norm_num_groups;
  mid.eps = c.norm_eps;
  mid.spatial_norm_channels = c.latent_channels;
  mid_block_ = register_module("mid_block", CogVideoXMidBlock3D(mid));
  auto list = register_module("up_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < blocks; ++i) {
    VaeBlockOptions o;
    o.in_channels = i == 0 ? ch[0] : ch[static_cast<size_t>(i - 1)];
    o.out_channels = ch[static_cast<size_t>(i)];
    o.num_layers = c.layers_per_block + 1;
    o.groups = c.norm_num_groups;
    o.eps = c.norm_eps;
    o.spatial_norm_channels = c.latent_channels;
    o.resample = i < blocks - 1;
    o.compress_time = i < c.temporal_compress_levels();
    up_blocks_.push_back(CogVideoXUpBlock3D(o));
    list->push_back(up_blocks_.back());
  }
  norm_out_ = register_module("norm_out", CogVideoXSpatialNorm3D(ch.back(), c.latent_channels, c.norm_num_groups));
  conv_out_ = register_module("conv_out", CausalConv3d(ch.back(), c.out_channels, 3));
}

torch::Tensor CogVideoXDecoder3DImpl::forward(const torch::Tensor& z, ConvCache* cache) {
  torch::Tensor h = conv_in_->forward(z, cache);
  h = mid_block_->forward(h, z, cache);
  for (auto& block : up_blocks_) h = block->forward(h, z, cache);
  h = norm_out_->forward(h, z);
  h = h.requires_grad() ? torch::silu(h) : torch::silu_(h);
  return conv_out_->forward(h, cache);
}

AutoencoderKLCogVideoXImpl::AutoencoderKLCogVideoXImpl(const CogVideoXVaeConfig& config, const VaeOptions& options)
    : config_(config) {
  validate_vae_config(config_, "AutoencoderKLCogVideoX config");
  encoder = register_module("encoder", CogVideoXEncoder3D(config_));
  decoder = register_module("decoder", CogVideoXDecoder3D(config_));
  set_options(options);
}

void AutoencoderKLCogVideoXImpl::set_options(const VaeOptions& o) {
  auto bad = [](const std::string& key, const std::string& expected, const std::string& got) {
    ErrorContext ctx;
    ctx.key = key;
    ctx.expected = expected;
    ctx.got = got;
    throw Error("invalid VAE option", ctx);
  };
  const int64_t r = config_.temporal_compression_ratio;
  if (o.sample_frames_per_chunk < r || o.sample_frames_per_chunk % r != 0) {
    bad("sample_frames_per_chunk", "a positive multiple of " + std::to_string(r),
        std::to_string(o.sample_frames_per_chunk));
  }
  if (o.latent_frames_per_chunk < 1) {
    bad("latent_frames_per_chunk", "a positive integer", std::to_string(o.latent_frames_per_chunk));
  }
  const VaeTilingOptions& t = o.tiling;
  if (t.tile_sample_min_height < 0 || t.tile_sample_min_width < 0) {
    bad("tile_sample_min_height/width", ">= 0 (0: the config's sample size / 2)",
        std::to_string(t.tile_sample_min_height) + "x" + std::to_string(t.tile_sample_min_width));
  }
  for (double f : {t.overlap_factor_height, t.overlap_factor_width}) {
    if (!(f > 0 && f < 1)) bad("overlap_factor_height/width", "in (0, 1)", std::to_string(f));
  }
  options_ = o;
  if (o.tiling.enabled) {
    // Every stride and tile must be at least one unit, or the tile loops would not advance.
    const TileGrid e = encode_grid(), d = decode_grid();
    if (std::min({e.stride_height, e.stride_width, d.stride_height, d.stride_width, d.tile_height, d.tile_width}) < 1) {
      bad("tiling", "tiles of at least " + std::to_string(config_.spatial_compression()) + " pixels with overlap < 1",
          std::to_string(tile_sample_height()) + "x" + std::to_string(tile_sample_width()));
    }
  }
}

int64_t AutoencoderKLCogVideoXImpl::tile_sample_height() const {
  return options_.tiling.tile_sample_min_height > 0 ? options_.tiling.tile_sample_min_height
                                                    : config_.sample_height / 2;
}

int64_t AutoencoderKLCogVideoXImpl::tile_sample_width() const {
  return options_.tiling.tile_sample_min_width > 0 ? options_.tiling.tile_sample_min_width : config_.sample_width / 2;
}

// diffusers tiled_encode: pixel tiles advance by int(tile * (1 - overlap)); the latent tiles are
// blended over int(latent_tile * overlap) and cropped to the rest. Arithmetic in double, as
// Python does, so 1/6 and 1/5 give the reference's integers.
TileGrid AutoencoderKLCogVideoXImpl::encode_grid() const {
  const VaeTilingOptions& t = options_.tiling;
  const int64_t s = config_.spatial_compression();
  TileGrid g;
  g.tile_height = tile_sample_height();
  g.tile_width = tile_sample_width();
  const int64_t lat_h = g.tile_height / s, lat_w = g.tile_width / s;
  g.stride_height = static_cast<int64_t>(static_cast<double>(g.tile_height) * (1 - t.overlap_factor_height));
  g.stride_width = static_cast<int64_t>(static_cast<double>(g.tile_width) * (1 - t.overlap_factor_width));
  g.blend_height = static_cast<int64_t>(static_cast<double>(lat_h) * t.overlap_factor_height);
  g.blend_width = static_cast<int64_t>(static_cast<double>(lat_w) * t.overlap_factor_width);
  g.keep_height = lat_h - g.blend_height;
  g.keep_width = lat_w - g.blend_width;
  return g;
}

// diffusers tiled_decode: the mirror image, latent tiles in, pixel blending out.
TileGrid AutoencoderKLCogVideoXImpl::decode_grid() const {
  const VaeTilingOptions& t = options_.tiling;
  const int64_t s = config_.spatial_compression();
  const int64_t px_h = tile_sample_height(), px_w = tile_sample_width();
  TileGrid g;
  g.tile_height = px_h / s;
  g.tile_width = px_w / s;
  g.stride_height = static_cast<int64_t>(static_cast<double>(g.tile_height) * (1 - t.overlap_factor_height));
  g.stride_width = static_cast<int64_t>(static_cast<double>(g.tile_width) * (1 - t.overlap_factor_width));
  g.blend_height = static_cast<int64_t>(static_cast<double>(px_h) * t.overlap_factor_height);
  g.blend_width = static_cast<int64_t>(static_cast<double>(px_w) * t.overlap_factor_width);
  g.keep_height = px_h - g.blend_height;
  g.keep_width = px_w - g.blend_width;
  return g;
}

torch::Tensor AutoencoderKLCogVideoXImpl::to_parameters(const torch::Tensor& x) const {
  const torch::Tensor w = encoder->parameters().front();
  return x.to(w.device(), w.scalar_type());
}

int64_t vae_latent_frames(int64_t frames, const CogVideoXVaeConfig& config, const VaeOptions& options) {
  const int64_t r = config.temporal_compression_ratio;
  if (frames < 1 || (frames - 1) % r != 0) {
    const std::string rule = std::to_string(r) + "k+1";
    bad_tensor("video",
               "the CogVideoX VAE takes " + rule + " frames (1, " + std::to_string(1 + r) + ", " +
                   std::to_string(1 + 2 * r) + ", ..., " + std::to_string(1 + 12 * r) + ")",
               rule + " frames", std::to_string(frames) + " frames");
  }
  int64_t total = 0;
  for (const auto& [start, end] : frame_chunks(frames, options.sample_frames_per_chunk)) {
    total += pooled_frames(end - start, config.temporal_compress_levels());
  }
  return total;
}

int64_t vae_decoded_frames(int64_t latents, const CogVideoXVaeConfig& config, const VaeOptions& options) {
  T4G_CHECK(latents >= 1, "vae_decoded_frames: need at least one latent frame, got ", latents);
  int64_t total = 0;
  for (const auto& [start, end] : frame_chunks(latents, options.latent_frames_per_chunk)) {
    total += upsampled_frames(end - start, config.temporal_compress_levels());
  }
  return total;
}

torch::Tensor AutoencoderKLCogVideoXImpl::encode_frames(const torch::Tensor& x) {
  ConvCache cache;
  std::vector<torch::Tensor> outputs;
  for (const auto& [start, end] : frame_chunks(x.size(2), options_.sample_frames_per_chunk)) {
    if (!outputs.empty()) cache.rewind();
    outputs.push_back(encoder->forward(x.slice(2, start, end), &cache));
  }
  return torch::cat(outputs, 2);
}

torch::Tensor AutoencoderKLCogVideoXImpl::decode_frames(const torch::Tensor& z) {
  ConvCache cache;
  std::vector<torch::Tensor> outputs;
  for (const auto& [start, end] : frame_chunks(z.size(2), options_.latent_frames_per_chunk)) {
    if (!outputs.empty()) cache.rewind();
    outputs.push_back(decoder->forward(z.slice(2, start, end), &cache));
  }
  return torch::cat(outputs, 2);
}

VaePosterior AutoencoderKLCogVideoXImpl::encode(const torch::Tensor& video) {
  const int64_t in = config_.in_channels, s = config_.spatial_compression();
  const std::string expected = "[B, " + std::to_string(in) + ", F, H, W] floating point";
  if (!video.defined()) bad_tensor("video", "no tensor given", expected, "undefined");
  if (video.dim() != 5 || !video.is_floating_point()) {
    bad_tensor("video", "the VAE takes pixel videos as [B, C, F, H, W]", expected,
               shape_string(video.sizes()) + " " + std::string(c10::toString(video.scalar_type())));
  }
  if (video.size(1) != in) {
    const bool frames_first = video.size(2) == in;
    bad_tensor("video",
               frames_first
                   ? "channels must be dimension 1 (this looks like [B, F, C, H, W]; permute to [B, C, F, H, W])"
                   : "wrong number of channels",
               expected, shape_string(video.sizes()));
  }
  if (video.size(0) < 1) bad_tensor("video", "empty batch", expected, shape_string(video.sizes()));
  latent_frames(video.size(2));
  if (video.size(3) < s || video.size(4) < s || video.size(3) % s != 0 || video.size(4) % s != 0) {
    bad_tensor("video", "height and width must be positive multiples of the spatial compression " + std::to_string(s),
               "H and W multiples of " + std::to_string(s), shape_string(video.sizes()));
  }
  const torch::Tensor x = to_parameters(video);
  torch::Tensor h;
  const bool tiled = options_.tiling.enabled && (x.size(4) > tile_sample_width() || x.size(3) > tile_sample_height());
  if (tiled) {
    h = run_tiled(x, encode_grid(), [this](const torch::Tensor& tile) { return encode_frames(tile); });
  } else {
    h = encode_frames(x);
  }
  std::vector<torch::Tensor> parts = torch::chunk(h, 2, 1);
  VaePosterior posterior;
  posterior.mean = parts[0];
  posterior.logvar = torch::clamp(parts[1], -30.0, 20.0);
  return posterior;
}

torch::Tensor AutoencoderKLCogVideoXImpl::decode(const torch::Tensor& z) {
  const int64_t c = config_.latent_channels;
  const std::string expected = "[B, " + std::to_string(c) + ", f, h, w] floating point";
  if (!z.defined()) bad_tensor("latents", "no tensor given", expected, "undefined");
  if (z.dim() != 5 || !z.is_floating_point()) {
    bad_tensor("latents", "the VAE decodes latents as [B, C, F, H, W]", expected,
               shape_string(z.sizes()) + " " + std::string(c10::toString(z.scalar_type())));
  }
  if (z.size(1) != c) {
    const bool frames_first = z.size(2) == c;
    bad_tensor("latents",
               frames_first ? "channels must be dimension 1 (this looks like the transformer's [B, F, C, H, W]; use "
                              "transformer_to_vae_layout)"
                            : "wrong number of latent channels",
               expected, shape_string(z.sizes()));
  }
  if (z.size(0) < 1 || z.size(2) < 1 || z.size(3) < 1 || z.size(4) < 1) {
    bad_tensor("latents", "empty latents", expected, shape_string(z.sizes()));
  }
  const torch::Tensor x = to_parameters(z);
  const TileGrid grid = decode_grid();
  const bool tiled = options_.tiling.enabled && (x.size(4) > grid.tile_width || x.size(3) > grid.tile_height);
  if (tiled) return run_tiled(x, grid, [this](const torch::Tensor& tile) { return decode_frames(tile); });
  return decode_frames(x);
}

torch::Tensor AutoencoderKLCogVideoXImpl::encode_latents(const torch::Tensor& video, LatentSampling sampling,
                                                         std::optional<torch::Generator> generator) {
  const VaePosterior posterior = encode(video);
  torch::Tensor z;
  if (sampling == LatentSampling::kSample) {
    T4G_CHECK(generator.has_value(), "encode_latents: sampling the posterior needs a generator (seeded draws only)");
    z = posterior.sample(*generator);
  } else {
    z = posterior.mean;
  }
  return z * config_.scaling_factor;
}

torch::Tensor AutoencoderKLCogVideoXImpl::decode_latents(const torch::Tensor& latents) {
  // The pipelines compute `1 / scaling_factor * latents` (one multiply by the rounded reciprocal).
  return decode(to_parameters(latents) * (1.0 / config_.scaling_factor));
}

AutoencoderKLCogVideoX load_cogvideox_vae(const std::string& path, const VaeLoadOptions& options) {
  const DiffusersLayout layout = resolve_diffusers_layout(path);
  T4G_CHECK(layout.kind != DiffusersLayoutKind::kWeightsFile, path,
            ": the VAE needs its folder (config.json beside the weights), not a bare weights file");
  const DiffusersComponent& component =
      layout.kind == DiffusersLayoutKind::kPipeline ? layout.component("vae") : layout.components.front();
  const CogVideoXVaeConfig config = parse_vae_config(read_component_config(component));
  if (component.weights_path.empty()) {
    ErrorContext ctx;
    ctx.file = component.folder;
    throw Error("no safetensors weights in the VAE folder", ctx);
  }
  AutoencoderKLCogVideoX vae(config, options.run);
  vae->to(options.device, options.dtype);
  load_module_weights(*vae, component.weights_path);
  vae->eval();
  for (auto& p : vae->parameters()) p.set_requires_grad(false);
  T4G_DEBUG("loaded CogVideoX VAE from ", component.folder, " (", config.block_out_channels.size(), " blocks, ",
            config.latent_channels, " latent channels, scaling_factor ", config.scaling_factor, ")");
  return vae;
}

torch::Tensor vae_to_transformer_layout(const torch::Tensor& latents) {
  T4G_CHECK(latents.dim() == 5, "vae_to_transformer_layout: expected [B, C, F, H, W], got ",
            shape_string(latents.sizes()));
  return latents.permute({0, 2, 1, 3, 4}).contiguous();
}

torch::Tensor transformer_to_vae_layout(const torch::Tensor& latents) {
  T4G_CHECK(latents.dim() == 5, "transformer_to_vae_layout: expected [B, F, C, H, W], got ",
            shape_string(latents.sizes()));
  return latents.permute({0, 2, 1, 3, 4}).contiguous();
}

}  // namespace t4g
