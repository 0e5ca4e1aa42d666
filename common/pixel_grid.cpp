// Point sampling of per-pixel fields in the raster convention (see pixel_grid.h). The scalar
// samplers serve the CPU loops of data/ (flow chaining, thousands of points per frame); tensor
// code uses raster_to_grid_sample with grid_sample, and a test checks the two agree.
#include "common/pixel_grid.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace t4g {

torch::Tensor raster_to_grid_sample(const torch::Tensor& xy, int64_t height, int64_t width) {
  T4G_CHECK(xy.dim() >= 1 && xy.size(-1) == 2, "raster_to_grid_sample: points must be [..., 2], got ", xy.sizes());
  T4G_CHECK(height > 0 && width > 0, "raster_to_grid_sample: size must be positive, got ", height, "x", width);
  const torch::Tensor scale = torch::tensor({2.0 / static_cast<double>(width), 2.0 / static_cast<double>(height)},
                                            xy.options().dtype(xy.is_floating_point() ? xy.scalar_type() : torch::kFloat32));
  return xy.to(scale.scalar_type()) * scale - 1.0;
}

void sample_bilinear(const float* field, int64_t height, int64_t width, int64_t channels, double x, double y,
                     float* out) {
  const double u = std::min(std::max(raster_to_index(x), 0.0), static_cast<double>(width - 1));
  const double v = std::min(std::max(raster_to_index(y), 0.0), static_cast<double>(height - 1));
  const int64_t x0 = static_cast<int64_t>(u), y0 = static_cast<int64_t>(v);  // u, v >= 0: truncation is floor
  const int64_t x1 = std::min(x0 + 1, width - 1), y1 = std::min(y0 + 1, height - 1);
  const double ax = u - static_cast<double>(x0), ay = v - static_cast<double>(y0);
  const float* p00 = field + (y0 * width + x0) * channels;
  const float* p01 = field + (y0 * width + x1) * channels;
  const float* p10 = field + (y1 * width + x0) * channels;
  const float* p11 = field + (y1 * width + x1) * channels;
  for (int64_t c = 0; c < channels; ++c) {
    const double top = p00[c] + ax * (p01[c] - p00[c]);
    const double bottom = p10[c] + ax * (p11[c] - p10[c]);
    out[c] = static_cast<float>(top + ay * (bottom - top));
  }
}

void sample_nearest(const float* field, int64_t height, int64_t width, int64_t channels, double x, double y, float* out) {
  const int64_t j = std::min(std::max<int64_t>(static_cast<int64_t>(std::floor(x)), 0), width - 1);
  const int64_t i = std::min(std::max<int64_t>(static_cast<int64_t>(std::floor(y)), 0), height - 1);
  const float* p = field + (i * width + j) * channels;
  std::copy(p, p + channels, out);
}

int64_t latent_frame_to_pixel_frame(int64_t k, int64_t temporal_compression) {
  T4G_CHECK(k >= 0, "latent frame index must be >= 0, got ", k);
  T4G_CHECK(temporal_compression >= 1, "temporal compression must be >= 1, got ", temporal_compression);
  return k * temporal_compression;
}

}  // namespace t4g
