// VBench's Temporal Flickering dimension (vbench/temporal_flickering.py, research/benchmarks.md
// 3.3): 1 - (mean over consecutive frame pairs of the mean absolute pixel difference) / 255.
// No network. VBench scores every frame (no sampling) and scores only videos that its RAFT
// static filter kept; the filter selects videos and is not part of this arithmetic, so a caller
// that reports VBench's protocol must apply it (or state that it did not).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace t4g {

// Mean absolute difference of each consecutive frame pair, MAE_i = mean over H x W x 3 of
// |F_{i+1} - F_i| for i = 0..T-2, as VBench's mae_seq (cv2.absdiff on float32 frames). Computed
// from exact integer sums, so it is VBench's float32 mean without its rounding (~1e-7 relative).
// `frames`: uint8 [T, H, W, 3] with T >= 2, any device.
std::vector<double> frame_mean_abs_differences(const torch::Tensor& frames);

// VBench's per-video score (cal_score): (255 - mean_i MAE_i) / 255, in [0, 1]; 1 = no change at
// all. Channel order does not matter (VBench reads BGR). Throws t4g::Error for anything but
// uint8 [T >= 2, H, W, 3] (VBench's value for one frame is NaN).
double temporal_flickering(const torch::Tensor& frames);

// VBench's aggregate: the unweighted mean of the per-video scores.
double temporal_flickering_mean(const std::vector<double>& per_video);

}  // namespace t4g
