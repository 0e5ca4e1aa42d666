// Regression floors for flow-chained tracks against exact synthetic tracks
// (eval/flow_track_accuracy.h): two 16-frame 128x192 videos, TAP-Vid 'first' protocol at 256x256.
// Measured when written on these two videos (bench_flow_tracks videos=2 frames=16 height=128
// width=192 gt_grid_step=8 speed=2 bg_speed=1): DIS medium <delta_avg 0.899, occlusion accuracy
// 0.960, AJ 0.806; over 3 videos integer chaining 0.503 and DIS ultrafast 0.798 against 0.912.
// Floors are the measured values minus about 0.03.
#include "eval/flow_track_accuracy.h"

#include <gtest/gtest.h>

#include "data/prepare.h"
#include "data/video_io.h"

namespace t4g {
namespace {

data::SyntheticVideo small_video(int64_t index) {
  data::SyntheticVideoOptions o;
  o.frames = 16;
  o.height = 128;
  o.width = 192;
  o.grid_step = 8;
  return data::generate_synthetic_video(o, data::synthetic_video_seed(1, index));
}

double mean_metric(const data::FlowTrackOptions& options, const std::string& name) {
  double sum = 0;
  for (int64_t i = 0; i < 2; ++i) sum += measure_flow_tracks(small_video(i), options).metrics.at(name) / 2;
  return sum;
}

TEST(FlowTrackAccuracy, DefaultsStayAboveMeasuredFloors) {
  if (!data::have_opencv()) GTEST_SKIP() << "built without OpenCV";
  data::FlowTrackOptions o;  // the defaults `t4g prepare` uses
  double delta = 0, occlusion = 0, jaccard = 0;
  for (int64_t i = 0; i < 2; ++i) {
    const FlowTrackAccuracy acc = measure_flow_tracks(small_video(i), o);
    EXPECT_GT(acc.queries, 300);
    EXPECT_GT(acc.grid_tracks, 96);  // at least the 8 x 12 seed grid
    delta += acc.metrics.at("average_pts_within_thresh") / 2;
    occlusion += acc.metrics.at("occlusion_accuracy") / 2;
    jaccard += acc.metrics.at("average_jaccard") / 2;
  }
  EXPECT_GT(delta, 0.87);
  EXPECT_GT(occlusion, 0.93);
  EXPECT_GT(jaccard, 0.775);
}

TEST(FlowTrackAccuracy, SubpixelChainingAndTheMediumPresetMatter) {
  if (!data::have_opencv()) GTEST_SKIP() << "built without OpenCV";
  data::FlowTrackOptions o;
  const double best = mean_metric(o, "average_pts_within_thresh");
  o.subpixel = false;
  EXPECT_LT(mean_metric(o, "average_pts_within_thresh"), best - 0.2);  // measured 0.50 vs 0.91
  o.subpixel = true;
  o.flow.dis_preset = data::DisPreset::kUltrafast;
  EXPECT_LT(mean_metric(o, "average_pts_within_thresh"), best - 0.05);  // measured 0.80 vs 0.91
}

}  // namespace
}  // namespace t4g
