// AdamW on flat float32 master weights equals torch::optim::AdamW step for step; the flat layout
// round-trips values and gradients; LR schedules match diffusers' get_scheduler formulas; EMA
// follows diffusers' EMAModel decay ramp.
#include <gtest/gtest.h>

#include <cmath>

#include "train/adamw.h"
#include "train/ema.h"
#include "train/flat_parameters.h"
#include "train/lr_schedule.h"

namespace t4g {
namespace {

std::vector<std::pair<std::string, torch::Tensor>> make_params(uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return {{"a.weight", at::randn({3, 4}, gen, torch::kFloat32).requires_grad_()},
          {"b.bias", at::randn({5}, gen, torch::kFloat32).requires_grad_()},
          {"c", at::randn({2, 2, 2}, gen, torch::kFloat32).requires_grad_()}};
}

TEST(FlatParameters, GatherScatterAndShards) {
  auto params = make_params(0);
  const FlatParameters flat(params);
  EXPECT_EQ(flat.numel(), 12 + 5 + 8);
  const torch::Tensor values = flat.gather_values();
  EXPECT_TRUE(torch::equal(values.narrow(0, 12, 5), params[1].second.detach()));
  // Write a range that straddles two parameters.
  flat.scatter_values(torch::full({6}, 7.0f), 10, 16);
  EXPECT_EQ(params[0].second.view({-1})[9].item<float>(), values[9].item<float>());
  EXPECT_EQ(params[0].second.view({-1})[10].item<float>(), 7.0f);
  EXPECT_EQ(params[1].second[3].item<float>(), 7.0f);
  EXPECT_EQ(params[1].second[4].item<float>(), values[16].item<float>());
  // Shards cover the space exactly once.
  int64_t covered = 0;
  for (int r = 0; r < 4; ++r) {
    const auto [b, e] = flat.shard_range(r, 4);
    EXPECT_EQ(b, covered);
    covered = e;
  }
  EXPECT_EQ(covered, flat.numel());
  // Missing gradients read as zeros.
  params[0].second.mutable_grad() = torch::ones({3, 4});
  const torch::Tensor g = flat.gather_grads();
  EXPECT_EQ(g.sum().item<float>(), 12.0f);
  flat.zero_grads();
  EXPECT_FALSE(params[0].second.grad().defined());
  // Named views see the right elements.
  const auto views = flat.named_views(values);
  ASSERT_EQ(views.size(), 3u);
  EXPECT_EQ(views[2].second.sizes(), (std::vector<int64_t>{2, 2, 2}));
}

TEST(FlatAdamW, MatchesTorchAdamW) {
  // Same parameters, same gradients, 5 steps; torch's AdamW is the reference. float32: the two
  // differ only in the order of a few float operations (tolerance 1e-6 relative).
  auto ours = make_params(1);
  auto ref = make_params(1);
  std::vector<torch::Tensor> ref_params;
  for (auto& p : ref) ref_params.push_back(p.second);
  const double lr = 1e-2;
  torch::optim::AdamW torch_opt(ref_params, torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  const FlatParameters flat(ours);
  AdamWOptions options;
  options.weight_decay = 0.1;
  FlatAdamW opt(flat.gather_values(), 0, options);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  for (int step = 0; step < 5; ++step) {
    for (size_t i = 0; i < ours.size(); ++i) {
      const torch::Tensor g = at::randn(ours[i].second.sizes(), gen, torch::kFloat32);
      ours[i].second.mutable_grad() = g.clone();
      ref[i].second.mutable_grad() = g.clone();
    }
    opt.step(flat.gather_grads(), lr);
    flat.scatter_values(opt.master(), 0, flat.numel());
    torch_opt.step();
  }
  EXPECT_EQ(opt.steps(), 5);
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_TRUE(torch::allclose(ours[i].second, ref[i].second, 1e-6, 1e-7)) << ours[i].first;
  }
}

TEST(FlatAdamW, ShardedUpdatesEqualTheWhole) {
  // ZeRO's premise: updating two halves separately is the same as updating the whole.
  auto params = make_params(2);
  const FlatParameters flat(params);
  const torch::Tensor values = flat.gather_values();
  const torch::Tensor grad = torch::linspace(-1, 1, flat.numel());
  FlatAdamW whole(values, 0, {});
  whole.step(grad, 1e-3);
  const auto [b0, e0] = flat.shard_range(0, 2);
  const auto [b1, e1] = flat.shard_range(1, 2);
  FlatAdamW first(values.narrow(0, b0, e0 - b0), b0, {});
  FlatAdamW second(values.narrow(0, b1, e1 - b1), b1, {});
  first.step(grad.narrow(0, b0, e0 - b0), 1e-3);
  second.step(grad.narrow(0, b1, e1 - b1), 1e-3);
  EXPECT_TRUE(torch::equal(torch::cat({first.master(), second.master()}), whole.master()));
}

TEST(LrSchedule, MatchesDiffusersGetScheduler) {
  LrSchedule s;
  s.base_lr = 1.0;
  s.warmup_steps = 10;
  s.total_steps = 110;
  s.kind = LrScheduleKind::kConstant;
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.0);  // diffusers: the first update has factor 0 / warmup
  EXPECT_DOUBLE_EQ(s.lr_at(5), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(109), 1.0);
  s.kind = LrScheduleKind::kCosine;
  EXPECT_DOUBLE_EQ(s.lr_at(10), 1.0);
  EXPECT_NEAR(s.lr_at(60), 0.5, 1e-12);  // half way: 0.5 (1 + cos(pi / 2))
  EXPECT_NEAR(s.lr_at(110), 0.0, 1e-12);
  s.kind = LrScheduleKind::kLinear;
  s.min_ratio = 0.1;
  EXPECT_NEAR(s.lr_at(60), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(s.lr_at(500), 0.1, 1e-12);
  EXPECT_THROW(parse_lr_schedule("exponential"), std::exception);
}

TEST(FlatEma, FollowsDiffusersDecayRamp) {
  FlatEma ema(torch::zeros({2}), 0.99);
  ASSERT_TRUE(ema.enabled());
  EXPECT_DOUBLE_EQ(ema.current_decay(), 0.0);   // first update copies
  ema.update(torch::ones({2}));
  EXPECT_TRUE(torch::equal(ema.values(), torch::ones({2})));
  EXPECT_DOUBLE_EQ(ema.current_decay(), 2.0 / 11.0);
  ema.update(torch::zeros({2}));
  EXPECT_NEAR(ema.values()[0].item<float>(), 2.0 / 11.0, 1e-7);
  FlatEma off(torch::zeros({2}), 0.0);
  EXPECT_FALSE(off.enabled());
  off.update(torch::ones({2}));  // no-op
}

}  // namespace
}  // namespace t4g
