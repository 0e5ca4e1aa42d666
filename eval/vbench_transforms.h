// The torchvision operations VBench's image transforms are made of (vbench/utils.py,
// vbench2_beta_i2v/utils.py), with torchvision's exact size and rounding rules, so each VBench
// dimension composes its own transform from these and none restates them: Resize(int) on a float
// tensor, CenterCrop, Normalize with ImageNet statistics. (Resize on a PIL image is Pillow's
// algorithm, in eval/pil_resize.h.)
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace t4g {

// A height and a width in pixels.
struct ImageSize {
  int64_t height = 0;  // rows
  int64_t width = 0;   // columns
};

// torchvision's _compute_resized_output_size for Resize(short_side) (an int size, no max_size):
// the short side becomes short_side, the long side int(short_side * long / short) (truncated, as
// Python's int() of a float does). A square stays square.
ImageSize resized_short_side_size(int64_t height, int64_t width, int64_t short_side);

// The interpolation of a tensor Resize.
enum class ResizeMode { kBilinear, kBicubic };

// torchvision's Resize(short_side, interpolation, antialias) on a float tensor [N, C, H, W]:
// returned unchanged when it already has the target size, else F.interpolate(align_corners=False,
// antialias) with no clamping (torchvision clamps bicubic output only for uint8 input). Note that
// torch's antialiased bicubic uses Pillow's kernel (A = -0.5), the plain one A = -0.75, so the
// antialias flag changes upsampling too.
torch::Tensor resize_short_side(const torch::Tensor& images, int64_t short_side, ResizeMode mode, bool antialias);

// torchvision's CenterCrop offset along one axis: int(round((size - crop) / 2.0)), where Python's
// round() sends halves to the even integer (size 437, crop 224: 106, not 107). Requires
// crop <= size (torchvision would pad; VBench's transforms never need that).
int64_t center_crop_offset(int64_t size, int64_t crop);

// torchvision's CenterCrop(crop) on the last two dimensions [..., H, W] (a view). Throws
// t4g::Error when the image is smaller than the crop.
torch::Tensor center_crop(const torch::Tensor& images, int64_t crop);

// torchvision's Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) on float images
// [N, 3, H, W]: (x - mean) / std per channel, in the images' dtype and on their device.
torch::Tensor imagenet_normalize(const torch::Tensor& images);

}  // namespace t4g
