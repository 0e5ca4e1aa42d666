// The end of a data-parallel training step, shared by the trainer (train/trainer.cpp) and the
// training benchmark (bench/bench_train.cpp) so that what the benchmark times is what the
// trainer runs: the GradientReducer (bucketed all-reduce, or reduce-scatter under ZeRO-2) over the
// ranks, the global gradient norm, clipping as torch.nn.utils.clip_grad_norm_, and the
// ShardedOptimizer's AdamW + EMA at the chosen ZeRO stage (all-gather of the updated values).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "common/config.h"
#include "train/communicator.h"
#include "train/flat_parameters.h"
#include "train/grad_reducer.h"
#include "train/sharded_optimizer.h"

namespace t4g {

struct DataParallelOptions {
  ShardedOptimizerOptions optimizer;         // ZeRO stage, AdamW hyper-parameters, EMA decay
  int64_t bucket_bytes = int64_t{25} << 20;  // reducer bucket cap (DDP's 25 MiB)
  double max_grad_norm = 0.0;                // clip the global gradient norm to this; 0 = no clipping
};

// The recipe's train section as options: zero_stage, beta1, beta2, eps, weight_decay, ema_decay,
// bucket_mb and grad_clip. Throws t4g::Error naming train.zero_stage when it is not 0, 1 or 2.
DataParallelOptions data_parallel_options(const TrainConfig& train);

// What one optimizer step did; identical on every rank.
struct StepOutcome {
  double grad_norm = 0.0;   // global L2 norm of the averaged gradient, before clipping
  double grad_scale = 1.0;  // clipping factor applied (1 = none)
  bool applied = false;     // false: the norm was not finite and nothing was updated
};

class DataParallelOptimizer {
 public:
  // `params` (current values are the starting point) and `comm` must outlive this object. `comm`
  // null or of world size 1: one rank, no reducer and no collectives. Every rank constructs it
  // with the same parameters and options. Installs the reducer's gradient hooks.
  DataParallelOptimizer(const FlatParameters& params, Communicator* comm, const DataParallelOptions& options);

  // Call before each micro-step's backward; `last` = this micro-step ends the optimizer step (its
  // gradients are reduced), otherwise they accumulate locally. No-op on one rank.
  void prepare_backward(bool last);
  // After the last micro-step's backward: the gradient averaged over the ranks, float32 on the
  // parameters' device: the whole flat space [numel], or this rank's shard only under ZeRO-2. The
  // parameters' .grad are cleared. On GPUs the result is ordered on the current stream (no host wait).
  torch::Tensor reduce_gradients();
  // The global norm of `grads` (from reduce_gradients; collective under ZeRO-2) and, when it is
  // finite, AdamW at `lr` on the clipped gradient, the parameters rewritten (all-gathered under
  // ZeRO-1/2) and the EMA. A non-finite norm updates nothing, on every rank alike.
  StepOutcome step(const torch::Tensor& grads, double lr);

  ShardedOptimizer& optimizer() { return optimizer_; }
  const ShardedOptimizer& optimizer() const { return optimizer_; }
  // The reducer; null on one rank.
  const GradientReducer* reducer() const { return reducer_.get(); }

 private:
  const FlatParameters& params_;
  DataParallelOptions options_;
  ShardedOptimizer optimizer_;
  std::unique_ptr<GradientReducer> reducer_;
};

}  // namespace t4g
