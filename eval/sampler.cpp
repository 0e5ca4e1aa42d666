// CogVideoXPipeline.__call__ in LibTorch (see sampler.h). The order of operations and the dtypes
// follow the reference line by line (noise drawn on the CPU in the latent dtype, the prediction
// taken to float32 before guidance, the latents cast back after every step), because the parity
// tests compare per-step latents against diffusers' own run.
#include "eval/sampler.h"

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/shape_string.h"
#include "models/embeddings.h"

namespace t4g {
namespace {

constexpr int64_t kSpatialCompression = 8;  // CogVideoX VAE: 2^(4 blocks - 1)

ErrorContext option_context(const std::string& key, const std::string& expected, const std::string& got) {
  ErrorContext ctx;
  ctx.key = key;
  ctx.expected = expected;
  ctx.got = got;
  return ctx;
}

// The guided prediction from the model's float32 output over the batch [uncond ; cond ; perturbed]
// (uncond present with CFG, perturbed with CAG), each part B videos.
torch::Tensor guide(const torch::Tensor& prediction, int64_t parts, bool cfg, double guidance, bool cag,
                    double cag_scale) {
  const std::vector<torch::Tensor> chunks = prediction.chunk(parts);
  const torch::Tensor& cond = cfg ? chunks[1] : chunks[0];
  torch::Tensor out = cfg ? chunks[0] + guidance * (cond - chunks[0]) : cond;
  if (cag) out = out + cag_scale * (cond - chunks.back());
  return out;
}

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace

std::vector<int64_t> SampleGeometry::latent_shape(int64_t batch) const {
  return {batch, latent_frames, latent_channels, latent_height, latent_width};
}

CagMode resolve_cag_mode(const SampleOptions& options) {
  if (options.cag_mode.has_value()) return *options.cag_mode;
  return options.guidance_scale > 1.0 ? CagMode::kDropWithoutRenorm : CagMode::kRenormalized;
}

std::optional<CagMode> parse_cag_mode(const std::string& name, const std::string& flag) {
  if (name == "auto") return std::nullopt;
  if (name == "drop") return CagMode::kDropWithoutRenorm;
  if (name == "renorm") return CagMode::kRenormalized;
  throw Error(str(flag, " must be auto, drop or renorm, got '", name, "'"),
              option_context(flag, "auto, drop or renorm", name));
}

const char* cag_mode_name(CagMode mode) {
  switch (mode) {
    case CagMode::kNone:
      return "none";
    case CagMode::kRenormalized:
      return "renorm";
    case CagMode::kDropWithoutRenorm:
      return "drop";
  }
  return "none";
}

SampleGeometry resolve_sample_geometry(const CogVideoXTransformerConfig& config, const SampleOptions& options) {
  T4G_CHECK_CTX(options.steps >= 1, option_context("steps", ">= 1", std::to_string(options.steps)),
                "sampling needs at least one step, got steps = ", options.steps);
  T4G_CHECK_CTX(std::isfinite(options.guidance_scale),
                option_context("guidance_scale", "a finite number", std::to_string(options.guidance_scale)),
                "guidance_scale must be finite, got ", options.guidance_scale);
  T4G_CHECK_CTX(config.in_channels == config.out_channels,
                option_context("model", "a text-to-video transformer",
                               "in_channels " + std::to_string(config.in_channels)),
                "this transformer takes ", config.in_channels, " input channels for ", config.out_channels,
                " output channels: an image-to-video model, which needs an image; sampling is text-to-video only");

  SampleGeometry g;
  const int64_t ratio = config.temporal_compression_ratio;
  g.frames = options.frames > 0 ? options.frames : config.sample_frames;
  g.height = options.height > 0 ? options.height : config.sample_height * kSpatialCompression;
  g.width = options.width > 0 ? options.width : config.sample_width * kSpatialCompression;
  T4G_CHECK_CTX(g.frames >= 1 && (g.frames - 1) % ratio == 0,
                option_context("frames", std::to_string(ratio) + "k+1", std::to_string(g.frames)), "frames = ",
                g.frames, " cannot be made by the CogVideoX VAE: it decodes ", ratio, "k+1 frames (1, ", ratio + 1,
                ", ..., ", 12 * ratio + 1, ", ...), latent k giving frames ", ratio, "k-", ratio - 1, "..", ratio,
                "k");
  const int64_t multiple = kSpatialCompression * config.patch_size;
  for (const auto& [name, value] : {std::pair<const char*, int64_t>{"height", g.height}, {"width", g.width}}) {
    T4G_CHECK_CTX(value > 0 && value % multiple == 0,
                  option_context(name, "a positive multiple of " + std::to_string(multiple), std::to_string(value)),
                  name, " = ", value, " must be a positive multiple of ", multiple, " (VAE stride ",
                  kSpatialCompression, " x patch size ", config.patch_size, ")");
  }
  g.latent_frames = (g.frames - 1) / ratio + 1;
  if (config.patch_size_t.has_value() && g.latent_frames % *config.patch_size_t != 0) {
    // CogVideoX 1.5: pad the latent frames to a multiple of the temporal patch; the padding is
    // dropped before decoding.
    g.padding_frames = *config.patch_size_t - g.latent_frames % *config.patch_size_t;
    g.latent_frames += g.padding_frames;
  }
  g.latent_channels = config.in_channels;
  g.latent_height = g.height / kSpatialCompression;
  g.latent_width = g.width / kSpatialCompression;

  if (!options.cag_layers.empty()) {
    T4G_CHECK_CTX(resolve_cag_mode(options) != CagMode::kNone,
                  option_context("cag_mode", "auto, drop or renorm", "none"),
                  "CAG layers are set but cag_mode is none");
    T4G_CHECK_CTX(std::isfinite(options.cag_scale),
                  option_context("cag_scale", "a finite number", std::to_string(options.cag_scale)),
                  "cag_scale must be finite, got ", options.cag_scale);
    for (const int64_t layer : options.cag_layers) {
      T4G_CHECK_CTX(layer >= 0 && layer < config.num_layers,
                    option_context("cag_layers", "block indices in [0, " + std::to_string(config.num_layers) + ")",
                                   std::to_string(layer)),
                    "CAG layer ", layer, " is outside the model's transformer blocks [0, ", config.num_layers,
                    ") (2B: 30 blocks, DiffTrack uses 13,17,21; 5B: 42 blocks, 15,17,18)");
    }
  }
  return g;
}

void check_prompt_embeddings(const PromptEmbeddings& prompts, const CogVideoXTransformerConfig& config,
                             const SampleOptions& options) {
  const std::string expected =
      "[B, " + std::to_string(config.max_text_seq_length) + ", " + std::to_string(config.text_embed_dim) + "]";
  auto check = [&](const torch::Tensor& t, const char* name) {
    ErrorContext ctx;
    ctx.tensor = name;
    ctx.expected = expected;
    ctx.got = t.defined() ? shape_string(t.sizes()) : "none";
    T4G_CHECK_CTX(t.defined() && t.dim() == 3 && t.size(0) >= 1 && t.size(1) == config.max_text_seq_length &&
                      t.size(2) == config.text_embed_dim,
                  ctx, name, " must be ", expected, " (the model's max_text_seq_length and text_embed_dim), got ",
                  ctx.got);
  };
  check(prompts.positive, "prompt_embeds");
  if (options.guidance_scale <= 1.0) return;
  ErrorContext ctx;
  ctx.tensor = "negative_prompt_embeds";
  ctx.expected = expected;
  ctx.got = "none";
  T4G_CHECK_CTX(prompts.negative.defined(), ctx,
                "negative_prompt_embeds missing: classifier-free guidance (scale > 1) needs the embeddings of the "
                "negative prompt (diffusers uses the T5 embedding of \"\")");
  check(prompts.negative, "negative_prompt_embeds");
  ctx.expected = shape_string(prompts.positive.sizes()) + " like prompt_embeds";
  ctx.got = shape_string(prompts.negative.sizes());
  T4G_CHECK_CTX(prompts.negative.sizes() == prompts.positive.sizes(), ctx,
                "negative_prompt_embeds must have the shape of prompt_embeds: expected ", ctx.expected, ", got ",
                ctx.got);
}

torch::Tensor initial_noise(const std::vector<int64_t>& shape, torch::ScalarType dtype, torch::Generator& generator,
                            torch::Device device) {
  T4G_CHECK(generator.device().is_cpu(), "initial_noise draws from a CPU generator (as the pipelines do)");
  return torch::randn(shape, generator, torch::TensorOptions().dtype(dtype)).to(device);
}

double dynamic_guidance_scale(double guidance_scale, int64_t timestep, int64_t steps) {
  const double n = static_cast<double>(steps);
  const double phase = std::pow((n - static_cast<double>(timestep)) / n, 5.0);
  return 1.0 + guidance_scale * (1.0 - std::cos(M_PI * phase)) / 2.0;
}

torch::Tensor denoise_latents(CogVideoXTransformer3DModel& transformer, const CogVideoXScheduler& scheduler,
                              const PromptEmbeddings& prompts, const SampleOptions& options, SampleResult* result) {
  T4G_CHECK(!transformer.is_empty(), "sampling needs a transformer");
  const CogVideoXTransformerConfig& config = transformer->config();
  const SampleGeometry geometry = resolve_sample_geometry(config, options);
  const bool cfg = options.guidance_scale > 1.0;
  const bool cag = !options.cag_layers.empty();
  check_prompt_embeddings(prompts, config, options);

  torch::NoGradGuard no_grad;
  const torch::Tensor any = transformer->parameters().front();
  const torch::Device device = any.device();
  const torch::ScalarType latent_dtype = options.latent_dtype.value_or(any.scalar_type());
  const int64_t batch = prompts.positive.size(0);

  // The batch is [negative ; positive] with CFG, plus [positive] again for CAG's perturbed branch.
  std::vector<torch::Tensor> parts;
  if (cfg) parts.push_back(prompts.negative);
  parts.push_back(prompts.positive);
  if (cag) parts.push_back(prompts.positive);
  const int64_t copies = static_cast<int64_t>(parts.size());
  const torch::Tensor encoder = torch::cat(parts, 0).to(device, latent_dtype);

  ProbeOptions probes;
  TransformerForwardOptions forward;
  if (cag) {
    probes.cag_layers = options.cag_layers;
    probes.cag_mode = resolve_cag_mode(options);
    for (int64_t i = 0; i < batch; ++i) probes.cag_batch_indices.push_back((copies - 1) * batch + i);
    forward.probes = &probes;
  }
  if (config.use_rotary_positional_embeddings) {
    // Once per call, from the latent size, as the pipeline does.
    forward.rope = cogvideox_rotary_embedding(config, geometry.latent_frames, geometry.latent_height,
                                              geometry.latent_width, device);
  }

  torch::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  const std::vector<int64_t> shape = geometry.latent_shape(batch);
  torch::Tensor latents;
  if (options.initial_latents.defined()) {
    ErrorContext ctx;
    ctx.tensor = "initial latents";
    ctx.expected = shape_string(shape);
    ctx.got = shape_string(options.initial_latents.sizes());
    T4G_CHECK_CTX(options.initial_latents.sizes() == c10::IntArrayRef(shape), ctx,
                  "initial latents must be [B, F_lat, C, H/8, W/8] = ", ctx.expected, ", got ", ctx.got);
    latents = options.initial_latents.to(device, latent_dtype);
  } else {
    latents = initial_noise(shape, latent_dtype, generator, device);  // init_noise_sigma is 1
  }

  CogVideoXScheduler steps_scheduler = scheduler;  // set_timesteps changes the step size
  const torch::Tensor timestep_table = steps_scheduler.set_timesteps(options.steps).to(torch::kCPU);
  std::vector<int64_t> timesteps(timestep_table.data_ptr<int64_t>(),
                                 timestep_table.data_ptr<int64_t>() + timestep_table.numel());
  const bool dpm = options.sampler == SamplerKind::kDpm ||
                   (options.sampler == SamplerKind::kFromConfig &&
                    scheduler.config().class_name == "CogVideoXDPMScheduler");
  if (result != nullptr) {
    result->timesteps = timesteps;
    result->step_seconds.clear();
  }

  ProgressOptions bar_options;
  bar_options.unit = "steps";
  bar_options.enabled = options.progress;
  ProgressBar bar("sample", static_cast<int64_t>(timesteps.size()), bar_options);
  std::optional<torch::Tensor> old_pred_original;
  for (size_t i = 0; i < timesteps.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    const int64_t t = timesteps[i];
    TransformerForwardOptions step_forward = forward;
    ProbeOptions step_probes;  // the call's probes plus this step's K/V replacements
    if (options.before_step) {
      StepOverrides change = options.before_step(static_cast<int64_t>(i), t, latents);
      // The reference steps from the optimised latents as they are (float32); the cast below
      // brings them back to the latent dtype after the step.
      if (change.latents.defined()) latents = change.latents.detach().to(device);
      if (change.rope.defined()) step_forward.rope = change.rope;
      if (change.key_rope.defined()) step_forward.key_rope = change.key_rope;
      if (change.video_pos_embedding.defined()) step_forward.video_pos_embedding = change.video_pos_embedding;
      if (!change.video_key_values.empty()) {
        step_probes = probes;
        step_probes.video_key_values = std::move(change.video_key_values);
        step_forward.probes = &step_probes;
      }
    }
    const torch::Tensor input = copies > 1 ? torch::cat(std::vector<torch::Tensor>(copies, latents), 0) : latents;
    const torch::Tensor timestep = torch::full({input.size(0)}, t, torch::TensorOptions().dtype(torch::kLong).device(device));
    const torch::Tensor prediction =
        transformer->forward(input, encoder, timestep, step_forward).sample.to(torch::kFloat32);
    const double guidance =
        options.dynamic_cfg ? dynamic_guidance_scale(options.guidance_scale, t, options.steps) : options.guidance_scale;
    const torch::Tensor guided = guide(prediction, copies, cfg, guidance, cag, options.cag_scale);
    if (dpm) {
      const std::optional<int64_t> back = i > 0 ? std::optional<int64_t>(timesteps[i - 1]) : std::nullopt;
      StepOutput out = steps_scheduler.dpm_step(guided, old_pred_original, t, back, latents, generator);
      latents = out.prev_sample;
      old_pred_original = out.pred_original_sample;
    } else {
      latents = steps_scheduler.ddim_step(guided, t, latents).prev_sample;
    }
    latents = latents.to(latent_dtype);
    synchronize(device);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (result != nullptr) result->step_seconds.push_back(seconds);
    if (options.on_step) {
      SampleStep step;
      step.index = static_cast<int64_t>(i);
      step.timestep = t;
      step.guidance_scale = guidance;
      step.latents = &latents;
      step.prediction = &guided;
      step.seconds = seconds;
      options.on_step(step);
    }
    bar.set_postfix("t=" + std::to_string(t));
    bar.update();
  }
  bar.finish();
  return latents;
}

torch::Tensor decode_latents_to_video(AutoencoderKLCogVideoX& vae, const torch::Tensor& latents, int64_t padding_frames) {
  T4G_CHECK(!vae.is_empty(), "decoding needs the VAE");
  ErrorContext ctx;
  ctx.tensor = "latents";
  ctx.expected = "[B, F, " + std::to_string(vae->config().latent_channels) + ", h, w]";
  ctx.got = shape_string(latents.sizes());
  T4G_CHECK_CTX(latents.dim() == 5 && latents.size(2) == vae->config().latent_channels &&
                    latents.size(1) > padding_frames,
                ctx, "latents to decode must be ", ctx.expected, " (the VAE's latent channels), got ", ctx.got);
  torch::NoGradGuard no_grad;
  const torch::Tensor z = latents.narrow(1, padding_frames, latents.size(1) - padding_frames).permute({0, 2, 1, 3, 4});
  return vae->decode_latents(z);
}

SampleResult sample_video(ModelComponents& components, const PromptEmbeddings& prompts, const SampleOptions& options) {
  T4G_CHECK(!components.transformer.is_empty(), "sampling needs the transformer (ComponentRequest.transformer)");
  const SampleGeometry geometry = resolve_sample_geometry(components.transformer->config(), options);
  if (options.decode) {
    ErrorContext ctx;
    ctx.file = components.source;
    ctx.expected = "a VAE (vae/ in the pipeline folder)";
    T4G_CHECK_CTX(!components.vae.is_empty(), ctx, "decoding the sampled latents needs the VAE, which is not loaded");
    const CogVideoXVaeConfig& vae = components.vae->config();
    ctx.expected = "VAE latent channels " + std::to_string(geometry.latent_channels) + ", temporal ratio " +
                   std::to_string(components.transformer->config().temporal_compression_ratio) + ", spatial 8";
    ctx.got = "latent channels " + std::to_string(vae.latent_channels) + ", temporal ratio " +
              std::to_string(vae.temporal_compression_ratio) + ", spatial " +
              std::to_string(vae.spatial_compression());
    T4G_CHECK_CTX(vae.latent_channels == geometry.latent_channels &&
                      vae.temporal_compression_ratio == components.transformer->config().temporal_compression_ratio &&
                      vae.spatial_compression() == kSpatialCompression,
                  ctx, "the VAE does not fit the transformer: expected ", ctx.expected, ", got ", ctx.got);
  }
  SampleResult result;
  result.latents = denoise_latents(components.transformer, components.scheduler, prompts, options, &result);
  if (options.decode) {
    const auto start = std::chrono::steady_clock::now();
    const torch::Tensor video = decode_latents_to_video(components.vae, result.latents, geometry.padding_frames);
    result.frames = vae_output_to_frames(video);
    if (options.keep_video) result.video = video;
    if (result.frames.size(1) != geometry.frames) {
      // The reference decodes latents in chunks of 2, so an even latent count gives 4 more frames
      // than asked (13 frames -> 4 latents -> 16 frames); diffusers returns them all, and so do we.
      T4G_WARN("the VAE decoded ", result.frames.size(1), " frames for the ", geometry.frames,
               " asked: an even number of latent frames (", geometry.latent_frames - geometry.padding_frames,
               ") decodes to 4 per latent; frame counts with an odd latent count (9, 17, 25, 33, 41, 49) decode "
               "exactly");
    }
    result.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return result;
}

}  // namespace t4g
