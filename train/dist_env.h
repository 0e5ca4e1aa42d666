// The distributed worker environment: the ONE place that reads RANK, WORLD_SIZE, MASTER_* and
// TORCHELASTIC_* (research/distributed_and_style.md A.1.2, lesson B.6.15), so a worker behaves the
// same under t4grun and under PyTorch's torchrun. With none of the variables set the process is a
// single worker (world size 1). Values are validated here; errors name the variable.
#pragma once

#include <map>
#include <string>

namespace t4g {

// Where this process sits in the job and how to reach the rendezvous store.
struct DistEnv {
  bool launched = false;                  // true when RANK/WORLD_SIZE came from a launcher
  int rank = 0;                           // RANK: global rank, 0..world_size-1
  int world_size = 1;                     // WORLD_SIZE: number of workers in the job
  int local_rank = 0;                     // LOCAL_RANK: rank on this node (the GPU index); default RANK
  int local_world_size = 1;               // LOCAL_WORLD_SIZE: workers on this node; default WORLD_SIZE
  int group_rank = 0;                     // GROUP_RANK: node (agent) rank; default 0
  std::string master_addr = "127.0.0.1";  // MASTER_ADDR: host of the rendezvous TCPStore
  int master_port = 29500;                // MASTER_PORT: port of the rendezvous TCPStore
  bool use_agent_store = false;           // TORCHELASTIC_USE_AGENT_STORE=True: the launcher hosts the store
  int restart_count = 0;                  // TORCHELASTIC_RESTART_COUNT: 0 on the first attempt
  std::string error_file;                 // TORCHELASTIC_ERROR_FILE: where to record a failure ("" = none)

  // Reads the process environment (getenv). Throws t4g::Error naming the bad variable.
  static DistEnv from_env();
  // The same from an explicit variable map (for tests and for tools that forward environments).
  static DistEnv from_map(const std::map<std::string, std::string>& vars);

  bool is_main() const { return rank == 0; }
  bool distributed() const { return world_size > 1; }
};

// TORCHELASTIC_ERROR_FILE alone ("" when unset), for main()'s catch blocks: unlike from_env() it
// never throws, because it runs while reporting another error.
std::string error_file_from_env() noexcept;

// The variable names from_env() reads, in a fixed order (for diagnostics and tests).
const char* const* dist_env_variable_names();

// "rank 1/2 (local 1/2, node 0), store 127.0.0.1:29500 (agent), attempt 0" for logs.
std::string describe(const DistEnv& env);

}  // namespace t4g
