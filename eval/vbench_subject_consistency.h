// VBench's Subject Consistency dimension (vbench/subject_consistency.py with utils.dino_transform,
// research/benchmarks.md 3.1): DINO ViT-B/16 CLS features of every frame after VBench's
// preprocessing, and the mean over frames i >= 1 of
//   ( max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i)) ) / 2.
// The name is VBench's because preprocessing and formula are VBench's; the features are VBench's
// only with DINO's released dino_vitb16 weights (eval/dino_vit.h says how to convert them).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "eval/dino_vit.h"

namespace t4g {

// VBench's dino_transform(short_side) on a video: uint8 [T, H, W, 3] -> float32 [T, 3, h, w] on the
// frames' device. torchvision Resize(short_side) on the 0-255 float frames (short side ->
// short_side, long side int(short_side * long / short), bilinear, align_corners=False,
// antialias=False, no crop, untouched when already that size), then /255, then ImageNet
// Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).
torch::Tensor vbench_dino_preprocess(const torch::Tensor& frames, int64_t short_side = 224);

// Options of subject_consistency.
struct SubjectConsistencyOptions {
  int64_t short_side = 224;  // dino_transform's resize (VBench: 224)
  int64_t batch_size = 16;   // frames per ViT forward (VBench runs one at a time; the result is the same)
};

// One video's value and what VBench's frame-weighted aggregate needs.
struct SubjectConsistencyResult {
  double score = 0;   // per-video value: sum / pairs (VBench's video_results)
  double sum = 0;     // sum over i >= 1 of s_i
  int64_t pairs = 0;  // T - 1
};

// The formula on per-frame features [T, D] (T >= 2): features are L2-normalised, cosines taken in
// fp32 as VBench does (F.normalize, F.cosine_similarity), clipped at 0, summed in double.
SubjectConsistencyResult subject_consistency_from_features(const torch::Tensor& features);

// CLS features [T, dim] (fp32, on the model's device) of the frames after vbench_dino_preprocess.
torch::Tensor dino_frame_features(DinoVit& model, const torch::Tensor& frames,
                                  const SubjectConsistencyOptions& options = {});

// VBench's subject consistency of one uint8 video [T >= 2, H, W, 3] with `model` (in eval mode).
SubjectConsistencyResult subject_consistency(DinoVit& model, const torch::Tensor& frames,
                                             const SubjectConsistencyOptions& options = {});

// VBench's single-process aggregate: sum of all s_i over all videos / sum of all pairs (weighted by
// frame count). VBench's multi-GPU run reports the plain mean of per-video scores instead.
double subject_consistency_frame_weighted(const std::vector<SubjectConsistencyResult>& per_video);

}  // namespace t4g
