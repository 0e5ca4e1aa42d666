// SLURM support for t4grun (`srun --ntasks-per-node=1 t4grun --slurm ...`, one t4grun per node):
// the node count, this node's rank, node 0's address and the job id come from SLURM's variables
// instead of flags. Only with --slurm, because a t4grun started by hand inside a multi-node
// allocation must not suddenly wait for other nodes.
#pragma once

#include <map>
#include <string>

#include "launch/launcher_options.h"

namespace t4g::launch {

// Which settings the user gave explicitly (a flag or its PET_* variable); those are kept.
struct ExplicitSettings {
  bool nnodes = false;
  bool node_rank = false;
  bool master_addr = false;
  bool run_id = false;
};

// Fills nnodes (SLURM_STEP_NUM_NODES, else SLURM_NNODES), node_rank (SLURM_NODEID), master_addr
// (first host of SLURM_STEP_NODELIST, else SLURM_JOB_NODELIST) and run_id (SLURM_JOB_ID) unless
// given explicitly. Throws t4g::Error naming the missing variable.
void apply_slurm(LauncherOptions& options, const std::map<std::string, std::string>& env,
                 const ExplicitSettings& given);

// The first host of a SLURM host list: "gpu[03-05,09],cpu1" -> "gpu03".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace t4g::launch
