// `t4g tapvid score` on a TAP-Vid pickle (tests/fixtures/tapvid) with predictions written here.
#include <gtest/gtest.h>

#include "common/json.h"
#include "data/tapvid.h"
#include "eval/tapvid_score.h"
#include "tests/testing.h"

namespace t4g {
namespace {

// Predictions from the ground truth itself, optionally shifted right by `dx` pixels.
std::vector<TapVidPrediction> predictions_from_truth(const std::string& pickle, QueryMode mode, float dx) {
  std::vector<TapVidPrediction> out;
  const auto videos = data::read_tapvid_pickle(pickle);
  for (size_t i = 0; i < videos.size(); ++i) {
    const auto gt = (videos[i].points * 256.0).to(torch::kFloat32);
    const TapVidQueries q = sample_queries(gt, videos[i].occluded, mode);
    TapVidPrediction p;
    p.name = tapvid_group_name(videos[i].name, static_cast<int64_t>(i));
    p.tracks = q.target_points + torch::tensor({dx, 0.0f});
    p.occluded = q.occluded;
    out.push_back(p);
  }
  return out;
}

TEST(TapVidScore, PerfectAndShiftedPredictions) {
  testing::TempDir dir;
  const std::string data = testing::fixture("tapvid/davis_p4.pkl");
  write_tapvid_predictions(dir.file("perfect.h5"), predictions_from_truth(data, QueryMode::kFirst, 0.0f));
  write_tapvid_predictions(dir.file("shifted.h5"), predictions_from_truth(data, QueryMode::kFirst, 3.0f));
  const std::string t4g = testing::program("t4g");
  auto r = testing::run_command(t4g + " tapvid score --data " + data + " --pred " + dir.file("perfect.h5") +
                                " --out " + dir.file("m.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json m = read_json(dir.file("m.json"));
  EXPECT_DOUBLE_EQ(m["mean"]["average_jaccard"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(m["mean"]["occlusion_accuracy"].get<double>(), 1.0);
  EXPECT_EQ(m["per_video"].size(), m["videos"].get<size_t>());
  // 3 px off: inside 4, 8 and 16, outside 1 and 2.
  r = testing::run_command(t4g + " tapvid score --data " + data + " --pred " + dir.file("shifted.h5") + " --out " +
                           dir.file("s.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  m = read_json(dir.file("s.json"));
  EXPECT_DOUBLE_EQ(m["mean"]["pts_within_2"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(m["mean"]["pts_within_4"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(m["mean"]["average_pts_within_thresh"].get<double>(), 0.6);
}

TEST(TapVidScore, WrongPredictionsGiveOneLine) {
  testing::TempDir dir;
  const std::string data = testing::fixture("tapvid/davis_p4.pkl");
  // Predictions made for 'first' do not fit 'strided' (more queries).
  write_tapvid_predictions(dir.file("first.h5"), predictions_from_truth(data, QueryMode::kFirst, 0.0f));
  auto preds = predictions_from_truth(data, QueryMode::kFirst, 0.0f);
  const std::string dropped = preds.back().name;
  preds.pop_back();
  write_tapvid_predictions(dir.file("missing.h5"), preds);
  const std::string t4g = testing::program("t4g");
  auto r = testing::run_command(t4g + " tapvid score --data " + data + " --pred " + dir.file("first.h5") +
                                " --query-mode strided");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("first.h5: /"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("wrong shape"), std::string::npos) << r.err;
  r = testing::run_command(t4g + " tapvid score --data " + data + " --pred " + dir.file("missing.h5"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/" + dropped + ": no predictions for this video"), std::string::npos) << r.err;
  r = testing::run_command(t4g + " tapvid score --data " + data + " --pred " + dir.file("absent.h5"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace t4g
