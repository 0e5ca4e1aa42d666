// ZeRO under t4grun on CPU (the store Communicator), with tests/integration/workers/zero_worker.cpp:
// stages 1 and 2 train to the same parameters as stage 0 on 2 and 3 ranks while each rank holds
// about 1/W of the optimizer state (and, under stage 2, of the float32 gradient), and a
// checkpoint saved on 2 ranks resumes on 1, 2 or 3 ranks to the end of the uninterrupted run.
#include <gtest/gtest.h>

#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

constexpr int64_t kNumel = 794;  // the worker's MLP: 6*23+23 + 23*23+23 + 23*3+3 + 3*3 (uneven over 3 ranks)

std::map<std::string, torch::Tensor> rank_file(const std::string& dir, int rank) {
  return load_safetensors(dir + "/rank" + std::to_string(rank) + ".safetensors");
}

int64_t scalar(const std::map<std::string, torch::Tensor>& file, const std::string& key) {
  return file.at(key).item<int64_t>();
}

// Runs the worker on `ranks` processes; returns its combined output (checked for success).
std::string run_worker(int ranks, const std::string& out, const std::string& args) {
  const auto r =
      testing::run_command(testing::program("t4grun") + " --standalone --nproc-per-node " + std::to_string(ranks) +
                           " " + testing::program("t4g_zero_worker") + " --out " + out + " " + args);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  return r.out + r.err;
}

// Tolerance between runs that differ only in float32 summation order: in the averaged gradient
// (other world size: the union batch is summed in other groups) or in the global norm (stage 2
// sums squared shard norms in float64 instead of taking one float32 norm). Measured differences
// after 4-6 AdamW steps at lr 1e-2 are <= 6e-8 on values of order 0.3; the bound leaves >10x room.
void expect_close(const torch::Tensor& got, const torch::Tensor& expected, const std::string& what) {
  ASSERT_EQ(got.sizes(), expected.sizes()) << what;
  EXPECT_TRUE(torch::allclose(got, expected, 1e-5, 1e-6))
      << what << ": max abs diff " << (got - expected).abs().max().item<double>();
}

class ZeroWorld : public ::testing::TestWithParam<int> {};

TEST_P(ZeroWorld, StagesOneAndTwoMatchStageZeroOnAFractionOfTheMemory) {
  const int world = GetParam();
  testing::TempDir dir;
  for (int stage = 0; stage <= 2; ++stage) {
    run_worker(world, dir.file("s" + std::to_string(stage)), "--stage " + std::to_string(stage) + " --steps 4");
  }
  const auto base = rank_file(dir.file("s0"), 0);
  // The run did something worth comparing: the clip (max norm 0.5) bound on some steps.
  EXPECT_GT(scalar(base, "clipped_steps"), 0);
  const int64_t shard = (kNumel + world - 1) / world;
  for (int stage = 0; stage <= 2; ++stage) {
    const std::string run = dir.file("s" + std::to_string(stage));
    const auto first = rank_file(run, 0);
    ASSERT_EQ(first.at("params").numel(), kNumel);
    expect_close(first.at("params"), base.at("params"), "stage " + std::to_string(stage) + " parameters");
    expect_close(first.at("ema"), base.at("ema"), "stage " + std::to_string(stage) + " EMA");
    EXPECT_EQ(scalar(first, "clipped_steps"), scalar(base, "clipped_steps"));
    int64_t state_total = 0;
    for (int r = 0; r < world; ++r) {
      const auto file = rank_file(run, r);
      // Every rank's model is complete and the same (tolerance 0: the all-gathered bytes).
      EXPECT_TRUE(torch::equal(file.at("params"), first.at("params"))) << "stage " << stage << " rank " << r;
      const int64_t state = scalar(file, "state_numel");
      const int64_t grad = scalar(file, "grad_numel");
      state_total += state;
      if (stage == 0) {
        EXPECT_EQ(state, 4 * kNumel);  // masters, exp_avg, exp_avg_sq, EMA
      } else {
        EXPECT_LE(state, 4 * shard) << "stage " << stage << " rank " << r;
      }
      // The float32 gradient a rank materialises: whole, except under stage 2.
      EXPECT_EQ(grad, stage == 2 ? std::min(shard, kNumel - r * shard) : kNumel) << "stage " << stage << " rank " << r;
    }
    if (stage > 0) {
      EXPECT_EQ(state_total, 4 * kNumel);  // sharded: each element held exactly once
    }
  }
}

INSTANTIATE_TEST_SUITE_P(World, ZeroWorld, ::testing::Values(2, 3));

// A stage-1 run on 2 ranks saves after step 3 (full tensors by name, gathered to rank 0). Resumed
// on 2 ranks it ends bit-identical to the uninterrupted run; resumed on 3 ranks (stage 2) or 1
// rank it ends within the summation-order tolerance.
TEST(Zero, SavedOnTwoRanksResumesOnOneTwoOrThree) {
  testing::TempDir dir;
  run_worker(2, dir.file("continuous"), "--stage 1 --steps 6 --save-at 3");
  const std::string checkpoint = dir.file("continuous") + "/checkpoints/step_00000003";
  const auto continuous = rank_file(dir.file("continuous"), 0);

  run_worker(2, dir.file("two"), "--stage 1 --steps 6 --resume " + checkpoint);
  const auto two = rank_file(dir.file("two"), 0);
  EXPECT_TRUE(torch::equal(two.at("params"), continuous.at("params")));  // tolerance 0: same ranks, same order
  EXPECT_TRUE(torch::equal(two.at("ema"), continuous.at("ema")));

  run_worker(3, dir.file("three"), "--stage 2 --steps 6 --resume " + checkpoint);
  for (int r = 0; r < 3; ++r) {
    expect_close(rank_file(dir.file("three"), r).at("params"), continuous.at("params"),
                 "3-rank resume, rank " + std::to_string(r));
  }
  expect_close(rank_file(dir.file("three"), 0).at("ema"), continuous.at("ema"), "3-rank resume EMA");

  run_worker(1, dir.file("one"), "--stage 1 --steps 6 --resume " + checkpoint);
  expect_close(rank_file(dir.file("one"), 0).at("params"), continuous.at("params"), "1-rank resume");
  expect_close(rank_file(dir.file("one"), 0).at("ema"), continuous.at("ema"), "1-rank resume EMA");
}

// A checkpoint of another model is refused with the tensor named, on every rank.
TEST(Zero, ResumeFromAForeignCheckpointNamesTheTensor) {
  testing::TempDir dir;
  run_worker(2, dir.file("run"), "--stage 1 --steps 2 --save-at 2");
  const std::string checkpoint = dir.file("run") + "/checkpoints/step_00000002";
  auto weights = load_safetensors(checkpoint + "/weights.safetensors");
  weights.at("b.bias") = torch::zeros({5});
  save_safetensors(checkpoint + "/weights.safetensors", weights);
  const auto r = testing::run_command(testing::program("t4grun") + " --standalone --nproc-per-node 2 " +
                                      testing::program("t4g_zero_worker") + " --out " + dir.file("bad") +
                                      " --stage 2 --steps 4 --resume " + checkpoint);
  EXPECT_NE(r.exit_code, 0);
  const std::string all = r.out + r.err;
  EXPECT_NE(all.find(checkpoint + ": the checkpoint's weights hold a tensor of another size (tensor b.bias; "
                                  "expected 23 values, got 5)"),
            std::string::npos)
      << all;
}

}  // namespace
}  // namespace t4g
