// Motion Fidelity (MF, research/methods.md 3.4; DiTFlow's eval/motion_fidelity_score.py, adapted
// from SMM): how well the per-frame motion directions of a generated video's tracks match some
// track of the reference video. The reference tracks both videos with CoTracker3 (a 55 x 55 grid);
// t4g has no CoTracker, so the score is computed from whatever tracks the caller gives: the
// project's flow-chained trajectories (data/flow_tracks.h, motion_fidelity_from_flow below) or a
// tracker's output. Visibility is ignored, as in the reference.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace t4g {

// Which form of the score.
enum class MotionFidelityForm {
  kReference,  // DiTFlow's code: mean_n max_m (S - I)[n, m], generated -> reference only
  kSymmetric,  // the SMM paper: the mean of that and the reference -> generated term (no identity)
};

struct MotionFidelityOptions {
  MotionFidelityForm form = MotionFidelityForm::kReference;  // which score
  bool subtract_identity = true;    // kReference: the code subtracts I (needs N == M); false drops the quirk
  bool nan_on_zero_motion = false;  // true: a zero-length step gives NaN as in the code; false: it counts 0
};

// S[n, m] = mean_t <d_gen(n, t), d_ref(m, t)> of unit per-frame displacement vectors, for tracks
// float [N, T, 2] and [M, T', 2], both truncated to min(T, T') frames (>= 2). float32 [N, M].
torch::Tensor motion_similarity_matrix(const torch::Tensor& generated_tracks, const torch::Tensor& reference_tracks,
                                       bool nan_on_zero_motion = false);

// The Motion Fidelity score of generated tracks against reference tracks (higher is better, at
// most 1; with the identity subtracted a track that only matches its own index scores 0 there).
double motion_fidelity(const torch::Tensor& generated_tracks, const torch::Tensor& reference_tracks,
                       const MotionFidelityOptions& options = {});

// Motion Fidelity of two uint8 videos [F, H, W, 3] through the project's flow-chained tracks on
// the same seed grid (data/flow_tracks.h with reseeding off, so both have one track per grid
// point and N == M). Needs OpenCV (optical flow); frames are truncated to the shorter video.
double motion_fidelity_from_flow(const torch::Tensor& generated_frames, const torch::Tensor& reference_frames,
                                 int64_t grid_step = 16, const MotionFidelityOptions& options = {});

}  // namespace t4g
