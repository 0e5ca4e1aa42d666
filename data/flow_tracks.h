// Point trajectories from optical flow, the training signal of Track4Gen: points seeded on a grid
// (and re-seeded where no live track remains), chained through forward and backward flow with
// bilinear sampling at their sub-pixel positions (common/pixel_grid.h owns the raster-to-grid
// mapping), occluded by a forward-backward consistency check, ended when they leave the frame.
//
// Occlusion rule (Sundaram, Brox and Keutzer, ECCV 2010): a step from position x with flow f(x)
// to x' = x + f(x) is consistent when the reverse flow r(x') brings the point back:
//     |f(x) + r(x')|^2 < alpha (|f(x)|^2 + |r(x')|^2) + beta          (pixels squared)
// The first inconsistent step, or a step that lands outside [0, W) x [0, H), ends the track: it is
// invisible from that frame on. Its position keeps following the flow (the best guess there is;
// evaluation scores positions wherever the ground truth is visible). The same holds backwards in
// time for tracks seeded after frame 0 (chained with the backward flow, checked with the forward).
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "data/optical_flow.h"

namespace t4g::data {

struct FlowTrackOptions {
  OpticalFlowOptions flow;     // flow algorithm and its parameters
  int64_t grid_step = 16;      // spacing in pixels of the seed grid (seeds at step/2 + k step)
  int64_t reseed_every = 1;    // re-seed empty grid cells every this many frames (0 = seed frame 0 only)
  int64_t max_tracks = 0;      // stop re-seeding at this many tracks (0 = no limit)
  double fb_alpha = 0.01;      // occlusion: relative forward-backward tolerance (see the rule above)
  double fb_beta = 0.5;        // occlusion: absolute forward-backward tolerance, pixels squared
  bool subpixel = true;        // sub-pixel positions, bilinear flow (false: each step from the containing pixel's centre, for comparison)
};

// Tracks in the conventions of ARCHITECTURE.md.
struct FlowTracks {
  torch::Tensor tracks;      // float32 [N, F, 2] (x, y) pixels, TAP-Vid raster convention
  torch::Tensor visibility;  // bool [N, F], true = visible
  torch::Tensor seed_frame;  // int64 [N]: the frame each track was seeded at
};

// Chains query points through precomputed flow. queries: float [Q, 3] as (t, x, y) with t an
// integer frame index and (x, y) raster pixels; each point is followed forwards and backwards
// from its query frame, where it is visible by definition.
FlowTracks chain_tracks(const VideoFlow& flow, const torch::Tensor& queries, const FlowTrackOptions& options = {});

// Seeds a grid, re-seeds empty cells and chains everything through `flow`.
FlowTracks grid_tracks(const VideoFlow& flow, const FlowTrackOptions& options = {});

// compute_video_flow + grid_tracks on uint8 [F, H, W, 3] frames (F >= 2).
FlowTracks flow_tracks(const torch::Tensor& frames, const FlowTrackOptions& options = {});

// Checks options; throws t4g::Error naming the bad field.
void validate_flow_track_options(const FlowTrackOptions& options);

}  // namespace t4g::data
