// How fast the store Communicator (CPU, through a TCPStore) all-reduces, so the CPU demo and the
// tests know what a gradient all-reduce costs. Ranks are threads of this process, each with its
// own TCPStore client of one server, as under t4grun. Prints one JSON line per measurement.
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

#include "train/rendezvous.h"
#include "train/store_communicator.h"

int main() {
  c10d::TCPStoreOptions server_options;
  server_options.port = 0;
  server_options.isServer = true;
  server_options.waitWorkers = false;
  auto server = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", server_options);
  for (int world : {2, 4}) {
    for (int64_t floats : {int64_t{256}, int64_t{1} << 16, int64_t{1} << 20, int64_t{1} << 22}) {
      const int iters = floats >= (int64_t{1} << 20) ? 5 : 50;
      std::vector<double> seconds(world);
      std::vector<std::thread> threads;
      for (int rank = 0; rank < world; ++rank) {
        threads.emplace_back([&, rank] {
          t4g::DistEnv env = t4g::DistEnv::from_map({{"RANK", std::to_string(rank)},
                                                     {"WORLD_SIZE", std::to_string(world)},
                                                     {"MASTER_ADDR", "127.0.0.1"},
                                                     {"MASTER_PORT", std::to_string(server->getPort())},
                                                     {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
          t4g::StoreCommunicatorOptions options;
          options.name = "bench_" + std::to_string(world) + "_" + std::to_string(floats);
          t4g::StoreCommunicator comm(t4g::connect_store(env), rank, world, options);
          torch::Tensor t = torch::ones({floats});
          comm.all_reduce(t);  // warm-up
          comm.barrier();
          const auto start = std::chrono::steady_clock::now();
          for (int i = 0; i < iters; ++i) comm.all_reduce(t);
          comm.barrier();
          seconds[rank] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iters;
          comm.shutdown();
        });
      }
      for (auto& t : threads) t.join();
      const double mb = static_cast<double>(floats) * 4 / 1e6;
      std::printf(
          "{\"bench\": \"store_all_reduce\", \"world_size\": %d, \"megabytes\": %.4f, \"ms_per_call\": %.3f, "
          "\"mb_per_s\": %.1f, \"threads_per_rank\": %d}\n",
          world, mb, seconds[0] * 1e3, mb / seconds[0], torch::get_num_threads());
    }
  }
  return 0;
}
