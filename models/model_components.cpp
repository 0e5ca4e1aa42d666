// Building the models a recipe names (see model_components.h).
#include "models/model_components.h"

#include <cmath>

#include <ATen/cuda/CUDAGeneratorImpl.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/shape_string.h"
#include "models/cogvideox_io.h"
#include "models/diffusers_layout.h"
#include "models/trained_model.h"

namespace t4g {
namespace {

// Variance-preserving random weights for the tiny VAE: N(0, 1/fan_in) for convolutions, so the
// signal neither dies nor explodes through its ~20 layers and the latents keep the frames'
// structure (a tracking signal the tiny transformer can learn from); GroupNorm weights 1, biases 0.
void init_tiny_vae_weights(torch::nn::Module& module, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters()) {
    torch::Tensor& t = item.value();
    if (t.dim() >= 2) {
      const double fan_in = static_cast<double>(t.numel() / t.size(0));
      t.copy_(at::normal(0.0, 1.0 / std::sqrt(fan_in), t.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat32)));
    } else {
      const std::string& name = item.key();
      const bool is_weight = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
      t.fill_(is_weight ? 1.0 : 0.0);
    }
  }
}

// Random weights for a full-size preset, drawn where the module already lives (a 5B model's
// 5 billion normals are seconds on a GPU, minutes on one CPU core), with init_random_weights'
// distribution: weights and biases N(0, std), LayerNorm weights 1 + N(0, std).
void init_random_weights_in_place(torch::nn::Module& module, uint64_t seed, double std = 0.02) {
  torch::NoGradGuard no_grad;
  const torch::Device device = module.parameters().front().device();
  torch::Generator gen = device.is_cuda() ? at::cuda::detail::createCUDAGenerator(device.index())
                                          : at::make_generator<at::CPUGeneratorImpl>(seed);
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(seed);
  }
  for (auto& item : module.named_parameters()) {
    torch::Tensor& t = item.value();
    const std::string& name = item.key();
    const bool is_norm_weight = t.dim() == 1 && name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
    t.normal_(is_norm_weight ? 1.0 : 0.0, std, gen);
  }
}

void freeze(torch::nn::Module& module) {
  module.eval();
  for (auto& p : module.parameters()) p.set_requires_grad(false);
}

}  // namespace

torch::Device resolve_device(DeviceKind kind, int cuda_index) {
  switch (kind) {
    case DeviceKind::kCpu: return torch::kCPU;
    case DeviceKind::kCuda: {
      ErrorContext ctx;
      ctx.key = "model.device";
      ctx.expected = "a CUDA device";
      ctx.got = "none visible";
      T4G_CHECK_CTX(torch::cuda::is_available(), ctx, "model.device is cuda but this machine has no usable CUDA device");
      return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(cuda_index));
    }
    case DeviceKind::kAuto: break;
  }
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(cuda_index))
                                     : torch::Device(torch::kCPU);
}

torch::ScalarType resolve_dtype(DType dtype, const torch::Device& device) {
  switch (dtype) {
    case DType::kBFloat16: return torch::kBFloat16;
    case DType::kFloat32: return torch::kFloat32;
    case DType::kAuto: break;
  }
  return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
}

ModelSampleSize model_sample_size(const ModelComponents& components) {
  T4G_CHECK(!components.transformer.is_empty(), "the model's sample size comes from its transformer config");
  const CogVideoXTransformerConfig& c = components.transformer->config();
  const int64_t spatial = components.vae ? components.vae->config().spatial_compression() : 8;
  return ModelSampleSize{c.sample_frames, c.sample_height * spatial, c.sample_width * spatial};
}

void warn_if_untrained_size(const ModelComponents& components, int64_t frames, int64_t height, int64_t width,
                            const std::string& what) {
  const ModelSampleSize own = model_sample_size(components);
  if (height == own.height && width == own.width && (frames <= 0 || frames == own.frames)) return;
  T4G_WARN(what, ": ", frames > 0 ? std::to_string(frames) + " x " : std::string(), height, " x ", width,
           " is not the size ", components.source, " was trained at (", own.frames, " x ", own.height, " x ", own.width,
           "); it runs, but quality there is untested");
}

CogVideoXTransformerConfig tiny_transformer_config(const TinyModelConfig& tiny) {
  CogVideoXTransformerConfig c;
  c.num_layers = tiny.num_layers;
  c.num_attention_heads = tiny.num_attention_heads;
  c.attention_head_dim = tiny.attention_head_dim;
  c.text_embed_dim = tiny.text_embed_dim;
  c.in_channels = tiny.in_channels;
  c.out_channels = tiny.in_channels;
  c.time_embed_dim = tiny.time_embed_dim;
  c.max_text_seq_length = tiny.text_tokens;
  c.use_rotary_positional_embeddings = tiny.use_rotary_positional_embeddings;
  // The size it trains at (the recipe's data size): what commands default to. The sin-cos table
  // is rebuilt for whatever grid the input has.
  c.sample_height = tiny.sample_height / 8;
  c.sample_width = tiny.sample_width / 8;
  c.sample_frames = tiny.sample_frames;
  c.validate("model.tiny");
  return c;
}

CogVideoXVaeConfig tiny_vae_config(const TinyModelConfig& tiny) {
  CogVideoXVaeConfig c;
  const int64_t w = tiny.vae_channels;
  c.block_out_channels = {w, w, 2 * w, 2 * w};
  c.layers_per_block = 1;
  c.norm_num_groups = 4;
  c.latent_channels = tiny.in_channels;
  c.sample_height = tiny.sample_height;
  c.sample_width = tiny.sample_width;
  c.scaling_factor = 1.0;
  validate_vae_config(c, "model.tiny");
  return c;
}

ModelComponents load_model_components(const ModelConfig& config, uint64_t seed, const ComponentRequest& request) {
  if (trained_folder_kind(config.path) != TrainedFolderKind::kNone) {
    ModelComponents m = load_trained_model(config, request);
    if (!request.refiner && m.refiner) attach_refiner(m, nullptr);
    return m;
  }
  return load_base_model_components(config, seed, request);
}

ModelComponents load_base_model_components(const ModelConfig& config, uint64_t seed, const ComponentRequest& request) {
  ModelComponents m;
  m.device = resolve_device(config.device, request.cuda_index);
  m.dtype = resolve_dtype(config.dtype, m.device);
  if (config.path.empty() && !config.preset.empty()) {
    // Released size, random weights: for benchmarks and memory planning. The VAE is the 2B/5B one
    // (their architectures are equal; only the scaling factor differs).
    m.source = "preset:" + config.preset;
    m.random_weights = true;
    if (request.transformer) {
      m.transformer = CogVideoXTransformer3DModel(cogvideox_preset(config.preset));
      m.transformer->to(m.device, m.dtype);
      init_random_weights_in_place(*m.transformer, seed);
      freeze(*m.transformer);
      m.text_tokens = m.transformer->config().max_text_seq_length;
      m.text_embed_dim = m.transformer->config().text_embed_dim;
    }
    if (request.vae) {
      CogVideoXVaeConfig vc;
      if (config.preset == "5b") vc.scaling_factor = 0.7;
      m.vae = AutoencoderKLCogVideoX(vc);
      m.vae->to(m.device, m.dtype);
      init_random_weights_in_place(*m.vae, seed ^ 0x9e3779b97f4a7c15ULL);
      freeze(*m.vae);
    }
    if (config.preset == "5b") {
      SchedulerConfig sc;
      sc.snr_shift_scale = 1.0;  // research/cogvideox.md 1.3: 5B uses no SNR shift
      m.scheduler = CogVideoXScheduler(sc);
    }
    return m;
  }
  if (config.path.empty()) {
    m.source = "tiny";
    m.tiny = m.random_weights = true;
    m.text_tokens = config.tiny.text_tokens;
    m.text_embed_dim = config.tiny.text_embed_dim;
    if (request.transformer) {
      m.transformer = CogVideoXTransformer3DModel(tiny_transformer_config(config.tiny));
      init_random_weights(*m.transformer, seed);
      m.transformer->to(m.device, m.dtype);
      freeze(*m.transformer);
    }
    if (request.vae) {
      m.vae = AutoencoderKLCogVideoX(tiny_vae_config(config.tiny));
      // A seed stream of its own, so adding the VAE never changes the transformer's weights.
      init_tiny_vae_weights(*m.vae, seed ^ 0x9e3779b97f4a7c15ULL);
      m.vae->to(m.device, m.dtype);
      freeze(*m.vae);
    }
    return m;
  }

  m.source = config.path;
  const DiffusersLayout layout = resolve_diffusers_layout(config.path);
  const bool pipeline = layout.kind == DiffusersLayoutKind::kPipeline;
  if (pipeline) m.text_root = config.path;
  if (request.transformer) {
    TransformerLoadOptions load;
    load.dtype = m.dtype;
    load.device = m.device;
    m.transformer = load_cogvideox_transformer(config.path, load);
    freeze(*m.transformer);
    m.text_tokens = m.transformer->config().max_text_seq_length;
    m.text_embed_dim = m.transformer->config().text_embed_dim;
  }
  if (request.vae) {
    ErrorContext ctx;
    ctx.file = config.path;
    ctx.key = "model.path";
    ctx.expected = "a diffusers pipeline folder with vae/";
    T4G_CHECK_CTX(pipeline, ctx,
                  "the VAE is needed (frames without precomputed latents) but model.path is not a pipeline root");
    VaeLoadOptions load;
    load.dtype = m.dtype;
    load.device = m.device;
    m.vae = load_cogvideox_vae(config.path, load);
  }
  if (pipeline) {
    for (const DiffusersComponent& c : layout.components) {
      if (c.name == "scheduler" && !c.config_path.empty()) m.scheduler = CogVideoXScheduler(read_scheduler_config(c.config_path));
    }
  }
  return m;
}

torch::Tensor frames_to_vae_input(const torch::Tensor& frames, torch::Device device, torch::ScalarType dtype) {
  T4G_CHECK(frames.dim() == 5 && frames.size(4) == 3 && frames.scalar_type() == torch::kUInt8,
            "frames must be uint8 [B, F, H, W, 3], got " + std::string(c10::toString(frames.scalar_type())) + " [" +
                shape_string(frames.sizes()) + "]");
  return frames.to(device).permute({0, 4, 1, 2, 3}).to(torch::kFloat32).div(127.5).sub(1.0).to(dtype).contiguous();
}

torch::Tensor vae_output_to_frames(const torch::Tensor& video) {
  return video.detach()
      .to(torch::kFloat32)
      .add(1.0)
      .mul(127.5)
      .round()
      .clamp(0, 255)
      .to(torch::kUInt8)
      .permute({0, 2, 3, 4, 1})
      .contiguous()
      .to(torch::kCPU);
}

torch::Tensor encode_frames_to_latents(AutoencoderKLCogVideoX& vae, const torch::Tensor& frames) {
  torch::NoGradGuard no_grad;
  const torch::Tensor any = vae->parameters().front();
  const torch::Tensor video = frames_to_vae_input(frames, any.device(), any.scalar_type());
  return vae_to_transformer_layout(vae->encode_latents(video));
}

torch::Tensor encode_frames_one_by_one(AutoencoderKLCogVideoX& vae, const torch::Tensor& frames) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> latents;
  for (int64_t f = 0; f < frames.size(1); ++f) {
    latents.push_back(encode_frames_to_latents(vae, frames.narrow(1, f, 1)));
  }
  return torch::cat(latents, 1);
}

torch::Tensor tiny_text_embeddings(const ModelComponents& components, int64_t batch) {
  return torch::zeros({batch, components.text_tokens, components.text_embed_dim},
                      torch::TensorOptions().dtype(components.dtype).device(components.device));
}

}  // namespace t4g
