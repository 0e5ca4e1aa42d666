// ZeRO worker for the t4grun tests (tests/integration/zero_test.cpp): a small tanh MLP (fixed
// seed; plus one parameter that never gets a gradient) trained with the trainer's
// DataParallelOptimizer (GradientReducer + ShardedOptimizer) at a chosen ZeRO stage. With
// --device cuda each rank binds cuda:LOCAL_RANK, keeps the model there in float32 and talks NCCL
// (the trainer's backend rule, comm_backend_for); with cpu it uses the store. Each step's union batch
// of --samples samples is seeded by (step, sample index), not by rank: rank r of W takes samples
// [r K, (r + 1) K), K = samples / W, as K accumulation micro-steps, so every world size trains on
// the same data. Saves a checkpoint (train/checkpoint.h, gathered to rank 0) after --save-at and
// resumes from --resume on any world size. Writes <out>/rank<r>.safetensors: "params" (this
// rank's model, flat float32), "grad_numel" and "state_numel" (what this rank materialised),
// "clipped_steps" (steps whose global gradient norm exceeded --clip); rank 0 adds "ema", the
// gathered full EMA.
#include <CLI/CLI.hpp>
#include <iostream>

#include "common/error.h"
#include "common/fs.h"
#include "common/rng.h"
#include "common/safetensors.h"
#include "train/checkpoint.h"
#include "train/communicator.h"
#include "train/dist_env.h"
#include "train/data_parallel_optimizer.h"
#include "train/flat_parameters.h"
#include "train/rendezvous.h"

namespace {

struct Mlp {
  torch::nn::Linear a{nullptr}, b{nullptr}, c{nullptr}, unused{nullptr};
  // Initialised on the CPU from one seed (the same weights on every device), then moved.
  explicit Mlp(const torch::Device& device) {
    torch::manual_seed(3);
    a = torch::nn::Linear(6, 23);
    b = torch::nn::Linear(23, 23);
    c = torch::nn::Linear(23, 3);
    unused = torch::nn::Linear(3, 3);
    for (auto* layer : {&a, &b, &c, &unused}) (*layer)->to(device, torch::kFloat32);
  }
  std::vector<std::pair<std::string, torch::Tensor>> named() {
    return {{"a.weight", a->weight}, {"a.bias", a->bias}, {"b.weight", b->weight},          {"b.bias", b->bias},
            {"c.weight", c->weight}, {"c.bias", c->bias}, {"unused.weight", unused->weight}};
  }
  torch::Tensor loss(const torch::Tensor& x, const torch::Tensor& y) {
    return (c(torch::tanh(b(torch::tanh(a(x))))) - y).pow(2).mean();
  }
};

int run(int argc, char** argv) {
  CLI::App app{"zero_worker: ZeRO stages under t4grun"};
  std::string out_dir, resume, device_name = "cpu";
  int stage = 0;
  int64_t steps = 4, samples = 6, save_at = -1, bucket_bytes = 1024, gather_bytes = 256;
  double lr = 1e-2, clip = 0.5;
  app.add_option("--out", out_dir, "folder for rank<r>.safetensors and checkpoints/")->required();
  app.add_option("--stage", stage, "ZeRO stage 0, 1 or 2");
  app.add_option("--steps", steps, "train until this step");
  app.add_option("--samples", samples, "samples per step (a multiple of the world size)");
  app.add_option("--save-at", save_at, "write a checkpoint after this step");
  app.add_option("--resume", resume, "checkpoint folder to resume from");
  app.add_option("--bucket-bytes", bucket_bytes, "reducer bucket cap (small: many buckets)");
  app.add_option("--gather-bytes", gather_bytes, "all-gather round cap (small: many rounds)");
  app.add_option("--lr", lr, "learning rate");
  app.add_option("--clip", clip, "max gradient norm (0: off)");
  app.add_option("--device", device_name, "cpu (store communicator) | cuda (cuda:LOCAL_RANK, NCCL)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.parse(argc, argv);

  const t4g::DistEnv env = t4g::DistEnv::from_env();
  t4g::make_dirs(out_dir);
  T4G_CHECK(samples % env.world_size == 0, "--samples must be a multiple of the world size");
  const torch::Device device = device_name == "cuda"
                                   ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank))
                                   : torch::Device(torch::kCPU);
  auto store = t4g::connect_store(env);
  t4g::CommunicatorOptions copts;
  copts.backend = t4g::comm_backend_for(t4g::CommBackend::kAuto, device);
  // NCCL: binds cuda:LOCAL_RANK (an error naming LOCAL_RANK when there is no such GPU) before the
  // process group exists and before any tensor is made there.
  auto comm = t4g::make_communicator(env, store, copts);

  Mlp net(device);
  const t4g::FlatParameters flat(net.named());
  t4g::DataParallelOptions oo;
  oo.optimizer.stage = t4g::zero_stage_from_int(stage, "--stage");
  oo.optimizer.adam.weight_decay = 0.01;
  oo.optimizer.ema_decay = 0.9;
  oo.optimizer.gather_bytes = gather_bytes;
  oo.bucket_bytes = bucket_bytes;
  oo.max_grad_norm = clip;
  t4g::DataParallelOptimizer dp(flat, comm.get(), oo);
  t4g::ShardedOptimizer& opt = dp.optimizer();
  int64_t step = 0;
  if (!resume.empty()) {
    const t4g::Checkpoint ck = t4g::load_checkpoint(resume);
    opt.load_checkpoint(ck.tensors, ck.state.optimizer_steps, ck.state.ema_updates, resume);
    step = ck.state.step;
  } else {
    opt.broadcast_parameters(0);
  }
  const int64_t per_rank = samples / env.world_size;
  int64_t grad_numel = 0, clipped = 0;
  for (; step < steps; ++step) {
    for (int64_t k = 0; k < per_rank; ++k) {
      const uint64_t sample = static_cast<uint64_t>(env.rank * per_rank + k);
      torch::Generator gen = t4g::make_generator(7, {static_cast<uint64_t>(step), sample});
      // Drawn on the CPU (the same numbers on every device), then moved.
      const torch::Tensor x = at::randn({4, 6}, gen).to(device);
      const torch::Tensor y = torch::sin(x.narrow(1, 0, 3) * 2.0);
      dp.prepare_backward(k + 1 == per_rank);
      (net.loss(x, y) / static_cast<double>(per_rank)).backward();
    }
    const torch::Tensor grads = dp.reduce_gradients();
    grad_numel = std::max(grad_numel, grads.numel());
    const t4g::StepOutcome outcome = dp.step(grads, lr);
    T4G_CHECK(outcome.applied, "step ", step, ": non-finite gradient norm");
    clipped += outcome.grad_scale < 1.0 ? 1 : 0;
    if (step + 1 == save_at) {
      t4g::CheckpointTensors tensors;
      opt.gather_checkpoint(tensors);
      if (env.is_main()) {
        t4g::CheckpointState state;
        state.step = step + 1;
        state.optimizer_steps = opt.optimizer_steps();
        state.ema_updates = opt.ema_updates();
        state.world_size = env.world_size;
        t4g::save_checkpoint(t4g::path_join(out_dir, "checkpoints"), state, tensors, 0);
      }
      comm->barrier();
    }
  }
  const t4g::FullOptimizerState full = opt.gather_state(0);
  std::map<std::string, torch::Tensor> out = {{"params", flat.gather_values().cpu()},
                                              {"grad_numel", torch::tensor({grad_numel})},
                                              {"state_numel", torch::tensor({opt.state_numel()})},
                                              {"clipped_steps", torch::tensor({clipped})}};
  if (env.is_main()) out["ema"] = full.ema;
  t4g::save_safetensors(t4g::str(out_dir, "/rank", env.rank, ".safetensors"), out);
  std::cout << "rank " << env.rank << " of " << env.world_size << ": stage " << stage << ", range [" << opt.begin()
            << ", " << opt.end() << ") of " << flat.numel() << ", state " << opt.state_numel() << " floats, gradient "
            << grad_numel << " floats, " << comm->backend_name() << " on " << device.str() << std::endl;
  comm->shutdown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "zero_worker: error: " << e.what() << std::endl;
    return 1;
  }
}
