// The fine-tuning loop (see trainer.h).
#include "train/trainer.h"

#include <c10/cuda/CUDACachingAllocator.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/rng.h"
#include "common/safetensors.h"
#include "data/loader.h"
#include "models/lora.h"
#include "models/text_encoder.h"
#include "models/trained_model.h"
#include "models/trainable.h"
#include "train/checkpoint.h"
#include "train/communicator.h"
#include "train/data_parallel_optimizer.h"
#include "train/datasets.h"
#include "train/dist_env.h"
#include "train/lr_schedule.h"
#include "train/metric_logger.h"
#include "train/rendezvous.h"
#include "train/tracking_eval.h"
#include "train/training_step.h"

namespace t4g {
namespace {

// Seed streams (derive_seed ids), one per purpose so that adding a draw never shifts another.
constexpr uint64_t kStreamNoise = 1;     // timesteps and noise of the diffusion loss
constexpr uint64_t kStreamQueries = 2;   // correspondence query sampling
constexpr uint64_t kStreamGlobal = 3;    // torch's global generator (dropout) per step
constexpr uint64_t kStreamLora = 4;      // LoRA initialisation
// Stream 6 draws the random base weights (tiny model, presets): models/trained_model.h base_model_seed.

LoraConfig lora_config(const Config& c) {
  LoraConfig l;
  l.rank = c.lora.rank;
  l.alpha = c.lora.alpha;
  l.dropout = c.lora.dropout;
  l.target_modules = c.lora.target_modules;
  l.validate();
  return l;
}

// Peak memory in GiB: CUDA allocator peak on GPU, the process's peak resident set on CPU.
double peak_memory_gib(const torch::Device& device) {
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0 * 1024.0);
  }
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / (1024.0 * 1024.0);  // kB
  }
  return 0.0;
}

// The text conditioning of a batch: the shards' precomputed embeddings; for models with random
// weights (tiny, presets), the empty-prompt zeros; otherwise the captions through the model's T5,
// cached by prompt under <out_dir>/text_cache so each caption is encoded once per run.
torch::Tensor batch_text(const Config& c, const TrainingModel& m, std::unique_ptr<TextEncoder>& encoder,
                         const data::Batch& batch) {
  if (batch.text_embedding.defined()) return batch.text_embedding.to(m.components.device, m.components.dtype);
  const auto b = static_cast<int64_t>(batch.ids.size());
  if (m.components.has_random_weights()) return tiny_text_embeddings(m.components, b);
  if (!encoder) {
    encoder = std::make_unique<TextEncoder>(TextEncoder::load(c.model.path, m.components.device, m.components.dtype));
    encoder->enable_cache(path_join(c.run.out_dir, "text_cache"));
  }
  return encoder->encode_cached(batch.prompts, m.components.text_tokens);
}

// Generator states saved in checkpoints: torch's global CPU generator (dropout, LoRA dropout).
std::map<std::string, torch::Tensor> rng_states() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return {{"torch_cpu", gen.get_state()}};
}
void restore_rng(const std::map<std::string, torch::Tensor>& states) {
  auto it = states.find("torch_cpu");
  if (it == states.end()) return;
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(it->second);
}

// The loader position of a checkpoint for this run's global batch (ranks x data.batch_size). The
// sampler's epoch order does not depend on the world size (one seeded permutation, rank r taking
// every W-th entry), so a position is really "samples of the epoch consumed": batch b of a global
// batch G covers samples [b G, (b + 1) G). A different G continues at the first batch that starts
// at or before the same sample (a few samples are seen twice when the sizes do not divide).
data::LoaderPosition convert_loader_position(const CheckpointState& saved, int64_t global_batch) {
  data::LoaderPosition p = saved.loader;
  if (saved.global_batch <= 0 || saved.global_batch == global_batch) return p;
  const int64_t consumed = p.batch * saved.global_batch;
  p.batch = consumed / global_batch;
  if (consumed % global_batch != 0) {
    T4G_WARN("train: the checkpoint's global batch (", saved.global_batch, ") does not divide into this run's (",
             global_batch, "): ", consumed - p.batch * global_batch, " samples of the epoch are seen again");
  }
  return p;
}

}  // namespace

TrainResult train(const Config& c, const TrainOptions& options) {
  const DistEnv env = DistEnv::from_env();
  set_log_rank(env.rank);
  const auto store = connect_store(env);
  CommunicatorOptions comm_options;
  comm_options.backend = parse_comm_backend(c.train.comm_backend, "train.comm_backend");
  // "auto" follows where the model runs (NCCL moves CUDA tensors only), not merely whether a GPU exists.
  comm_options.backend = comm_backend_for(comm_options.backend, resolve_device(c.model.device, env.local_rank));
  std::unique_ptr<Communicator> comm = make_communicator(env, store, comm_options);
  const bool main_rank = env.is_main();
  const uint64_t seed = static_cast<uint64_t>(c.run.seed);

  // ---- Data: synthetic shards are made once, by rank 0, before anyone reads them.
  const std::string shards = prepare_training_set(c, main_rank);
  comm->barrier();
  const DataFit fit = check_data_fit(c, shards);

  // ---- Model: components, refiner, adapters, what trains.
  TrainingModel m;
  {
    data::ShardReader probe(shards);
    bool all_latents = c.data.latents != "never";
    for (size_t i = 0; i < probe.size() && all_latents; ++i) all_latents = probe.entries()[i].has_latents;
    ComponentRequest request;
    // The VAE encodes frames when the shards carry no latents, and the held-out videos for tracking.
    request.vae = !all_latents || c.data.latents == "never" || (!options.evaluate && options.track_eval);
    // A random tiny base is exported as a whole pipeline, VAE included (models/trained_model.h).
    if (c.model.path.empty() && c.model.preset.empty()) request.vae = true;
    request.cuda_index = env.local_rank;
    ErrorContext ctx;
    ctx.file = c.model.path;
    ctx.key = "model.path";
    ctx.expected = "a diffusers pipeline (the base to fine-tune)";
    T4G_CHECK_CTX(trained_folder_kind(c.model.path) == TrainedFolderKind::kNone, ctx,
                  "model.path is a model t4g trained (an export or checkpoint): continue its run with --resume, or "
                  "start a new one from its base pipeline");
    m.components = load_model_components(c.model, base_model_seed(c.run.seed), request);
  }
  auto& transformer = m.components.transformer;
  const int64_t num_layers = transformer->config().num_layers;
  transformer->set_gradient_checkpointing(c.model.gradient_checkpointing, c.model.checkpoint_keep_attention);
  if (c.train.trainable == "lora") add_lora(*transformer, lora_config(c), derive_seed(seed, {kStreamLora}));
  TrainableOptions to;
  // The recipe says "refiner" for "nothing of the backbone" (the refiner always trains).
  to.mode = parse_train_mode(c.train.trainable == "refiner" ? "none" : c.train.trainable);
  to.blocks = c.train.trainable_blocks;
  NamedParameters trainable = set_trainable(*transformer, to);
  if (c.refiner.enabled) {
    m.refiner = Refiner(refiner_config_from_recipe(c.refiner, num_layers), transformer->config().inner_dim());
    m.refiner->to(m.components.device, m.components.dtype);
    for (const auto& item : m.refiner->named_parameters()) trainable.emplace_back("refiner." + item.key(), item.value());
    // Part of the model from now on: evaluation samples (VBench) run the network being trained.
    attach_refiner(m.components, m.refiner);
  }
  for (auto& [name, p] : trainable) p.set_requires_grad(true);
  m.params = FlatParameters(trainable);
  transformer->train(c.train.trainable != "refiner");
  if (m.refiner) m.refiner->train();

  // ---- Gradient averaging across ranks (overlapped with backward), clipping, optimizer and EMA
  // (sharded across ranks by train.zero_stage); schedule.
  DataParallelOptimizer dp(m.params, comm.get(), data_parallel_options(c.train));
  ShardedOptimizer& opt = dp.optimizer();
  LrSchedule schedule;
  schedule.kind = parse_lr_schedule(c.train.lr_schedule);
  schedule.base_lr = c.train.lr;
  schedule.warmup_steps = c.train.warmup_steps;
  schedule.total_steps = c.train.steps;
  schedule.min_ratio = c.train.min_lr_ratio;

  // ---- Resume.
  TrainResult result;
  const std::string checkpoints = path_join(c.run.out_dir, "checkpoints");
  data::LoaderPosition start_position;
  int64_t step = 0;
  int64_t nan_streak = 0;
  int64_t skipped = 0;
  std::string resume_from;
  if (options.resume == "latest") {
    resume_from = find_latest_checkpoint(checkpoints);
    if (resume_from.empty()) T4G_INFO("train: no checkpoint in ", checkpoints, "; starting fresh");
  } else if (!options.resume.empty()) {
    resume_from = options.resume;
  }
  if (!resume_from.empty()) {
    const Checkpoint ck = load_checkpoint(resume_from);
    opt.load_checkpoint(ck.tensors, ck.state.optimizer_steps, ck.state.ema_updates, resume_from);
    restore_rng(ck.tensors.rng);
    step = ck.state.step;
    start_position = convert_loader_position(ck.state, env.world_size * c.data.batch_size);
    // A position at the very end of an epoch under the new batching starts the next epoch.
    const int64_t per_rank = (static_cast<int64_t>(data::ShardReader(shards).size()) + env.world_size - 1) / env.world_size;
    if (start_position.batch >= (per_rank + c.data.batch_size - 1) / c.data.batch_size) start_position = {start_position.epoch + 1, 0};
    nan_streak = ck.state.nan_streak;
    skipped = ck.state.skipped_steps;
    T4G_INFO("train: resumed from ", resume_from, " at step ", step, " (written by ", ck.state.world_size,
             " rank(s), now ", env.world_size, ")");
  } else if (env.distributed()) {
    // Every rank starts from rank 0's weights (the tiny model and LoRA init are seeded alike,
    // but a real run must not depend on that).
    opt.broadcast_parameters(0);
  }
  result.start_step = step;

  // ---- Loader.
  data::LoaderOptions lo;
  lo.dataset = shards;
  lo.batch_size = c.data.batch_size;
  lo.workers = c.data.loader_threads;
  lo.sampler.rank = env.rank;
  lo.sampler.world_size = env.world_size;
  lo.sampler.seed = seed;
  lo.tracks_per_clip = c.data.tracks_per_clip;
  lo.latents = data::parse_latent_mode(c.data.latents);
  lo.augment.clip_frames = c.data.frames;
  if (fit.crop) {
    lo.augment.crop_height = c.data.height;
    lo.augment.crop_width = c.data.width;
  }
  lo.augment.flip_probability = c.data.flip_probability;
  data::Loader loader(lo, start_position);

  const int64_t temporal = m.components.vae ? m.components.vae->config().temporal_compression_ratio : 4;
  const CorrespondenceLossOptions corr = correspondence_options(c.loss, temporal);
  std::unique_ptr<TextEncoder> text_encoder;  // loaded on first need (captions without embeddings)

  // ---- Sinks (rank 0).
  std::unique_ptr<MetricLogger> logger;
  if (main_rank) {
    make_dirs(c.run.out_dir);
    write_file_atomically(path_join(c.run.out_dir, "config.yaml"), to_yaml(c));
    MetricLoggerOptions mo;
    mo.dir = c.run.out_dir;
    mo.tensorboard = c.train.tensorboard;
    mo.resume_step = resume_from.empty() ? -1 : step;
    logger = std::make_unique<MetricLogger>(mo);
  }
  EvaluationHook hook = options.evaluate;
  if (!hook && options.track_eval) {
    const std::string heldout = prepare_heldout_set(c, main_rank);
    comm->barrier();  // rank 0 wrote the synthetic held-out shards
    hook = make_tracking_eval_hook(c, heldout, env.rank, env.world_size, comm.get());
  }
  auto evaluate = [&](int64_t at) {
    if (!hook) return;
    torch::NoGradGuard no_grad;
    const std::map<std::string, double> metrics = hook(m, at);
    if (logger) {
      logger->log(at, "eval", metrics);
      logger->flush();
    }
    Json j = {{"step", at}, {"metrics", metrics}};
    result.evaluations.push_back(j);
  };
  auto save = [&](int64_t at) {
    // Rank 0 writes after everyone finished the step; the others wait so no rank runs ahead of
    // a checkpoint it might have to resume from. Every rank takes part in gathering the state.
    CheckpointTensors t;
    opt.gather_checkpoint(t);
    if (main_rank) {
      CheckpointState s;
      s.step = at;
      s.loader = loader.position();
      s.optimizer_steps = opt.optimizer_steps();
      s.ema_updates = opt.ema_updates();
      s.nan_streak = nan_streak;
      s.skipped_steps = skipped;
      s.world_size = env.world_size;
      s.global_batch = env.world_size * c.data.batch_size;
      s.config_yaml = to_yaml(c);
      t.rng = rng_states();
      result.last_checkpoint = save_checkpoint(checkpoints, s, t, c.train.keep_checkpoints);
      T4G_INFO("train: checkpoint ", result.last_checkpoint);
    }
    comm->barrier();
  };

  T4G_INFO("train: ", m.components.source, " on ", m.components.device.str(), " (", c10::toString(m.components.dtype),
           "), ", m.params.size(), " trainable tensors (", m.params.numel(), " values), refiner ",
           m.refiner ? "after block " + std::to_string(m.refiner->config().block) : std::string("off"), ", ",
           env.world_size, " rank(s), steps ", step, " -> ", c.train.steps);
  if (step == 0 && resume_from.empty()) evaluate(0);

  const int64_t end_step = options.stop_after_step >= 0 ? std::min(options.stop_after_step, c.train.steps) : c.train.steps;
  ProgressOptions po;
  po.unit = "steps";
  po.enabled = main_rank && !options.quiet;
  ProgressBar bar("train", c.train.steps - step, po);
  auto window_start = std::chrono::steady_clock::now();
  int64_t window_steps = 0;
  double window_samples = 0;

  while (step < end_step) {
    const double lr = schedule.lr_at(step);
    torch::manual_seed(derive_seed(seed, {kStreamGlobal, static_cast<uint64_t>(env.rank), static_cast<uint64_t>(step)}));
    double loss_sum = 0, diff_sum = 0, corr_sum = 0, pix_err = 0, frac_valid = 0;
    for (int64_t micro = 0; micro < c.train.grad_accumulation; ++micro) {
      const data::Batch batch = loader.next();
      const std::initializer_list<uint64_t> ids = {static_cast<uint64_t>(env.rank), static_cast<uint64_t>(step),
                                                   static_cast<uint64_t>(micro)};
      torch::Tensor x0 = batch.latents.defined() ? batch.latents.to(m.components.device, m.components.dtype)
                                                 : encode_frames_to_latents(m.components.vae, batch.frames);
      StepInputs in;
      in.latents = x0;
      in.text = batch_text(c, m, text_encoder, batch);
      in.tracks = batch.tracks.to(m.components.device);
      in.visibility = batch.visibility.to(m.components.device);
      in.track_mask = batch.track_mask.to(m.components.device);
      const StepLosses sl = forward_losses(m.components, m.refiner, c.loss, corr, in,
                                           make_generator(derive_seed(seed, {kStreamNoise}), ids, m.components.device),
                                           make_generator(derive_seed(seed, {kStreamQueries}), ids));
      const torch::Tensor& loss = sl.loss;
      const torch::Tensor& l_diff = sl.diffusion;
      if (sl.has_corr) {
        corr_sum += sl.corr.loss.item<double>();
        pix_err += sl.corr.mean_pixel_error.item<double>();
        frac_valid += sl.corr.fraction_valid;
      }
      dp.prepare_backward(micro + 1 == c.train.grad_accumulation);
      (loss / static_cast<double>(c.train.grad_accumulation)).backward();
      loss_sum += loss.item<double>();
      diff_sum += l_diff.item<double>();
      window_samples += static_cast<double>(batch.ids.size()) * env.world_size;
    }

    // Gradients: average over ranks, guard, clip, update (AdamW, parameters all-gathered under
    // ZeRO, EMA). Skipping is decided on the averaged gradient, which every rank holds alike, so
    // all ranks skip together.
    const StepOutcome outcome = dp.step(dp.reduce_gradients(), lr);
    const double grad_norm = outcome.grad_norm;
    const double accum = static_cast<double>(c.train.grad_accumulation);
    if (!outcome.applied) {
      ++skipped;
      ++nan_streak;
      T4G_WARN("train: step ", step, " has a non-finite loss or gradient; skipped (", nan_streak, " in a row)");
      ErrorContext ctx;
      ctx.key = "train.max_nan_steps";
      ctx.expected = "< " + std::to_string(c.train.max_nan_steps) + " consecutive non-finite steps";
      ctx.got = std::to_string(nan_streak);
      T4G_CHECK_CTX(nan_streak < c.train.max_nan_steps, ctx, "training diverged: too many non-finite steps in a row");
    } else {
      nan_streak = 0;
    }
    ++step;
    ++window_steps;
    bar.update(1);

    const bool last = step == c.train.steps;
    if (step % c.train.log_every == 0 || last) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      std::map<std::string, double> rec = {{"loss", loss_sum / accum},
                                           {"loss_diffusion", diff_sum / accum},
                                           {"lr", lr},
                                           {"grad_norm", grad_norm},
                                           {"it_per_s", window_steps / std::max(secs, 1e-9)},
                                           {"samples_per_s", window_samples / std::max(secs, 1e-9)},
                                           {"memory_gib", peak_memory_gib(m.components.device)},
                                           {"skipped_steps", static_cast<double>(skipped)}};
      if (m.refiner && c.loss.corr_weight > 0) {
        rec["loss_corr"] = corr_sum / accum;
        rec["corr_pixel_error"] = pix_err / accum;
        rec["corr_fraction_valid"] = frac_valid / accum;
      }
      result.last_train = rec;
      if (logger) {
        logger->log(step, "train", rec);
        logger->flush();
        bar.set_postfix("loss " + std::to_string(rec["loss"]).substr(0, 6));
        if (options.quiet || !po.enabled) T4G_DEBUG(format_train_line(step, c.train.steps, rec));
        else T4G_INFO(format_train_line(step, c.train.steps, rec));
      }
      window_start = std::chrono::steady_clock::now();
      window_steps = 0;
      window_samples = 0;
    }
    if (step % c.train.checkpoint_every == 0 || last || step == end_step) save(step);
    if (c.eval.every > 0 && step % c.eval.every == 0 && !last) evaluate(step);
    if (step == options.fail_at_step && env.rank == options.fail_rank && env.restart_count == 0) {
      throw Error(t4g::str("fault injection: rank ", env.rank, " fails after step ", step, " (--fail-at-step)"));
    }
  }
  bar.finish();
  result.steps_done = step;
  result.skipped_steps = skipped;
  if (step == c.train.steps) {
    evaluate(step);
    const FullOptimizerState full = opt.gather_state(0);  // collective; full tensors on rank 0
    if (main_rank) {
      // Export the EMA weights when EMA is on (what one would ship), else the trained ones.
      m.params.scatter_values(full.ema.defined() ? full.ema : full.master, 0, m.params.numel());
      TrainedModelExport what;
      what.dir = path_join(c.run.out_dir, "export");
      what.recipe = c;
      what.weights = full.ema.defined() ? "ema" : "raw";
      what.step = step;
      save_trained_model(m.components, what);
      result.export_dir = what.dir;
      m.params.scatter_values(full.master, 0, m.params.numel());
      T4G_INFO("train: exported to ", result.export_dir);
    }
    comm->barrier();
  }
  comm->shutdown();
  return result;
}

}  // namespace t4g
