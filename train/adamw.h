// AdamW over a range of the flat parameter space (train/flat_parameters.h) with float32 master
// weights: the model may compute in bf16, the update happens on the float32 copy and is written
// back. torch.optim.AdamW's arithmetic (decoupled weight decay, bias corrections, eps added after
// the square root), so a run matches PyTorch's optimizer step for step. Under ZeRO each rank
// holds only its own range; without it the range is the whole space.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace t4g {

struct AdamWOptions {
  double beta1 = 0.9;           // first-moment decay
  double beta2 = 0.95;          // second-moment decay
  double eps = 1e-8;            // added to sqrt(v_hat)
  double weight_decay = 1e-4;   // decoupled: p -= lr * wd * p
};

class FlatAdamW {
 public:
  FlatAdamW() = default;
  // `master`: float32 values of the owned range [begin, end) (copied).
  FlatAdamW(const torch::Tensor& master, int64_t begin, const AdamWOptions& options);

  // One update with float32 gradients of the owned range at learning rate `lr`.
  void step(const torch::Tensor& grad, double lr);

  int64_t begin() const { return begin_; }
  int64_t end() const { return begin_ + master_.numel(); }
  int64_t steps() const { return steps_; }
  const torch::Tensor& master() const { return master_; }
  const torch::Tensor& exp_avg() const { return exp_avg_; }
  const torch::Tensor& exp_avg_sq() const { return exp_avg_sq_; }

  // Restores a saved state of the same range (shapes checked).
  void load(const torch::Tensor& master, const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t steps);

 private:
  AdamWOptions options_;
  int64_t begin_ = 0;
  int64_t steps_ = 0;
  torch::Tensor master_;
  torch::Tensor exp_avg_;
  torch::Tensor exp_avg_sq_;
};

}  // namespace t4g
