// eval/vbench_transforms: torchvision's Resize(int) sizes, CenterCrop offsets with Python's
// round-half-to-even, the tensor resize (same kernel as torchvision, flags included) and
// Normalize. Expected values are worked out by hand from torchvision's code (comments say how).
#include "eval/vbench_transforms.h"

#include <gtest/gtest.h>

#include "tests/testing.h"

namespace t4g {
namespace {

TEST(VbenchTransforms, ResizedSizeTruncatesTheLongSide) {
  auto size = [](int64_t h, int64_t w, int64_t s) {
    const ImageSize r = resized_short_side_size(h, w, s);
    return std::vector<int64_t>{r.height, r.width};
  };
  EXPECT_EQ(size(24, 41, 256), (std::vector<int64_t>{256, 437}));   // 256 * 41 / 24 = 437.33
  EXPECT_EQ(size(61, 36, 256), (std::vector<int64_t>{433, 256}));   // 256 * 61 / 36 = 433.78
  EXPECT_EQ(size(270, 300, 256), (std::vector<int64_t>{256, 284}));  // 284.44
  EXPECT_EQ(size(480, 720, 224), (std::vector<int64_t>{224, 336}));
  EXPECT_EQ(size(10, 10, 256), (std::vector<int64_t>{256, 256}));
  EXPECT_EQ(size(256, 290, 256), (std::vector<int64_t>{256, 290}));
  EXPECT_NE(testing::error_of([] { resized_short_side_size(0, 4, 256); }), "");
}

TEST(VbenchTransforms, CenterCropRoundsHalvesToEven) {
  EXPECT_EQ(center_crop_offset(224, 224), 0);
  EXPECT_EQ(center_crop_offset(225, 224), 0);  // round(0.5) = 0
  EXPECT_EQ(center_crop_offset(226, 224), 1);
  EXPECT_EQ(center_crop_offset(227, 224), 2);  // round(1.5) = 2
  EXPECT_EQ(center_crop_offset(433, 224), 104);  // round(104.5) = 104
  EXPECT_EQ(center_crop_offset(435, 224), 106);  // round(105.5) = 106
  EXPECT_EQ(center_crop_offset(437, 224), 106);  // round(106.5) = 106, not 107
  EXPECT_NE(testing::error_of([] { center_crop_offset(200, 224); }), "");

  const torch::Tensor x = torch::arange(2 * 5 * 8, torch::kFloat32).reshape({1, 2, 5, 8});
  const torch::Tensor c = center_crop(x, 3);  // top round(1.0) = 1, left round(2.5) = 2
  ASSERT_EQ(c.sizes(), torch::IntArrayRef({1, 2, 3, 3}));
  EXPECT_TRUE(torch::equal(c, x.slice(2, 1, 4).slice(3, 2, 5)));
  const std::string msg = testing::error_of([&] { center_crop(x, 6); });
  EXPECT_NE(msg.find("smaller than the crop"), std::string::npos) << msg;
}

TEST(VbenchTransforms, TensorResizeIsTorchvisions) {
  const torch::Tensor x = torch::rand({2, 3, 12, 20}) * 255;
  // Already the target size: the same tensor back (torchvision returns img unchanged).
  EXPECT_TRUE(resize_short_side(x, 12, ResizeMode::kBicubic, true).is_same(x));
  namespace nnf = torch::nn::functional;
  const auto reference = [&](nnf::InterpolateFuncOptions::mode_t mode, bool antialias) {
    return nnf::interpolate(x, nnf::InterpolateFuncOptions()
                                   .size(std::vector<int64_t>{30, 50})
                                   .mode(mode)
                                   .align_corners(false)
                                   .antialias(antialias));
  };
  const torch::Tensor aa = resize_short_side(x, 30, ResizeMode::kBicubic, true);
  EXPECT_TRUE(torch::equal(aa, reference(torch::kBicubic, true)));
  EXPECT_TRUE(torch::equal(resize_short_side(x, 30, ResizeMode::kBilinear, false), reference(torch::kBilinear, false)));
  // Upsampling too depends on the flag (antialiased bicubic is Pillow's A = -0.5), and bicubic on
  // floats is not clamped: the overshoot stays.
  EXPECT_GT((aa - resize_short_side(x, 30, ResizeMode::kBicubic, false)).abs().max().item<float>(), 0.1f);
  const torch::Tensor step = torch::cat({torch::zeros({1, 1, 8, 4}), torch::full({1, 1, 8, 4}, 255.0)}, 3);
  const torch::Tensor up = resize_short_side(step, 16, ResizeMode::kBicubic, true);
  EXPECT_GT(up.max().item<float>(), 255.0f);
  EXPECT_LT(up.min().item<float>(), 0.0f);
}

TEST(VbenchTransforms, ImagenetNormalize) {
  const torch::Tensor x = torch::full({1, 3, 2, 2}, 0.5f);
  const torch::Tensor y = imagenet_normalize(x);
  EXPECT_FLOAT_EQ(y[0][0][1][1].item<float>(), (0.5f - 0.485f) / 0.229f);
  EXPECT_FLOAT_EQ(y[0][1][0][0].item<float>(), (0.5f - 0.456f) / 0.224f);
  EXPECT_FLOAT_EQ(y[0][2][1][0].item<float>(), (0.5f - 0.406f) / 0.225f);
  EXPECT_NE(testing::error_of([] { imagenet_normalize(torch::zeros({1, 4, 2, 2})); }).find("normalize"),
            std::string::npos);
}

}  // namespace
}  // namespace t4g
