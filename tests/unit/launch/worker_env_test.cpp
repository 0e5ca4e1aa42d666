// The worker environment: torchrun's variables (research A.1.2), launcher values beating
// inherited ones, caller-set defaults kept (NCCL_NVLS_ENABLE, TORCH_NCCL_ASYNC_ERROR_HANDLING,
// OMP_NUM_THREADS), and that DistEnv reads back exactly what t4grun sets.
#include "launch/worker_env.h"

#include <gtest/gtest.h>

#include "train/dist_env.h"

namespace t4g::launch {
namespace {

WorkerPlacement placement() {
  WorkerPlacement p;
  p.rank = 5;
  p.local_rank = 1;
  p.world_size = 8;
  p.local_world_size = 4;
  p.node_rank = 1;
  p.nnodes = 2;
  p.master_addr = "10.0.0.1";
  p.master_port = 29533;
  p.restart_count = 2;
  p.max_restarts = 3;
  p.run_id = "job7";
  p.error_file = "/logs/attempt_2/5/error.json";
  p.signals_to_handle = "SIGTERM,SIGINT";
  return p;
}

TEST(WorkerEnv, SetsTorchrunVariables) {
  const auto env = worker_environment({{"PATH", "/bin"}, {"RANK", "99"}}, placement());
  const std::map<std::string, std::string> expected = {
      {"RANK", "5"},
      {"LOCAL_RANK", "1"},
      {"WORLD_SIZE", "8"},
      {"LOCAL_WORLD_SIZE", "4"},
      {"GROUP_RANK", "1"},
      {"GROUP_WORLD_SIZE", "2"},
      {"ROLE_RANK", "5"},
      {"ROLE_WORLD_SIZE", "8"},
      {"ROLE_NAME", "default"},
      {"MASTER_ADDR", "10.0.0.1"},
      {"MASTER_PORT", "29533"},
      {"TORCHELASTIC_RESTART_COUNT", "2"},
      {"TORCHELASTIC_MAX_RESTARTS", "3"},
      {"TORCHELASTIC_RUN_ID", "job7"},
      {"TORCHELASTIC_USE_AGENT_STORE", "True"},
      {"TORCHELASTIC_ERROR_FILE", "/logs/attempt_2/5/error.json"},
      {"TORCHELASTIC_SIGNALS_TO_HANDLE", "SIGTERM,SIGINT"},
      {"TORCH_NCCL_ASYNC_ERROR_HANDLING", "1"},
      {"NCCL_NVLS_ENABLE", "0"},
      {"OMP_NUM_THREADS", "1"},
      {"PATH", "/bin"},
  };
  EXPECT_EQ(env, expected);
}

TEST(WorkerEnv, CallerDefaultsAreKept) {
  const auto env = worker_environment(
      {{"NCCL_NVLS_ENABLE", "1"}, {"TORCH_NCCL_ASYNC_ERROR_HANDLING", "3"}, {"OMP_NUM_THREADS", "8"}}, placement());
  EXPECT_EQ(env.at("NCCL_NVLS_ENABLE"), "1");
  EXPECT_EQ(env.at("TORCH_NCCL_ASYNC_ERROR_HANDLING"), "3");
  EXPECT_EQ(env.at("OMP_NUM_THREADS"), "8");
  WorkerPlacement single = placement();
  single.local_world_size = 1;
  EXPECT_EQ(worker_environment({}, single).count("OMP_NUM_THREADS"), 0u);  // one worker: not limited
}

TEST(WorkerEnv, DistEnvReadsBackWhatT4grunSets) {
  const DistEnv d = DistEnv::from_map(worker_environment({}, placement()));
  EXPECT_TRUE(d.launched);
  EXPECT_EQ(d.rank, 5);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.world_size, 8);
  EXPECT_EQ(d.local_world_size, 4);
  EXPECT_EQ(d.group_rank, 1);
  EXPECT_EQ(d.master_addr, "10.0.0.1");
  EXPECT_EQ(d.master_port, 29533);
  EXPECT_TRUE(d.use_agent_store);
  EXPECT_EQ(d.restart_count, 2);
  EXPECT_EQ(d.error_file, "/logs/attempt_2/5/error.json");
}

TEST(WorkerEnv, EnvpStrings) {
  EXPECT_EQ(to_envp({{"A", "1"}, {"B", "x=y"}}), (std::vector<std::string>{"A=1", "B=x=y"}));
  EXPECT_FALSE(current_environment().empty());
}

}  // namespace
}  // namespace t4g::launch
