// Tests of optical flow (data/optical_flow.h) on a textured background that only translates,
// where the true flow is the translation everywhere: each method recovers it (median over the
// interior, tolerances per method), backward flow is its negative, and bad inputs are refused.
#include "data/optical_flow.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "data/synthetic_video.h"
#include "data/video_io.h"
#include "tests/testing.h"

namespace t4g::data {
namespace {

using t4g::testing::error_of;

// Two frames of a background moving by (vx, vy) pixels per frame, no sprites, no rotation.
torch::Tensor translating_frames(double vx, double vy) {
  SyntheticVideoOptions o;
  o.frames = 2;
  o.height = 96;
  o.width = 128;
  o.sprites = 0;
  o.background_rotation = 0;
  SyntheticScene scene = make_synthetic_scene(o, 5);
  scene.layers[0].motion.vx = vx;
  scene.layers[0].motion.vy = vy;
  scene.layers[0].motion.omega = 0;
  return render_synthetic_video(scene, o).frames;
}

// Median of a flow component over the interior (16 px margin: borders have no texture beyond).
double interior_median(const torch::Tensor& flow, int64_t c) {
  return flow.slice(0, 16, -16).slice(1, 16, -16).select(2, c).flatten().median().item<double>();
}

TEST(OpticalFlow, RecoversATranslationWithEveryMethod) {
  if (!have_opencv()) GTEST_SKIP() << "built without OpenCV";
  const torch::Tensor frames = translating_frames(2.5, -1.25);
  struct Case {
    FlowMethod method;
    double tolerance;  // pixels, on the interior median
  };
  for (const Case& c : {Case{FlowMethod::kDis, 0.05}, Case{FlowMethod::kFarneback, 0.1}, Case{FlowMethod::kTvl1, 0.1}}) {
    OpticalFlowOptions o;
    o.method = c.method;
    const VideoFlow flow = compute_video_flow(frames, o);
    ASSERT_EQ(flow.forward.sizes(), torch::IntArrayRef({1, 96, 128, 2}));
    EXPECT_NEAR(interior_median(flow.forward[0], 0), 2.5, c.tolerance) << flow_method_name(c.method);
    EXPECT_NEAR(interior_median(flow.forward[0], 1), -1.25, c.tolerance) << flow_method_name(c.method);
    EXPECT_NEAR(interior_median(flow.backward[0], 0), -2.5, c.tolerance) << flow_method_name(c.method);
    EXPECT_NEAR(interior_median(flow.backward[0], 1), 1.25, c.tolerance) << flow_method_name(c.method);
  }
  for (DisPreset p : {DisPreset::kUltrafast, DisPreset::kFast}) {
    OpticalFlowOptions o;
    o.dis_preset = p;
    OpticalFlow flow(o);
    const torch::Tensor f = flow.compute(frames[0], frames[1]);
    EXPECT_NEAR(interior_median(f, 0), 2.5, 0.1) << dis_preset_name(p);
  }
}

TEST(OpticalFlow, NamesAndBadInputs) {
  EXPECT_EQ(parse_flow_method("tvl1"), FlowMethod::kTvl1);
  EXPECT_EQ(flow_method_name(parse_flow_method("farneback")), "farneback");
  EXPECT_EQ(parse_dis_preset("ultrafast"), DisPreset::kUltrafast);
  EXPECT_NE(error_of([] { parse_flow_method("lucas"); }).find("dis, farneback or tvl1"), std::string::npos);
  EXPECT_NE(error_of([] { parse_dis_preset("slow"); }).find("ultrafast, fast or medium"), std::string::npos);
  std::string e = error_of([] { compute_video_flow(torch::zeros({1, 8, 8, 3}, torch::kUInt8)); });
  EXPECT_NE(e.find("F >= 2"), std::string::npos) << e;
  e = error_of([] { compute_video_flow(torch::zeros({2, 8, 8, 3}, torch::kFloat32)); });
  EXPECT_NE(e.find("wrong video type"), std::string::npos) << e;
  if (!have_opencv()) {
    e = error_of([] { compute_video_flow(torch::zeros({2, 8, 8, 3}, torch::kUInt8)); });
    EXPECT_NE(e.find("needs OpenCV"), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace t4g::data
