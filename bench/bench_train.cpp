// Benchmark of one Track4Gen training step at a released size with random weights (issue 6
// item 11): the trainer's own step (train/training_step: noise, transformer with the refiner
// hooked after its block, diffusion + lambda * correspondence loss), backward, gradient clipping
// and AdamW on float32 master weights, with and without per-block gradient checkpointing, for a
// chosen trainable set (full, blocks, lora, refiner). One JSON line per configuration: median
// step time, forward+backward time alone, peak memory, trainable parameter count. Compare with
// bench/bench_transformer_ref.py's train / train_ckpt modes (diffusers' forward+backward of the
// same model and shape). Under t4grun or torchrun each rank takes one GPU and the gradients are
// averaged by the trainer's bucketed reducer over NCCL: rank 0 prints samples/s per GPU.
//   bench_train --preset 2b --trainable full --checkpointing 0,1
//   bench_train --preset 5b --trainable lora --checkpointing 1
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
#include "train/adamw.h"
#include "train/communicator.h"
#include "train/dist_env.h"
#include "train/flat_parameters.h"
#include "train/grad_reducer.h"
#include "train/rendezvous.h"
#include "train/training_step.h"

using t4g::bench::synchronize;

namespace {

// GiB of the GPU allocator's peak since the last reset; -1 on the CPU.
double peak_gib(const torch::Device& device) {
  const int64_t bytes = t4g::bench::peak_bytes(device);
  return bytes < 0 ? -1.0 : static_cast<double>(bytes) / 1073741824.0;
}

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
  bool refiner_on = true;
  app.add_option("--preset", preset, "2b | 5b (random weights at full size) | tiny (CPU smoke run)");
  app.add_option("--trainable", trainable, "full | blocks | lora | refiner");
  app.add_option("--checkpointing", checkpointing, "comma list of 0/1: without / with gradient checkpointing");
  app.add_option("--frames", frames, "latent frames (13 = 49 video frames)");
  app.add_option("--height", height, "latent height (60 = 480 px)");
  app.add_option("--width", width, "latent width (90 = 720 px)");
  app.add_option("--tracks", tracks, "trajectories per clip");
  app.add_option("--iters", iters, "timed steps");
  app.add_option("--warmup", warmup, "untimed steps first");
  app.add_option("--lora-rank", lora_rank, "LoRA rank (alpha = rank)");
  app.add_option("--refiner-layers", refiner_layers, "refiner convolution layers");
  app.add_option("--refiner", refiner_on, "attach the refiner and the correspondence loss");
  app.add_option("--dtype", dtype_name, "bf16 | fp32");
  CLI11_PARSE(app, argc, argv);
  try {
    const t4g::DistEnv env = t4g::DistEnv::from_env();
    std::unique_ptr<t4g::Communicator> comm;
    if (env.distributed()) comm = t4g::make_communicator(env, t4g::connect_store(env));
    t4g::ModelConfig mc;
    mc.preset = preset == "tiny" ? "" : preset;  // tiny: the recipe's tiny model, for a CPU smoke run
    mc.dtype = dtype_name == "bf16" ? t4g::DType::kBFloat16 : t4g::DType::kFloat32;
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
    t4g::FlatAdamW opt(flat.gather_values(), 0, {});
    std::unique_ptr<t4g::GradientReducer> reducer;
    if (comm) reducer = std::make_unique<t4g::GradientReducer>(flat, *comm);
    transformer->train(trainable != "refiner");

    // One clip of the recipe's shape: random latents, empty-prompt text, random visible tracks.
    auto gen = t4g::make_generator(0, {1});
    const auto opts = torch::TensorOptions().device(device);
    t4g::StepInputs in;
    in.latents = at::randn({1, frames, transformer->config().in_channels, height, width}, gen).to(opts.dtype(model.dtype));
    in.text = t4g::tiny_text_embeddings(model, 1);
    const int64_t video_frames = (frames - 1) * 4 + 1;
    in.tracks = (at::rand({1, tracks, video_frames, 2}, gen) *
                 torch::tensor({static_cast<float>(width * 8), static_cast<float>(height * 8)}))
                    .to(device);
    in.visibility = torch::ones({1, tracks, video_frames}, opts.dtype(torch::kBool));
    in.track_mask = torch::ones({1, tracks}, opts.dtype(torch::kBool));

    for (int64_t ckpt : parse_list(checkpointing)) {
      transformer->set_gradient_checkpointing(ckpt != 0);
      double fwd_bwd = 0;
      auto step = [&](int64_t i, bool timed) {
        const auto t0 = std::chrono::steady_clock::now();
        const t4g::StepLosses sl = t4g::forward_losses(model, refiner, loss, corr, in,
                                                       t4g::make_generator(0, {2, static_cast<uint64_t>(i)}, device),
                                                       t4g::make_generator(0, {3, static_cast<uint64_t>(i)}));
        if (reducer) reducer->prepare(true);
        sl.loss.backward();
        synchronize(device);
        if (timed) fwd_bwd += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        torch::Tensor grads;
        if (reducer) {
          grads = reducer->finish();
        } else {
          grads = flat.gather_grads();
          flat.zero_grads();
        }
        const double norm = grads.norm().item<double>();
        if (norm > 1.0) grads.mul_(1.0 / (norm + 1e-6));
        opt.step(grads, 1e-5);
        flat.scatter_values(opt.master(), 0, flat.numel());
      };
      for (int64_t i = 0; i < warmup; ++i) step(i, false);
      synchronize(device);
      t4g::bench::reset_peak(device);
      std::vector<double> times;
      for (int64_t i = 0; i < iters; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        step(warmup + i, true);
        synchronize(device);
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(times.begin(), times.end());
      if (comm) comm->barrier();
      if (!env.is_main()) continue;
      nlohmann::json line = {{"bench", "train_step"},
                             {"impl", "t4g"},
                             {"preset", preset},
                             {"trainable", trainable},
                             {"refiner", refiner_on},
                             {"refiner_block", block},
                             {"checkpointing", ckpt != 0},
                             {"shape", {1, frames, transformer->config().in_channels, height, width}},
                             {"tracks", tracks},
                             {"dtype", dtype_name},
                             {"device", device.str()},
                             {"trainable_params", flat.numel()},
                             {"iters", iters},
                             {"world_size", env.world_size},
                             {"launcher", !env.launched ? "none" : env.use_agent_store ? "agent" : "env"},
                             {"median_step_s", times[times.size() / 2]},
                             {"samples_per_s_per_gpu", 1.0 / times[times.size() / 2]},
                             {"mean_fwd_bwd_s", fwd_bwd / static_cast<double>(iters)},
                             {"peak_gib", peak_gib(device)}};
      std::cout << line.dump() << std::endl;
    }
    if (comm) comm->shutdown();
  } catch (const std::exception& e) {
    std::cerr << "bench_train: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
