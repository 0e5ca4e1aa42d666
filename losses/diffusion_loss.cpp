#include "losses/diffusion_loss.h"

#include "common/error.h"

namespace t4g {

NoisedBatch add_training_noise(const CogVideoXScheduler& scheduler, const torch::Tensor& x0, torch::Generator generator) {
  T4G_CHECK(x0.dim() >= 2, "x0 must have a batch dimension, got ", x0.sizes());
  const int64_t b = x0.size(0);
  NoisedBatch out;
  // Drawn on the generator's device, then moved: the stream of numbers depends only on the seed.
  const auto gen_device = generator.device();
  out.timesteps = torch::randint(0, scheduler.config().num_train_timesteps, {b}, generator,
                                 torch::TensorOptions().dtype(torch::kInt64).device(gen_device))
                      .to(x0.device());
  out.noise = torch::randn(x0.sizes(), generator, x0.options().device(gen_device)).to(x0.device());
  out.noisy = scheduler.add_noise(x0, out.noise, out.timesteps);
  return out;
}

torch::Tensor diffusion_loss(const CogVideoXScheduler& scheduler, const torch::Tensor& v_pred,
                             const torch::Tensor& noisy, const torch::Tensor& x0, const torch::Tensor& timesteps) {
  T4G_CHECK(v_pred.sizes() == x0.sizes() && noisy.sizes() == x0.sizes(), "diffusion_loss: v_pred ", v_pred.sizes(),
            ", noisy ", noisy.sizes(), " and x0 ", x0.sizes(), " must have the same shape");
  const auto compute = v_pred.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const torch::Tensor v = v_pred.to(compute), xt = noisy.to(compute), target = x0.to(compute);
  const torch::Tensor x0_hat = scheduler.get_velocity(v, xt, timesteps);
  const int64_t b = x0.size(0);
  std::vector<int64_t> shape(static_cast<size_t>(x0.dim()), 1);
  shape[0] = b;
  const torch::Tensor w = scheduler.loss_weights(timesteps).to(x0.device()).reshape(shape);
  return (w * (x0_hat - target).pow(2)).reshape({b, -1}).mean(1).mean();
}

}  // namespace t4g
