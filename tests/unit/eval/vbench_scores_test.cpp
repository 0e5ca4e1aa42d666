// eval/vbench_scores: dimension parsing, per-video values and VBench's aggregates over a set of
// videos (i2v_subject with one image or one per video), and the errors a caller sees (missing
// DINO weights or images, bad videos).
#include "eval/vbench_scores.h"

#include <gtest/gtest.h>

#include "common/fs.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "eval/vbench_temporal_flickering.h"
#include "eval/video_frames.h"
#include "tests/testing.h"

namespace t4g {
namespace {

std::vector<torch::Tensor> subject_videos() {
  const auto data = load_safetensors(testing::fixture("vbench/subject_consistency.safetensors"));
  return {data.at("video_0"), data.at("video_1"), data.at("video_2")};
}

TEST(VbenchScores, ParsesDimensions) {
  const auto dims = parse_vbench_dimensions("subject_consistency,temporal_flickering");
  ASSERT_EQ(dims.size(), 2u);
  EXPECT_EQ(dims[0], VbenchDimension::kSubjectConsistency);
  EXPECT_EQ(vbench_dimension_name(dims[1]), "temporal_flickering");
  EXPECT_NE(testing::error_of([] {
              parse_vbench_dimensions("temporal_flickering,motion_smoothness");
            }).find("motion_smoothness"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_vbench_dimensions("temporal_flickering,temporal_flickering"); }).find("twice"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_vbench_dimensions(""); }), "");
  EXPECT_EQ(parse_vbench_dimension("i2v_subject"), VbenchDimension::kI2vSubject);
  EXPECT_EQ(vbench_dimension_name(VbenchDimension::kI2vSubject), "i2v_subject");
  const std::string background = testing::error_of([] { parse_vbench_dimension("i2v_background"); });
  EXPECT_NE(background.find("DreamSim"), std::string::npos) << background;
}

// The aggregates equal VBench's (fixture values: 1e-5, fp32 features) and the per-video values
// equal the single-video functions exactly.
TEST(VbenchScores, AggregatesAreVBenchs) {
  VbenchOptions options;
  options.dimensions = {VbenchDimension::kTemporalFlickering, VbenchDimension::kSubjectConsistency};
  options.dino_weights = testing::fixture("vbench/dino_tiny.safetensors");
  const auto videos = subject_videos();
  const VbenchReport report = vbench_report(videos, {}, options);
  ASSERT_EQ(report.names.size(), 3u);
  EXPECT_EQ(report.names[1], "video_0001");
  const Json expected = read_json(testing::fixture("vbench/expected.json"))["subject_consistency"];
  EXPECT_NEAR(report.mean.at("subject_consistency"), expected["frame_weighted"].get<double>(), 1e-5);
  double flicker = 0;
  for (size_t i = 0; i < videos.size(); ++i) {
    EXPECT_EQ(report.per_video[i].at("temporal_flickering"), temporal_flickering(videos[i]));
    EXPECT_NEAR(report.per_video[i].at("subject_consistency"), expected["per_video"][i].get<double>(), 1e-5);
    flicker += temporal_flickering(videos[i]) / 3;
  }
  EXPECT_NEAR(report.mean.at("temporal_flickering"), flicker, 1e-12);
  // The trainer's entry point with an already loaded model gives the same aggregates.
  VbenchOptions loaded = options;
  loaded.dino_weights.clear();
  loaded.dino = load_dino_vit(options.dino_weights);
  const auto scores = vbench_scores(videos, loaded);
  EXPECT_EQ(scores.size(), 2u);
  EXPECT_EQ(scores.at("subject_consistency"), report.mean.at("subject_consistency"));
  const Json json = report.to_json();
  EXPECT_EQ(json["per_video"].size(), 3u);
  EXPECT_FALSE(json["protocol"]["temporal_flickering"]["static_filter"].get<bool>());
}

TEST(VbenchScores, Errors) {
  VbenchOptions options;
  options.dimensions = {VbenchDimension::kSubjectConsistency};
  const auto videos = subject_videos();
  EXPECT_NE(testing::error_of([&] { vbench_scores(videos, options); }).find("--dino"), std::string::npos);
  options.dino_weights = "/nonexistent/dino.safetensors";
  const std::string missing = testing::error_of([&] { vbench_scores(videos, options); });
  EXPECT_NE(missing.find("/nonexistent/dino.safetensors"), std::string::npos) << missing;
  options.dimensions = {VbenchDimension::kTemporalFlickering};
  const std::string one_frame = testing::error_of([&] {
    vbench_report({torch::zeros({1, 4, 4, 3}, torch::kUInt8)}, {"short"}, options);
  });
  EXPECT_NE(one_frame.find("short"), std::string::npos) << one_frame;
  EXPECT_NE(testing::error_of([&] { vbench_scores({}, options); }).find("no videos"), std::string::npos);
}

// i2v_subject through the runner: one image per video or one for all, against VBench's values
// (tests/fixtures/vbench_i2v: 1e-5, fp32 features); the images must match the videos in number.
TEST(VbenchScores, I2vSubjectWithOneOrPerVideoImages) {
  const Json expected = read_json(testing::fixture("vbench_i2v/expected.json"));
  const std::vector<std::string> names = {"up", "portrait", "down", "exact"};
  std::vector<torch::Tensor> videos, images;
  for (const auto& n : names) {
    videos.push_back(read_frames_h5(testing::fixture("vbench_i2v/videos/" + n + ".h5")));
    images.push_back(read_vbench_image(testing::fixture("vbench_i2v/images/" + n + ".png")));
  }
  VbenchOptions options;
  options.dimensions = {VbenchDimension::kI2vSubject, VbenchDimension::kTemporalFlickering};
  options.dino = load_dino_vit(testing::fixture("vbench/dino_tiny.safetensors"));
  options.images = images;
  VbenchReport report = vbench_report(videos, names, options);
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_NEAR(report.per_video[i].at("i2v_subject"), expected["per_image"]["per_video"][names[i]].get<double>(),
                1e-5);
  }
  EXPECT_NEAR(report.mean.at("i2v_subject"), expected["per_image"]["mean"].get<double>(), 1e-5);
  EXPECT_EQ(report.to_json()["protocol"]["i2v_subject"]["aggregate"].get<std::string>(), "mean over videos");

  options.images = {images[0]};  // up.png for every video
  report = vbench_report(videos, names, options);
  EXPECT_NEAR(report.mean.at("i2v_subject"), expected["one_image"]["mean"].get<double>(), 1e-5);

  options.images = {images[0], images[1]};
  std::string msg = testing::error_of([&] { vbench_report(videos, names, options); });
  EXPECT_NE(msg.find("conditioning image"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 or 4"), std::string::npos) << msg;
  options.images = {torch::zeros({8, 8, 4}, torch::kUInt8)};
  msg = testing::error_of([&] { vbench_report(videos, names, options); });
  EXPECT_NE(msg.find("image of up"), std::string::npos) << msg;
  options.images.clear();
  options.dino = DinoVit(nullptr);
  msg = testing::error_of([&] { vbench_report(videos, names, options); });
  EXPECT_NE(msg.find("i2v_subject needs DINO weights"), std::string::npos) << msg;
}

TEST(VbenchScores, ImageForVideoRule) {
  testing::TempDir dir;
  const std::string images = dir.file("images");
  make_dirs(images);
  for (const char* name : {"a.png", "a cat.png", "b-7.png", "b.png"}) testing::write_file(path_join(images, name), "");
  EXPECT_EQ(vbench_image_for_video(images, "/v/a.h5"), path_join(images, "a.png"));
  // VBench's "<prompt>-<i>" videos share the prompt's image; an exact stem match comes first.
  EXPECT_EQ(vbench_image_for_video(images, "/v/a cat-3.h5"), path_join(images, "a cat.png"));
  EXPECT_EQ(vbench_image_for_video(images, "/v/b-7.h5"), path_join(images, "b-7.png"));
  EXPECT_EQ(vbench_image_for_video(images, "/v/b-12.h5"), path_join(images, "b.png"));
  // One file serves every video.
  EXPECT_EQ(vbench_image_for_video(path_join(images, "b.png"), "/v/z.h5"), path_join(images, "b.png"));
  std::string msg = testing::error_of([&] { vbench_image_for_video(images, "/v/c-x.h5"); });
  EXPECT_NE(msg.find(path_join(images, "c-x.png")), std::string::npos) << msg;
  msg = testing::error_of([&] { vbench_image_for_video(images, "/v/c-2.h5"); });
  EXPECT_NE(msg.find(path_join(images, "c-2.png")), std::string::npos) << msg;
  EXPECT_NE(msg.find(path_join(images, "c.png")), std::string::npos) << msg;
  EXPECT_NE(testing::error_of([&] { vbench_image_for_video("", "/v/a.h5"); }).find("--image"), std::string::npos);
}

}  // namespace
}  // namespace t4g
