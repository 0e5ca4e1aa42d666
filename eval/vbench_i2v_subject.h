// VBench-I2V's i2v_subject, "Video-Image Subject Consistency" (vbench2_beta_i2v/i2v_subject.py,
// research/benchmarks.md 3.8): DINO ViT-B/16 CLS features g of the conditioning image and f_i of
// every frame, after VBench's "internet" transforms, and per video
//   0.4 * max_i conf_i + 0.3 * mean_{i>=1} cons_i + 0.3 * min_{i>=1} cons_i,
//   conf_i = max(0, cos(g, f_i)) over all frames,  cons_i = max(0, cos(f_{i-1}, f_i)),
// averaged over videos. The name is VBench's because transforms and formula are VBench's current
// ones (since commit e7f070a, 2024-07); the values are VBench's only with DINO's released weights.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "eval/dino_vit.h"

namespace t4g {

// Options of i2v_subject.
struct I2vSubjectOptions {
  int64_t resize_size = 256;  // the transforms' Resize (short side); VBench: 256
  int64_t crop_size = 224;    // their CenterCrop; VBench: 224
  int64_t batch_size = 16;    // frames per ViT forward (VBench runs one at a time; the result is the same)
};

// dino_transform_internet on a video as VBench's load_video hands it over: uint8 [T, H, W, 3] ->
// float32 [T, 3, crop, crop] on the frames' device. The 0-255 float frames go through
// torchvision's Resize(resize_size, bicubic) with the antialias that torchvision >= 0.17 applies
// by default to tensors (VBench does not pass one), i.e. torch's antialiased bicubic, not clamped;
// then CenterCrop(crop_size), /255 and ImageNet normalisation. (torchvision 0.15-0.16 resized
// tensors without antialiasing by default: VBench run with those gives other values; the fixture
// test tells the two apart, by up to 0.2 in the tiny ViT's features.)
torch::Tensor vbench_i2v_frames_preprocess(const torch::Tensor& frames, const I2vSubjectOptions& options = {});

// dino_transform_Image_internet on the conditioning image as Image.open returns it: uint8 RGB
// [H, W, 3] -> float32 [1, 3, crop, crop] on the CPU. The resize is Pillow's bicubic on 8-bit
// pixels (torchvision hands PIL images to Pillow, which always antialiases and rounds to uint8
// after each pass; eval/pil_resize.h), then CenterCrop, ToTensor (/255) and ImageNet normalisation.
// So the image and the frames are resampled differently, as in VBench.
torch::Tensor vbench_i2v_image_preprocess(const torch::Tensor& image, const I2vSubjectOptions& options = {});

// Throws t4g::Error naming `what` (a file or tensor name) unless `image` is a defined uint8
// RGB image [H, W, 3] with H, W >= 1.
void check_rgb_image(const torch::Tensor& image, const std::string& what);

// The conditioning image from a PNG file (8-bit RGB; common/png.h) as uint8 [H, W, 3]. VBench
// passes Image.open(path) straight to its transform, which only works for RGB images, so grey,
// grey + alpha and RGBA files are errors naming the file rather than silently converted.
torch::Tensor read_vbench_image(const std::string& path);

// One video's value and its three terms.
struct I2vSubjectResult {
  double score = 0;             // 0.4 * max_conformity + 0.3 * mean_consistency + 0.3 * min_consistency
  double max_conformity = 0;    // max over frames of max(0, cos(g, f_i))
  double mean_consistency = 0;  // mean over i >= 1 of max(0, cos(f_{i-1}, f_i))
  double min_consistency = 0;   // min over i >= 1 of the same
};

// The formula on the image's features [1, D] (or [D]) and the frames' [T, D] (T >= 2: VBench's
// np.min of no pairs fails): features are L2-normalised and cosines taken in fp32 as VBench does
// (F.normalize, F.cosine_similarity); clipping, max, mean and min in double as VBench's Python
// floats and numpy do.
I2vSubjectResult i2v_subject_from_features(const torch::Tensor& image_features, const torch::Tensor& frame_features);

// CLS features [1, dim] (fp32, on the model's device) of the image after vbench_i2v_image_preprocess.
torch::Tensor dino_i2v_image_features(DinoVit& model, const torch::Tensor& image, const I2vSubjectOptions& options = {});

// CLS features [T, dim] (fp32, on the model's device) of the frames after
// vbench_i2v_frames_preprocess, which runs on the model's device, batch by batch (VBench transforms
// on the CPU; a CUDA resize may differ from it in the last float bits).
torch::Tensor dino_i2v_frame_features(DinoVit& model, const torch::Tensor& frames,
                                      const I2vSubjectOptions& options = {});

// VBench's i2v_subject of one uint8 video [T >= 2, H, W, 3] conditioned on the uint8 RGB image
// [H', W', 3], with `model` in eval mode.
I2vSubjectResult i2v_subject(DinoVit& model, const torch::Tensor& image, const torch::Tensor& frames,
                             const I2vSubjectOptions& options = {});

// VBench's aggregate: the plain mean of the per-video scores (np.mean; single and multi-GPU alike).
double i2v_subject_mean(const std::vector<I2vSubjectResult>& per_video);

}  // namespace t4g
