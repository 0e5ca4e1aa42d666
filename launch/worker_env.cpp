// The worker environment; see launch/worker_env.h.
#include "launch/worker_env.h"

extern char** environ;

namespace t4g::launch {

std::map<std::string, std::string> worker_environment(const std::map<std::string, std::string>& parent,
                                                      const WorkerPlacement& p) {
  std::map<std::string, std::string> env = parent;
  // Defaults the caller may override: torchrun's TearDown error handling (1) and a single OpenMP
  // thread per worker when several share the node; NVLink SHARP/multicast off (machine rule).
  env.emplace("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1");
  env.emplace("NCCL_NVLS_ENABLE", "0");
  if (p.local_world_size > 1) env.emplace("OMP_NUM_THREADS", "1");
  // What the launcher decides always wins over inherited values (a nested launch, a stale shell).
  env["RANK"] = std::to_string(p.rank);
  env["LOCAL_RANK"] = std::to_string(p.local_rank);
  env["WORLD_SIZE"] = std::to_string(p.world_size);
  env["LOCAL_WORLD_SIZE"] = std::to_string(p.local_world_size);
  env["GROUP_RANK"] = std::to_string(p.node_rank);
  env["GROUP_WORLD_SIZE"] = std::to_string(p.nnodes);
  env["ROLE_RANK"] = std::to_string(p.rank);
  env["ROLE_WORLD_SIZE"] = std::to_string(p.world_size);
  env["ROLE_NAME"] = "default";
  env["MASTER_ADDR"] = p.master_addr;
  env["MASTER_PORT"] = std::to_string(p.master_port);
  env["TORCHELASTIC_RESTART_COUNT"] = std::to_string(p.restart_count);
  env["TORCHELASTIC_MAX_RESTARTS"] = std::to_string(p.max_restarts);
  env["TORCHELASTIC_RUN_ID"] = p.run_id;
  env["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  env["TORCHELASTIC_SIGNALS_TO_HANDLE"] = p.signals_to_handle;
  if (p.error_file.empty()) {
    env.erase("TORCHELASTIC_ERROR_FILE");
  } else {
    env["TORCHELASTIC_ERROR_FILE"] = p.error_file;
  }
  return env;
}

std::map<std::string, std::string> current_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string entry = *e;
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return env;
}

std::vector<std::string> to_envp(const std::map<std::string, std::string>& env) {
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [key, value] : env) out.push_back(key + "=" + value);
  return out;
}

}  // namespace t4g::launch
