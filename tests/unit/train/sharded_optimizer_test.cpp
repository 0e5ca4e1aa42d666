// The ShardedOptimizer on one rank (the multi-rank behaviour runs under t4grun in
// tests/integration/zero_test.cpp): every ZeRO stage steps exactly like the FlatAdamW + FlatEma
// pair it replaces, clipping included; a checkpoint gathered from it and loaded into a fresh one
// continues bit for bit; bad checkpoints and gradients are errors naming the tensor; bf16
// parameters receive the rounded masters.
#include "train/sharded_optimizer.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/testing.h"

namespace t4g {
namespace {

std::vector<std::pair<std::string, torch::Tensor>> make_params(uint64_t seed,
                                                               torch::ScalarType dtype = torch::kFloat32) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return {{"a.weight", at::randn({3, 4}, gen, torch::kFloat32).to(dtype).requires_grad_()},
          {"b.bias", at::randn({5}, gen, torch::kFloat32).to(dtype).requires_grad_()},
          {"c", at::randn({2, 2, 2}, gen, torch::kFloat32).to(dtype).requires_grad_()}};
}

torch::Tensor gradient(int64_t numel, uint64_t step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + step);
  return at::randn({numel}, gen, torch::kFloat32);
}

ShardedOptimizerOptions options_for(ZeroStage stage) {
  ShardedOptimizerOptions o;
  o.stage = stage;
  o.adam.weight_decay = 0.1;
  o.ema_decay = 0.9;
  return o;
}

class OneRankStage : public ::testing::TestWithParam<int> {};

// The trainer's previous loop, verbatim in effect: norm, clip by max_norm / (norm + 1e-6) when
// below 1, AdamW, parameters from the masters, EMA. Identical arithmetic, so tolerance 0.
TEST_P(OneRankStage, StepsLikeFlatAdamWAndEma) {
  const ZeroStage stage = zero_stage_from_int(GetParam());
  auto ours = make_params(1);
  auto ref = make_params(1);
  const FlatParameters flat(ours), ref_flat(ref);
  ShardedOptimizer opt(flat, nullptr, options_for(stage));
  EXPECT_EQ(opt.begin(), 0);
  EXPECT_EQ(opt.end(), flat.numel());
  EXPECT_EQ(opt.reduce_mode(), stage == ZeroStage::k2 ? GradReduceMode::kReduceScatter : GradReduceMode::kAllReduce);
  FlatAdamW ref_opt(ref_flat.gather_values(), 0, options_for(stage).adam);
  FlatEma ref_ema(ref_opt.master(), 0.9);
  const double max_norm = 4.0;  // binds on some steps, not on others
  int clipped = 0;
  for (uint64_t step = 0; step < 6; ++step) {
    const torch::Tensor g = gradient(flat.numel(), step) * (step % 2 == 0 ? 0.5 : 2.0);
    const double norm = opt.grad_norm(g);
    const double ref_norm = g.norm().item<double>();
    EXPECT_EQ(norm, ref_norm);
    const double coef = max_norm / (norm + 1e-6);
    const torch::Tensor before = g.clone();
    opt.step(g, 1e-2, std::min(1.0, coef));
    EXPECT_TRUE(torch::equal(g, before));  // the caller's gradient is left alone
    torch::Tensor ref_g = g.clone();
    if (coef < 1.0) {
      ref_g.mul_(coef);
      ++clipped;
    }
    ref_opt.step(ref_g, 1e-2);
    ref_flat.scatter_values(ref_opt.master(), 0, ref_flat.numel());
    ref_ema.update(ref_opt.master());
  }
  EXPECT_GT(clipped, 0);
  EXPECT_LT(clipped, 6);
  EXPECT_EQ(opt.optimizer_steps(), 6);
  EXPECT_EQ(opt.ema_updates(), 6);
  EXPECT_TRUE(torch::equal(opt.master(), ref_opt.master()));
  EXPECT_TRUE(torch::equal(opt.ema(), ref_ema.values()));
  EXPECT_TRUE(torch::equal(flat.gather_values(), ref_flat.gather_values()));
  // One rank holds everything: masters, two moments, EMA.
  EXPECT_EQ(opt.state_numel(), 4 * flat.numel());
}

// Saved after 3 steps and loaded into a fresh optimizer on other starting weights, the run
// continues exactly as the uninterrupted one (tolerance 0), whatever stage either side uses.
TEST_P(OneRankStage, CheckpointRoundTripContinuesExactly) {
  const ZeroStage stage = zero_stage_from_int(GetParam());
  auto params = make_params(2);
  const FlatParameters flat(params);
  ShardedOptimizer opt(flat, nullptr, options_for(stage));
  for (uint64_t step = 0; step < 3; ++step) opt.step(gradient(flat.numel(), step), 1e-2);
  CheckpointTensors saved;
  opt.gather_checkpoint(saved);
  ASSERT_EQ(saved.weights.size(), 3u);
  ASSERT_EQ(saved.ema.size(), 3u);
  EXPECT_EQ(saved.weights.at("a.weight").sizes(), (std::vector<int64_t>{3, 4}));
  const FullOptimizerState full = opt.gather_state();
  EXPECT_TRUE(torch::equal(full.master, opt.master()));
  EXPECT_EQ(full.master.device().type(), torch::kCPU);

  auto other = make_params(9);
  const FlatParameters other_flat(other);
  ShardedOptimizer resumed(other_flat, nullptr, options_for(zero_stage_from_int((GetParam() + 1) % 3)));
  resumed.load_checkpoint(saved, opt.optimizer_steps(), opt.ema_updates(), "ck");
  EXPECT_TRUE(torch::equal(other_flat.gather_values(), flat.gather_values()));
  for (uint64_t step = 3; step < 6; ++step) {
    opt.step(gradient(flat.numel(), step), 1e-2);
    resumed.step(gradient(flat.numel(), step), 1e-2);
  }
  EXPECT_EQ(resumed.optimizer_steps(), 6);
  EXPECT_TRUE(torch::equal(resumed.master(), opt.master()));
  EXPECT_TRUE(torch::equal(resumed.ema(), opt.ema()));
  EXPECT_TRUE(torch::equal(other_flat.gather_values(), flat.gather_values()));
}

INSTANTIATE_TEST_SUITE_P(Stages, OneRankStage, ::testing::Values(0, 1, 2));

TEST(ShardedOptimizer, BadCheckpointsNameTheTensorAndFile) {
  auto params = make_params(3);
  const FlatParameters flat(params);
  ShardedOptimizer opt(flat, nullptr, options_for(ZeroStage::k1));
  CheckpointTensors good;
  opt.gather_checkpoint(good);

  CheckpointTensors missing = good;
  missing.exp_avg.erase("b.bias");
  std::string m = testing::error_of([&] { opt.load_checkpoint(missing, 1, 1, "/ck/step_1"); });
  EXPECT_NE(m.find("/ck/step_1"), std::string::npos) << m;
  EXPECT_NE(m.find("exp_avg lack"), std::string::npos) << m;
  EXPECT_NE(m.find("tensor b.bias"), std::string::npos) << m;

  CheckpointTensors resized = good;
  resized.weights["c"] = torch::zeros({7});
  m = testing::error_of([&] { opt.load_checkpoint(resized, 1, 1, "/ck/step_1"); });
  EXPECT_NE(m.find("tensor c; expected 8 values, got 7"), std::string::npos) << m;

  CheckpointTensors extra = good;
  extra.exp_avg_sq["d.weight"] = torch::zeros({2});
  m = testing::error_of([&] { opt.load_checkpoint(extra, 1, 1, "/ck/step_1"); });
  EXPECT_NE(m.find("does not train"), std::string::npos) << m;
  EXPECT_NE(m.find("d.weight"), std::string::npos) << m;

  // A checkpoint without EMA (written with EMA off) restarts the EMA from the loaded weights.
  CheckpointTensors no_ema = good;
  no_ema.ema.clear();
  no_ema.weights["c"] = torch::full({2, 2, 2}, 3.0f);
  opt.load_checkpoint(no_ema, 4, 4, "/ck/step_4");
  EXPECT_EQ(opt.ema_updates(), 0);
  EXPECT_TRUE(torch::equal(opt.ema(), opt.master()));
  EXPECT_TRUE(torch::equal(params[2].second.detach(), torch::full({2, 2, 2}, 3.0f)));
}

TEST(ShardedOptimizer, RejectsGradientsOfTheWrongSizeAndUnknownStages) {
  auto params = make_params(4);
  const FlatParameters flat(params);
  ShardedOptimizer opt(flat, nullptr, options_for(ZeroStage::k2));
  const std::string m = testing::error_of([&] { opt.step(torch::zeros({flat.numel() - 1}), 1e-3); });
  EXPECT_NE(m.find("tensor gradient; expected 25 values"), std::string::npos) << m;
  EXPECT_NE(testing::error_of([&] { opt.grad_norm(torch::zeros({3})); }).find("wrong size"), std::string::npos);
  const std::string s = testing::error_of([] { zero_stage_from_int(3); });
  EXPECT_NE(s.find("train.zero_stage: unknown ZeRO stage"), std::string::npos) << s;
  EXPECT_NE(s.find("expected 0, 1 or 2, got 3"), std::string::npos) << s;
}

// bf16 parameters: the masters stay float32, the parameters receive their bf16 rounding
// (tolerance 0 against the cast), and uniform_dtype tells what ZeRO would gather them in.
TEST(ShardedOptimizer, Bf16ParametersGetRoundedMasters) {
  auto params = make_params(5, torch::kBFloat16);
  const FlatParameters flat(params);
  EXPECT_EQ(flat.uniform_dtype(), torch::kBFloat16);
  ShardedOptimizer opt(flat, nullptr, options_for(ZeroStage::k1));
  EXPECT_EQ(opt.master().scalar_type(), torch::kFloat32);
  for (uint64_t step = 0; step < 3; ++step) opt.step(gradient(flat.numel(), step), 1e-2);
  EXPECT_TRUE(torch::equal(flat.gather_values(), opt.master().to(torch::kBFloat16).to(torch::kFloat32)));
  auto mixed = make_params(5);
  mixed[1].second = mixed[1].second.detach().to(torch::kBFloat16).requires_grad_();
  EXPECT_EQ(FlatParameters(mixed).uniform_dtype(), torch::kFloat32);
}

}  // namespace
}  // namespace t4g
