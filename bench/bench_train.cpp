// Benchmark of one Track4Gen training step at a released size with random weights (issues 6 and
// 7): the trainer's own step (train/training_step: noise, transformer with the refiner hooked
// after its block, diffusion + lambda * correspondence loss), backward, and the trainer's
// DataParallelOptimizer (bucketed gradient reducer, global-norm clipping, AdamW on float32 master
// weights sharded by --zero-stage), with and without per-block gradient checkpointing, for a
// chosen trainable set (full, blocks, lora, refiner). The optimizer hyper-parameters are the
// recipe defaults (common/config.h TrainConfig). One JSON line per configuration: median step
// time, forward+backward time, peak memory (rank 0's and the largest over ranks), optimizer state
// per rank, trainable parameter count, and the step's phases as medians: forward_s, backward_s
// (until backward() returns), reduce_wait_s (the reducer's finish: communication not hidden
// behind backward, plus copying the result out) and optimizer_s (norm, clip, AdamW, all-gather).
// On a GPU the phases need syncs between them, which cost the host's run-ahead: only with
// --breakdown ("breakdown": true in the JSON; the phases are null otherwise, and step times
// measured with --breakdown are not the plain ones). On the CPU every phase is timed as it runs.
// The sync after backward that mean_fwd_bwd_s needs waits for the compute stream only, so the
// reducer's collectives keep overlapping. Compare with bench/bench_transformer_ref.py's train /
// train_ckpt modes (diffusers' forward+backward of the same model and shape). Under t4grun or
// torchrun each rank takes one GPU (NCCL) or, for a CPU model, talks through the store; rank 0
// prints samples/s per GPU.
//   bench_train --preset 2b --trainable full --checkpointing 0,1
//   bench_train --preset 5b --trainable lora --checkpointing 1
//   t4grun --standalone --nproc-per-node 4 bench_train --preset 5b --checkpointing 1 --zero-stage 2 --breakdown
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bench/bench_util.h"
#include "common/config.h"
#include "common/error.h"
#include "common/rng.h"
#include "models/lora.h"
#include "models/trainable.h"
#include "train/communicator.h"
#include "train/data_parallel_optimizer.h"
#include "train/dist_env.h"
#include "train/flat_parameters.h"
#include "train/rendezvous.h"
#include "train/training_step.h"

using t4g::bench::synchronize;
using t4g::bench::synchronize_stream;

namespace {

// GiB of the GPU allocator's peak since the last reset; -1 on the CPU.
double peak_gib(const torch::Device& device) {
  const int64_t bytes = t4g::bench::peak_bytes(device);
  return bytes < 0 ? -1.0 : static_cast<double>(bytes) / 1073741824.0;
}

// Median of `values` (the upper one of an even count, as the step time always used).
double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Where one step's time went (seconds).
struct PhaseTimes {
  double forward = 0;      // forward_losses
  double backward = 0;     // prepare + backward() until it returns
  double reduce_wait = 0;  // the reducer's finish (or the local gradient gather on one rank)
  double optimizer = 0;    // norm, clip, AdamW, parameters (all-gather under ZeRO), EMA
  double step = 0;         // all of it, until the device is idle
};

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Track4Gen training-step benchmark (one JSON line per configuration)"};
  std::string preset = "2b", trainable = "full", checkpointing = "0,1", dtype_name = "bf16";
  int64_t frames = 13, height = 60, width = 90, tracks = 256, iters = 5, warmup = 2, lora_rank = 64, refiner_layers = 8;
  bool refiner_on = true, breakdown = false;
  t4g::TrainConfig recipe;  // optimizer, clipping, EMA and bucket defaults of every recipe
  int64_t zero_stage = recipe.zero_stage, bucket_mb = recipe.bucket_mb;
  double ema_decay = recipe.ema_decay;
  app.add_option("--preset", preset, "2b | 5b (random weights at full size) | tiny (CPU smoke run)");
  app.add_option("--trainable", trainable, "full | blocks | lora | refiner");
  app.add_option(
      "--checkpointing", checkpointing,
      "comma list of 0/1/2: without / with gradient checkpointing / with checkpointing that keeps attention outputs");
  app.add_option("--frames", frames, "latent frames (13 = 49 video frames)");
  app.add_option("--height", height, "latent height (60 = 480 px)");
  app.add_option("--width", width, "latent width (90 = 720 px)");
  app.add_option("--tracks", tracks, "trajectories per clip");
  app.add_option("--iters", iters, "timed steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed steps first");
  app.add_option("--lora-rank", lora_rank, "LoRA rank (alpha = rank)");
  app.add_option("--refiner-layers", refiner_layers, "refiner convolution layers");
  app.add_option("--refiner", refiner_on, "attach the refiner and the correspondence loss");
  app.add_option("--dtype", dtype_name, "bf16 | fp32");
  app.add_option("--zero-stage", zero_stage,
                 "ZeRO stage: 0 replicated, 1 sharded optimizer state, 2 also sharded gradients")
      ->check(CLI::Range(0, 2));
  app.add_option("--bucket-mb", bucket_mb, "gradient reducer bucket cap in MiB")->check(CLI::Range(1, 4096));
  app.add_option("--ema-decay", ema_decay, "EMA of the trainable weights (0 = off, as the recipes)");
  app.add_flag("--breakdown", breakdown,
               "sync the GPU between phases to time forward, backward, reduce wait, optimizer");
  CLI11_PARSE(app, argc, argv);
  try {
    const t4g::DistEnv env = t4g::DistEnv::from_env();
    t4g::ModelConfig mc;
    mc.preset = preset == "tiny" ? "" : preset;  // tiny: the recipe's tiny model, for a CPU smoke run
    mc.dtype = dtype_name == "bf16" ? t4g::DType::kBFloat16 : t4g::DType::kFloat32;
    // The trainer's rule: NCCL for a model on a GPU (binding cuda:LOCAL_RANK first), else the store.
    std::unique_ptr<t4g::Communicator> comm;
    if (env.distributed()) {
      t4g::CommunicatorOptions co;
      co.backend = t4g::comm_backend_for(t4g::CommBackend::kAuto, t4g::resolve_device(mc.device, env.local_rank));
      comm = t4g::make_communicator(env, t4g::connect_store(env), co);
    }
    t4g::ComponentRequest request;
    request.vae = false;
    request.cuda_index = env.local_rank;
    t4g::ModelComponents model = t4g::load_model_components(mc, 0, request);
    const torch::Device device = model.device;
    auto& transformer = model.transformer;
    t4g::LossConfig loss;  // the recipe defaults: lambda 8, Huber, 256 queries, temperature 0.05
    const auto corr = t4g::correspondence_options(loss, 4);
    t4g::Refiner refiner{nullptr};
    const int64_t block = t4g::default_refiner_block(transformer->config().num_layers);
    if (refiner_on) {
      t4g::RefinerConfig rc;
      rc.block = block;
      rc.layers = refiner_layers;
      refiner = t4g::Refiner(rc, transformer->config().inner_dim());
      refiner->to(device, model.dtype);
    }
    if (trainable == "lora") {
      t4g::LoraConfig lc;
      lc.rank = lora_rank;
      lc.alpha = static_cast<double>(lora_rank);
      t4g::add_lora(*transformer, lc, 1);
    }
    t4g::TrainableOptions to;
    to.mode = t4g::parse_train_mode(trainable == "refiner" ? "none" : trainable);
    if (to.mode == t4g::TrainMode::kBlocks) to.blocks = {block};
    t4g::NamedParameters named = t4g::set_trainable(*transformer, to);
    if (refiner) {
      for (auto& item : refiner->named_parameters()) named.emplace_back("refiner." + item.key(), item.value());
    }
    const t4g::FlatParameters flat(named);
    // Every rank built the same seeded weights, so no broadcast is needed before the first step.
    recipe.zero_stage = zero_stage;
    recipe.bucket_mb = bucket_mb;
    recipe.ema_decay = ema_decay;
    t4g::DataParallelOptimizer dp(flat, comm.get(), t4g::data_parallel_options(recipe));
    transformer->train(trainable != "refiner");
    // Phases are timed when the timer can see them: always on the CPU, with syncs on a GPU.
    const bool phases_measured = breakdown || !device.is_cuda();

    // One clip of the recipe's shape: random latents, empty-prompt text, random visible tracks.
    auto gen = t4g::make_generator(0, {1});
    const auto opts = torch::TensorOptions().device(device);
    t4g::StepInputs in;
    in.latents =
        at::randn({1, frames, transformer->config().in_channels, height, width}, gen).to(opts.dtype(model.dtype));
    in.text = t4g::tiny_text_embeddings(model, 1);
    const int64_t video_frames = (frames - 1) * 4 + 1;
    in.tracks = (at::rand({1, tracks, video_frames, 2}, gen) *
                 torch::tensor({static_cast<float>(width * 8), static_cast<float>(height * 8)}))
                    .to(device);
    in.visibility = torch::ones({1, tracks, video_frames}, opts.dtype(torch::kBool));
    in.track_mask = torch::ones({1, tracks}, opts.dtype(torch::kBool));

    for (int64_t ckpt : parse_list(checkpointing)) {
      T4G_CHECK(ckpt >= 0 && ckpt <= 2, "--checkpointing takes 0, 1 or 2, got ", ckpt);
      transformer->set_gradient_checkpointing(ckpt != 0, ckpt == 2);
      using Clock = std::chrono::steady_clock;
      auto seconds = [](Clock::time_point a, Clock::time_point b) {
        return std::chrono::duration<double>(b - a).count();
      };
      auto step = [&](int64_t i) {
        const auto t0 = Clock::now();
        const t4g::StepLosses sl = t4g::forward_losses(model, refiner, loss, corr, in,
                                                       t4g::make_generator(0, {2, static_cast<uint64_t>(i)}, device),
                                                       t4g::make_generator(0, {3, static_cast<uint64_t>(i)}));
        if (breakdown) synchronize_stream(device);
        const auto t1 = Clock::now();
        dp.prepare_backward(true);
        sl.loss.backward();
        synchronize_stream(device);  // compute only: the buckets launched in backward keep going
        const auto t2 = Clock::now();
        const torch::Tensor grads = dp.reduce_gradients();
        if (breakdown) synchronize(device);  // the whole device: NCCL's streams included
        const auto t3 = Clock::now();
        dp.step(grads, recipe.lr);
        synchronize(device);
        const auto t4 = Clock::now();
        return PhaseTimes{seconds(t0, t1), seconds(t1, t2), seconds(t2, t3), seconds(t3, t4), seconds(t0, t4)};
      };
      for (int64_t i = 0; i < warmup; ++i) step(i);
      synchronize(device);
      t4g::bench::reset_peak(device);
      std::vector<double> times, forward, backward, reduce_wait, optimizer;
      double fwd_bwd = 0;
      for (int64_t i = 0; i < iters; ++i) {
        const PhaseTimes t = step(warmup + i);
        times.push_back(t.step);
        forward.push_back(t.forward);
        backward.push_back(t.backward);
        reduce_wait.push_back(t.reduce_wait);
        optimizer.push_back(t.optimizer);
        fwd_bwd += t.forward + t.backward;
      }
      // The largest peak over the ranks (they differ under ZeRO: the last shard may be shorter).
      const double peak = peak_gib(device);
      double peak_max = peak;
      if (comm) {
        const torch::Tensor mine = torch::full({1}, peak, torch::TensorOptions().dtype(torch::kFloat64).device(device));
        for (const torch::Tensor& other : comm->all_gather(mine)) peak_max = std::max(peak_max, other.item<double>());
        comm->barrier();
      }
      if (!env.is_main()) continue;
      auto phase = [&](const std::vector<double>& values) {
        return phases_measured ? nlohmann::json(median(values)) : nlohmann::json(nullptr);
      };
      const t4g::GradientReducer* reducer = dp.reducer();
      nlohmann::json line = {
          {"bench", "train_step"},
          {"impl", "t4g"},
          {"preset", preset},
          {"trainable", trainable},
          {"refiner", refiner_on},
          {"refiner_block", block},
          {"checkpointing", ckpt != 0},
          {"checkpoint_keep_attention", ckpt == 2},
          {"shape", {1, frames, transformer->config().in_channels, height, width}},
          {"tracks", tracks},
          {"dtype", dtype_name},
          {"device", device.str()},
          {"trainable_params", flat.numel()},
          {"iters", iters},
          {"world_size", env.world_size},
          {"launcher", !env.launched         ? "none"
                       : env.use_agent_store ? "agent"
                                             : "env"},
          {"median_step_s", median(times)},
          {"samples_per_s_per_gpu", 1.0 / median(times)},
          {"mean_fwd_bwd_s", fwd_bwd / static_cast<double>(iters)},
          {"peak_gib", peak},
          {"peak_gib_max_rank", peak_max},
          {"zero_stage", zero_stage},
          {"bucket_mb", bucket_mb},
          {"comm", comm ? comm->backend_name() : "none"},
          {"buckets", reducer ? reducer->bucket_count() : 0},
          {"buckets_launched_in_backward", reducer ? reducer->launched_during_backward() : 0},
          {"optimizer_state_gib", static_cast<double>(dp.optimizer().state_numel()) * 4.0 / 1073741824.0},
          {"breakdown", breakdown},
          {"forward_s", phase(forward)},
          {"backward_s", phase(backward)},
          {"reduce_wait_s", phase(reduce_wait)},
          {"optimizer_s", phase(optimizer)}};
      std::cout << line.dump() << std::endl;
    }
    if (comm) comm->shutdown();
  } catch (const std::exception& e) {
    std::cerr << "bench_train: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
