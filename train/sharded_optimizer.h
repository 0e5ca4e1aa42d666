// The optimizer the trainer steps: AdamW on float32 master weights plus the EMA, with the state
// optionally sharded across data-parallel ranks (ZeRO, Rajbhandari et al. 2020). Stage 0: every
// rank holds all of it. Stage 1: rank r holds master/exp_avg/exp_avg_sq/EMA only for
// FlatParameters::shard_range(r, W), updates that range, and all-gathers the updated values so
// every rank's model is complete. Stage 2: also the gradient arrives sharded (the GradientReducer
// in kReduceScatter mode), and clipping uses the global norm. Checkpoints hold full tensors by
// parameter name, so a run resumes on any number of ranks.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/communicator.h"
#include "train/ema.h"
#include "train/flat_parameters.h"
#include "train/grad_reducer.h"

namespace t4g {

enum class ZeroStage {
  k0 = 0,  // replicated state, all-reduced gradient (plain data parallelism)
  k1 = 1,  // optimizer state and EMA sharded, gradient all-reduced
  k2 = 2,  // optimizer state, EMA and the float32 gradient sharded (gradient reduce-scattered)
};

// Parses 0, 1 or 2; throws t4g::Error naming `key` otherwise.
ZeroStage zero_stage_from_int(int64_t stage, const std::string& key = "train.zero_stage");

struct ShardedOptimizerOptions {
  ZeroStage stage = ZeroStage::k0;  // how much is sharded
  AdamWOptions adam;                // AdamW hyper-parameters
  double ema_decay = 0.0;           // EMA decay; 0 = no EMA
  int64_t gather_bytes =
      int64_t{64} << 20;  // cap on one rank's share of one all-gather round (bounds transient memory)
};

// The flat float32 state gathered for a checkpoint (on the CPU of the root rank; undefined on the
// others). Name it with FlatParameters::named_views, or use ShardedOptimizer::gather_checkpoint.
struct FullOptimizerState {
  torch::Tensor master;      // [numel] float32 master weights
  torch::Tensor exp_avg;     // [numel]
  torch::Tensor exp_avg_sq;  // [numel]
  torch::Tensor ema;         // [numel], undefined when EMA is off
};

class ShardedOptimizer {
 public:
  // `params` (its current values are the starting point) and `comm` must outlive the optimizer;
  // `comm` null or of world size 1 means one rank (no collectives are ever issued). Every rank
  // must construct it with the same parameters and stage.
  ShardedOptimizer(const FlatParameters& params, Communicator* comm, const ShardedOptimizerOptions& options);

  ZeroStage stage() const { return options_.stage; }
  // This rank's range of the flat space: everything under stage 0 or with one rank.
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  // What the GradientReducer must return for step(): kReduceScatter under stage 2.
  GradReduceMode reduce_mode() const;

  // The global L2 norm of the averaged gradient `grad`: the whole flat gradient [numel], or this
  // rank's shard [end - begin] under stage 2, where the shards' squared sums are all-reduced
  // (collective then: every rank must call it). Identical on every rank, so all skip a non-finite
  // step together.
  double grad_norm(const torch::Tensor& grad);
  // One optimizer step: `grad` (as for grad_norm; a whole gradient is sliced to this rank's
  // range) times `grad_scale` (the clipping coefficient; 1 = none), AdamW at `lr`, the EMA, and the
  // parameters rewritten from the masters on every rank (all-gather under stages 1 and 2:
  // collective then). `grad` is not modified.
  void step(const torch::Tensor& grad, double lr, double grad_scale = 1.0);

  // Makes every rank start from rank `root`'s parameter values (a fresh distributed run):
  // broadcast, then masters, EMA and parameters reset from them, moments zero. Collective.
  void broadcast_parameters(int root = 0);

  // The full state, assembled from every rank's shard in rounds of at most gather_bytes per
  // rank, onto the CPU of rank `root`. Collective.
  FullOptimizerState gather_state(int root = 0);
  // gather_state by parameter name into `tensors` (weights, exp_avg, exp_avg_sq, ema) on rank
  // `root`; the others get nothing. Collective.
  void gather_checkpoint(CheckpointTensors& tensors, int root = 0);
  // Restores from a checkpoint written with any number of ranks and any stage: every tensor of
  // this parameter layout must be present by name with its size (a missing or mis-sized one is a
  // t4g::Error naming it and `source`). Keeps this rank's shard of each and rewrites the
  // parameters. An EMA missing from the checkpoint restarts from the loaded weights. Local (every
  // rank reads the checkpoint itself).
  void load_checkpoint(const CheckpointTensors& tensors, int64_t optimizer_steps, int64_t ema_updates,
                       const std::string& source = "");

  int64_t optimizer_steps() const { return adam_.steps(); }
  int64_t ema_updates() const { return ema_.updates(); }
  bool ema_enabled() const { return ema_.enabled(); }
  // This rank's state (float32 [end - begin]).
  const torch::Tensor& master() const { return adam_.master(); }
  const torch::Tensor& ema() const { return ema_.values(); }
  // Float32 elements of optimizer state held by this rank (masters, both moments, EMA): about
  // 1/W of stage 0's under stages 1 and 2.
  int64_t state_numel() const;

 private:
  bool sharded() const;
  // Every rank's shard of `local` (float32 [end - begin], this rank's), cast to `dtype` and
  // all-gathered in rounds; each piece goes to sink(flat_begin, values) on every rank.
  template <typename Sink>
  void gather_rounds(const torch::Tensor& local, torch::ScalarType dtype, Sink&& sink);
  // Writes the masters into the parameters: every rank's range, all-gathered when sharded.
  void refresh_parameters();

  const FlatParameters& params_;
  Communicator* comm_;  // null or world 1: one rank
  ShardedOptimizerOptions options_;
  int rank_ = 0;
  int world_ = 1;
  int64_t begin_ = 0;
  int64_t end_ = 0;
  FlatAdamW adam_;
  FlatEma ema_;
};

}  // namespace t4g
