// The correspondence loss: parity of soft-argmax, Huber/L1/L2 and the gradient with an independent
// PyTorch computation (tests/fixtures/correspondence/make_fixtures.py), a finite-difference
// gradient check, a synthetic shifted feature map (low loss, soft-argmax on the truth), the
// latent-to-video frame rule, masking of invisible points, query/target sampling rules, the
// nothing-valid case, and the error paths.
#include "losses/correspondence_loss.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

constexpr int64_t kStride = 16;

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

struct Fixture {
  std::map<std::string, torch::Tensor> t;
  CorrespondenceQueries queries;
  CorrespondenceLossOptions options;
};

Fixture load_fixture() {
  Fixture f;
  f.t = load_safetensors(testing::fixture("correspondence/case.safetensors"));
  const auto& valid = f.t.at("valid");
  f.queries.point_index = torch::arange(valid.size(1), torch::kLong).unsqueeze(0).expand({valid.size(0), -1});
  f.queries.query_frame = f.t.at("query_frame");
  f.queries.query_xy = f.t.at("query_xy");
  f.queries.target_xy = f.t.at("target_xy");
  f.queries.valid = valid.to(torch::kBool);
  f.queries.candidate_pairs = valid.numel();
  f.options.temperature = 0.1;  // as in make_fixtures.py
  f.options.huber_delta = 0.5;
  f.options.stride = kStride;
  return f;
}

RobustLoss loss_kind(const std::string& name) {
  if (name == "huber") return RobustLoss::kHuber;
  if (name == "l1") return RobustLoss::kL1;
  return RobustLoss::kL2;
}

// float64 against the float64 reference: 1e-10 on the loss and the gradient, 1e-9 px on positions.
TEST(CorrespondenceLoss, MatchesTheIndependentReferenceInFloat64) {
  Fixture f = load_fixture();
  for (const std::string& name : {"huber", "l1", "l2"}) {
    f.options.loss = loss_kind(name);
    const auto features = f.t.at("features").clone().requires_grad_(true);
    const auto result = correspondence_loss(features, f.queries, f.options);
    EXPECT_NEAR(result.loss.item<double>(), f.t.at("loss_" + name).item<double>(), 1e-10) << name;
    result.loss.backward();
    EXPECT_LE(max_abs_diff(features.grad(), f.t.at("grad_" + name)), 1e-10) << name;
    EXPECT_LE(max_abs_diff(result.predicted_xy, f.t.at("predicted_xy")), 1e-9) << name;
    EXPECT_NEAR(result.mean_pixel_error.item<double>(), f.t.at("mean_pixel_error").item<double>(), 1e-9);
    EXPECT_EQ(result.valid_pairs, f.queries.valid.sum().item<int64_t>());
  }
}

// float32 features: positions within 1e-3 px, loss within 1e-5 relative.
TEST(CorrespondenceLoss, MatchesTheReferenceInFloat32) {
  Fixture f = load_fixture();
  const auto result = correspondence_loss(f.t.at("features").to(torch::kFloat32), f.queries, f.options);
  EXPECT_EQ(result.loss.scalar_type(), torch::kFloat32);
  EXPECT_LE(max_abs_diff(result.predicted_xy, f.t.at("predicted_xy")), 1e-3);
  const double want = f.t.at("loss_huber").item<double>();
  EXPECT_NEAR(result.loss.item<double>(), want, 1e-5 * want);
}

// Central finite differences (h = 1e-6) on every feature element of a tiny float64 case against
// autograd: max abs difference <= 1e-7 for each robust loss.
TEST(CorrespondenceLoss, GradientMatchesFiniteDifferences) {
  auto gen = make_generator(3, {0});
  const auto base = torch::randn({1, 2, 3, 3, 4}, gen, torch::kFloat64);
  CorrespondenceQueries q;
  q.point_index = torch::tensor({{0, 1, 2}}, torch::kLong);
  q.query_frame = torch::tensor({{0, 1, 0}}, torch::kLong);
  q.query_xy = torch::tensor({{{13.3f, 21.7f}, {40.1f, 9.2f}, {55.5f, 30.4f}}});
  q.target_xy = torch::tensor({{{{0.f, 0.f}, {20.f, 25.f}}, {{31.f, 3.f}, {0.f, 0.f}}, {{0.f, 0.f}, {50.f, 41.f}}}});
  q.valid = torch::tensor({{{false, true}, {true, false}, {false, true}}});
  q.candidate_pairs = 3;
  CorrespondenceLossOptions options;
  options.temperature = 0.2;
  options.huber_delta = 0.3;
  for (const RobustLoss kind : {RobustLoss::kHuber, RobustLoss::kL1, RobustLoss::kL2}) {
    options.loss = kind;
    const auto x = base.clone().requires_grad_(true);
    correspondence_loss(x, q, options).loss.backward();
    const auto analytic = x.grad().flatten();
    auto flat = base.clone().flatten();
    auto numeric = torch::zeros_like(flat);
    const double h = 1e-6;
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const double v = flat[i].item<double>();
      flat[i] = v + h;
      const double up = correspondence_loss(flat.view(base.sizes()), q, options).loss.item<double>();
      flat[i] = v - h;
      const double down = correspondence_loss(flat.view(base.sizes()), q, options).loss.item<double>();
      flat[i] = v;
      numeric[i] = (up - down) / (2 * h);
    }
    EXPECT_GT(analytic.abs().max().item<double>(), 1e-3);  // a gradient worth checking
    EXPECT_LE(max_abs_diff(analytic, numeric), 1e-7) << static_cast<int>(kind);
  }
}

// A feature map whose frame t is frame 0 shifted by a known number of cells, and trajectories that
// follow the shift at the representative video frames 4k (garbage at every other frame, which must
// never be read).
struct ShiftedClip {
  torch::Tensor features;    // [1, F, C, h, w]
  torch::Tensor tracks;      // [1, N, (F-1)*4+1, 2]
  torch::Tensor visibility;  // [1, N, (F-1)*4+1]
  torch::Tensor track_mask;  // [1, N]
};

ShiftedClip shifted_clip(bool independent_frames = false) {
  const int64_t f = 3, c = 32, h = 6, w = 8;
  const std::vector<std::pair<int64_t, int64_t>> shift{{0, 0}, {1, 2}, {-2, 3}};  // (dy, dx) cells
  auto gen = make_generator(7, {0});
  const auto base = torch::randn({c, h, w}, gen);
  std::vector<torch::Tensor> frames;
  for (int64_t t = 0; t < f; ++t) {
    const auto frame = independent_frames && t > 0 ? torch::randn({c, h, w}, gen) : base;
    frames.push_back(torch::roll(frame, {shift[t].first, shift[t].second}, {1, 2}));
  }
  ShiftedClip clip;
  clip.features = torch::stack(frames).unsqueeze(0);
  const int64_t pixel_frames = (f - 1) * 4 + 1;
  const int64_t n = h * w;
  clip.tracks = torch::full({1, n, pixel_frames, 2}, 1.0e4);
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      for (int64_t t = 0; t < f; ++t) {
        const int64_t y = ((i + shift[t].first) % h + h) % h;
        const int64_t x = ((j + shift[t].second) % w + w) % w;
        clip.tracks[0][i * w + j][4 * t] = torch::tensor({(x + 0.5f) * kStride, (y + 0.5f) * kStride});
      }
    }
  }
  clip.visibility = torch::ones({1, n, pixel_frames}, torch::kBool);
  clip.track_mask = torch::ones({1, n}, torch::kBool);
  return clip;
}

TEST(CorrespondenceLoss, ShiftedFramesGiveLowLossAndSoftArgmaxOnTheTruth) {
  const ShiftedClip clip = shifted_clip();
  CorrespondenceLossOptions options;  // temperature 0.05, Huber delta 1 cell, first-frame queries
  const auto result = correspondence_loss(clip.features, clip.tracks, clip.visibility, clip.track_mask, options,
                                          make_generator(1, {0}));
  EXPECT_EQ(result.valid_pairs, 48 * 2);
  EXPECT_DOUBLE_EQ(result.fraction_valid, 1.0);
  // Soft-argmax within half a pixel of the truth on average; loss under 1e-3 (cells^2).
  EXPECT_LT(result.mean_pixel_error.item<double>(), 0.5);
  EXPECT_LT(result.loss.item<double>(), 1e-3);

  // The same trajectories on unrelated frames: errors of several cells.
  const ShiftedClip unrelated = shifted_clip(/*independent_frames=*/true);
  const auto bad = correspondence_loss(unrelated.features, clip.tracks, clip.visibility, clip.track_mask, options,
                                       make_generator(1, {0}));
  EXPECT_GT(bad.mean_pixel_error.item<double>(), 20.0);
  EXPECT_GT(bad.loss.item<double>(), 0.5);
}

TEST(CorrespondenceLoss, InvisiblePointsContributeNothing) {
  ShiftedClip clip = shifted_clip(/*independent_frames=*/true);  // a non-trivial loss everywhere
  CorrespondenceLossOptions options;
  const auto features = clip.features.clone().requires_grad_(true);
  const auto reference =
      correspondence_loss(features, clip.tracks, clip.visibility, clip.track_mask, options, make_generator(2, {0}));

  // Hide point 5 at latent frame 2 (video frame 8), then move its ground truth there anywhere.
  auto visibility = clip.visibility.clone();
  visibility[0][5][8] = false;
  const auto hidden =
      correspondence_loss(features, clip.tracks, visibility, clip.track_mask, options, make_generator(2, {0}));
  auto tracks = clip.tracks.clone();
  tracks[0][5][8] = torch::tensor({-500.f, 9000.f});
  const auto moved =
      correspondence_loss(features, tracks, visibility, clip.track_mask, options, make_generator(2, {0}));
  EXPECT_EQ(hidden.valid_pairs, reference.valid_pairs - 1);
  EXPECT_EQ(moved.loss.item<double>(), hidden.loss.item<double>());  // bit-equal: the pair is not read
  EXPECT_NE(hidden.loss.item<double>(), reference.loss.item<double>());

  // A point invisible at the query frame, or masked out as padding, is never a query: its whole
  // trajectory can be anything.
  auto query_hidden = clip.visibility.clone();
  query_hidden[0][7][0] = false;
  auto mask = clip.track_mask.clone();
  mask[0][9] = false;
  auto wild = clip.tracks.clone();
  wild[0][7] = 1234.0;
  wild[0][9] = -77.0;
  const auto a = correspondence_loss(features, clip.tracks, query_hidden, mask, options, make_generator(3, {0}));
  const auto b = correspondence_loss(features, wild, query_hidden, mask, options, make_generator(3, {0}));
  EXPECT_EQ(a.valid_pairs, (48 - 2) * 2);
  EXPECT_EQ(a.loss.item<double>(), b.loss.item<double>());
}

TEST(CorrespondenceLoss, NothingValidIsZeroWithADefinedGradient) {
  const ShiftedClip clip = shifted_clip();
  const auto features = clip.features.clone().requires_grad_(true);
  const auto none = torch::zeros_like(clip.visibility);
  const auto result = correspondence_loss(features, clip.tracks, none, clip.track_mask, CorrespondenceLossOptions{},
                                          make_generator(1, {0}));
  EXPECT_EQ(result.loss.item<double>(), 0.0);
  EXPECT_EQ(result.valid_pairs, 0);
  EXPECT_EQ(result.fraction_valid, 0.0);
  EXPECT_EQ(result.mean_pixel_error.item<double>(), 0.0);
  result.loss.backward();
  ASSERT_TRUE(features.grad().defined());
  EXPECT_EQ(features.grad().abs().max().item<double>(), 0.0);
  EXPECT_FALSE(torch::isnan(features.grad()).any().item<bool>());
}

TEST(CorrespondenceLoss, SamplingRules) {
  const ShiftedClip clip = shifted_clip();
  const int64_t f = 3;
  CorrespondenceLossOptions options;
  options.num_query_points = 10;
  auto visibility = clip.visibility.clone();
  visibility.select(2, 0).slice(1, 0, 30) = false;  // 30 points hidden at latent 0 (video frame 0)
  // First-frame queries: 10 distinct points among the 18 visible at frame 0, all others as targets.
  auto q = sample_correspondence_queries(clip.tracks, visibility, clip.track_mask, f, options, make_generator(4, {0}));
  ASSERT_EQ(q.point_index.sizes(), (std::vector<int64_t>{1, 10}));
  EXPECT_GE(q.point_index.min().item<int64_t>(), 30);
  EXPECT_EQ(std::get<0>(torch::_unique(q.point_index)).numel(), 10);
  EXPECT_EQ(q.query_frame.max().item<int64_t>(), 0);
  EXPECT_EQ(q.candidate_pairs, 10 * (f - 1));
  EXPECT_TRUE(torch::equal(q.valid.select(2, 0), torch::zeros({1, 10}, torch::kBool)));
  // Seeded: the same generator seed gives the same queries, another seed other ones.
  auto again =
      sample_correspondence_queries(clip.tracks, visibility, clip.track_mask, f, options, make_generator(4, {0}));
  EXPECT_TRUE(torch::equal(again.point_index, q.point_index));
  auto other =
      sample_correspondence_queries(clip.tracks, visibility, clip.track_mask, f, options, make_generator(5, {0}));
  EXPECT_FALSE(torch::equal(other.point_index, q.point_index));

  // Random visible query frames: never a frame where the point is hidden; query_xy is the track there.
  options.query_frame = QueryFrameRule::kRandomVisible;
  options.num_query_points = 48;
  q = sample_correspondence_queries(clip.tracks, visibility, clip.track_mask, f, options, make_generator(6, {0}));
  std::set<int64_t> frames_seen;
  for (int64_t j = 0; j < 48; ++j) {
    const int64_t p = q.point_index[0][j].item<int64_t>();
    const int64_t k = q.query_frame[0][j].item<int64_t>();
    frames_seen.insert(k);
    EXPECT_TRUE(visibility[0][p][4 * k].item<bool>()) << p << " " << k;
    EXPECT_TRUE(torch::equal(q.query_xy[0][j], clip.tracks[0][p][4 * k])) << p;
    EXPECT_FALSE(q.valid[0][j][k].item<bool>());  // never its own target
  }
  EXPECT_EQ(frames_seen.size(), 3u);

  // A random subset of K = 1 target frame per point, never the query frame.
  options.target_frames = TargetFrameRule::kRandomSubset;
  options.num_target_frames = 1;
  q = sample_correspondence_queries(clip.tracks, clip.visibility, clip.track_mask, f, options, make_generator(7, {0}));
  EXPECT_EQ(q.candidate_pairs, 48);
  EXPECT_TRUE(torch::equal(q.valid.sum(2), torch::ones({1, 48}, torch::kLong)));

  // A clip with fewer eligible tracks than requested is padded with -1 and no valid pair.
  options = CorrespondenceLossOptions{};
  options.num_query_points = 20;
  auto mask = clip.track_mask.clone();
  mask.slice(1, 5) = false;
  q = sample_correspondence_queries(clip.tracks, clip.visibility, mask, f, options, make_generator(8, {0}));
  EXPECT_EQ((q.point_index >= 0).sum().item<int64_t>(), 5);
  EXPECT_EQ(q.valid.sum().item<int64_t>(), 5 * (f - 1));
  EXPECT_EQ(q.candidate_pairs, 5 * (f - 1));
}

TEST(CorrespondenceLoss, FramesEncodedOneByOneUseTheIdentityRule) {
  // temporal_compression 1: latent k reads video frame k. Build tracks of 3 frames from the shifted clip.
  const ShiftedClip clip = shifted_clip();
  const auto tracks = clip.tracks.index_select(2, torch::tensor({0, 4, 8}, torch::kLong));
  const auto visibility = clip.visibility.slice(2, 0, 3);
  CorrespondenceLossOptions options;
  options.temporal_compression = 1;
  const auto result =
      correspondence_loss(clip.features, tracks, visibility, clip.track_mask, options, make_generator(1, {0}));
  EXPECT_LT(result.mean_pixel_error.item<double>(), 0.5);
}

TEST(CorrespondenceLoss, BadInputsNameTheTensor) {
  const ShiftedClip clip = shifted_clip();
  const CorrespondenceLossOptions options;
  auto run = [&](const torch::Tensor& features, const torch::Tensor& tracks, const torch::Tensor& visibility,
                 const torch::Tensor& mask) {
    return testing::error_of(
        [&] { correspondence_loss(features, tracks, visibility, mask, options, make_generator(1, {0})); });
  };
  // 8 video frames cannot hold latent frame 2 (video frame 8).
  std::string m = run(clip.features, clip.tracks.slice(2, 0, 8), clip.visibility.slice(2, 0, 8), clip.track_mask);
  EXPECT_NE(m.find("tracks"), std::string::npos) << m;
  EXPECT_NE(m.find("at least 9 frames"), std::string::npos) << m;
  m = run(clip.features, clip.tracks, clip.visibility.to(torch::kFloat32), clip.track_mask);
  EXPECT_NE(m.find("visibility"), std::string::npos) << m;
  m = run(clip.features, clip.tracks, clip.visibility, clip.track_mask.unsqueeze(0));
  EXPECT_NE(m.find("track_mask"), std::string::npos) << m;
  m = run(clip.features[0], clip.tracks, clip.visibility, clip.track_mask);
  EXPECT_NE(m.find("features"), std::string::npos) << m;
  m = run(clip.features, clip.tracks.squeeze(0), clip.visibility, clip.track_mask);
  EXPECT_NE(m.find("tracks"), std::string::npos) << m;
  CorrespondenceLossOptions cold;
  cold.temperature = 0.0;
  m = testing::error_of([&] {
    correspondence_loss(clip.features, clip.tracks, clip.visibility, clip.track_mask, cold, make_generator(1, {0}));
  });
  EXPECT_NE(m.find("temperature"), std::string::npos) << m;
}

}  // namespace
}  // namespace t4g
