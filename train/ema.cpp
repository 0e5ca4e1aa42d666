// EMA of the trainable weights (see ema.h).
#include "train/ema.h"

#include <algorithm>

#include "common/error.h"

namespace t4g {

FlatEma::FlatEma(const torch::Tensor& values, double decay) : decay_(decay) {
  if (enabled()) ema_ = values.detach().to(torch::kFloat32).clone();
}

double FlatEma::current_decay() const {
  // diffusers EMAModel.get_decay with update_after_step 0, use_ema_warmup False: the n-th call
  // (1-based) sees step = n - 1; step 0 gives 0 (copy the weights).
  const double step = static_cast<double>(updates_);
  if (step <= 0) return 0.0;
  return std::min(decay_, (1.0 + step) / (10.0 + step));
}

void FlatEma::update(const torch::Tensor& values) {
  if (!enabled()) return;
  torch::NoGradGuard no_grad;
  const double d = current_decay();
  ema_.mul_(d).add_(values.to(ema_.device(), torch::kFloat32), 1.0 - d);
  ++updates_;
}

void FlatEma::load(const torch::Tensor& values, int64_t updates) {
  if (!enabled()) return;
  T4G_CHECK(values.numel() == ema_.numel(), "EMA state has ", values.numel(), " values, this range ", ema_.numel());
  torch::NoGradGuard no_grad;
  ema_.copy_(values.reshape({-1}));
  updates_ = updates;
}

}  // namespace t4g
