#include "losses/diffusion_loss.h"

#include <gtest/gtest.h>

#include "common/rng.h"

namespace t4g {
namespace {

// The weighted x0 loss equals the v-prediction MSE (cogvideox.md 4.5); float64 inputs, 1e-9.
TEST(DiffusionLoss, EqualsVPredictionMse) {
  CogVideoXScheduler s;
  const auto x0 = torch::randn({3, 2, 4, 5, 5}, make_generator(1, {0}), torch::kFloat64);
  const NoisedBatch batch = add_training_noise(s, x0, make_generator(1, {1}));
  const auto v_hat = torch::randn(x0.sizes(), make_generator(1, {2}), torch::kFloat64);
  const auto v = s.get_velocity(x0, batch.noise, batch.timesteps);
  const double loss = diffusion_loss(s, v_hat, batch.noisy, x0, batch.timesteps).item<double>();
  EXPECT_NEAR(loss, (v_hat - v).pow(2).mean().item<double>(), 1e-9);
  // A perfect prediction has zero loss.
  EXPECT_NEAR(diffusion_loss(s, v, batch.noisy, x0, batch.timesteps).item<double>(), 0.0, 1e-12);
}

TEST(DiffusionLoss, NoiseIsSeededAndUniform) {
  CogVideoXScheduler s;
  const auto x0 = torch::zeros({4000, 1});
  const NoisedBatch a = add_training_noise(s, x0, make_generator(5, {0, 7}));
  const NoisedBatch b = add_training_noise(s, x0, make_generator(5, {0, 7}));
  EXPECT_TRUE(torch::equal(a.timesteps, b.timesteps));
  EXPECT_TRUE(torch::equal(a.noise, b.noise));
  EXPECT_GE(a.timesteps.min().item<int64_t>(), 0);
  EXPECT_LE(a.timesteps.max().item<int64_t>(), 999);
  // Mean of U{0..999} is 499.5; with 4000 draws the standard error is about 4.6.
  EXPECT_NEAR(a.timesteps.to(torch::kFloat64).mean().item<double>(), 499.5, 25.0);
}

TEST(DiffusionLoss, GradientsFlowToThePrediction) {
  CogVideoXScheduler s;
  const auto x0 = torch::randn({2, 3, 4}, make_generator(2, {0}));
  const NoisedBatch batch = add_training_noise(s, x0, make_generator(2, {1}));
  auto v_hat = torch::zeros_like(x0).requires_grad_(true);
  diffusion_loss(s, v_hat, batch.noisy, x0, batch.timesteps).backward();
  ASSERT_TRUE(v_hat.grad().defined());
  EXPECT_GT(v_hat.grad().abs().sum().item<double>(), 0.0);
}

}  // namespace
}  // namespace t4g
