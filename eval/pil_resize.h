// Pillow's Image.resize(size, Image.BICUBIC) for 8-bit images, bit for bit: VBench resizes the
// conditioning image of i2v_subject as a PIL image (torchvision hands PIL images to Pillow), and
// Pillow's result differs from torch's antialiased bicubic on tensors by its fixed-point rounding
// between the two passes. Restated from Pillow 13.0's src/libImaging/Resample.c (see the .cpp).
// Pillow < 13 gives other pixels only when the height shrinks by more than twice as many pixels
// as the width (it always resampled rows first); VBench's aspect-kept resize of its landscape or
// square images never does that.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace t4g {

// Pillow's bicubic resize (Image.resize((width, height), Image.BICUBIC), no box, no reducing_gap)
// of a uint8 image [H, W, C] (any C, e.g. 3 for RGB; any device) to [height, width, C] on the CPU.
// An image already of that size comes back as a copy, as in Pillow. Throws t4g::Error for another
// dtype or rank, an empty image or a non-positive size.
torch::Tensor pil_resize_bicubic(const torch::Tensor& image, int64_t height, int64_t width);

}  // namespace t4g
