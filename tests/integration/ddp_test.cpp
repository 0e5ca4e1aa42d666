// Data parallelism through t4grun on CPU: two workers, each with half of a batch, end the step
// with the same averaged gradient as one process on the whole batch (the hook-driven reducer
// over the store Communicator), and `t4g train` under t4grun checkpoints like one process.
#include <gtest/gtest.h>

#include "common/fs.h"
#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

torch::Tensor grads_of(const std::string& dir, int rank) {
  return load_safetensors(dir + "/grads_rank" + std::to_string(rank) + ".safetensors").at("grads");
}

TEST(DataParallel, TwoWorkersEqualOneProcessOnTheUnionBatch) {
  testing::TempDir one, two;
  const std::string worker = testing::program("t4g_ddp_worker");
  const auto single = testing::run_command(testing::program("t4grun") + " --standalone --nproc-per-node 1 " + worker +
                                           " --out " + one.path() + " --samples 4");
  ASSERT_EQ(single.exit_code, 0) << single.err;
  const auto pair = testing::run_command(testing::program("t4grun") + " --standalone --nproc-per-node 2 " + worker +
                                         " --out " + two.path() + " --samples 4");
  ASSERT_EQ(pair.exit_code, 0) << pair.err;
  const torch::Tensor g1 = grads_of(one.path(), 0);
  const torch::Tensor g2 = grads_of(two.path(), 0);
  // Every rank holds the same average (bit-identical: one all-reduce result).
  EXPECT_TRUE(torch::equal(g2, grads_of(two.path(), 1)));
  // Same union batch: equal up to float32 summation order (per-sample sums regrouped).
  ASSERT_EQ(g1.sizes(), g2.sizes());
  EXPECT_GT(g1.abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::allclose(g1, g2, 1e-4, 1e-7)) << "max abs diff " << (g1 - g2).abs().max().item<double>();
  // The reducer overlapped: buckets went out during backward.
  EXPECT_NE(pair.out.find("launched during backward"), std::string::npos) << pair.out;
}

}  // namespace
}  // namespace t4g

namespace t4g {
namespace {

// `t4g train` under t4grun: rank 1 fails after step 3 on the first attempt; t4grun restarts the
// group, which resumes from the step-2 checkpoint, and the run ends with exactly the weights of a
// run that never failed.
TEST(DataParallel, RestartedRunEndsWithTheSameWeights) {
  testing::TempDir dir;
  const std::string common = " --standalone --nproc-per-node 2 --grace-period 10 " + testing::program("t4g") +
                             " train --set train.steps=5 --set train.checkpoint_every=2 --set data.synthetic.videos=4"
                             " --set refiner.layers=2 --set loss.query_points=16 --set data.loader_threads=1"
                             " --set train.log_every=1";
  const auto clean = testing::run_command(testing::program("t4grun") + common + " --set run.out_dir=" + dir.file("clean"));
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  const auto failed = testing::run_command(testing::program("t4grun") + " --max-restarts 1" + common +
                                           " --set run.out_dir=" + dir.file("failed") +
                                           " --resume latest --fail-at-step 3 --fail-rank 1");
  ASSERT_EQ(failed.exit_code, 0) << failed.err;
  EXPECT_NE(failed.err.find("fault injection: rank 1 fails after step 3"), std::string::npos) << failed.err;
  EXPECT_NE(failed.err.find("resumed from"), std::string::npos) << failed.err;
  const auto a = load_safetensors(dir.file("clean") + "/checkpoints/step_00000005/weights.safetensors");
  const auto b = load_safetensors(dir.file("failed") + "/checkpoints/step_00000005/weights.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
}

}  // namespace
}  // namespace t4g

namespace t4g {
namespace {

// A checkpoint written by 2 workers resumes on 1: the optimizer state is gathered by name and the
// loader position converted to the new global batch.
TEST(DataParallel, ResumesOnAnotherNumberOfWorkers) {
  testing::TempDir dir;
  const std::string run = " --set run.out_dir=" + dir.file("run") +
                          " --set train.checkpoint_every=2 --set data.synthetic.videos=4 --set refiner.layers=2"
                          " --set loss.query_points=16 --set data.loader_threads=1 --set train.zero_stage=1";
  const auto two = testing::run_command(testing::program("t4grun") + " --standalone --nproc-per-node 2 " +
                                        testing::program("t4g") + " train --set train.steps=4 --stop-after 2" + run);
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const auto one = testing::run_command(testing::program("t4g") + " train --set train.steps=4 --resume latest" + run);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_NE(one.err.find("written by 2 rank(s), now 1"), std::string::npos) << one.err;
  EXPECT_TRUE(path_exists(dir.file("run") + "/checkpoints/step_00000004/state.json"));
}

}  // namespace
}  // namespace t4g
