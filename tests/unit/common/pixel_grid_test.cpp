// Tests of the one raster-to-grid mapping (common/pixel_grid.h): the half-pixel offset, agreement
// of the scalar bilinear sampler with torch's grid_sample(align_corners=false, border), and that
// a field holding each pixel centre's own raster position samples back to the query point.
#include "common/pixel_grid.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace t4g {
namespace {

TEST(PixelGrid, HalfPixelOffsetAndStride) {
  EXPECT_DOUBLE_EQ(raster_to_index(0.5), 0.0);   // centre of pixel 0
  EXPECT_DOUBLE_EQ(raster_to_index(0.0), -0.5);  // left edge
  EXPECT_DOUBLE_EQ(raster_to_index(24.0, 16.0), 1.0);  // centre of latent cell 1 at stride 16
  EXPECT_DOUBLE_EQ(index_to_raster(raster_to_index(7.25, 8.0), 8.0), 7.25);
  const torch::Tensor g = raster_to_grid_sample(torch::tensor({{0.0f, 0.0f}, {10.0f, 4.0f}, {5.0f, 2.0f}}), 4, 10);
  // Edges map to -1 and +1, the centre to 0 (align_corners=false).
  EXPECT_TRUE(torch::allclose(g, torch::tensor({{-1.0f, -1.0f}, {1.0f, 1.0f}, {0.0f, 0.0f}})));
}

TEST(PixelGrid, BilinearMatchesGridSampleAlignCornersFalse) {
  torch::manual_seed(3);
  const int64_t H = 7, W = 11, C = 2;
  const torch::Tensor field = torch::randn({H, W, C});
  // Points inside and outside the pixel-centre hull (border clamping).
  const torch::Tensor pts = torch::rand({200, 2}) * torch::tensor({W + 4.0f, H + 4.0f}) - 2.0f;
  const torch::Tensor grid = raster_to_grid_sample(pts, H, W).view({1, 1, -1, 2});
  namespace F = torch::nn::functional;
  const torch::Tensor ref = F::grid_sample(field.permute({2, 0, 1}).unsqueeze(0), grid,
                                           F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kBorder).align_corners(false))
                                .view({C, -1})
                                .t();
  const float* fp = field.data_ptr<float>();
  for (int64_t i = 0; i < pts.size(0); ++i) {
    float out[2];
    sample_bilinear(fp, H, W, C, pts[i][0].item<double>(), pts[i][1].item<double>(), out);
    EXPECT_NEAR(out[0], ref[i][0].item<float>(), 1e-5) << "point " << i;  // float rounding only
    EXPECT_NEAR(out[1], ref[i][1].item<float>(), 1e-5) << "point " << i;
  }
}

TEST(PixelGrid, FieldOfPixelCentresSamplesBackThePoint) {
  const int64_t H = 5, W = 6;
  std::vector<float> field(static_cast<size_t>(H * W * 2));
  for (int64_t i = 0; i < H; ++i) {
    for (int64_t j = 0; j < W; ++j) {
      field[static_cast<size_t>((i * W + j) * 2)] = static_cast<float>(j) + 0.5f;
      field[static_cast<size_t>((i * W + j) * 2 + 1)] = static_cast<float>(i) + 0.5f;
    }
  }
  for (double x : {0.5, 1.0, 2.75, 5.5}) {
    for (double y : {0.5, 3.2, 4.5}) {
      float out[2];
      sample_bilinear(field.data(), H, W, 2, x, y, out);
      EXPECT_NEAR(out[0], x, 1e-6);
      EXPECT_NEAR(out[1], y, 1e-6);
      sample_nearest(field.data(), H, W, 2, x + 0.3, y + 0.2, out);  // the pixel containing the point
      EXPECT_FLOAT_EQ(out[0], static_cast<float>(std::floor(x + 0.3)) + 0.5f);
      EXPECT_FLOAT_EQ(out[1], static_cast<float>(std::floor(y + 0.2)) + 0.5f);
    }
  }
  float out[2];
  sample_bilinear(field.data(), H, W, 2, 0.1, 6.0, out);  // outside the centres: clamped to the border
  EXPECT_FLOAT_EQ(out[0], 0.5f);
  EXPECT_FLOAT_EQ(out[1], 4.5f);
}

TEST(PixelGrid, LatentFrameStandsForTheLastFrameOfItsGroup) {
  // 49 frames -> 13 latents: latent 0 <-> frame 0, latent k <-> frames 4k-3..4k, represented by 4k.
  EXPECT_EQ(latent_frame_to_pixel_frame(0, 4), 0);
  EXPECT_EQ(latent_frame_to_pixel_frame(1, 4), 4);
  EXPECT_EQ(latent_frame_to_pixel_frame(12, 4), 48);
  // Frames encoded one by one: the identity.
  for (int64_t k = 0; k < 5; ++k) EXPECT_EQ(latent_frame_to_pixel_frame(k, 1), k);
  EXPECT_THROW(latent_frame_to_pixel_frame(-1, 4), Error);
  EXPECT_THROW(latent_frame_to_pixel_frame(1, 0), Error);
}

}  // namespace
}  // namespace t4g
