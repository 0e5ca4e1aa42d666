// Track strips (see track_drawing.h): plain pixel drawing on a CPU copy of the frames.
#include "eval/track_drawing.h"

#include <array>
#include <cmath>

#include "common/error.h"
#include "common/shape_string.h"

namespace t4g {
namespace {

// A saturated colour per track (hue steps by the golden angle, so neighbours differ).
std::array<uint8_t, 3> track_colour(int64_t index) {
  const double h = std::fmod(static_cast<double>(index) * 0.61803398875, 1.0) * 6.0;
  const double x = 1.0 - std::fabs(std::fmod(h, 2.0) - 1.0);
  double r = 0, g = 0, b = 0;
  switch (static_cast<int>(h)) {
    case 0: r = 1, g = x; break;
    case 1: r = x, g = 1; break;
    case 2: g = 1, b = x; break;
    case 3: g = x, b = 1; break;
    case 4: r = x, b = 1; break;
    default: r = 1, b = x; break;
  }
  return {static_cast<uint8_t>(55 + 200 * r), static_cast<uint8_t>(55 + 200 * g), static_cast<uint8_t>(55 + 200 * b)};
}

class Canvas {
 public:
  Canvas(uint8_t* data, int64_t height, int64_t width, int64_t row_stride)
      : data_(data), height_(height), width_(width), row_stride_(row_stride) {}

  void put(int64_t x, int64_t y, const std::array<uint8_t, 3>& c) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
    uint8_t* p = data_ + (y * row_stride_ + x) * 3;
    p[0] = c[0], p[1] = c[1], p[2] = c[2];
  }

  // Filled disc (or a ring when hollow) centred at raster point (x, y).
  void disc(double x, double y, int64_t radius, const std::array<uint8_t, 3>& c, bool hollow) {
    const double r2 = static_cast<double>(radius * radius) + 0.5;
    const int64_t cx = static_cast<int64_t>(std::floor(x)), cy = static_cast<int64_t>(std::floor(y));
    for (int64_t dy = -radius; dy <= radius; ++dy) {
      for (int64_t dx = -radius; dx <= radius; ++dx) {
        const double d2 = static_cast<double>(dx * dx + dy * dy);
        if (d2 > r2 || (hollow && d2 < r2 - 2.0 * radius)) continue;
        put(cx + dx, cy + dy, c);
      }
    }
  }

  void line(double x0, double y0, double x1, double y1, const std::array<uint8_t, 3>& c) {
    const int64_t steps = static_cast<int64_t>(std::ceil(std::max(std::fabs(x1 - x0), std::fabs(y1 - y0)))) + 1;
    for (int64_t i = 0; i <= steps; ++i) {
      const double a = static_cast<double>(i) / static_cast<double>(steps);
      put(static_cast<int64_t>(std::floor(x0 + a * (x1 - x0))), static_cast<int64_t>(std::floor(y0 + a * (y1 - y0))), c);
    }
  }

 private:
  uint8_t* data_;
  int64_t height_, width_, row_stride_;
};

}  // namespace

torch::Tensor draw_track_strip(const torch::Tensor& frames, const torch::Tensor& tracks, const torch::Tensor& occluded,
                               const TrackStripOptions& options) {
  T4G_CHECK(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == torch::kUInt8,
            "track strip: frames must be uint8 [T, H, W, 3], got [", shape_string(frames.sizes()), "]");
  const int64_t num_frames = frames.size(0), height = frames.size(1), width = frames.size(2);
  T4G_CHECK(tracks.dim() == 3 && tracks.size(1) == num_frames && tracks.size(2) == 2 && occluded.dim() == 2 &&
                occluded.size(0) == tracks.size(0) && occluded.size(1) == num_frames,
            "track strip: tracks [Q, ", num_frames, ", 2] and occluded [Q, ", num_frames, "] expected, got [",
            shape_string(tracks.sizes()), "] and [", shape_string(occluded.sizes()), "]");
  T4G_CHECK(options.panels > 0, "track strip: panels must be positive");
  const int64_t panels = std::min(options.panels, num_frames);
  const auto xy = tracks.to(torch::kCPU, torch::kFloat32).contiguous();
  const auto occ = occluded.to(torch::kCPU, torch::kBool).contiguous();
  const auto* pxy = xy.data_ptr<float>();
  const auto* pocc = occ.data_ptr<bool>();
  const int64_t q = tracks.size(0);
  const int64_t step = std::max<int64_t>(1, (q + options.max_tracks - 1) / std::max<int64_t>(1, options.max_tracks));

  auto strip = torch::empty({height, panels * width, 3}, torch::kUInt8);
  const auto src = frames.to(torch::kCPU).contiguous();
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t t = panels == 1 ? 0 : p * (num_frames - 1) / (panels - 1);
    strip.narrow(1, p * width, width).copy_(src[t]);
    Canvas canvas(strip.data_ptr<uint8_t>() + p * width * 3, height, width, panels * width);
    for (int64_t i = 0; i < q; i += step) {
      const auto colour = track_colour(i);
      auto at = [&](int64_t f, int64_t axis) { return static_cast<double>(pxy[(i * num_frames + f) * 2 + axis]); };
      for (int64_t f = std::max<int64_t>(0, t - options.trail); f < t; ++f) {
        canvas.line(at(f, 0), at(f, 1), at(f + 1, 0), at(f + 1, 1), colour);
      }
      canvas.disc(at(t, 0), at(t, 1), options.radius, colour, pocc[i * num_frames + t]);
    }
  }
  return strip;
}

}  // namespace t4g
