// eval/pil_resize against Pillow's own Image.resize(BICUBIC) (tests/fixtures/vbench_i2v/
// make_fixtures.py): random images down, up, one axis only, one up and one down, 1-pixel edges,
// rows-first and columns-first pass orders (Pillow 13's rule).
// Exact equality: the port repeats Pillow's integer arithmetic.
#include "eval/pil_resize.h"

#include <gtest/gtest.h>

#include "common/safetensors.h"
#include "common/shape_string.h"
#include "tests/testing.h"

namespace t4g {
namespace {

TEST(PilResize, BicubicEqualsPillowBitForBit) {
  const auto data = load_safetensors(testing::fixture("vbench_i2v/pil_resize.safetensors"));
  int cases = 0;
  for (int i = 0; data.count("input_" + std::to_string(i)) != 0; ++i, ++cases) {
    const torch::Tensor in = data.at("input_" + std::to_string(i));
    const torch::Tensor expected = data.at("output_" + std::to_string(i));
    SCOPED_TRACE(shape_string(in.sizes()) + " -> " + shape_string(expected.sizes()));
    const torch::Tensor out = pil_resize_bicubic(in, expected.size(0), expected.size(1));
    ASSERT_EQ(out.sizes(), expected.sizes());
    EXPECT_EQ((out.to(torch::kInt) - expected.to(torch::kInt)).abs().max().item<int>(), 0);
  }
  EXPECT_EQ(cases, 9);
}

TEST(PilResize, SameSizeIsACopyAndBadInputIsAnError) {
  const torch::Tensor image = torch::randint(0, 256, {6, 5, 3}, torch::kUInt8);
  const torch::Tensor same = pil_resize_bicubic(image, 6, 5);
  EXPECT_TRUE(torch::equal(same, image));
  EXPECT_NE(same.data_ptr(), image.data_ptr());
  // Any channel count goes through (Pillow resamples each band alike).
  EXPECT_EQ(pil_resize_bicubic(torch::zeros({4, 4, 1}, torch::kUInt8), 2, 3).sizes(), torch::IntArrayRef({2, 3, 1}));
  std::string msg = testing::error_of([] { pil_resize_bicubic(torch::zeros({4, 4, 3}), 2, 2); });
  EXPECT_NE(msg.find("uint8"), std::string::npos) << msg;
  msg = testing::error_of([] { pil_resize_bicubic(torch::zeros({4, 4}, torch::kUInt8), 2, 2); });
  EXPECT_NE(msg.find("[H, W, C]"), std::string::npos) << msg;
  EXPECT_NE(testing::error_of([&] { pil_resize_bicubic(image, 0, 2); }), "");
}

}  // namespace
}  // namespace t4g
