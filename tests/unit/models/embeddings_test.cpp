// Position and timestep encodings checked against their closed forms (research/cogvideox.md 2.3,
// 2.4, 2.6). The diffusers-made values are compared in cogvideox_parity_test.cpp.
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "models/embeddings.h"

namespace t4g {
namespace {

TEST(Embeddings, TimestepSinusoidIsCosThenSin) {
  const int64_t dim = 8;
  const auto emb = timestep_sinusoid(torch::tensor({0, 19, 999}, torch::kLong), dim, true, 0.0);
  ASSERT_EQ(emb.sizes(), (std::vector<int64_t>{3, dim}));
  EXPECT_EQ(emb.scalar_type(), torch::kFloat32);
  for (int64_t row = 0; row < 3; ++row) {
    const double t = std::vector<double>{0, 19, 999}[row];
    for (int64_t i = 0; i < dim / 2; ++i) {
      const double freq = std::exp(-std::log(10000.0) * i / (dim / 2));
      // fp32 sinusoid of arguments up to 999: tolerance 1e-4 absolute.
      EXPECT_NEAR(emb[row][i].item<double>(), std::cos(t * freq), 1e-4);
      EXPECT_NEAR(emb[row][i + dim / 2].item<double>(), std::sin(t * freq), 1e-4);
    }
  }
}

TEST(Embeddings, SincosTableLayoutIsTimeThenWidthThenHeight) {
  const int64_t d = 32;  // t: 8 channels, x: 12, y: 12
  const int64_t gh = 3, gw = 4, frames = 2;
  const auto table = sincos_pos_embed_3d(d, gh, gw, frames, 1.875, 1.0);
  ASSERT_EQ(table.sizes(), (std::vector<int64_t>{frames, gh * gw, d}));
  EXPECT_EQ(table.scalar_type(), torch::kFloat64);
  auto block = [](double pos, int64_t width, int64_t k) {
    const double omega = 1.0 / std::pow(10000.0, static_cast<double>(k) / (width / 2.0));
    return std::make_pair(std::sin(pos * omega), std::cos(pos * omega));
  };
  for (int64_t f = 0; f < frames; ++f) {
    for (int64_t r = 0; r < gh; ++r) {
      for (int64_t c = 0; c < gw; ++c) {
        const auto row = table[f][r * gw + c];
        // Spatial positions are float32 arange / 1.875: compare at float32 precision.
        const double x = static_cast<float>(c / 1.875f);
        const double y = static_cast<float>(r / 1.875f);
        for (int64_t k = 0; k < 4; ++k) {
          EXPECT_NEAR(row[k].item<double>(), block(f, 8, k).first, 1e-6);
          EXPECT_NEAR(row[4 + k].item<double>(), block(f, 8, k).second, 1e-6);
        }
        for (int64_t k = 0; k < 6; ++k) {
          EXPECT_NEAR(row[8 + k].item<double>(), block(x, 12, k).first, 1e-6);
          EXPECT_NEAR(row[14 + k].item<double>(), block(x, 12, k).second, 1e-6);
          EXPECT_NEAR(row[20 + k].item<double>(), block(y, 12, k).first, 1e-6);
          EXPECT_NEAR(row[26 + k].item<double>(), block(y, 12, k).second, 1e-6);
        }
      }
    }
  }
}

TEST(Embeddings, CropRegionRoundsHalfToEven) {
  // 480x720 default: the whole base grid.
  auto crop = resize_crop_region_for_grid(30, 45, 45, 30);
  EXPECT_EQ(crop.first, (std::pair<int64_t, int64_t>{0, 0}));
  EXPECT_EQ(crop.second, (std::pair<int64_t, int64_t>{30, 45}));
  // Taller grid 5x4 into base 4 (h) x 6 (w): height 4, width round(3.2) = 3, left round(1.5) = 2.
  crop = resize_crop_region_for_grid(5, 4, 6, 4);
  EXPECT_EQ(crop.first, (std::pair<int64_t, int64_t>{0, 2}));
  EXPECT_EQ(crop.second, (std::pair<int64_t, int64_t>{4, 5}));
  // Wider grid 2x8 into base 4x6: width 6, height round(1.5) = 2, top round(1.0) = 1.
  crop = resize_crop_region_for_grid(2, 8, 6, 4);
  EXPECT_EQ(crop.first, (std::pair<int64_t, int64_t>{1, 0}));
  EXPECT_EQ(crop.second, (std::pair<int64_t, int64_t>{3, 6}));
  // Grid 2x4 into base 7 (h) x 4 (w): height 2, top round(2.5) = 2 (half to even, not 3).
  crop = resize_crop_region_for_grid(2, 4, 4, 7);
  EXPECT_EQ(crop.first.first, 2);
}

TEST(Embeddings, RopeAtTheBaseGridUsesIntegerPositions) {
  CogVideoXTransformerConfig c;
  c.num_attention_heads = 2;
  c.attention_head_dim = 16;  // t 4 | h 6 | w 6
  c.sample_height = 8;
  c.sample_width = 12;
  c.use_rotary_positional_embeddings = true;
  const auto rope = cogvideox_rotary_embedding(c, 3, 8, 12);
  ASSERT_EQ(rope.cos.sizes(), (std::vector<int64_t>{3 * 4 * 6, 16}));
  auto expect_angle = [&](int64_t token, int64_t channel, double pos, int64_t width, int64_t k) {
    const double omega = 1.0 / std::pow(10000.0, 2.0 * k / width);
    // fp32 tables: 1e-5 absolute.
    EXPECT_NEAR(rope.cos[token][channel].item<double>(), std::cos(pos * omega), 1e-5);
    EXPECT_NEAR(rope.sin[token][channel].item<double>(), std::sin(pos * omega), 1e-5);
    EXPECT_NEAR(rope.cos[token][channel + 1].item<double>(), std::cos(pos * omega), 1e-5);  // pairs repeat
  };
  const int64_t f = 2, r = 3, col = 5;
  const int64_t token = (f * 4 + r) * 6 + col;
  for (int64_t k = 0; k < 2; ++k) expect_angle(token, 2 * k, f, 4, k);
  for (int64_t k = 0; k < 3; ++k) expect_angle(token, 4 + 2 * k, r, 6, k);
  for (int64_t k = 0; k < 3; ++k) expect_angle(token, 10 + 2 * k, col, 6, k);
}

TEST(Embeddings, ApplyRotaryRotatesInterleavedPairs) {
  torch::manual_seed(0);
  const auto x = torch::randn({1, 2, 5, 16});
  RotaryEmbedding rope;
  const auto angles = torch::rand({5, 8}) * 6.0;
  rope.cos = angles.cos().repeat_interleave(2, 1);
  rope.sin = angles.sin().repeat_interleave(2, 1);
  const auto y = apply_rotary_emb(x, rope);
  // Pair (2k, 2k+1) as a complex number is multiplied by exp(i * angle_k).
  const auto xc = torch::view_as_complex(x.reshape({1, 2, 5, 8, 2}).contiguous());
  const auto expected = torch::view_as_real(xc * torch::polar(torch::ones_like(angles), angles)).flatten(3);
  EXPECT_TRUE(torch::allclose(y, expected, 1e-6, 1e-6));
  const auto y16 = apply_rotary_emb(x.to(torch::kBFloat16), rope);
  EXPECT_EQ(y16.scalar_type(), torch::kBFloat16);
}

// The joint form used by the attention: [B, S, heads, D] with 3 text tokens left untouched equals
// apply_rotary_emb on the video part (1e-6, float32 rounding), the text rows bit for bit.
TEST(Rope, JointFormLeavesTextAndRotatesVideo) {
  torch::manual_seed(2);
  const auto x = torch::randn({2, 3 + 5, 4, 8});  // B, text + video, heads, head_dim
  RotaryEmbedding rope;
  const auto angles = torch::rand({5, 4}) * 6.0;
  rope.cos = angles.cos().repeat_interleave(2, 1);
  rope.sin = angles.sin().repeat_interleave(2, 1);
  const auto y = apply_rotary_emb_joint(x, rope, 3);
  EXPECT_TRUE(torch::equal(y.slice(1, 0, 3), x.slice(1, 0, 3)));
  const auto expected = apply_rotary_emb(x.slice(1, 3).transpose(1, 2), rope).transpose(1, 2);
  EXPECT_TRUE(torch::allclose(y.slice(1, 3), expected, 1e-6, 1e-6));
  EXPECT_EQ(apply_rotary_emb_joint(x.to(torch::kBFloat16), rope, 3).scalar_type(), torch::kBFloat16);
  // The complex-multiply path for tables built from angles gives the same values.
  RotaryEmbedding paired = rope;
  paired.pairs_share_angle = true;
  EXPECT_TRUE(torch::allclose(apply_rotary_emb_joint(x, paired, 3), y, 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(apply_rotary_emb_joint(x, paired, 3).slice(1, 0, 3), x.slice(1, 0, 3)));
  // Tables whose pair entries differ (DiTFlow optimises them): every entry counts.
  RotaryEmbedding free_tables{torch::randn({5, 8}), torch::randn({5, 8})};
  const auto free_expected = apply_rotary_emb(x.slice(1, 3).transpose(1, 2), free_tables).transpose(1, 2);
  EXPECT_TRUE(torch::allclose(apply_rotary_emb_joint(x, free_tables, 3).slice(1, 3), free_expected, 1e-6, 1e-6));
  EXPECT_THROW(apply_rotary_emb_joint(x, rope, 2), Error);  // 6 video tokens, 5 table rows
}

}  // namespace
}  // namespace t4g
