// The bucketed reducer on one process with a recording communicator: buckets respect the size
// cap and reverse order, launch strictly in bucket order (most of them from inside backward),
// unused parameters contribute zeros without stalling, accumulation micro-steps send nothing,
// and the result equals the plain gathered gradient.
#include "train/grad_reducer.h"

#include <gtest/gtest.h>

namespace t4g {
namespace {

// A one-rank communicator that records what was launched (the average over one rank is the
// identity); the multi-process equality is tested through t4grun in tests/integration.
class RecordingCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend_name() const override { return "recording"; }
  void all_reduce(torch::Tensor&, ReduceOp) override { ++blocking; }
  std::unique_ptr<PendingCollective> all_reduce_async(torch::Tensor& t, ReduceOp op) override {
    launched.push_back(t.numel());
    struct Done : PendingCollective {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  void broadcast(torch::Tensor&, int) override {}
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override { return {t}; }
  void barrier() override {}
  void shutdown() override {}

  std::vector<int64_t> launched;
  int blocking = 0;
};

struct Net {
  torch::nn::Linear a{nullptr}, b{nullptr}, c{nullptr}, unused{nullptr};
  Net() {
    torch::manual_seed(0);
    a = torch::nn::Linear(8, 16);
    b = torch::nn::Linear(16, 16);
    c = torch::nn::Linear(16, 4);
    unused = torch::nn::Linear(4, 4);
  }
  std::vector<std::pair<std::string, torch::Tensor>> named() {
    return {{"a.weight", a->weight}, {"a.bias", a->bias}, {"b.weight", b->weight}, {"b.bias", b->bias},
            {"c.weight", c->weight}, {"c.bias", c->bias}, {"unused.weight", unused->weight}};
  }
  torch::Tensor loss(const torch::Tensor& x) { return c(torch::relu(b(torch::relu(a(x))))).pow(2).mean(); }
};

TEST(GradientReducer, BucketsLaunchInOrderDuringBackwardAndMatchTheGradient) {
  Net net;
  const FlatParameters flat(net.named());
  RecordingCommunicator comm;
  GradReducerOptions o;
  o.bucket_bytes = 16 * 16 * 4;  // b.weight fills a bucket on its own
  GradientReducer reducer(flat, comm, o);
  ASSERT_GE(reducer.bucket_count(), 3u);
  // Reverse order: the first bucket starts with the last parameter.
  EXPECT_EQ(reducer.bucket_params(0).front(), flat.size() - 1);

  const torch::Tensor x = torch::randn({5, 8});
  // Reference gradient without the reducer.
  net.loss(x).backward();
  const torch::Tensor expected = flat.gather_grads();
  flat.zero_grads();

  reducer.prepare(true);
  net.loss(x).backward();
  const torch::Tensor got = reducer.finish();
  EXPECT_TRUE(torch::equal(got, expected));
  EXPECT_EQ(comm.launched.size(), reducer.bucket_count());
  EXPECT_EQ(comm.blocking, 0);
  // The bucket holding the unused parameter cannot complete in backward; the ones after it wait
  // for it (fixed order), everything else went out while backward ran... unless blocked by it.
  EXPECT_FALSE(flat.param(0).grad().defined());  // grads handed over to the buckets
  // The unused parameter's slot is zero.
  EXPECT_EQ(got.narrow(0, flat.offset(6), flat.param_numel(6)).abs().sum().item<float>(), 0.0f);
}

TEST(GradientReducer, OverlapsWhenEveryParameterIsUsed) {
  Net net;
  auto named = net.named();
  named.pop_back();  // drop `unused`
  const FlatParameters flat(named);
  RecordingCommunicator comm;
  GradReducerOptions o;
  o.bucket_bytes = 16 * 16 * 4;
  GradientReducer reducer(flat, comm, o);
  reducer.prepare(true);
  net.loss(torch::randn({3, 8})).backward();
  reducer.finish();
  EXPECT_EQ(reducer.launched_during_backward(), static_cast<int64_t>(reducer.bucket_count()));
}

TEST(GradientReducer, AccumulationStepsSendNothing) {
  Net net;
  const FlatParameters flat(net.named());
  RecordingCommunicator comm;
  GradientReducer reducer(flat, comm);
  const torch::Tensor x1 = torch::randn({4, 8}), x2 = torch::randn({4, 8});
  net.loss(x1).backward();
  net.loss(x2).backward();
  const torch::Tensor expected = flat.gather_grads();
  flat.zero_grads();

  reducer.prepare(false);
  net.loss(x1).backward();
  EXPECT_TRUE(comm.launched.empty());
  reducer.prepare(true);
  net.loss(x2).backward();
  const torch::Tensor got = reducer.finish();
  EXPECT_TRUE(torch::allclose(got, expected, 1e-6, 1e-7));
  EXPECT_EQ(comm.launched.size(), reducer.bucket_count());
}

}  // namespace
}  // namespace t4g
