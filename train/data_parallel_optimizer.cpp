// Reducer + global norm + clipping + sharded AdamW in one place (see data_parallel_optimizer.h).
// The arithmetic is the trainer's, step for step (resumed runs stay bit-identical): the norm from
// ShardedOptimizer::grad_norm, the scale max_norm / (norm + 1e-6) when that is below 1.
#include "train/data_parallel_optimizer.h"

#include <algorithm>
#include <cmath>

namespace t4g {

DataParallelOptions data_parallel_options(const TrainConfig& train) {
  DataParallelOptions o;
  o.optimizer.stage = zero_stage_from_int(train.zero_stage);
  o.optimizer.adam.beta1 = train.beta1;
  o.optimizer.adam.beta2 = train.beta2;
  o.optimizer.adam.eps = train.eps;
  o.optimizer.adam.weight_decay = train.weight_decay;
  o.optimizer.ema_decay = train.ema_decay;
  o.bucket_bytes = train.bucket_mb << 20;
  o.max_grad_norm = train.grad_clip;
  return o;
}

DataParallelOptimizer::DataParallelOptimizer(const FlatParameters& params, Communicator* comm,
                                             const DataParallelOptions& options)
    : params_(params), options_(options), optimizer_(params, comm, options.optimizer) {
  if (comm != nullptr && comm->world_size() > 1) {
    GradReducerOptions ro;
    ro.bucket_bytes = options.bucket_bytes;
    ro.mode = optimizer_.reduce_mode();
    reducer_ = std::make_unique<GradientReducer>(params, *comm, ro);
  }
}

void DataParallelOptimizer::prepare_backward(bool last) {
  if (reducer_) reducer_->prepare(last);
}

torch::Tensor DataParallelOptimizer::reduce_gradients() {
  if (reducer_) return reducer_->finish();
  torch::Tensor grads = params_.gather_grads();
  params_.zero_grads();
  return grads;
}

StepOutcome DataParallelOptimizer::step(const torch::Tensor& grads, double lr) {
  StepOutcome out;
  out.grad_norm = optimizer_.grad_norm(grads);  // global: collective under ZeRO-2
  if (!std::isfinite(out.grad_norm)) return out;
  // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
  if (options_.max_grad_norm > 0) out.grad_scale = std::min(1.0, options_.max_grad_norm / (out.grad_norm + 1e-6));
  optimizer_.step(grads, lr, out.grad_scale);  // AdamW, parameters (all-gathered under ZeRO), EMA
  out.applied = true;
  return out;
}

}  // namespace t4g
