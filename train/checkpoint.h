// Training checkpoints: one folder per step under <out_dir>/checkpoints/, written under a temporary
// name and renamed, so a folder named step_NNNNNNNN is always complete; the last K are kept.
// Everything is stored by parameter NAME in float32 (the full tensors, gathered from ZeRO shards
// before saving), so a checkpoint resumes on any number of ranks.
//   step_00000100/
//     weights.safetensors     trainable master weights (float32), by parameter name
//     optimizer.safetensors   exp_avg.<name>, exp_avg_sq.<name>
//     ema.safetensors         EMA weights by name (when EMA is on)
//     rng.safetensors         generator states (uint8) by stream name
//     state.json              step, loader position, counters, world size, the resolved recipe
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

#include "common/json.h"
#include "data/loader.h"

namespace t4g {

// The scalar part of a checkpoint.
struct CheckpointState {
  int64_t step = 0;              // optimizer steps completed
  data::LoaderPosition loader;   // the next batch the loader returns
  int64_t optimizer_steps = 0;   // AdamW's step count (bias corrections)
  int64_t ema_updates = 0;       // EMA updates done
  int64_t nan_streak = 0;        // consecutive skipped (non-finite) steps at save time
  int64_t skipped_steps = 0;     // skipped steps in total
  int64_t world_size = 1;        // ranks that wrote it (informational: resume works on any)
  int64_t global_batch = 0;      // clips per loader batch over all ranks (0 = unknown): converts `loader` on resume
  std::string config_yaml;       // the resolved recipe of the run
};

// The tensor part, by name.
struct CheckpointTensors {
  std::map<std::string, torch::Tensor> weights;
  std::map<std::string, torch::Tensor> exp_avg;
  std::map<std::string, torch::Tensor> exp_avg_sq;
  std::map<std::string, torch::Tensor> ema;  // empty when EMA is off
  std::map<std::string, torch::Tensor> rng;  // generator states
};

struct Checkpoint {
  std::string folder;
  CheckpointState state;
  CheckpointTensors tensors;
};

// Folder name of a step: "step_00000100".
std::string checkpoint_folder_name(int64_t step);

// Writes the checkpoint of `state.step` into `checkpoints_dir` (created if missing) atomically,
// replacing one of the same step, then removes all but the newest `keep_last` (0 = keep all) and
// any temporary folder a crash left. Returns the folder written.
std::string save_checkpoint(const std::string& checkpoints_dir, const CheckpointState& state,
                            const CheckpointTensors& tensors, int64_t keep_last);

// Complete checkpoint folders in `checkpoints_dir`, oldest first ([] when the folder is missing).
std::vector<std::string> list_checkpoints(const std::string& checkpoints_dir);

// The newest complete checkpoint, or "" when there is none.
std::string find_latest_checkpoint(const std::string& checkpoints_dir);

// Reads a checkpoint folder; a missing or malformed file is one t4g::Error naming it.
Checkpoint load_checkpoint(const std::string& folder);

}  // namespace t4g
