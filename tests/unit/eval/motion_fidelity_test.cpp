// Motion Fidelity on hand-made tracks with known scores (both forms, with and without the
// reference code's identity subtraction), truncation to the shorter video, zero motion, and the
// flow-track path on synthetic translating videos. Tolerance 1e-6 (float32 results of float64
// sums of exactly representable cosines 0 and +-1); the flow path checks signs and a 0.8 bound.
#include "eval/motion_fidelity.h"

#include <gtest/gtest.h>

#include <cmath>

#include "data/synthetic_video.h"
#include "data/video_io.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::error_of;

// A track starting at (10, 10) taking the given unit-ish steps (any length: only directions count).
torch::Tensor track(const std::vector<std::pair<float, float>>& steps) {
  std::vector<float> xy = {10.0f, 10.0f};
  for (const auto& [dx, dy] : steps) {
    xy.push_back(xy[xy.size() - 2] + dx);
    xy.push_back(xy[xy.size() - 2] + dy);
  }
  return torch::tensor(xy).view({1, -1, 2});
}

torch::Tensor tracks(const std::vector<torch::Tensor>& list) { return torch::cat(list, 0); }

TEST(MotionFidelity, KnownScoresOfBothForms) {
  const torch::Tensor right = track({{1, 0}, {3, 0}});  // speed does not matter
  const torch::Tensor up = track({{0, -2}, {0, -1}});
  const torch::Tensor gen = tracks({right, right});
  const torch::Tensor ref = tracks({right, up});
  // S = [[1, 0], [1, 0]].
  const torch::Tensor s = motion_similarity_matrix(gen, ref);
  EXPECT_LT((s - torch::tensor({1.0f, 0.0f, 1.0f, 0.0f}).view({2, 2})).abs().max().item<double>(), 1e-6);
  MotionFidelityOptions options;                               // the reference code: S - I, rows' max, mean
  EXPECT_NEAR(motion_fidelity(gen, ref, options), 0.5, 1e-6);  // rows of S - I: max(0, 0), max(1, -1)
  options.subtract_identity = false;
  EXPECT_NEAR(motion_fidelity(gen, ref, options), 1.0, 1e-6);
  options.form = MotionFidelityForm::kSymmetric;  // (mean(1, 1) + mean(1, 0)) / 2
  EXPECT_NEAR(motion_fidelity(gen, ref, options), 0.75, 1e-6);
}

TEST(MotionFidelity, OppositeMotionAndTheIdentityQuirk) {
  const torch::Tensor left = track({{-1, 0}, {-1, 0}});
  const torch::Tensor right = track({{1, 0}, {1, 0}});
  EXPECT_NEAR(motion_fidelity(left, right), -2.0, 1e-6);  // -1 - 1 on the one diagonal entry
  MotionFidelityOptions plain;
  plain.subtract_identity = false;
  EXPECT_NEAR(motion_fidelity(left, right, plain), -1.0, 1e-6);
  EXPECT_NEAR(motion_fidelity(right, right, plain), 1.0, 1e-6);
}

TEST(MotionFidelity, TruncatesToTheShorterVideoAndAveragesOverTime) {
  const torch::Tensor gen = track({{1, 0}, {0, 1}, {-1, 0}, {-1, 0}});  // right, down, then back
  const torch::Tensor ref = track({{1, 0}, {1, 0}});                    // right, right: 3 frames
  MotionFidelityOptions plain;
  plain.subtract_identity = false;
  EXPECT_NEAR(motion_fidelity(gen, ref, plain), 0.5, 1e-6);  // (1 + 0) / 2 over the first 3 frames
}

TEST(MotionFidelity, ZeroMotionCountsZeroOrNan) {
  const torch::Tensor still = track({{0, 0}, {0, 0}});
  const torch::Tensor right = track({{1, 0}, {1, 0}});
  MotionFidelityOptions plain;
  plain.subtract_identity = false;
  EXPECT_NEAR(motion_fidelity(still, right, plain), 0.0, 1e-6);
  plain.nan_on_zero_motion = true;  // the reference's 0 / 0
  EXPECT_TRUE(std::isnan(motion_fidelity(still, right, plain)));
}

TEST(MotionFidelity, BadTracksAreErrors) {
  const torch::Tensor right = track({{1, 0}, {1, 0}});
  EXPECT_NE(error_of([&] {
              motion_fidelity(torch::zeros({3, 1, 2}), right);
            }).find("generated tracks must be"),
            std::string::npos);
  EXPECT_NE(error_of([&] { motion_fidelity(tracks({right, right}), right); }).find("2 vs 1"), std::string::npos);
}

// Background-only synthetic videos translating along x; flow-chained tracks of each.
torch::Tensor translating_video(double vx, uint64_t seed) {
  data::SyntheticVideoOptions o;
  o.frames = 9;
  o.sprites = 0;
  data::SyntheticScene scene = data::make_synthetic_scene(o, seed);
  scene.layers[0].motion.vx = vx;
  scene.layers[0].motion.vy = 0;
  scene.layers[0].motion.omega = 0;
  return data::render_synthetic_video(scene, o).frames;
}

TEST(MotionFidelity, FlowTracksOfTranslatingVideos) {
  if (!data::have_opencv()) GTEST_SKIP() << "optical flow needs OpenCV";
  const torch::Tensor a = translating_video(2.0, 1);
  const torch::Tensor same_way = translating_video(2.0, 2);  // other texture, same motion
  const torch::Tensor other_way = translating_video(-2.0, 3);
  EXPECT_GT(motion_fidelity_from_flow(same_way, a), 0.8);
  EXPECT_LT(motion_fidelity_from_flow(other_way, a), -0.8);
}

}  // namespace
}  // namespace t4g
