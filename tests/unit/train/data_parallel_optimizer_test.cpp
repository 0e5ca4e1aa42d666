// The DataParallelOptimizer in one process (its multi-rank behaviour, every ZeRO stage over the
// store and NCCL, runs under t4grun in tests/integration/zero_test.cpp): it steps exactly like the
// trainer's former sequence (gather, norm, clip, ShardedOptimizer step), skips a non-finite step
// without touching anything, routes gradients through the reducer when there are ranks, and maps
// the recipe's train section.
#include "train/data_parallel_optimizer.h"

#include <gtest/gtest.h>

#include <limits>

#include "common/error.h"
#include "tests/testing.h"

namespace t4g {
namespace {

struct Net {
  torch::nn::Linear a{nullptr}, b{nullptr};
  explicit Net(uint64_t seed) {
    torch::manual_seed(seed);
    a = torch::nn::Linear(5, 7);
    b = torch::nn::Linear(7, 2);
  }
  std::vector<std::pair<std::string, torch::Tensor>> named() {
    return {{"a.weight", a->weight}, {"a.bias", a->bias}, {"b.weight", b->weight}, {"b.bias", b->bias}};
  }
  torch::Tensor loss(const torch::Tensor& x) { return b(torch::tanh(a(x))).pow(2).mean() * 40.0; }
};

torch::Tensor batch(uint64_t step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(50 + step);
  return at::randn({6, 5}, gen);
}

DataParallelOptions options(double max_norm) {
  DataParallelOptions o;
  o.optimizer.adam.weight_decay = 0.05;
  o.optimizer.ema_decay = 0.8;
  o.max_grad_norm = max_norm;
  return o;
}

// A communicator playing rank 0 of 2 ranks that hold the same gradients: an average is the
// identity. Only what stage 0's reducer path uses is meaningful.
class MirrorCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  std::string backend_name() const override { return "mirror"; }
  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    if (op == ReduceOp::kSum) t.mul_(2);
  }
  std::unique_ptr<PendingCollective> all_reduce_async(torch::Tensor& t, ReduceOp op) override {
    ++launched;
    all_reduce(t, op);
    struct Done : PendingCollective {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  void reduce_scatter(const torch::Tensor&, torch::Tensor&, ReduceOp) override { ADD_FAILURE() << "unexpected"; }
  std::unique_ptr<PendingCollective> reduce_scatter_async(const torch::Tensor&, torch::Tensor&, ReduceOp) override {
    ADD_FAILURE() << "unexpected reduce_scatter under stage 0";
    return nullptr;
  }
  void broadcast(torch::Tensor&, int) override {}
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override { return {t, t}; }
  void barrier() override {}
  void shutdown() override {}
  int launched = 0;
};

// The trainer's sequence before this class existed, written out: identical arithmetic, so
// tolerance 0. max_norm 12 binds on the odd steps (norms 17-51) and not on the even ones (5-10).
TEST(DataParallelOptimizer, StepsLikeTheTrainersFormerSequence) {
  Net ours(1), ref(1);
  const FlatParameters flat(ours.named()), ref_flat(ref.named());
  const double max_norm = 12.0;
  DataParallelOptimizer dp(flat, nullptr, options(max_norm));
  EXPECT_EQ(dp.reducer(), nullptr);  // one rank: no reducer
  ShardedOptimizer ref_opt(ref_flat, nullptr, options(max_norm).optimizer);
  int clipped = 0, unclipped = 0;
  for (uint64_t step = 0; step < 6; ++step) {
    const torch::Tensor x = batch(step) * (step % 2 == 0 ? 0.2 : 3.0);
    dp.prepare_backward(true);
    ours.loss(x).backward();
    const torch::Tensor grads = dp.reduce_gradients();
    EXPECT_FALSE(flat.param(0).grad().defined());  // handed over and cleared
    const StepOutcome outcome = dp.step(grads, 1e-2);

    ref.loss(x).backward();
    const torch::Tensor ref_grads = ref_flat.gather_grads();
    ref_flat.zero_grads();
    EXPECT_TRUE(torch::equal(grads, ref_grads));
    const double norm = ref_opt.grad_norm(ref_grads);
    const double scale = std::min(1.0, max_norm / (norm + 1e-6));
    ref_opt.step(ref_grads, 1e-2, scale);

    EXPECT_TRUE(outcome.applied);
    EXPECT_EQ(outcome.grad_norm, norm);
    EXPECT_EQ(outcome.grad_scale, scale);
    (scale < 1.0 ? clipped : unclipped) += 1;
    EXPECT_TRUE(torch::equal(flat.gather_values(), ref_flat.gather_values())) << "step " << step;
    EXPECT_TRUE(torch::equal(dp.optimizer().ema(), ref_opt.ema())) << "step " << step;
  }
  EXPECT_GT(clipped, 0);
  EXPECT_GT(unclipped, 0);
}

TEST(DataParallelOptimizer, NonFiniteGradientUpdatesNothing) {
  Net net(2);
  const FlatParameters flat(net.named());
  DataParallelOptimizer dp(flat, nullptr, options(1.0));
  const torch::Tensor before = flat.gather_values();
  torch::Tensor grads = torch::ones({flat.numel()});
  grads[3].fill_(std::numeric_limits<float>::quiet_NaN());
  const StepOutcome outcome = dp.step(grads, 1e-2);
  EXPECT_FALSE(outcome.applied);
  EXPECT_TRUE(std::isnan(outcome.grad_norm));
  EXPECT_TRUE(torch::equal(flat.gather_values(), before));
  EXPECT_EQ(dp.optimizer().optimizer_steps(), 0);
  EXPECT_EQ(dp.optimizer().ema_updates(), 0);
}

// With ranks the gradient goes through the reducer's buckets (all-reduce under stage 0), which
// needs prepare_backward before the backward; the result equals the local one here because
// every simulated rank holds the same gradient (tolerance 0: an average of equal values).
TEST(DataParallelOptimizer, WithRanksTheGradientGoesThroughTheReducer) {
  Net net(3);
  const FlatParameters flat(net.named());
  MirrorCommunicator comm;
  DataParallelOptions o = options(0.0);
  o.bucket_bytes = 7 * 5 * 4;  // a.weight fills a bucket: more than one bucket
  DataParallelOptimizer dp(flat, &comm, o);
  ASSERT_NE(dp.reducer(), nullptr);
  EXPECT_GE(dp.reducer()->bucket_count(), 2u);
  net.loss(batch(0)).backward();
  const torch::Tensor expected = flat.gather_grads();
  flat.zero_grads();
  dp.prepare_backward(true);
  net.loss(batch(0)).backward();
  const torch::Tensor grads = dp.reduce_gradients();
  EXPECT_EQ(comm.launched, static_cast<int>(dp.reducer()->bucket_count()));
  EXPECT_TRUE(torch::equal(grads, expected));
  const StepOutcome outcome = dp.step(grads, 1e-2);
  EXPECT_EQ(outcome.grad_scale, 1.0);  // max_grad_norm 0: no clipping
  EXPECT_TRUE(outcome.applied);
}

TEST(DataParallelOptimizer, OptionsComeFromTheRecipesTrainSection) {
  TrainConfig train;
  train.zero_stage = 2;
  train.beta1 = 0.8;
  train.beta2 = 0.99;
  train.eps = 1e-6;
  train.weight_decay = 0.3;
  train.ema_decay = 0.999;
  train.bucket_mb = 7;
  train.grad_clip = 2.5;
  const DataParallelOptions o = data_parallel_options(train);
  EXPECT_EQ(o.optimizer.stage, ZeroStage::k2);
  EXPECT_EQ(o.optimizer.adam.beta1, 0.8);
  EXPECT_EQ(o.optimizer.adam.beta2, 0.99);
  EXPECT_EQ(o.optimizer.adam.eps, 1e-6);
  EXPECT_EQ(o.optimizer.adam.weight_decay, 0.3);
  EXPECT_EQ(o.optimizer.ema_decay, 0.999);
  EXPECT_EQ(o.bucket_bytes, 7 << 20);
  EXPECT_EQ(o.max_grad_norm, 2.5);
  train.zero_stage = 3;
  const std::string error = testing::error_of([&] { data_parallel_options(train); });
  EXPECT_NE(error.find("train.zero_stage"), std::string::npos) << error;
}

}  // namespace
}  // namespace t4g
