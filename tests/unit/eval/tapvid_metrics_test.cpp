// Parity of eval/tapvid_metrics with tapnet's compute_tapvid_metrics and query samplers
// (fixtures: tests/fixtures/tapvid_metrics/make_fixtures.py runs tapnet's own functions).
#include "eval/tapvid_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "common/error.h"
#include "common/json.h"
#include "tests/testing.h"

namespace t4g {
namespace {

torch::Tensor float_tensor(const Json& nested) {
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

// Counts are exact, so the ratios agree to double rounding: 1e-12 absolute.
TEST(TapVidMetrics, MatchesTapnetOnRandomVideos) {
  const Json fixture = read_json(testing::fixture("tapvid_metrics/expected.json"));
  for (const Json& video : fixture["videos"]) {
    const auto gt = float_tensor(video["gt_tracks"]);
    const auto occ = float_tensor(video["gt_occluded"]).to(torch::kBool);
    const auto pred = float_tensor(video["pred_tracks"]);
    const auto pred_occ = float_tensor(video["pred_occluded"]).to(torch::kBool);
    for (const std::string mode_name : {"first", "strided"}) {
      SCOPED_TRACE(video["name"].get<std::string>() + " " + mode_name);
      const Json& ref = video["modes"][mode_name];
      const QueryMode mode = parse_query_mode(mode_name);
      const TapVidQueries q = sample_queries(gt, occ, mode, 5);
      const auto idx = ref["track_index"].get<std::vector<int64_t>>();
      ASSERT_EQ(q.track_index.numel(), static_cast<int64_t>(idx.size()));
      EXPECT_TRUE(torch::equal(q.track_index, torch::tensor(idx, torch::kInt64)));
      EXPECT_TRUE(torch::equal(q.query_points, float_tensor(ref["query_points"]).reshape({-1, 3})));
      const auto metrics = compute_tapvid_metrics(q.query_points, q.occluded, q.target_points,
                                                  pred_occ.index_select(0, q.track_index),
                                                  pred.index_select(0, q.track_index), mode);
      ASSERT_EQ(metrics.size(), tapvid_metric_names().size());
      for (const auto& [name, value] : ref["metrics"].items()) {
        ASSERT_TRUE(metrics.count(name)) << name;
        if (value.is_null()) {
          EXPECT_TRUE(std::isnan(metrics.at(name))) << name;
        } else {
          EXPECT_NEAR(metrics.at(name), value.get<double>(), 1e-12) << name;
        }
      }
    }
  }
}

// The hand-worked vector of research/benchmarks.md section 1.7.
TEST(TapVidMetrics, DocumentedTestVector) {
  const auto qp = torch::tensor({1.f, 0.f, 0.f, 0.f, 100.f, 100.f}).reshape({2, 3});
  const auto gt_occ = torch::tensor({1, 0, 0, 1, 0, 0, 0, 0}).reshape({2, 4}).to(torch::kBool);
  const auto gt = torch::tensor({0.f, 0.f, 10.f, 10.f, 20.f, 20.f, 30.f, 30.f, 100.f, 100.f, 100.f, 100.f, 100.f,
                                 100.f, 100.f, 100.f})
                      .reshape({2, 4, 2});
  const auto pred = torch::tensor({0.f, 0.f, 10.f, 10.f, 21.5f, 20.f, 30.f, 30.f, 100.f, 100.f, 103.f, 100.f, 100.f,
                                   109.f, 100.f, 100.f})
                        .reshape({2, 4, 2});
  const auto pred_occ = torch::tensor({0, 0, 0, 0, 0, 0, 0, 1}).reshape({2, 4}).to(torch::kBool);
  const auto first = compute_tapvid_metrics(qp, gt_occ, gt, pred_occ, pred, QueryMode::kFirst);
  EXPECT_NEAR(first.at("occlusion_accuracy"), 0.6, 1e-12);
  EXPECT_NEAR(first.at("jaccard_2"), 1.0 / 7.0, 1e-12);
  EXPECT_NEAR(first.at("average_jaccard"), 0.281905, 1e-6);
  EXPECT_NEAR(first.at("average_pts_within_thresh"), 0.65, 1e-12);
  const auto strided = compute_tapvid_metrics(qp, gt_occ, gt, pred_occ, pred, QueryMode::kStrided);
  EXPECT_NEAR(strided.at("occlusion_accuracy"), 0.5, 1e-12);
  EXPECT_NEAR(strided.at("average_jaccard"), 0.239286, 1e-6);
}

TEST(TapVidMetrics, NoEvaluationFramesGivesNaNLikeTheReference) {
  // Visible only at the last frame: 'first' has nothing to score.
  const auto gt = torch::zeros({1, 3, 2});
  const auto occ = torch::tensor({1, 1, 0}).reshape({1, 3}).to(torch::kBool);
  const TapVidQueries q = sample_queries(gt, occ, QueryMode::kFirst);
  const auto m = compute_tapvid_metrics(q.query_points, q.occluded, q.target_points, q.occluded, q.target_points,
                                        QueryMode::kFirst);
  EXPECT_TRUE(std::isnan(m.at("occlusion_accuracy")));
  EXPECT_TRUE(std::isnan(m.at("average_jaccard")));
  const auto mean = mean_over_videos({m, m});
  EXPECT_TRUE(std::isnan(mean.at("average_jaccard")));
}

TEST(TapVidMetrics, ShapeErrorsNameTheTensor) {
  const auto gt = torch::zeros({2, 4, 2});
  const auto occ = torch::zeros({2, 4}, torch::kBool);
  try {
    compute_tapvid_metrics(torch::zeros({2, 3}), occ, gt, torch::zeros({2, 5}, torch::kBool), gt, QueryMode::kFirst);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor pred_occluded"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_query_mode("third"), Error);
}

TEST(TapVidMetrics, MeanOverVideosIsUnweighted) {
  std::map<std::string, double> a, b;
  for (const auto& n : tapvid_metric_names()) {
    a[n] = 0.2;
    b[n] = 0.6;
  }
  EXPECT_NEAR(mean_over_videos({a, b}).at("average_jaccard"), 0.4, 1e-15);
}

}  // namespace
}  // namespace t4g
