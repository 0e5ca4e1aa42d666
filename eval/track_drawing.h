// Pictures of point tracks: a strip of frames side by side with each track drawn over them (a dot
// where it is predicted visible, a ring where occluded, and a trail of its earlier positions), so a
// tracking run can be looked at without a video encoder (written as PNG by common/png.h; the GPU
// machines have no OpenCV).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace t4g {

struct TrackStripOptions {
  int64_t panels = 6;        // frames shown, evenly spaced from the first to the last
  int64_t radius = 2;        // dot radius in pixels
  int64_t trail = 8;         // earlier frames whose positions are drawn as a thin trail
  int64_t max_tracks = 200;  // tracks drawn (evenly subsampled beyond this)
};

// frames uint8 [T, H, W, 3], tracks [Q, T, 2] (x, y) pixels of those frames, occluded bool [Q, T]
// -> uint8 [H, panels * W, 3]. Each track keeps one colour across panels.
torch::Tensor draw_track_strip(const torch::Tensor& frames, const torch::Tensor& tracks, const torch::Tensor& occluded,
                               const TrackStripOptions& options = {});

}  // namespace t4g
