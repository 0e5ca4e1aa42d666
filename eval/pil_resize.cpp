// Pillow's separable resampling (ImagingResampleInner with the 8-bit passes of Pillow 13.0's
// src/libImaging/Resample.c), restated for the bicubic filter: coefficients in double, normalised
// per output pixel, converted to 22-bit fixed point; one pass (horizontal, or vertical: Pillow's
// rule below), rounded and clipped to uint8, then the other pass, rounded and clipped again.
// Every rounding step is Pillow's, which is what makes the result bit-exact
// (tests/unit/eval/pil_resize_test.cpp against Pillow itself).
#include "eval/pil_resize.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.h"
#include "common/shape_string.h"

namespace t4g {
namespace {

// Pillow's PRECISION_BITS: 32 bits minus 8 for the pixel value, minus 2 for overshoot and sign.
constexpr int kPrecisionBits = 32 - 8 - 2;
// Pillow's BICUBIC filter support (in input pixels at scale 1).
constexpr double kBicubicSupport = 2.0;

// Pillow's bicubic_filter: Keys' cubic with a = -0.5.
double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// One axis's resampling plan: for output pixel i, inputs [first[i], first[i] + count[i]) with
// fixed-point weights weights[i * ksize + j].
struct Coefficients {
  int ksize = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;
};

// Pillow's precompute_coeffs (box [0, in_size)) followed by normalize_coeffs_8bpc.
Coefficients precompute_coefficients(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = kBicubicSupport * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    // (int) casts truncate toward zero, as in C; negatives are clamped to 0 right after.
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = bicubic_filter((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int x = 0; x < c.ksize; ++x) {
      double w = 0.0;
      if (x < xmax) w = ww != 0.0 ? k[x] / ww : k[x];
      // normalize_coeffs_8bpc: round half away from zero by truncating +-0.5.
      const double fixed = w * (1 << kPrecisionBits);
      c.weights[static_cast<size_t>(xx) * c.ksize + x] = static_cast<int32_t>(w < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

// Pillow's clip8: the accumulator shifted down to 8 bits, clipped to [0, 255].
uint8_t clip8(int64_t accumulator) {
  return static_cast<uint8_t>(std::clamp<int64_t>(accumulator >> kPrecisionBits, 0, 255));
}

// Pillow's horizontal 8-bit pass over input rows [row_first, row_last) of `in` [H, W, C]:
// [row_last - row_first, out_w, C].
torch::Tensor resample_rows(const torch::Tensor& in, const Coefficients& c, int row_first, int row_last) {
  const int in_w = static_cast<int>(in.size(1)), channels = static_cast<int>(in.size(2));
  const int out_w = static_cast<int>(c.first.size());
  torch::Tensor out = torch::empty({row_last - row_first, out_w, channels}, torch::kUInt8);
  const uint8_t* src = in.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int yy = 0; yy < row_last - row_first; ++yy) {
    const uint8_t* row = src + static_cast<size_t>(yy + row_first) * in_w * channels;
    for (int xx = 0; xx < out_w; ++xx) {
      const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
      const int xmin = c.first[xx], xmax = c.count[xx];
      for (int ch = 0; ch < channels; ++ch) {
        int64_t ss = int64_t{1} << (kPrecisionBits - 1);
        for (int x = 0; x < xmax; ++x) ss += static_cast<int64_t>(row[(x + xmin) * channels + ch]) * k[x];
        dst[(static_cast<size_t>(yy) * out_w + xx) * channels + ch] = clip8(ss);
      }
    }
  }
  return out;
}

// Pillow's vertical 8-bit pass over `in` [rows, W, C], whose row 0 is input row `row0` of the
// plan `c`: [out_h, W, C].
torch::Tensor resample_columns(const torch::Tensor& in, const Coefficients& c, int row0) {
  const int width = static_cast<int>(in.size(1)), channels = static_cast<int>(in.size(2));
  const int out_h = static_cast<int>(c.first.size());
  torch::Tensor out = torch::empty({out_h, width, channels}, torch::kUInt8);
  const uint8_t* src = in.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int yy = 0; yy < out_h; ++yy) {
    const int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
    const int ymin = c.first[yy] - row0, ymax = c.count[yy];
    for (int xx = 0; xx < width; ++xx) {
      for (int ch = 0; ch < channels; ++ch) {
        int64_t ss = int64_t{1} << (kPrecisionBits - 1);
        for (int y = 0; y < ymax; ++y) {
          ss += static_cast<int64_t>(src[(static_cast<size_t>(y + ymin) * width + xx) * channels + ch]) * k[y];
        }
        dst[(static_cast<size_t>(yy) * width + xx) * channels + ch] = clip8(ss);
      }
    }
  }
  return out;
}

}  // namespace

torch::Tensor pil_resize_bicubic(const torch::Tensor& image, int64_t height, int64_t width) {
  ErrorContext ctx;
  ctx.tensor = "image";
  ctx.expected = "non-empty uint8 [H, W, C]";
  ctx.got = std::string(c10::toString(image.scalar_type())) + " " + shape_string(image.sizes());
  T4G_CHECK_CTX(image.defined() && image.scalar_type() == torch::kUInt8 && image.dim() == 3 && image.numel() > 0,
                ctx, "Pillow resize: wrong image tensor");
  T4G_CHECK(height > 0 && width > 0, "Pillow resize: output size must be positive, got ", height, "x", width);
  const torch::Tensor in = image.to(torch::kCPU).contiguous();
  const int in_h = static_cast<int>(in.size(0)), in_w = static_cast<int>(in.size(1));
  const int out_h = static_cast<int>(height), out_w = static_cast<int>(width);
  if (in_h == out_h && in_w == out_w) return in.clone();  // Image.resize returns self.copy()

  // Pillow >= 13 runs the vertical pass first when the height shrinks by more than twice as many
  // pixels as the width (older Pillow always ran the horizontal pass first); the rounding to uint8
  // between the passes makes the order visible in the result.
  const bool horizontal_first = !(in_h - out_h > 0 && in_h - out_h > (in_w - out_w) * 2);
  const bool need_horizontal = out_w != in_w;
  const bool need_vertical = out_h != in_h;
  const Coefficients vertical = precompute_coefficients(in_h, out_h);
  const Coefficients horizontal = precompute_coefficients(in_w, out_w);
  if (horizontal_first) {
    torch::Tensor temp = in;
    int row_first = 0;
    if (need_horizontal) {
      // Only the input rows the vertical pass reads.
      row_first = vertical.first.front();
      const int row_last = vertical.first.back() + vertical.count.back();
      temp = resample_rows(in, horizontal, row_first, row_last);
    }
    return need_vertical ? resample_columns(temp, vertical, row_first) : temp;
  }
  const torch::Tensor temp = resample_columns(in, vertical, 0);  // need_vertical holds here
  return need_horizontal ? resample_rows(temp, horizontal, 0, out_h) : temp;
}

}  // namespace t4g
