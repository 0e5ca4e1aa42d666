// eval/zero_shot_tracker: DiffTrack's chunking and read-out against fixtures made by the
// reference's loop and torch's grid_sample (tests/fixtures/zero_shot_tracker/make_fixtures.py),
// hand-built cost maps and features with known answers, the occlusion rule, the whole procedure on
// the tiny model, and the errors bad inputs give.
#include "eval/zero_shot_tracker.h"

#include <gtest/gtest.h>

#include <functional>

#include "common/config.h"
#include "common/error.h"
#include "common/json.h"
#include "data/synthetic_video.h"
#include "tests/testing.h"

namespace t4g {
namespace {

namespace F = torch::nn::functional;

torch::Tensor json_tensor(const Json& nested) {
  std::vector<float> flat;
  std::vector<int64_t> shape;
  std::function<void(const Json&, size_t)> walk = [&](const Json& j, size_t depth) {
    if (j.is_array()) {
      if (shape.size() <= depth) shape.push_back(static_cast<int64_t>(j.size()));
      for (const Json& e : j) walk(e, depth + 1);
    } else {
      flat.push_back(j.get<float>());
    }
  };
  walk(nested, 0);
  return torch::tensor(flat, torch::kFloat32).reshape(shape);
}

ModelComponents tiny_components() {
  ModelConfig m;
  m.device = DeviceKind::kCpu;
  return load_model_components(m, 0);
}

// The small-model tracker settings: 2 layers, chunks of 5 frames, no 256 detour, no VAE tiling.
ZeroShotTrackerOptions tiny_tracker() {
  ZeroShotTrackerOptions o;
  o.layers = {1};
  o.height = 64;
  o.width = 96;
  o.resize_via_256 = false;
  o.chunks.chunk_len = 5;
  o.vae_tiling = false;  // the tiny VAE's tiles (32x48) do not divide its frames into an 8x12 latent
  return o;
}

TEST(DiffTrackChunks, EqualTheReferenceLoop) {
  const Json fixture = read_json(testing::fixture("zero_shot_tracker/chunks.json"));
  ASSERT_GE(fixture["cases"].size(), 10u);
  for (const Json& c : fixture["cases"]) {
    ChunkOptions o;
    o.chunk_len = c["chunk_len"].get<int64_t>();
    o.mode = c["interval"].get<bool>() ? ChunkMode::kFrameInterval : ChunkMode::kStride;
    o.stride = c["stride"].get<int64_t>();
    const auto chunks = difftrack_chunks(c["frames"].get<int64_t>(), o);
    EXPECT_EQ(chunks, c["chunks"].get<std::vector<std::vector<int64_t>>>())
        << "T=" << c["frames"] << " chunk_len=" << o.chunk_len << " interval=" << c["interval"];
  }
}

TEST(DiffTrackChunks, ImpossibleChunkingsAreErrors) {
  ChunkOptions interval;
  EXPECT_NE(testing::error_of([&] { difftrack_chunks(11, interval); }).find("too short"), std::string::npos);
  ChunkOptions stride;
  stride.mode = ChunkMode::kStride;
  stride.stride = 13;
  EXPECT_NE(testing::error_of([&] { difftrack_chunks(50, stride); }).find("skips frames"), std::string::npos);
  EXPECT_NE(testing::error_of([&] { difftrack_chunks(1, stride); }).find("at least 2 frames"), std::string::npos);
  // A first chunk longer than the video is clipped (the reference would index past the end).
  stride.stride = 12;
  EXPECT_EQ(difftrack_chunks(5, stride), (std::vector<std::vector<int64_t>>{{1, 2, 3, 4}}));
}

// The argmax is exact; the read-out agrees with torch's grid_sample to 1e-3 px (float32 rounding
// of normalised coordinates times 16).
TEST(DiffTrackReadout, MatchesTheReferenceGridSampleWithTheMarginQuirk) {
  const Json fixture = read_json(testing::fixture("zero_shot_tracker/readout.json"));
  for (const Json& c : fixture["cases"]) {
    const int64_t h = c["grid_height"], w = c["grid_width"], H = c["image_height"], W = c["image_width"];
    const auto match_map = json_tensor(c["match_map"]);
    if (c.contains("cost")) {
      EXPECT_TRUE(torch::equal(argmax_match_map(json_tensor(c["cost"]), h, w), match_map));
    }
    const auto queries = json_tensor(c["queries"]);
    const auto tracks = read_out_matches(match_map, queries, H, W, ReadoutOptions{});
    const auto expected = json_tensor(c["tracks"]);
    EXPECT_TRUE(torch::allclose(tracks, expected, 0.0, 1e-3))
        << "grid " << h << "x" << w << " max diff " << (tracks - expected).abs().max().item<float>();
  }
}

// Identity motion: the exact mapping returns interior points unchanged (1e-3 px: float32
// normalised coordinates times 16); the reference
// read-out shrinks them by (w - 1) / (w - m) per axis, as methods.md 1.5 says (-4.7 px at x = 700).
TEST(DiffTrackReadout, IdentityMapExactVersusReference) {
  const int64_t h = 30, w = 45;
  const auto rows = torch::arange(h, torch::kFloat32).view({h, 1}).expand({h, w});
  const auto cols = torch::arange(w, torch::kFloat32).view({1, w}).expand({h, w});
  const auto identity = torch::stack({cols, rows}, 0);
  const auto points = torch::tensor({{100.0F, 50.0F}, {700.0F, 400.0F}, {360.5F, 240.25F}});
  ReadoutOptions exact;
  exact.reference_readout = false;
  const auto exact_tracks = read_out_matches(identity, points, 480, 720, exact);
  EXPECT_TRUE(torch::allclose(exact_tracks, points, 0.0, 1e-3)) << exact_tracks - points;
  const auto ref = read_out_matches(identity, points, 480, 720, ReadoutOptions{});
  const double m = 720.0 / 1024.0;
  EXPECT_NEAR(ref[1][0].item<double>(), 700.0 * 44.0 / (45.0 - m), 1e-3);
  EXPECT_NEAR(ref[1][0].item<double>() - 700.0, -4.7, 0.05);
  EXPECT_NEAR(ref[1][1].item<double>(), 400.0 * 29.0 / (30.0 - m), 1e-3);
}

// A cost map whose best target is the source shifted by (+2, +1) cells gives the shift exactly.
TEST(DiffTrackReadout, KnownShiftGivesExactTracks) {
  const int64_t h = 6, w = 8, stride = 16;
  auto cost = torch::zeros({h * w, h * w});
  for (int64_t r = 0; r < h; ++r) {
    for (int64_t c = 0; c < w; ++c) {
      const int64_t tr = std::min(r + 1, h - 1), tc = std::min(c + 2, w - 1);
      cost[tr * w + tc][r * w + c] = 1.0;
    }
  }
  // Cell centres of interior sources.
  const auto queries = torch::tensor({{8.0F, 8.0F}, {24.0F, 40.0F}, {72.0F, 56.0F}});
  MatchOptions o;
  o.readout.reference_readout = false;
  o.occlusion.rule = OcclusionRule::kNone;
  const FrameMatches m = match_through_cost_map(cost, h, w, h * stride, w * stride, queries, o);
  const auto expected = queries + torch::tensor({2.0F * stride, 1.0F * stride});
  EXPECT_TRUE(torch::allclose(m.positions, expected, 0.0, 1e-4)) << m.positions;
  EXPECT_FALSE(m.occluded.any().item<bool>());
}

TEST(DiffTrackOcclusion, CycleConsistencyFlagsAPlantedMismatch) {
  const int64_t h = 5, w = 5, stride = 16;
  auto cost = torch::eye(h * w) * 3.0;  // identity, strongly
  // Source cell (1, 1) now prefers target (3, 3), whose own best source stays (3, 3): the round
  // trip from (1, 1) lands 2 * sqrt(2) cells away.
  const int64_t planted = 1 * w + 1, target = 3 * w + 3;
  cost[target][planted] = 2.0;
  cost[planted][planted] = 0.0;
  const auto queries = torch::tensor({{24.0F, 24.0F}, {56.0F, 24.0F}, {40.0F, 56.0F}});  // cells (1,1), (1,3), (3,2)
  MatchOptions o;
  o.readout.reference_readout = false;
  const FrameMatches m = match_through_cost_map(cost, h, w, h * stride, w * stride, queries, o);
  EXPECT_TRUE(m.occluded[0].item<bool>());
  EXPECT_FALSE(m.occluded[1].item<bool>());
  EXPECT_FALSE(m.occluded[2].item<bool>());
  EXPECT_NEAR(m.positions[0][0].item<float>(), 56.0F, 1e-4);
  o.occlusion.rule = OcclusionRule::kNone;
  EXPECT_FALSE(match_through_cost_map(cost, h, w, h * stride, w * stride, queries, o).occluded.any().item<bool>());
  // A looser threshold (3 cells > 2.83) accepts the round trip.
  o.occlusion.rule = OcclusionRule::kCycleConsistency;
  o.occlusion.threshold_cells = 3.0;
  EXPECT_FALSE(match_through_cost_map(cost, h, w, h * stride, w * stride, queries, o).occluded.any().item<bool>());
}

// Features that are one-hot codes of a position moving (+1, 0) cells per frame: tracks are
// exact from any anchor frame, forwards and backwards in time.
TEST(TrackWithFeatures, OneHotMotionFromEveryAnchor) {
  const int64_t frames = 4, h = 4, w = 8, stride = 16;
  auto features = torch::zeros({frames, h * w, h, w});
  for (int64_t t = 0; t < frames; ++t) {
    for (int64_t r = 0; r < h; ++r) {
      for (int64_t c = 0; c < w; ++c) {
        // The content at cell (r, c) of frame t came from source cell (r, c - t) (wrapping).
        const int64_t code = r * w + ((c - t) % w + w) % w;
        features[t][code][r][c] = 1.0;
      }
    }
  }
  // (t, y, x): queries at cell centres in frames 0 and 2.
  const auto queries = torch::tensor({{0.0F, 24.0F, 8.0F}, {2.0F, 40.0F, 56.0F}, {0.0F, 8.0F, 40.0F}});
  MatchOptions o;
  o.readout.reference_readout = false;
  const PointTracks tracks = track_with_features(features, queries, h * stride, w * stride, o);
  ASSERT_EQ(tracks.tracks.sizes(), (std::vector<int64_t>{3, frames, 2}));
  for (int64_t q = 0; q < 3; ++q) {
    const float t0 = queries[q][0].item<float>(), y = queries[q][1].item<float>(), x = queries[q][2].item<float>();
    for (int64_t t = 0; t < frames; ++t) {
      const int64_t cell = ((static_cast<int64_t>(x) / stride + (t - static_cast<int64_t>(t0))) % w + w) % w;
      EXPECT_NEAR(tracks.tracks[q][t][0].item<float>(), cell * stride + stride / 2, 1e-4) << q << " " << t;
      EXPECT_NEAR(tracks.tracks[q][t][1].item<float>(), y, 1e-4);
    }
  }
  EXPECT_FALSE(tracks.occluded.any().item<bool>());
}

TEST(TrackWithFeatures, NaNFeaturesAreAnError) {
  auto features = torch::rand({3, 4, 2, 2});
  features[1][2][0][1] = std::nanf("");
  const auto queries = torch::tensor({{0.0F, 8.0F, 8.0F}});
  const std::string msg = testing::error_of([&] { track_with_features(features, queries, 32, 32, MatchOptions{}); });
  EXPECT_NE(msg.find("features holds NaN"), std::string::npos) << msg;
  const std::string frame = testing::error_of(
      [&] { track_with_features(torch::rand({2, 4, 2, 2}), torch::tensor({{5.0F, 8.0F, 8.0F}}), 32, 32, MatchOptions{}); });
  EXPECT_NE(frame.find("outside the video"), std::string::npos) << frame;
}

// A texture rolled by exactly one 16-px cell per frame, tracked with raw 16x16 patches as
// features: evaluate_tracking's plumbing (256x256 rescaling, query sampling, metrics) must give
// perfect scores (exact equality of counts: 1e-12).
TEST(EvaluateTracking, PerfectFeaturesScorePerfectly) {
  const int64_t frames = 5, height = 64, width = 96, stride = 16;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto texture = at::randint(0, 256, {height, width, 3}, gen, torch::kLong).to(torch::kUInt8);
  std::vector<torch::Tensor> video;
  for (int64_t t = 0; t < frames; ++t) video.push_back(texture.roll({t * stride}, {1}));
  TrackingVideo v;
  v.name = "rolled";
  v.frames = torch::stack(video, 0);
  std::vector<float> xy;
  const int64_t points = 12;
  for (int64_t p = 0; p < points; ++p) {
    const float x0 = static_cast<float>((p % 6) * stride + stride / 2), y0 = static_cast<float>((p / 6) * 32 + 8);
    for (int64_t t = 0; t < frames; ++t) {
      xy.push_back(std::fmod(x0 + static_cast<float>(t * stride), static_cast<float>(width)));
      xy.push_back(y0);
    }
  }
  v.tracks = torch::tensor(xy).reshape({points, frames, 2});
  v.visibility = torch::ones({points, frames}, torch::kBool);
  TrackingVideoSource source{1, [v](size_t) { return v; }};
  TrackingEvalOptions o;
  o.tracker.height = height;
  o.tracker.width = width;
  o.tracker.resize_via_256 = false;
  o.tracker.match.readout.reference_readout = false;
  o.show_progress = false;
  const FeatureExtractor patches = [&](const torch::Tensor& f) {
    const auto x = f.permute({0, 3, 1, 2}).to(torch::kFloat32);
    return F::unfold(x, F::UnfoldFuncOptions({stride, stride}).stride(stride)).view({f.size(0), -1, height / stride, width / stride});
  };
  ModelComponents none;  // the extractor replaces the model
  const TrackingEvaluation e = evaluate_tracking(none, source, o, patches);
  ASSERT_EQ(e.videos.size(), 1u);
  EXPECT_EQ(e.videos[0].prediction.tracks.sizes(), (std::vector<int64_t>{points, frames, 2}));
  EXPECT_NEAR(e.mean.at("average_pts_within_thresh"), 1.0, 1e-12);
  EXPECT_NEAR(e.mean.at("average_jaccard"), 1.0, 1e-12);
  EXPECT_NEAR(e.mean.at("occlusion_accuracy"), 1.0, 1e-12);
  // Shifting the ground truth by 3 px at 96 px width (8 px at 256) drops <delta^0..2 but keeps
  // delta^4 (16 px).
  TrackingVideo shifted = v;
  shifted.tracks = v.tracks + torch::tensor({3.0F, 0.0F});
  shifted.tracks.select(1, 0).copy_(v.tracks.select(1, 0));
  const TrackingEvaluation s = evaluate_tracking(none, TrackingVideoSource{1, [shifted](size_t) { return shifted; }}, o, patches);
  EXPECT_NEAR(s.mean.at("pts_within_1"), 0.0, 1e-12);
  EXPECT_NEAR(s.mean.at("pts_within_16"), 1.0, 1e-12);
}

// The whole procedure on the tiny model: shapes, the query frame is the query, reproducible,
// and the options that must change the result do.
TEST(TrackVideo, TinyModelEndToEnd) {
  ModelComponents c = tiny_components();
  data::SyntheticVideoOptions so;
  so.frames = 9;
  const auto video = data::generate_synthetic_video(so, 5);
  const auto queries = torch::tensor({{0.0F, 20.0F, 30.0F}, {0.0F, 40.0F, 70.0F}, {3.0F, 33.0F, 50.0F}});
  const ZeroShotTrackerOptions o = tiny_tracker();
  const PointTracks a = track_video(c, video.frames, queries, o);
  ASSERT_EQ(a.tracks.sizes(), (std::vector<int64_t>{3, 9, 2}));
  ASSERT_EQ(a.occluded.sizes(), (std::vector<int64_t>{3, 9}));
  EXPECT_TRUE(torch::isfinite(a.tracks).all().item<bool>());
  EXPECT_NEAR(a.tracks[0][0][0].item<float>(), 30.0F, 1e-5);
  EXPECT_NEAR(a.tracks[2][3][1].item<float>(), 33.0F, 1e-5);
  EXPECT_FALSE(a.occluded[2][3].item<bool>());
  EXPECT_TRUE((a.tracks.select(2, 0) >= 0).all().item<bool>() && (a.tracks.select(2, 0) <= 96).all().item<bool>());
  const PointTracks b = track_video(c, video.frames, queries, o);
  EXPECT_TRUE(torch::equal(a.tracks, b.tracks));
  // Input at twice the size: tracks come back in the input's pixels (twice the values).
  const auto big = F::interpolate(video.frames.permute({0, 3, 1, 2}).to(torch::kFloat32),
                                  F::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest))
                       .permute({0, 2, 3, 1})
                       .to(torch::kUInt8)
                       .contiguous();
  const auto big_queries = queries * torch::tensor({1.0F, 2.0F, 2.0F});
  const PointTracks scaled = track_video(c, big, big_queries, o);
  EXPECT_TRUE(torch::allclose(scaled.tracks, a.tracks * 2.0, 0.0, 1e-3));
}

TEST(TrackVideo, BadLayerTimestepAndFramesAreErrors) {
  ModelComponents c = tiny_components();
  const auto frames = torch::zeros({9, 64, 96, 3}, torch::kUInt8);
  const auto queries = torch::tensor({{0.0F, 20.0F, 30.0F}});
  ZeroShotTrackerOptions o = tiny_tracker();
  o.layers = {17};
  std::string msg = testing::error_of([&] { track_video(c, frames, queries, o); });
  EXPECT_NE(msg.find("layer 17 is out of range: the model has 2 transformer blocks"), std::string::npos) << msg;
  o = tiny_tracker();
  o.timestep_indices = {50};
  msg = testing::error_of([&] { track_video(c, frames, queries, o); });
  EXPECT_NE(msg.find("timestep index 50 is out of range for 50 steps"), std::string::npos) << msg;
  o = tiny_tracker();
  msg = testing::error_of([&] { track_video(c, torch::zeros({9, 64, 96, 3}, torch::kFloat32), queries, o); });
  EXPECT_NE(msg.find("uint8"), std::string::npos) << msg;
  msg = testing::error_of([&] { track_video(c, frames, torch::zeros({2, 2}), o); });
  EXPECT_NE(msg.find("query_points"), std::string::npos) << msg;
}

// What used to stop a new user, now follows the video and the model: a video shorter than the
// chunk is one chunk (DiffTrack's 13 is CogVideoX's latent count, not a property of the video),
// and VAE tiles that do not fit the frames (diffusers' tiled_encode would return a latent of the
// wrong size) give whole-frame encoding; both track exactly as the explicit settings do.
TEST(TrackVideo, ShortVideosAndUnfitTilesFollowTheInput) {
  ModelComponents c = tiny_components();
  const auto frames = torch::randint(0, 256, {9, 64, 96, 3}, torch::kUInt8);
  const auto queries = torch::tensor({{0.0F, 20.0F, 30.0F}, {0.0F, 40.0F, 70.0F}});
  ZeroShotTrackerOptions whole = tiny_tracker();
  whole.chunks.chunk_len = 9;
  whole.vae_tiling = false;
  const PointTracks want = track_video(c, frames, queries, whole);
  ZeroShotTrackerOptions o = whole;
  o.chunks.chunk_len = 13;
  EXPECT_TRUE(torch::equal(track_video(c, frames, queries, o).tracks, want.tracks));
  o.vae_tiling = true;  // 32 x 48 tiles on 64 x 96 frames
  EXPECT_TRUE(torch::equal(track_video(c, frames, queries, o).tracks, want.tracks));
}

}  // namespace
}  // namespace t4g
