// DiTFlow's guided sampling (see motion_transfer.h): a before-step hook on the sampler that runs
// the Adam iterations of the guided steps. The loss forwards use the conditional embeddings only
// and stop after the last AMF block (the reference bypasses the later blocks the same way); the
// denoising step itself is the sampler's ordinary CFG step from the optimised latents (or with the
// optimised embeddings). On a guided step the hook first computes the injected video K/V (one
// forward of the noised reference, stopped after the last injection block) and hands them both to
// the loss forwards (as probes) and to the sampler's CFG forward (StepOverrides). The reference's
// AMP GradScaler is not reproduced: its scaling only matters for fp16, and its skip of non-finite
// steps is kept (a non-finite loss skips the update).
#include "eval/motion_transfer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "common/shape_string.h"
#include "models/embeddings.h"

namespace t4g {
namespace {

constexpr const char* kPositionsFormat = "t4g-ditflow-positions";

ErrorContext option_context(const std::string& key, const std::string& expected, const std::string& got) {
  ErrorContext ctx;
  ctx.key = key;
  ctx.expected = expected;
  ctx.got = got;
  return ctx;
}

std::string table_name(LearnedPositions::Kind kind, int64_t timestep) {
  return (kind == LearnedPositions::Kind::kRope ? "rope." : "pos_embedding.") + std::to_string(timestep);
}

// The tables a model of this form uses for a latent grid (float32, on `device`): RoPE as
// [2 (q, k), 2 (cos, sin), N, head_dim] or the sin-cos video rows as [1, N, D].
torch::Tensor default_positions(const CogVideoXTransformerConfig& config, const SampleGeometry& g,
                                const torch::Device& device) {
  if (config.use_rotary_positional_embeddings) {
    const RotaryEmbedding rope =
        cogvideox_rotary_embedding(config, g.latent_frames, g.latent_height, g.latent_width, device);
    const torch::Tensor pair = torch::stack({rope.cos, rope.sin}, 0).to(torch::kFloat32);
    return torch::stack({pair, pair}, 0);
  }
  return cogvideox_sincos_video_table(config, g.latent_frames, g.latent_height, g.latent_width)
      .to(device, torch::kFloat32)
      .unsqueeze(0);
}

// Forward options carrying `table` (the layout of default_positions).
TransformerForwardOptions positions_forward(LearnedPositions::Kind kind, const torch::Tensor& table) {
  TransformerForwardOptions forward;
  if (kind == LearnedPositions::Kind::kRope) {
    forward.rope = {table[0][0], table[0][1]};
    forward.key_rope = {table[1][0], table[1][1]};
  } else {
    forward.video_pos_embedding = table;
  }
  return forward;
}

void set_positions(StepOverrides& out, LearnedPositions::Kind kind, const torch::Tensor& table) {
  const TransformerForwardOptions forward = positions_forward(kind, table.detach());
  out.rope = forward.rope;
  out.key_rope = forward.key_rope;
  out.video_pos_embedding = forward.video_pos_embedding;
}

// DiTFlow's KV copy (motion_guidance.py Guidance.run on a guided step): the reference latents
// noised to timestep t with the generation's initial noise, scheduler.add_noise(motion_latent,
// init_latents, t) in the latents' dtype; one forward with the target prompt (guidance_embeds[1:2])
// and the default positions (the call passes no rope / pos_embedding); the video rows of K (after
// qk-norm and RoPE) and V of each injection block, as InjectionProcessor's copy_kv keeps them. The
// reference runs the whole transformer; the blocks after the last injection block cannot change
// these K/V, so the forward stops there.
std::map<int64_t, VideoKeyValue> reference_key_values(CogVideoXTransformer3DModel& transformer,
                                                      const CogVideoXScheduler& scheduler,
                                                      const torch::Tensor& reference, const torch::Tensor& noise,
                                                      const torch::Tensor& prompt, int64_t timestep,
                                                      const std::vector<int64_t>& blocks) {
  torch::NoGradGuard no_grad;
  const torch::Tensor t = torch::full({1}, timestep, torch::TensorOptions().dtype(torch::kLong));
  const torch::Tensor noisy = scheduler.add_noise(reference.to(noise.scalar_type()), noise, t);
  ProbeOptions probes;
  probes.key_value_layers.insert(blocks.begin(), blocks.end());
  probes.stop_after_last_capture = true;
  TransformerForwardOptions forward;
  forward.probes = &probes;
  const ProbeCapture captured = transformer->forward(noisy, prompt, t, forward).captured;
  const int64_t text_len = prompt.size(1);
  std::map<int64_t, VideoKeyValue> kv;
  for (const int64_t b : probes.key_value_layers) {
    kv[b] = {captured.key.at(b).slice(2, text_len), captured.value.at(b).slice(2, text_len)};
  }
  return kv;
}

}  // namespace

void save_learned_positions(const std::string& path, const LearnedPositions& positions) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [t, table] : positions.tables) tensors[table_name(positions.kind, t)] = table.detach().cpu();
  save_safetensors(
      path, tensors,
      {{"format", kPositionsFormat}, {"kind", positions.kind == LearnedPositions::Kind::kRope ? "rope" : "sincos"}});
}

LearnedPositions load_learned_positions(const std::string& path) {
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(is_regular_file(path), ctx, "positional-embedding file not found: ", path);
  const SafetensorsFile file(path);
  const auto& meta = file.metadata();
  const auto format = meta.find("format");
  const auto kind = meta.find("kind");
  ctx.key = "__metadata__.format";
  ctx.expected = kPositionsFormat;
  ctx.got = format == meta.end() ? "none" : format->second;
  T4G_CHECK_CTX(format != meta.end() && format->second == kPositionsFormat && kind != meta.end() &&
                    (kind->second == "rope" || kind->second == "sincos"),
                ctx, path, " is not a positional-embedding file written by `t4g transfer --target posemb` (metadata ",
                "format = ", kPositionsFormat, ", kind = rope|sincos)");
  LearnedPositions positions;
  positions.kind = kind->second == "rope" ? LearnedPositions::Kind::kRope : LearnedPositions::Kind::kSinCos;
  const std::string prefix = positions.kind == LearnedPositions::Kind::kRope ? "rope." : "pos_embedding.";
  for (const std::string& name : file.names()) {
    ctx.key.clear();
    ctx.tensor = name;
    size_t used = 0;
    int64_t t = -1;
    const bool named = name.compare(0, prefix.size(), prefix) == 0;
    if (named) {
      try {
        t = std::stoll(name.substr(prefix.size()), &used);
      } catch (const std::exception&) {
        used = 0;
      }
    }
    ctx.expected = prefix + "<timestep>";
    ctx.got = name;
    T4G_CHECK_CTX(named && used > 0 && used == name.size() - prefix.size(), ctx, path, ": unexpected tensor ", name,
                  " (expected ", ctx.expected, ")");
    const torch::Tensor table = file.tensor(name).to(torch::kFloat32).clone();
    const bool rope_shape = table.dim() == 4 && table.size(0) == 2 && table.size(1) == 2;
    const bool sincos_shape = table.dim() == 3 && table.size(0) == 1;
    ctx.expected = positions.kind == LearnedPositions::Kind::kRope ? "[2, 2, N, head_dim]" : "[1, N, D]";
    ctx.got = shape_string(table.sizes());
    T4G_CHECK_CTX(positions.kind == LearnedPositions::Kind::kRope ? rope_shape : sincos_shape, ctx, path, ": ", name,
                  " must be ", ctx.expected, ", got ", ctx.got);
    positions.tables[t] = table;
  }
  ctx.tensor.clear();
  T4G_CHECK_CTX(!positions.tables.empty(), ctx, path, " holds no positional tables");
  return positions;
}

int64_t resolve_guidance_steps(const MotionTransferOptions& options) {
  const int64_t steps = options.sample.steps;
  const int64_t guided =
      options.guidance_steps >= 0
          ? options.guidance_steps
          : std::max<int64_t>(1, static_cast<int64_t>(std::lround(0.2 * static_cast<double>(steps))));
  T4G_CHECK_CTX(guided <= steps,
                option_context("guidance_steps", "in [0, " + std::to_string(steps) + "]", std::to_string(guided)),
                "guidance_steps = ", guided, " exceeds the ", steps, " denoising steps");
  return guided;
}

void check_transfer_options(const CogVideoXTransformerConfig& config, const MotionTransferOptions& options) {
  resolve_sample_geometry(config, options.sample);
  resolve_guidance_steps(options);
  T4G_CHECK_CTX(options.iterations >= 0, option_context("iterations", ">= 0", std::to_string(options.iterations)),
                "iterations must be >= 0, got ", options.iterations);
  for (const auto& [name, lr] :
       {std::pair<const char*, double>{"lr_start", options.lr_start}, {"lr_end", options.lr_end}}) {
    T4G_CHECK_CTX(std::isfinite(lr) && lr > 0, option_context(name, "a positive number", std::to_string(lr)), name,
                  " must be positive, got ", lr);
  }
  T4G_CHECK_CTX(options.amf.temperature > 0 && std::isfinite(options.amf.temperature),
                option_context("temperature", "a positive number", std::to_string(options.amf.temperature)),
                "the AMF temperature must be positive, got ", options.amf.temperature);
  const std::vector<int64_t> amf_blocks =
      options.blocks.empty() ? std::vector<int64_t>{default_amf_block(config)} : options.blocks;
  check_amf_blocks(config, amf_blocks);
  check_amf_timestep(options.reference_timestep);
  for (const int64_t b : options.injection_blocks) {
    T4G_CHECK_CTX(b >= 0 && b < config.num_layers,
                  option_context("injection_blocks", "block indices in [0, " + std::to_string(config.num_layers) + ")",
                                 std::to_string(b)),
                  "KV injection block ", b, " is outside the model's transformer blocks [0, ", config.num_layers,
                  ") (DiTFlow: 0)");
    const bool amf_block = std::find(amf_blocks.begin(), amf_blocks.end(), b) != amf_blocks.end();
    T4G_CHECK_CTX(!(amf_block && options.iterations > 0),
                  option_context("injection_blocks", "blocks other than the AMF blocks", std::to_string(b)),
                  "KV injection block ", b,
                  " is also an AMF block; DiTFlow's guidance step copies that block's K/V "
                  "for the loss instead of injecting them, so choose other blocks");
  }
}

MotionTransferResult transfer_motion(ModelComponents& components, const torch::Tensor& reference_latents,
                                     const PromptEmbeddings& prompts, const torch::Tensor& empty_prompt_embeds,
                                     const MotionTransferOptions& options, const LearnedPositions* reuse) {
  T4G_CHECK(!components.transformer.is_empty(), "motion transfer needs the transformer");
  CogVideoXTransformer3DModel& transformer = components.transformer;
  const CogVideoXTransformerConfig& config = transformer->config();
  check_transfer_options(config, options);
  check_prompt_embeddings(prompts, config, options.sample);
  ErrorContext batch_ctx;
  batch_ctx.tensor = "prompt_embeds";
  batch_ctx.expected = "one prompt (B = 1)";
  batch_ctx.got = shape_string(prompts.positive.sizes());
  T4G_CHECK_CTX(prompts.positive.size(0) == 1, batch_ctx, "motion transfer makes one video at a time, got ",
                prompts.positive.size(0), " prompts");

  const SampleGeometry geometry = resolve_sample_geometry(config, options.sample);
  const int64_t guided = resolve_guidance_steps(options);
  const torch::Device device = transformer->parameters().front().device();
  const LearnedPositions::Kind kind =
      config.use_rotary_positional_embeddings ? LearnedPositions::Kind::kRope : LearnedPositions::Kind::kSinCos;
  T4G_CHECK_CTX(options.target == TransferTarget::kLatents || config.uses_sincos_positions() ||
                    config.use_rotary_positional_embeddings,
                option_context("target", "latents for this model", "posemb"),
                "this model has a learned positional table (image-to-video form); optimise the latents instead");
  // The sin-cos table fed back to the model must be rebuilt the same way the model builds it.
  const torch::Tensor initial_positions = default_positions(config, geometry, device);

  // KV injection runs on the guided steps whether or not they optimise (the reference's
  // injection_blocks act on every step of guidance_schedule, --no_guidance included).
  const bool inject = guided > 0 && !options.injection_blocks.empty();
  const bool optimise = reuse == nullptr && guided > 0 && options.iterations > 0;
  if (inject || optimise) {
    ErrorContext ctx;
    ctx.tensor = "reference latents";
    ctx.expected = "[1, " + std::to_string(geometry.latent_frames) + ", " + std::to_string(geometry.latent_channels) +
                   ", " + std::to_string(geometry.latent_height) + ", " + std::to_string(geometry.latent_width) + "]";
    ctx.got = reference_latents.defined() ? shape_string(reference_latents.sizes()) : "none";
    T4G_CHECK_CTX(reference_latents.defined() || optimise, ctx,
                  "KV injection needs the reference video (its noised latents give the injected K/V), even when "
                  "reusing saved positional embeddings; give the reference or turn injection off (--no-injection)");
    T4G_CHECK_CTX(reference_latents.defined() && reference_latents.dim() == 5 &&
                      reference_latents.sizes() == c10::IntArrayRef(geometry.latent_shape(1)),
                  ctx, "the reference latents must match the generation's latent size ", ctx.expected, " (",
                  geometry.frames, " frames of ", geometry.height, "x", geometry.width, "), got ", ctx.got);
  }

  MotionTransferResult result;
  if (reuse != nullptr) {
    ErrorContext ctx;
    ctx.key = "target";
    ctx.expected = "posemb";
    ctx.got = "latents";
    T4G_CHECK_CTX(options.target == TransferTarget::kPositions, ctx,
                  "reusing saved positional embeddings needs target posemb");
    ctx.key.clear();
    ctx.expected = kind == LearnedPositions::Kind::kRope ? "RoPE tables (5B form)" : "sin-cos tables (2B form)";
    ctx.got = reuse->kind == LearnedPositions::Kind::kRope ? "RoPE tables" : "sin-cos tables";
    T4G_CHECK_CTX(reuse->kind == kind, ctx, "the saved positional embeddings are ", ctx.got, " but this model needs ",
                  ctx.expected);
    for (const auto& [t, table] : reuse->tables) {
      ctx.tensor = table_name(kind, t);
      ctx.expected = shape_string(initial_positions.sizes());
      ctx.got = shape_string(table.sizes());
      T4G_CHECK_CTX(table.sizes() == initial_positions.sizes(), ctx, "saved positional table ", ctx.tensor, " is ",
                    ctx.got, ", this generation needs ", ctx.expected, " (another frame count or size?)");
    }
  } else if (optimise) {
    ErrorContext text_ctx;
    text_ctx.tensor = "empty_prompt_embeds";
    text_ctx.expected = shape_string(prompts.positive.sizes()) + " like prompt_embeds";
    text_ctx.got = empty_prompt_embeds.defined() ? shape_string(empty_prompt_embeds.sizes()) : "none";
    T4G_CHECK_CTX(empty_prompt_embeds.defined() && empty_prompt_embeds.sizes() == prompts.positive.sizes(), text_ctx,
                  "the reference forward needs the embeddings of the empty prompt, ", text_ctx.expected, ", got ",
                  text_ctx.got);
    ReferenceAmfOptions ref;
    ref.blocks = options.blocks;
    ref.timestep = options.reference_timestep;
    ref.amf = options.amf;
    result.reference_amf =
        extract_reference_amf(transformer, reference_latents.to(device), empty_prompt_embeds.to(device), ref);
  }

  // lr of guided step i: numpy.linspace(lr_start, lr_end, guided + 1)[i].
  auto step_lr = [&](int64_t i) {
    return guided == 0 ? options.lr_start
                       : options.lr_start +
                             (options.lr_end - options.lr_start) * static_cast<double>(i) / static_cast<double>(guided);
  };
  const torch::Tensor cond = prompts.positive.to(device);
  torch::Tensor positions = initial_positions;  // carried over between guided steps (kPositions)
  if (options.target == TransferTarget::kPositions) result.positions.kind = kind;

  auto record_loss = [&](int64_t i, int64_t t, int64_t k, double lr, const torch::Tensor& loss) {
    TransferIteration it;
    it.step = i;
    it.timestep = t;
    it.iteration = k;
    it.lr = lr;
    it.loss = loss.item<double>();
    result.iterations.push_back(it);
    T4G_DEBUG("transfer: step ", i, " (t=", t, ") iteration ", k, " AMF loss ", it.loss);
    return std::isfinite(it.loss);
  };

  const torch::Tensor reference_on_device = inject ? reference_latents.to(device) : torch::Tensor();
  torch::Tensor generation_noise;  // z_T: the latents the sampler's hook sees at step 0

  SampleOptions sample = options.sample;
  sample.before_step = [&](int64_t i, int64_t t, const torch::Tensor& latents) -> StepOverrides {
    if (inject && i == 0) generation_noise = latents.detach().clone();
    if (i >= guided) return {};  // plain denoising; the default embeddings are back, no injection
    result.guided_timesteps.push_back(t);
    StepOverrides out;
    ProbeOptions injection;  // this step's K/V, in every forward of the step
    if (inject) {
      injection.video_key_values = reference_key_values(transformer, components.scheduler, reference_on_device,
                                                        generation_noise, cond, t, options.injection_blocks);
      out.video_key_values = injection.video_key_values;
    }
    if (reuse != nullptr) {
      const auto found = reuse->tables.find(t);
      ErrorContext ctx;
      ctx.tensor = table_name(kind, t);
      ctx.expected = "a table for every guided timestep";
      T4G_CHECK_CTX(found != reuse->tables.end(), ctx, "the saved positional embeddings have no table for timestep ", t,
                    " (guided step ", i, "): they were made with other --steps / --guidance-steps");
      result.positions.tables[t] = found->second;
      set_positions(out, kind, found->second.to(device));
      return out;
    }
    if (options.iterations == 0) return out;
    const auto start = std::chrono::steady_clock::now();
    torch::AutoGradMode grad(true);
    const double lr = step_lr(i);
    const ProbeOptions* loss_probes = inject ? &injection : nullptr;
    if (options.target == TransferTarget::kLatents) {
      torch::Tensor x = latents.detach().to(torch::kFloat32).clone().requires_grad_(true);
      torch::optim::Adam adam({x}, torch::optim::AdamOptions(lr));  // a fresh optimiser every step
      TransformerForwardOptions loss_forward;
      loss_forward.probes = loss_probes;
      for (int64_t k = 0; k < options.iterations; ++k) {
        adam.zero_grad();
        const torch::Tensor loss = amf_guidance_loss(transformer, x, cond, t, result.reference_amf, options.amf,
                                                     options.threshold, loss_forward);
        if (!record_loss(i, t, k, lr, loss)) {
          T4G_WARN("transfer: non-finite AMF loss at step ", i, " iteration ", k, "; update skipped");
          continue;
        }
        loss.backward();
        adam.step();
      }
      out.latents = x.detach();
    } else {
      torch::Tensor table = positions.detach().clone().requires_grad_(true);
      torch::optim::Adam adam({table}, torch::optim::AdamOptions(lr));
      TransformerForwardOptions loss_forward = positions_forward(kind, table);
      loss_forward.probes = loss_probes;
      for (int64_t k = 0; k < options.iterations; ++k) {
        adam.zero_grad();
        const torch::Tensor loss = amf_guidance_loss(transformer, latents, cond, t, result.reference_amf, options.amf,
                                                     options.threshold, loss_forward);
        if (!record_loss(i, t, k, lr, loss)) {
          T4G_WARN("transfer: non-finite AMF loss at step ", i, " iteration ", k, "; update skipped");
          continue;
        }
        loss.backward();
        adam.step();
      }
      positions = table.detach();
      result.positions.tables[t] = positions.cpu();
      set_positions(out, kind, positions);
    }
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
    result.guidance_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return out;
  };

  if (sample.decode) {
    T4G_CHECK(!components.vae.is_empty(), "decoding the transferred video needs the VAE, which is not loaded");
    result.sample = sample_video(components, prompts, sample);
  } else {
    result.sample.latents = denoise_latents(transformer, components.scheduler, prompts, sample, &result.sample);
  }
  return result;
}

}  // namespace t4g
