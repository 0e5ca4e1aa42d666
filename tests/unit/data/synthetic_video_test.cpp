// Tests of the synthetic video generator: determinism (also across machines, through a golden
// hash), tracks that agree with the rendered pixels, and occlusion on a constructed scene.
#include "data/synthetic_video.h"

#include <gtest/gtest.h>

#include <cmath>

namespace t4g::data {
namespace {

// FNV-1a over a tensor's bytes: a fingerprint of the exact output.
uint64_t fingerprint(const torch::Tensor& t, uint64_t h = 1469598103934665603ull) {
  const torch::Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  for (int64_t i = 0; i < c.numel() * static_cast<int64_t>(c.element_size()); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

SyntheticVideoOptions small_options() {
  SyntheticVideoOptions o;
  o.frames = 8;
  o.height = 48;
  o.width = 64;
  o.sprites = 3;
  o.grid_step = 6;
  return o;
}

TEST(SyntheticVideo, ShapesAndRanges) {
  const SyntheticVideoOptions o = small_options();
  const SyntheticVideo v = generate_synthetic_video(o, 7);
  EXPECT_EQ(v.frames.sizes(), (std::vector<int64_t>{8, 48, 64, 3}));
  EXPECT_EQ(v.frames.scalar_type(), torch::kUInt8);
  const int64_t n = v.tracks.size(0);
  EXPECT_GT(n, 50);
  EXPECT_EQ(v.tracks.sizes(), (std::vector<int64_t>{n, 8, 2}));
  EXPECT_EQ(v.tracks.scalar_type(), torch::kFloat32);
  EXPECT_EQ(v.visibility.sizes(), (std::vector<int64_t>{n, 8}));
  EXPECT_EQ(v.visibility.scalar_type(), torch::kBool);
  EXPECT_TRUE(v.visibility.any(1).all().item<bool>()) << "every track is visible at least once";
  // Visible points lie inside the frame.
  const auto x = v.tracks.select(2, 0), y = v.tracks.select(2, 1);
  const auto inside = (x >= 0) & (x < 64) & (y >= 0) & (y < 48);
  EXPECT_TRUE((inside | ~v.visibility).all().item<bool>());
  // Points exist on the background and on sprites; some are occluded at some frame.
  EXPECT_TRUE((v.track_layer == 0).any().item<bool>());
  EXPECT_TRUE((v.track_layer > 0).any().item<bool>());
  EXPECT_FALSE(v.visibility.all().item<bool>());
  EXPECT_FALSE(v.prompt.empty());
  EXPECT_NE(v.prompt.find("background"), std::string::npos) << v.prompt;
}

TEST(SyntheticVideo, DeterministicForASeed) {
  const SyntheticVideoOptions o = small_options();
  const SyntheticVideo a = generate_synthetic_video(o, 42), b = generate_synthetic_video(o, 42),
                       c = generate_synthetic_video(o, 43);
  EXPECT_TRUE(torch::equal(a.frames, b.frames));
  EXPECT_TRUE(torch::equal(a.tracks, b.tracks));
  EXPECT_TRUE(torch::equal(a.visibility, b.visibility));
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_FALSE(torch::equal(a.frames, c.frames));
  // Golden fingerprints: the same bytes on every machine (IEEE double arithmetic only, no libm
  // transcendental functions, no std:: distributions). Recorded on x86-64 Debian 12, GCC 12.
  EXPECT_EQ(fingerprint(a.frames), 5140410242542698313ull) << "frames fingerprint changed";
  EXPECT_EQ(fingerprint(a.tracks, fingerprint(a.visibility)), 14609625877002238832ull) << "tracks fingerprint changed";
  EXPECT_EQ(a.prompt,
            "A textured yellow ellipse moves down and to the left, rotates clockwise and shrinks, a textured teal disc "
            "moves left, rotates clockwise and grows, and a textured gray disc moves up and to the right, rotates "
            "clockwise and shrinks, in front of a white patterned background drifting right.");
}

TEST(SyntheticVideo, VisibleTrackedPointsShowTheirSourceTexture) {
  // The scene sampled at a visible track position gives the texture value at the point's
  // source coordinates on its own layer (float32 track rounding: tolerance 0.05 of 255).
  const SyntheticVideoOptions o = small_options();
  for (uint64_t seed : {1, 2, 3}) {
    const SyntheticScene scene = make_synthetic_scene(o, seed);
    const SyntheticVideo v = render_synthetic_video(scene, o);
    const auto tracks = v.tracks.accessor<float, 3>();
    const auto vis = v.visibility.accessor<bool, 2>();
    const auto layer = v.track_layer.accessor<int32_t, 1>();
    const auto src = v.source_points.accessor<double, 2>();
    int64_t checked = 0;
    for (int64_t n = 0; n < v.tracks.size(0); ++n) {
      const auto expected = scene.layers[static_cast<size_t>(layer[n])].texture.sample(src[n][0], src[n][1]);
      for (int64_t t = 0; t < o.frames; ++t) {
        if (!vis[n][t]) continue;
        const auto got = sample_scene(scene, static_cast<double>(t), tracks[n][t][0], tracks[n][t][1]);
        for (int ch = 0; ch < 3; ++ch) ASSERT_NEAR(got[ch], expected[ch], 0.05) << "seed " << seed << " track " << n << " t " << t;
        ++checked;
      }
    }
    EXPECT_GT(checked, 500);
  }
}

TEST(SyntheticVideo, RenderedPixelsFollowTheTracks) {
  // Bilinear interpolation of the rendered uint8 frames at visible track positions matches the
  // source texture closely, and much better than tracks shifted by 2 pixels: the tracks really
  // follow the pixels. Texture noise is +-45 per texel, so a wrong track shows up clearly.
  SyntheticVideoOptions o = small_options();
  o.height = 64;
  o.width = 96;
  o.frames = 6;
  const SyntheticScene scene = make_synthetic_scene(o, 11);
  const SyntheticVideo v = render_synthetic_video(scene, o);
  auto frame_at = [&](int64_t t, double x, double y, int ch) {
    // Pixel centres at integer + 0.5 (TAP-Vid raster convention).
    const double u = x - 0.5, w = y - 0.5;
    const int64_t x0 = static_cast<int64_t>(std::floor(u)), y0 = static_cast<int64_t>(std::floor(w));
    const double a = u - x0, b = w - y0;
    auto px = [&](int64_t yy, int64_t xx) {
      xx = std::min<int64_t>(std::max<int64_t>(xx, 0), o.width - 1);
      yy = std::min<int64_t>(std::max<int64_t>(yy, 0), o.height - 1);
      return static_cast<double>(v.frames[t][yy][xx][ch].item<uint8_t>());
    };
    return (px(y0, x0) * (1 - a) + px(y0, x0 + 1) * a) * (1 - b) + (px(y0 + 1, x0) * (1 - a) + px(y0 + 1, x0 + 1) * a) * b;
  };
  double err = 0, err_shifted = 0;
  int64_t count = 0;
  const auto tracks = v.tracks.accessor<float, 3>();
  const auto vis = v.visibility.accessor<bool, 2>();
  for (int64_t n = 0; n < v.tracks.size(0); n += 3) {
    const int32_t layer = v.track_layer[n].item<int32_t>();
    const auto expected = scene.layers[static_cast<size_t>(layer)].texture.sample(v.source_points[n][0].item<double>(),
                                                                                 v.source_points[n][1].item<double>());
    for (int64_t t = 0; t < o.frames; ++t) {
      const double x = tracks[n][t][0], y = tracks[n][t][1];
      if (!vis[n][t] || x < 3 || y < 3 || x > o.width - 3 || y > o.height - 3) continue;
      for (int ch = 0; ch < 3; ++ch) {
        err += std::abs(frame_at(t, x, y, ch) - expected[ch]);
        err_shifted += std::abs(frame_at(t, x + 2, y, ch) - expected[ch]);
      }
      ++count;
    }
  }
  ASSERT_GT(count, 200);
  err /= 3.0 * count;
  err_shifted /= 3.0 * count;
  // Near sprite edges a 2x2 pixel neighbourhood can straddle two layers; the mean absorbs it.
  EXPECT_LT(err, 4.0) << "mean abs error of correct tracks (0..255); measured 1.6";
  EXPECT_GT(err_shifted, 2.0 * err + 8.0) << "shifted tracks should be much worse; measured 19.2";
}

// Background (static, uniform grey texture) + sprite A (back, static rectangle in the middle) +
// sprite B (front, rectangle moving right by 4 px per frame through A).
SyntheticScene occlusion_scene() {
  auto flat = [](float value, int64_t size, bool wrap) {
    Texture t;
    t.height = t.width = size;
    t.texel_size = 1.0;
    t.wrap = wrap;
    t.rgb.assign(static_cast<size_t>(size * size * 3), value);
    return t;
  };
  SyntheticScene scene;
  SceneLayer bg;
  bg.is_background = true;
  bg.texture = flat(100, 8, true);
  bg.motion.cx = 32;
  bg.motion.cy = 16;
  scene.layers.push_back(bg);
  SceneLayer a;
  a.shape = SpriteShape::kRectangle;
  a.half_width = a.half_height = 6;
  a.texture = flat(30, 14, false);
  a.motion.cx = 32;
  a.motion.cy = 16;
  scene.layers.push_back(a);
  SceneLayer b;
  b.shape = SpriteShape::kRectangle;
  b.half_width = 3;
  b.half_height = 10;
  b.texture = flat(220, 24, false);
  b.motion.cx = 10;  // x = 10 + 4t: covers A's centre (x = 32) while |10 + 4t - 32| <= 3, i.e. t = 5 and 6
  b.motion.cy = 16;
  b.motion.vx = 4;
  scene.layers.push_back(b);
  scene.prompt = "constructed";
  return scene;
}

TEST(SyntheticVideo, OcclusionOnAConstructedScene) {
  SyntheticVideoOptions o;
  o.frames = 16;
  o.height = 32;
  o.width = 64;
  o.sprites = 2;
  o.grid_step = 2;
  const SyntheticScene scene = occlusion_scene();
  const SyntheticVideo v = render_synthetic_video(scene, o);
  const int64_t n = v.tracks.size(0);
  // Find A's point nearest its centre (source grid step 2 from -6+1: source x in {-5,...,5}).
  int64_t a_centre = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (v.track_layer[i].item<int32_t>() == 1 && std::abs(v.source_points[i][0].item<double>() - 1.0) < 1e-9 &&
        std::abs(v.source_points[i][1].item<double>() - 1.0) < 1e-9) {
      a_centre = i;
    }
  }
  ASSERT_GE(a_centre, 0);
  // The point sits at (33, 17); B covers x in [10 + 4t - 3, 10 + 4t + 3]: t = 5 (27..33) and 6 (31..37).
  for (int64_t t = 0; t < o.frames; ++t) {
    const bool covered = std::abs(10.0 + 4.0 * t - 33.0) <= 3.0;
    EXPECT_EQ(v.visibility[a_centre][t].item<bool>(), !covered) << "t " << t;
    EXPECT_FLOAT_EQ(v.tracks[a_centre][t][0].item<float>(), 33.0f);  // A is static
    // Pixel (row 16, column 32), centre (32.5, 16.5), shows B (220) when covered, A (30) otherwise.
    const bool pixel_covered = std::abs(10.0 + 4.0 * t - 32.5) <= 3.0;
    EXPECT_EQ(pixel_covered, covered) << "t " << t;
    EXPECT_EQ(v.frames[t][16][32][0].item<uint8_t>(), pixel_covered ? 220 : 30) << "t " << t;
  }
  // Points on B are in front of everything: visible exactly while inside the frame.
  for (int64_t i = 0; i < n; ++i) {
    if (v.track_layer[i].item<int32_t>() != 2) continue;
    for (int64_t t = 0; t < o.frames; ++t) {
      const float x = v.tracks[i][t][0].item<float>();
      EXPECT_EQ(v.visibility[i][t].item<bool>(), x >= 0 && x < 64) << "B point " << i << " t " << t;
    }
  }
  // B's points move by exactly (4, 0) per frame.
  const auto b_tracks = v.tracks.index({v.track_layer == 2});
  ASSERT_GT(b_tracks.size(0), 0);
  EXPECT_TRUE(torch::allclose(b_tracks.select(1, 15) - b_tracks.select(1, 0),
                              torch::tensor({60.0f, 0.0f}).expand({b_tracks.size(0), 2}), 0, 1e-4));
  // Background points hidden behind A for the whole video are dropped (never visible).
  for (int64_t i = 0; i < n; ++i) {
    if (v.track_layer[i].item<int32_t>() == 0) {
      const float x = v.tracks[i][0][0].item<float>(), y = v.tracks[i][0][1].item<float>();
      EXPECT_FALSE(std::abs(x - 32) < 5 && std::abs(y - 16) < 5) << "a background point under A's centre";
    }
  }
}

TEST(SyntheticVideo, RejectsBadOptions) {
  SyntheticVideoOptions o = small_options();
  o.frames = 0;
  EXPECT_THROW(generate_synthetic_video(o, 1), std::exception);
  o = small_options();
  o.grid_step = 0;
  EXPECT_THROW(generate_synthetic_video(o, 1), std::exception);
  o = small_options();
  o.sprites = 100;
  EXPECT_THROW(generate_synthetic_video(o, 1), std::exception);
}

}  // namespace
}  // namespace t4g::data
