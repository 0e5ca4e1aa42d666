// ZeRO under t4grun with tests/integration/workers/zero_worker.cpp: stages 1 and 2 train to the
// same parameters as stage 0 on 2 and 3 CPU ranks (the store Communicator), and on 2 and 4 GPUs
// (NCCL; skipped where fewer GPUs are visible), while each rank holds about 1/W of the optimizer
// state (and, under stage 2, of the float32 gradient); a checkpoint saved on 2 ranks resumes on 1,
// 2 or 3 ranks to the end of the uninterrupted run.
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
//
// The same bound holds on GPUs, where one more order differs: NCCL's all-reduce (stages 0 and 1)
// and reduce-scatter (stage 2, other bucket sizes, so possibly another algorithm) may add the W
// ranks' gradients in different orders. (ncclAvg pre-multiplies floats by 1/W, exact for W = 2
// and 4; with W = 2 the one addition is commutative, so only W = 4 can differ at all.) Derivation
// for W = 4 after S = 4 AdamW steps at lr 1e-2: each averaged gradient element differs by at most
// (W - 1) u = 1.8e-7 (u = 2^-24) relative to the ranks' summed magnitudes; AdamW's update
// lr * m_hat / (sqrt(v_hat) + eps) does not depend on the gradient's scale, and a relative
// perturbation e of the gradients moves m_hat / sqrt(v_hat) by at most about 4e over a few steps,
// so a parameter moves by <= S * lr * 4e = 3e-8 (the clip scale's 1e-7 relative change is one
// more such perturbation); the changed parameters feed back through the tanh MLP's gradients at
// the same order. Expected: ~1e-7 against atol 1e-6 + rtol 1e-5 * |p| (~4e-6 at |p| ~ 0.3), again
// >10x room. What it does not cover: an element whose averaged gradient cancels to rounding
// level, whose first AdamW step is sign(g) * lr either way; with 794 elements of seeded data that
// is a ~1e-3 chance, and it would show as a difference of ~1e-2 in one element.
void expect_close(const torch::Tensor& got, const torch::Tensor& expected, const std::string& what) {
  ASSERT_EQ(got.sizes(), expected.sizes()) << what;
  EXPECT_TRUE(torch::allclose(got, expected, 1e-5, 1e-6))
      << what << ": max abs diff " << (got - expected).abs().max().item<double>();
}

// Trains stages 0, 1 and 2 on `world` ranks of `device` ("cpu" or "cuda"; 12 samples a step, a
// multiple of 2, 3 and 4 ranks) and checks that stages
// 1 and 2 end where stage 0 does (expect_close), that every rank's model is the same (exact), and
// how much state and gradient each rank held.
void check_stages_match_stage_zero(int world, const std::string& device) {
  testing::TempDir dir;
  for (int stage = 0; stage <= 2; ++stage) {
    const std::string out = run_worker(world, dir.file("s" + std::to_string(stage)),
                                       "--stage " + std::to_string(stage) + " --steps 4 --samples 12 --device " + device);
    // The run used the backend the device implies (not a silent fallback).
    EXPECT_NE(out.find(device == "cuda" ? "nccl on cuda:" : "store on cpu"), std::string::npos) << out;
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

class ZeroWorld : public ::testing::TestWithParam<int> {};

TEST_P(ZeroWorld, StagesOneAndTwoMatchStageZeroOnAFractionOfTheMemory) { check_stages_match_stage_zero(GetParam(), "cpu"); }

INSTANTIATE_TEST_SUITE_P(World, ZeroWorld, ::testing::Values(2, 3));

// The same on GPUs: one rank per GPU (cuda:LOCAL_RANK), NCCL all-reduce, reduce-scatter and
// all-gather. Needs as many visible GPUs as ranks (two ranks on one GPU is an NCCL error).
class ZeroWorldCuda : public ::testing::TestWithParam<int> {};

TEST_P(ZeroWorldCuda, StagesOneAndTwoMatchStageZeroOnAFractionOfTheMemory) {
  const int world = GetParam();
  const int gpus = static_cast<int>(torch::cuda::device_count());
  if (gpus < world) GTEST_SKIP() << world << " ranks need " << world << " GPUs; " << gpus << " visible";
  check_stages_match_stage_zero(world, "cuda");
}

INSTANTIATE_TEST_SUITE_P(World, ZeroWorldCuda, ::testing::Values(2, 4));

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
