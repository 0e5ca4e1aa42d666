// The diffusion loss of CogVideoX fine-tuning, as diffusers' training scripts and finetrainers
// compute it (research/cogvideox.md 4.5): t ~ U{0..T-1} per sample, x_t = add_noise(x0, eps, t),
// the model predicts v; x0_hat = sqrt(a) x_t - sqrt(1-a) v_hat; loss = mean_b mean(w_t (x0_hat - x0)^2)
// with w_t = 1 / (1 - a_t). Algebraically this is the plain v-prediction MSE (v_hat - v)^2.
#pragma once

#include <torch/torch.h>

#include "models/cogvideox_scheduler.h"

namespace t4g {

// One noised training batch.
struct NoisedBatch {
  torch::Tensor timesteps;  // int64 [B], uniform in [0, num_train_timesteps)
  torch::Tensor noise;      // like x0
  torch::Tensor noisy;      // x_t, like x0
};

// Draws timesteps and noise from `generator` (CPU or on x0's device) and noises x0 [B, ...].
NoisedBatch add_training_noise(const CogVideoXScheduler& scheduler, const torch::Tensor& x0, torch::Generator generator);

// The weighted x0 loss above, a scalar. Computed in float32 or wider (bf16 predictions are upcast),
// with the per-sample weights in float64 like the reference.
torch::Tensor diffusion_loss(const CogVideoXScheduler& scheduler, const torch::Tensor& v_pred,
                             const torch::Tensor& noisy, const torch::Tensor& x0, const torch::Tensor& timesteps);

}  // namespace t4g
