// The environment t4grun gives each worker: exactly torchrun's (research/distributed_and_style.md
// A.1.2), so a worker cannot tell the two launchers apart, plus NCCL_NVLS_ENABLE=0 unless the
// caller set it (NVLink multicast must stay off on the shared multi-GPU machines).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace t4g::launch {

// Where one worker sits in the job, and the launcher settings it sees.
struct WorkerPlacement {
  int rank = 0;                   // global rank
  int local_rank = 0;             // rank on this node
  int world_size = 1;             // workers in the job
  int local_world_size = 1;       // workers on this node
  int node_rank = 0;              // GROUP_RANK
  int nnodes = 1;                 // GROUP_WORLD_SIZE
  std::string master_addr;        // the agent store's host
  int master_port = 0;            // the agent store's port (the real one, also with --standalone)
  int restart_count = 0;          // attempt number, 0 first
  int max_restarts = 0;           // --max-restarts
  std::string run_id = "none";    // --rdzv-id
  std::string error_file;         // this worker's TORCHELASTIC_ERROR_FILE
  std::string signals_to_handle;  // --signals-to-handle, exported like torchrun does
};

// The launcher's own environment plus the worker variables. `parent` is the launcher's
// environment as a map (see current_environment()).
std::map<std::string, std::string> worker_environment(const std::map<std::string, std::string>& parent,
                                                      const WorkerPlacement& placement);

// This process's environment (environ) as a map.
std::map<std::string, std::string> current_environment();

// "KEY=VALUE" strings for execve.
std::vector<std::string> to_envp(const std::map<std::string, std::string>& env);

}  // namespace t4g::launch
