// Data-parallel gradient worker for the t4grun tests: the tiny CogVideoX (fixed seed) with the
// refiner, the diffusion and correspondence losses on fixed per-SAMPLE inputs (seeded by the
// sample's global index, not the rank), gradients averaged by the GradientReducer through the
// Communicator. Rank r of W processes samples [r K, (r + 1) K) as K accumulation micro-steps,
// so one process with K = N and W processes with K = N / W see the same union batch and must
// end with the same averaged gradient. Writes <out>/grads_rank<r>.safetensors ("grads", float32).
#include <CLI/CLI.hpp>
#include <iostream>

#include "common/config.h"
#include "common/error.h"
#include "common/rng.h"
#include "common/safetensors.h"
#include "losses/correspondence_loss.h"
#include "losses/diffusion_loss.h"
#include "models/model_components.h"
#include "models/refiner.h"
#include "train/communicator.h"
#include "train/dist_env.h"
#include "train/flat_parameters.h"
#include "train/grad_reducer.h"
#include "train/rendezvous.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"ddp_worker: gradients of the union batch"};
  std::string out_dir;
  int64_t samples = 4;
  int64_t bucket_kib = 64;
  app.add_option("--out", out_dir, "folder for grads_rank<r>.safetensors")->required();
  app.add_option("--samples", samples, "samples in the union batch (a multiple of the world size)");
  app.add_option("--bucket-kib", bucket_kib, "reducer bucket size in KiB (small: many buckets)");
  app.parse(argc, argv);

  const t4g::DistEnv env = t4g::DistEnv::from_env();
  T4G_CHECK(samples % env.world_size == 0, "--samples must be a multiple of the world size");
  auto store = t4g::connect_store(env);
  t4g::CommunicatorOptions copts;
  copts.backend = t4g::CommBackend::kStore;
  auto comm = t4g::make_communicator(env, store, copts);

  t4g::ModelConfig model;
  model.device = t4g::DeviceKind::kCpu;
  t4g::ComponentRequest request;
  request.vae = false;
  t4g::ModelComponents m = t4g::load_model_components(model, 11, request);
  t4g::RefinerConfig rc;
  rc.block = 1;
  rc.layers = 2;
  t4g::Refiner refiner(rc, m.transformer->config().inner_dim());
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& item : m.transformer->named_parameters()) named.emplace_back(item.key(), item.value().set_requires_grad(true));
  for (auto& item : refiner->named_parameters()) named.emplace_back("refiner." + item.key(), item.value());
  const t4g::FlatParameters flat(named);
  t4g::GradReducerOptions ro;
  ro.bucket_bytes = bucket_kib << 10;
  t4g::GradientReducer reducer(flat, *comm, ro);

  const int64_t per_rank = samples / env.world_size;
  t4g::CorrespondenceLossOptions corr;
  corr.num_query_points = 8;
  for (int64_t k = 0; k < per_rank; ++k) {
    const uint64_t sample = static_cast<uint64_t>(env.rank * per_rank + k);
    torch::Generator gen = t4g::make_generator(5, {sample});
    const torch::Tensor x0 = at::randn({1, 3, 4, 8, 12}, gen);
    const torch::Tensor text = t4g::tiny_text_embeddings(m, 1);
    const t4g::NoisedBatch noised = t4g::add_training_noise(m.scheduler, x0, gen);
    const torch::Tensor tracks = at::rand({1, 6, 9, 2}, gen) * torch::tensor({96.0f, 64.0f});
    const torch::Tensor vis = torch::ones({1, 6, 9}, torch::kBool);
    const torch::Tensor mask = torch::ones({1, 6}, torch::kBool);
    t4g::ProbeOptions probes;
    auto refined = std::make_shared<t4g::RefinedFeatures>();
    refiner->install(probes, refined);
    t4g::TransformerForwardOptions fo;
    fo.probes = &probes;
    const auto out = m.transformer->forward(noised.noisy, text, noised.timesteps, fo);
    torch::Tensor loss = t4g::diffusion_loss(m.scheduler, out.sample, noised.noisy, x0, noised.timesteps);
    loss = loss + 8.0 * t4g::correspondence_loss(refined->video(), tracks, vis, mask, corr, gen).loss;
    reducer.prepare(k + 1 == per_rank);
    (loss / static_cast<double>(per_rank)).backward();
  }
  const torch::Tensor grads = reducer.finish();
  t4g::save_safetensors(t4g::str(out_dir, "/grads_rank", env.rank, ".safetensors"), {{"grads", grads}});
  std::cout << "rank " << env.rank << ": " << reducer.bucket_count() << " buckets, "
            << reducer.launched_during_backward() << " launched during backward" << std::endl;
  comm->shutdown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "ddp_worker: error: " << e.what() << std::endl;
    return 1;
  }
}
