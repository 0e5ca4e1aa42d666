// Tests of flow-chained tracks (data/flow_tracks.h) on hand-made flow fields with known answers:
// straight lines under constant flow (forwards and backwards from a query frame), exact chaining
// through a linear flow field (only true with the raster half-pixel convention and bilinear
// sampling), the forward-backward occlusion rule at its threshold, leaving the frame, and grid
// re-seeding where tracks left.
#include "data/flow_tracks.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/testing.h"

namespace t4g::data {
namespace {

using t4g::testing::error_of;

VideoFlow constant_flow(int64_t F, int64_t H, int64_t W, float dx, float dy) {
  VideoFlow f;
  f.forward = torch::empty({F - 1, H, W, 2});
  f.forward.select(3, 0).fill_(dx);
  f.forward.select(3, 1).fill_(dy);
  f.backward = -f.forward;
  return f;
}

TEST(FlowTracks, ConstantFlowGivesStraightLinesBothWays) {
  const VideoFlow flow = constant_flow(5, 20, 30, 1.5f, 0.25f);
  const FlowTracks t = chain_tracks(flow, torch::tensor({{0.0f, 3.3f, 4.1f}, {2.0f, 10.0f, 10.0f}}));
  ASSERT_EQ(t.tracks.sizes(), torch::IntArrayRef({2, 5, 2}));
  for (int64_t f = 0; f < 5; ++f) {
    EXPECT_NEAR(t.tracks[0][f][0].item<float>(), 3.3 + 1.5 * f, 1e-5);
    EXPECT_NEAR(t.tracks[0][f][1].item<float>(), 4.1 + 0.25 * f, 1e-5);
    EXPECT_NEAR(t.tracks[1][f][0].item<float>(), 10.0 + 1.5 * (f - 2), 1e-5);
    EXPECT_NEAR(t.tracks[1][f][1].item<float>(), 10.0 + 0.25 * (f - 2), 1e-5);
  }
  EXPECT_TRUE(t.visibility.all().item<bool>());
  EXPECT_EQ(t.seed_frame[1].item<int64_t>(), 2);
}

TEST(FlowTracks, LinearFieldIsChainedExactlyWithRasterConvention) {
  // f(x) = 0.1 x at every pixel centre x = j + 0.5, so x_{t+1} = 1.1 x_t exactly; a half-pixel
  // error in the sampling convention would shift every step by 0.05 px.
  const int64_t F = 6, H = 8, W = 64;
  VideoFlow flow;
  flow.forward = torch::zeros({F - 1, H, W, 2});
  flow.backward = torch::zeros({F - 1, H, W, 2});
  const torch::Tensor centres = torch::arange(W, torch::kFloat32) + 0.5f;
  flow.forward.select(3, 0).copy_((0.1f * centres).expand({F - 1, H, W}));
  flow.backward.select(3, 0).copy_((-0.1f / 1.1f * centres).expand({F - 1, H, W}));
  const torch::Tensor q = torch::tensor({{0.0f, 5.3f, 4.0f}});
  const FlowTracks exact = chain_tracks(flow, q);
  double x = 5.3;
  for (int64_t t = 0; t < F; ++t, x *= 1.1) EXPECT_NEAR(exact.tracks[0][t][0].item<float>(), x, 1e-4) << t;
  EXPECT_TRUE(exact.visibility.all().item<bool>());
  FlowTrackOptions nearest;
  nearest.subpixel = false;
  const FlowTracks rounded = chain_tracks(flow, q, nearest);
  // Integer chaining restarts each step from the containing pixel's centre c = floor(x) + 0.5: x = 1.1 c.
  x = 5.3;
  for (int64_t t = 0; t < F; ++t, x = 1.1 * (std::floor(x) + 0.5)) {
    EXPECT_NEAR(rounded.tracks[0][t][0].item<float>(), x, 1e-4) << t;
  }
}

TEST(FlowTracks, ForwardBackwardRuleAndLeavingTheFrame) {
  VideoFlow flow = constant_flow(5, 20, 30, 1.5f, 0.25f);
  // Between frames 1 and 2 the backward flow is zero on columns 10..19: points landing there
  // fail the check (|f + b|^2 = 2.3125 >= 0.01 * 2.3125 + 0.5) and are occluded from frame 2.
  flow.backward[1].slice(1, 10, 20).zero_();
  const torch::Tensor q = torch::tensor({{0.0f, 9.0f, 5.0f},    // frame 2 at x = 12: occluded
                                         {0.0f, 1.0f, 5.0f},    // frame 2 at x = 4: visible throughout
                                         {0.0f, 26.0f, 5.0f}}); // x = 27.5, 29, 30.5: leaves at frame 3
  const FlowTracks t = chain_tracks(flow, q);
  for (int64_t f = 0; f < 5; ++f) {
    EXPECT_EQ(t.visibility[0][f].item<bool>(), f < 2) << f;
    EXPECT_TRUE(t.visibility[1][f].item<bool>()) << f;
    EXPECT_EQ(t.visibility[2][f].item<bool>(), f < 3) << f;
  }
  // An ended track keeps following the flow.
  EXPECT_NEAR(t.tracks[2][4][0].item<float>(), 32.0, 1e-5);
  // With beta above the squared error the same step is consistent.
  FlowTrackOptions lenient;
  lenient.fb_beta = 2.4;
  EXPECT_TRUE(chain_tracks(flow, q.slice(0, 0, 1), lenient).visibility.all().item<bool>());
  lenient.fb_beta = 2.2;  // 2.2 + 0.0231 < 2.3125: still occluded
  EXPECT_FALSE(chain_tracks(flow, q.slice(0, 0, 1), lenient).visibility[0][2].item<bool>());
}

TEST(FlowTracks, GridSeedsAndReseedsWhereTracksLeft) {
  // Everything moves 3 px right: column x = 4 empties at frame 2 (its track is at 10) and is
  // re-seeded; the new track's backward chain leaves the frame on the left at frame 0.
  const VideoFlow flow = constant_flow(6, 16, 32, 3.0f, 0.0f);
  FlowTrackOptions o;
  o.grid_step = 8;
  o.reseed_every = 0;
  EXPECT_EQ(grid_tracks(flow, o).tracks.size(0), 8);  // 4 x 2 seeds, no re-seeding
  o.reseed_every = 1;
  const FlowTracks t = grid_tracks(flow, o);
  ASSERT_GT(t.tracks.size(0), 8);
  const torch::Tensor reseeded = (t.seed_frame == 2).nonzero().flatten();
  ASSERT_EQ(reseeded.numel(), 2);  // x = 4 at y = 4 and y = 12
  const int64_t n = reseeded[0].item<int64_t>();
  EXPECT_NEAR(t.tracks[n][2][0].item<float>(), 4.0, 1e-6);
  EXPECT_NEAR(t.tracks[n][1][0].item<float>(), 1.0, 1e-6);
  EXPECT_TRUE(t.visibility[n][1].item<bool>());
  EXPECT_FALSE(t.visibility[n][0].item<bool>());  // x = -2: outside
  // Every visible point lies in the frame.
  const torch::Tensor xs = t.tracks.select(2, 0).masked_select(t.visibility);
  EXPECT_GE(xs.min().item<float>(), 0.0f);
  EXPECT_LT(xs.max().item<float>(), 32.0f);
  o.max_tracks = 9;
  EXPECT_EQ(grid_tracks(flow, o).tracks.size(0), 9);
}

TEST(FlowTracks, BadInputs) {
  const VideoFlow flow = constant_flow(3, 8, 8, 1, 0);
  std::string e = error_of([&] { chain_tracks(flow, torch::zeros({2, 2})); });
  EXPECT_NE(e.find("queries"), std::string::npos) << e;
  e = error_of([&] { chain_tracks(flow, torch::tensor({{3.0f, 1.0f, 1.0f}})); });
  EXPECT_NE(e.find("query point out of range"), std::string::npos) << e;
  e = error_of([&] { chain_tracks(flow, torch::tensor({{0.5f, 1.0f, 1.0f}})); });
  EXPECT_NE(e.find("query point out of range"), std::string::npos) << e;
  FlowTrackOptions o;
  o.grid_step = 0;
  e = error_of([&] { grid_tracks(flow, o); });
  EXPECT_NE(e.find("grid_step"), std::string::npos) << e;
  VideoFlow bad = flow;
  bad.backward = torch::zeros({2, 8, 9, 2});
  e = error_of([&] { grid_tracks(bad, {}); });
  EXPECT_NE(e.find("bad flow fields"), std::string::npos) << e;
}

}  // namespace
}  // namespace t4g::data
