// The bucketed reducer on one process with a recording communicator: buckets respect the size
// cap and reverse order, launch strictly in bucket order (most of them from inside backward),
// unused parameters contribute zeros without stalling, accumulation micro-steps send nothing,
// and the result equals the plain gathered gradient. In reduce-scatter mode (ZeRO-2) every rank
// ends with exactly its shard of that gradient.
#include "train/grad_reducer.h"

#include <gtest/gtest.h>

namespace t4g {
namespace {

// A communicator that records what was launched. It plays rank `rank` of `world` ranks that all
// hold the same gradient, so an average is the identity and a reduce-scatter hands back this
// rank's chunk of the input; the multi-process equality is tested through t4grun in
// tests/integration.
class RecordingCommunicator : public Communicator {
 public:
  explicit RecordingCommunicator(int rank = 0, int world = 1) : rank_(rank), world_(world) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend_name() const override { return "recording"; }
  void all_reduce(torch::Tensor&, ReduceOp) override { ++blocking; }
  std::unique_ptr<PendingCollective> all_reduce_async(torch::Tensor& t, ReduceOp op) override {
    launched.push_back(t.numel());
    struct Done : PendingCollective {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  void reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) override {
    reduce_scatter_async(input, output, op)->wait();
  }
  std::unique_ptr<PendingCollective> reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                                                          ReduceOp) override {
    EXPECT_EQ(input.numel(), output.numel() * world_);
    scattered.push_back(input.numel());
    output.copy_(input.narrow(0, rank_ * output.numel(), output.numel()));
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
  std::vector<int64_t> scattered;
  int blocking = 0;

 private:
  int rank_;
  int world_;
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
  // Every gradient went into its bucket during backward and the parameter's copy was released.
  for (size_t k = 0; k < flat.size(); ++k) EXPECT_FALSE(flat.param(k).grad().defined()) << "parameter " << k;
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

// ZeRO-2: each rank's reduce-scatter buckets are slices of every rank's shard; whatever the world
// size, every rank ends with exactly its shard_range of the gradient (tolerance 0: copies only),
// an unused parameter reads as zeros, and the buckets respect the size cap.
class ReduceScatterWorld : public ::testing::TestWithParam<int> {};

TEST_P(ReduceScatterWorld, EachRankGetsItsShard) {
  const int world = GetParam();
  Net net;
  const FlatParameters flat(net.named());
  const torch::Tensor x = torch::randn({5, 8});
  net.loss(x).backward();
  const torch::Tensor expected = flat.gather_grads();
  flat.zero_grads();
  for (int rank = 0; rank < world; ++rank) {
    RecordingCommunicator comm(rank, world);
    GradReducerOptions o;
    o.bucket_bytes = 200 * 4;  // many buckets, several per parameter
    o.mode = GradReduceMode::kReduceScatter;
    GradientReducer reducer(flat, comm, o);
    EXPECT_EQ(reducer.mode(), GradReduceMode::kReduceScatter);
    reducer.prepare(true);
    net.loss(x).backward();
    const torch::Tensor got = reducer.finish();
    const auto [begin, end] = flat.shard_range(rank, world);
    ASSERT_EQ(got.numel(), end - begin) << "rank " << rank;
    EXPECT_EQ(got.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(got, expected.narrow(0, begin, end - begin))) << "rank " << rank << " of " << world;
    EXPECT_EQ(comm.scattered.size(), reducer.bucket_count());
    EXPECT_TRUE(comm.launched.empty());  // no all-reduce in this mode
    for (const int64_t n : comm.scattered) EXPECT_LE(n * 4, o.bucket_bytes + 4 * world);
    EXPECT_FALSE(flat.param(0).grad().defined());
  }
}

TEST_P(ReduceScatterWorld, OverlapsAndAccumulates) {
  const int world = GetParam();
  Net net;
  auto named = net.named();
  named.pop_back();  // every parameter used: the first buckets complete inside backward
  const FlatParameters flat(named);
  const torch::Tensor x1 = torch::randn({4, 8}), x2 = torch::randn({4, 8});
  net.loss(x1).backward();
  net.loss(x2).backward();
  const torch::Tensor expected = flat.gather_grads();
  flat.zero_grads();
  RecordingCommunicator comm(world - 1, world);
  GradReducerOptions o;
  o.bucket_bytes = 100 * 4;
  o.mode = GradReduceMode::kReduceScatter;
  GradientReducer reducer(flat, comm, o);
  reducer.prepare(false);
  net.loss(x1).backward();
  EXPECT_TRUE(comm.scattered.empty());
  reducer.prepare(true);
  net.loss(x2).backward();
  const torch::Tensor got = reducer.finish();
  const auto [begin, end] = flat.shard_range(world - 1, world);
  // Accumulated in .grad by autograd, as the plain path: same float sums (tolerance 1e-6 relative).
  EXPECT_TRUE(torch::allclose(got, expected.narrow(0, begin, end - begin), 1e-6, 1e-7));
  EXPECT_GT(reducer.launched_during_backward(), 0);
}

INSTANTIATE_TEST_SUITE_P(World, ReduceScatterWorld, ::testing::Values(1, 2, 3, 5));

}  // namespace
}  // namespace t4g
