// AdamW on float32 master weights (see adamw.h).
#include "train/adamw.h"

#include <cmath>

#include "common/error.h"
#include "common/shape_string.h"

namespace t4g {

FlatAdamW::FlatAdamW(const torch::Tensor& master, int64_t begin, const AdamWOptions& options)
    : options_(options), begin_(begin) {
  master_ = master.detach().to(torch::kFloat32).clone();
  exp_avg_ = torch::zeros_like(master_);
  exp_avg_sq_ = torch::zeros_like(master_);
}

void FlatAdamW::step(const torch::Tensor& grad, double lr) {
  torch::NoGradGuard no_grad;
  T4G_CHECK(grad.numel() == master_.numel(), "AdamW: gradient has ", grad.numel(), " values, the owned range ",
            master_.numel());
  const torch::Tensor g = grad.to(master_.device(), torch::kFloat32);
  ++steps_;
  // Same order of operations as torch.optim.AdamW (_single_tensor_adamw).
  master_.mul_(1.0 - lr * options_.weight_decay);
  exp_avg_.lerp_(g, 1.0 - options_.beta1);
  exp_avg_sq_.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
  const double bias1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  const double step_size = lr / bias1;
  const torch::Tensor denom = (exp_avg_sq_.sqrt() / std::sqrt(bias2)).add_(options_.eps);
  master_.addcdiv_(exp_avg_, denom, -step_size);
}

void FlatAdamW::load(const torch::Tensor& master, const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq,
                     int64_t steps) {
  for (const torch::Tensor* t : {&master, &exp_avg, &exp_avg_sq}) {
    T4G_CHECK(t->numel() == master_.numel(), "optimizer state has ", t->numel(), " values [", shape_string(t->sizes()),
              "], this range ", master_.numel());
  }
  torch::NoGradGuard no_grad;
  master_.copy_(master.reshape({-1}));
  exp_avg_.copy_(exp_avg.reshape({-1}));
  exp_avg_sq_.copy_(exp_avg_sq.reshape({-1}));
  steps_ = steps;
}

}  // namespace t4g
