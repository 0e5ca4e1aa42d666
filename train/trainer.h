// The Track4Gen fine-tuning loop (ARCHITECTURE.md flow 2): shards -> loader threads -> latents
// (VAE when the shards carry none) -> noise at a random timestep -> transformer forward with the
// refiner hooked after block L -> diffusion loss + lambda * correspondence loss on the refined
// features at the tracks -> backward -> gradient all-reduce -> clip -> AdamW on float32 master
// weights -> EMA -> periodic atomic checkpoint and evaluation -> console, JSON lines, TensorBoard.
// Every random draw comes from generators derived from (seed, rank, step), and the loader resumes
// at its saved position, so a run stopped and resumed ends with exactly the same weights.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/config.h"
#include "common/json.h"
#include "models/model_components.h"
#include "models/refiner.h"
#include "train/flat_parameters.h"

namespace t4g {

class Communicator;

// The model being fine-tuned: the loaded components, the refiner (null when disabled) and the
// trainable parameters in their flat order (transformer's first, then "refiner.*").
struct TrainingModel {
  ModelComponents components;
  Refiner refiner{nullptr};
  FlatParameters params;
  torch::Tensor empty_prompt;  // [1, L, D] T5("") for evaluation, set at the first evaluation
};

// Runs a tracking evaluation of the model at `step` and returns metric name -> value (logged
// under kind "eval"). Called on every rank (the hook may shard videos over ranks).
using EvaluationHook = std::function<std::map<std::string, double>(TrainingModel& model, int64_t step)>;

struct TrainOptions {
  std::string resume;            // "" (fresh), "latest" (newest checkpoint of run.out_dir, fresh if none) or a folder
  int64_t stop_after_step = -1;  // >= 0: checkpoint and return once this many steps are done (tests, preemption drills)
  EvaluationHook evaluate;       // evaluation hook; empty = the recipe's tracking evaluation (train/tracking_eval.h)
  bool track_eval = true;        // run the recipe's tracking evaluation when `evaluate` is empty
  int64_t fail_at_step = -1;     // fault injection for restart drills: rank fail_rank throws after this step,
  int fail_rank = 0;             //   on the first attempt only (TORCHELASTIC_RESTART_COUNT = 0)
  bool quiet = false;            // no progress bar (tests)
};

struct TrainResult {
  int64_t start_step = 0;        // step the run started (or resumed) at
  int64_t steps_done = 0;        // optimizer steps completed at return
  int64_t skipped_steps = 0;     // non-finite steps skipped
  std::string last_checkpoint;   // folder of the last checkpoint written
  std::string export_dir;        // exported weights (after the final step), "" when stopped early
  std::map<std::string, double> last_train;  // the last logged training record
  Json evaluations = Json::array();          // [{step, metrics}] of every evaluation
};

// Fine-tunes per `config` and writes under config.run.out_dir:
//   config.yaml, metrics.jsonl, tb/, checkpoints/step_*/, export/ (transformer/ in diffusers layout
//   when the backbone trained, lora/ in PEFT and diffusers layouts with trainable = lora,
//   refiner.safetensors), data/ (synthetic shards when data.shards is empty).
// Only rank 0 writes; every rank resumes from the same checkpoint.
TrainResult train(const Config& config, const TrainOptions& options = {});

}  // namespace t4g
