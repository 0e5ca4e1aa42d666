// Exponential moving average of the trainable weights, over the same flat range the optimizer
// owns (so under ZeRO it is sharded like the optimizer state). The decay ramps up as diffusers'
// EMAModel does by default, min(decay, (1 + n) / (10 + n)) at its n-th update, so early EMA
// weights are not dominated by the random start.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace t4g {

class FlatEma {
 public:
  FlatEma() = default;
  // `values`: float32 starting values of the owned range (copied). decay 0 = disabled.
  FlatEma(const torch::Tensor& values, double decay);

  bool enabled() const { return decay_ > 0.0; }
  // ema = d * ema + (1 - d) * values with d = the ramped decay of this update.
  void update(const torch::Tensor& values);
  // The decay the next update will use.
  double current_decay() const;

  const torch::Tensor& values() const { return ema_; }
  int64_t updates() const { return updates_; }
  void load(const torch::Tensor& values, int64_t updates);

 private:
  double decay_ = 0.0;
  int64_t updates_ = 0;
  torch::Tensor ema_;
};

}  // namespace t4g
