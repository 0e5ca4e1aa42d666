// Parity of eval/vbench_temporal_flickering with VBench's temporal_flickering.py (fixtures:
// tests/fixtures/vbench/make_fixtures.py executes VBench's own functions on numpy videos).
#include "eval/vbench_temporal_flickering.h"

#include <gtest/gtest.h>

#include "common/json.h"
#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

// VBench takes a float32 mean of the absolute differences; ours is exact. The two differ by the
// float32 rounding of a mean <= 255 (~1e-5), i.e. < 1e-7 after /255: tolerance 1e-6 absolute.
constexpr double kTolerance = 1e-6;

TEST(VbenchTemporalFlickering, MatchesVBenchPerVideoAndMean) {
  const Json expected = read_json(testing::fixture("vbench/expected.json"))["temporal_flickering"];
  const auto videos = load_safetensors(testing::fixture("vbench/temporal_flickering.safetensors"));
  const auto per_video = expected["per_video"].get<std::vector<double>>();
  ASSERT_EQ(videos.size(), per_video.size());
  std::vector<double> ours;
  for (size_t i = 0; i < per_video.size(); ++i) {
    SCOPED_TRACE("video_" + std::to_string(i));
    ours.push_back(temporal_flickering(videos.at("video_" + std::to_string(i))));
    EXPECT_NEAR(ours.back(), per_video[i], kTolerance);
  }
  EXPECT_NEAR(temporal_flickering_mean(ours), expected["mean"].get<double>(), kTolerance);
}

TEST(VbenchTemporalFlickering, DifferencesByHand) {
  // Three 1x2 frames: |10-0|,|20-0| then |10-10|,|0-20| (mean over H x W x 3 with equal channels).
  auto frames =
      torch::tensor({0, 0, 10, 20, 10, 0}, torch::kUInt8).reshape({3, 1, 2, 1}).expand({3, 1, 2, 3}).contiguous();
  const auto mae = frame_mean_abs_differences(frames);
  ASSERT_EQ(mae.size(), 2u);
  EXPECT_DOUBLE_EQ(mae[0], 15.0);  // exact: integer sums
  EXPECT_DOUBLE_EQ(mae[1], 10.0);
  EXPECT_DOUBLE_EQ(temporal_flickering(frames), (255.0 - 12.5) / 255.0);
}

TEST(VbenchTemporalFlickering, RejectsBadFrames) {
  const std::string one_frame = testing::error_of([] {
    temporal_flickering(torch::zeros({1, 4, 4, 3}, torch::kUInt8));
  });
  EXPECT_NE(one_frame.find("too few frames"), std::string::npos) << one_frame;
  EXPECT_NE(one_frame.find("frames"), std::string::npos);
  const std::string float_frames = testing::error_of([] { temporal_flickering(torch::zeros({3, 4, 4, 3})); });
  EXPECT_NE(float_frames.find("uint8"), std::string::npos) << float_frames;
  const std::string rgba = testing::error_of([] { temporal_flickering(torch::zeros({3, 4, 4, 4}, torch::kUInt8)); });
  EXPECT_NE(rgba.find("[3, 4, 4, 4]"), std::string::npos) << rgba;
  EXPECT_NE(testing::error_of([] { temporal_flickering_mean({}); }), "");
}

}  // namespace
}  // namespace t4g
