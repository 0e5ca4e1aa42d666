// The one mapping between point positions and sampling grids. Positions are in TAP-Vid's raster
// convention (ARCHITECTURE.md): x in [0, W), 0 is the left edge of the image, pixel j covers
// [j, j + 1) and holds the value AT ITS CENTRE j + 0.5. A dense field stored per pixel (an image,
// an optical flow, a feature map of stride s whose cell k covers [k s, (k + 1) s)) is therefore
// sampled at continuous index x / s - 0.5, which is torch's grid_sample with align_corners=false
// at normalised coordinate 2 x / W - 1. Everything that samples a field at a point goes through
// these helpers, so the half-cell offset lives in one place.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace t4g {

// Continuous array index of raster position `x` on a grid of cells `stride` pixels wide:
// x / stride - 0.5 (cell k's centre is at index k).
inline double raster_to_index(double x, double stride = 1.0) { return x / stride - 0.5; }

// Raster position of continuous array index `i` (the inverse of raster_to_index).
inline double index_to_raster(double i, double stride = 1.0) { return (i + 0.5) * stride; }

// Normalised coordinates for torch::nn::functional::grid_sample(..., align_corners=false) of
// raster points `xy` [..., 2] (x, y) on an image `height` x `width` pixels: 2 x / W - 1, 2 y / H - 1.
// The same for any feature map of that image, whatever its stride.
torch::Tensor raster_to_grid_sample(const torch::Tensor& xy, int64_t height, int64_t width);

// Bilinear value at raster point (x, y) of a row-major field [height, width, channels] of
// floats stored per pixel; positions outside the pixel centres clamp to the border (torch's
// padding_mode="border"). Writes `channels` values to `out`.
void sample_bilinear(const float* field, int64_t height, int64_t width, int64_t channels, double x, double y,
                     float* out);

// The value of the pixel containing raster point (x, y) (nearest pixel centre, clamped).
void sample_nearest(const float* field, int64_t height, int64_t width, int64_t channels, double x, double y, float* out);

// The one rule for which video frame stands for latent frame `k` (ARCHITECTURE.md, "Latent grid").
// CogVideoX's causal VAE encodes frame 0 alone into latent 0 and frames 4k-3..4k into latent k;
// the representative is the LAST frame of the group, 4k, because it is the only frame of the group
// whose content the causal encoder has fully seen (and it gives frame 0 for latent 0, so the rule is
// simply k * temporal_compression). temporal_compression == 1 (frames encoded one by one) is the
// identity. Throws t4g::Error for k < 0 or temporal_compression < 1.
int64_t latent_frame_to_pixel_frame(int64_t k, int64_t temporal_compression);

}  // namespace t4g
