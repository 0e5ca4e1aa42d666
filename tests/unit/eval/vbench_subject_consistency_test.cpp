// Parity of eval/vbench_subject_consistency with VBench's subject_consistency and dino_transform
// (executed by tests/fixtures/vbench/make_fixtures.py with the tiny DINO ViT), plus the formula
// and preprocessing by hand.
#include "eval/vbench_subject_consistency.h"

#include <gtest/gtest.h>

#include <cmath>

#include "common/json.h"
#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

// fp32 features through preprocessing and the ViT: 1e-5 absolute on features and on scores.
constexpr double kTolerance = 1e-5;

TEST(VbenchSubjectConsistency, FeaturesAndScoresMatchVBench) {
  DinoVit model = load_dino_vit(testing::fixture("vbench/dino_tiny.safetensors"));
  const auto data = load_safetensors(testing::fixture("vbench/subject_consistency.safetensors"));
  const Json expected = read_json(testing::fixture("vbench/expected.json"))["subject_consistency"];
  const auto per_video = expected["per_video"].get<std::vector<double>>();
  std::vector<SubjectConsistencyResult> results;
  for (size_t i = 0; i < per_video.size(); ++i) {
    SCOPED_TRACE("video_" + std::to_string(i));
    const torch::Tensor video = data.at("video_" + std::to_string(i));
    SubjectConsistencyOptions options;
    options.batch_size = 3;  // batches of 3 frames, and a partial last batch
    const torch::Tensor features = dino_frame_features(model, video, options);
    const torch::Tensor ref = data.at("features_" + std::to_string(i));
    ASSERT_EQ(features.sizes(), ref.sizes());
    EXPECT_LE((features - ref).abs().max().item<double>(), kTolerance);
    results.push_back(subject_consistency(model, video, options));
    EXPECT_NEAR(results.back().score, per_video[i], kTolerance);
    EXPECT_EQ(results.back().pairs, video.size(0) - 1);
  }
  EXPECT_NEAR(subject_consistency_frame_weighted(results), expected["frame_weighted"].get<double>(), kTolerance);
}

TEST(VbenchSubjectConsistency, FormulaByHand) {
  // f0=(1,0), f1=(1,1)/sqrt2, f2=(0,1): s1 = (c + c)/2 with c = 1/sqrt2; s2 = (c + 0)/2.
  const auto r = subject_consistency_from_features(torch::tensor({1.f, 0.f, 2.f, 2.f, 0.f, 3.f}).reshape({3, 2}));
  const double c = 1 / std::sqrt(2.0);
  EXPECT_NEAR(r.sum, c + c / 2, 1e-6);  // fp32 cosines: 1e-6
  EXPECT_NEAR(r.score, (c + c / 2) / 2, 1e-6);
  // Negative cosines are clipped at 0: f2 = -f0 gives s2 = (0 + 0)/2.
  const auto clipped =
      subject_consistency_from_features(torch::tensor({1.f, 0.f, 0.f, 1.f, -1.f, 0.f}).reshape({3, 2}));
  EXPECT_NEAR(clipped.sum, 0.0, 1e-7);
  // Frame-weighted aggregate (VBench single process) differs from the mean of per-video scores.
  std::vector<SubjectConsistencyResult> videos(2);
  videos[0].sum = 1.8, videos[0].pairs = 2, videos[0].score = 0.9;
  videos[1].sum = 0.5, videos[1].pairs = 1, videos[1].score = 0.5;
  EXPECT_DOUBLE_EQ(subject_consistency_frame_weighted(videos), 2.3 / 3);
}

TEST(VbenchSubjectConsistency, PreprocessingSizesAndValues) {
  // Short side -> 224, long side truncated: 24x40 -> 224x373, 36x20 -> 403x224.
  EXPECT_EQ(vbench_dino_preprocess(torch::zeros({1, 24, 40, 3}, torch::kUInt8)).sizes(),
            torch::IntArrayRef({1, 3, 224, 373}));
  EXPECT_EQ(vbench_dino_preprocess(torch::zeros({2, 36, 20, 3}, torch::kUInt8)).sizes(),
            torch::IntArrayRef({2, 3, 403, 224}));
  // Already 224 on the short side: no resampling, only /255 and ImageNet normalisation.
  const torch::Tensor frame = torch::randint(0, 256, {1, 230, 224, 3}, torch::kUInt8);
  const torch::Tensor x = vbench_dino_preprocess(frame);
  ASSERT_EQ(x.sizes(), torch::IntArrayRef({1, 3, 230, 224}));
  const float v = frame[0][5][7][1].item<uint8_t>();
  EXPECT_FLOAT_EQ(x[0][1][5][7].item<float>(), (v / 255.0f - 0.456f) / 0.224f);
}

TEST(VbenchSubjectConsistency, RejectsSingleFramesAndBadShapes) {
  DinoVit model = load_dino_vit(testing::fixture("vbench/dino_tiny.safetensors"));
  const std::string one = testing::error_of([&] {
    subject_consistency(model, torch::zeros({1, 16, 16, 3}, torch::kUInt8));
  });
  EXPECT_NE(one.find("too few frames"), std::string::npos) << one;
  const std::string bad = testing::error_of([] { subject_consistency_from_features(torch::zeros({1, 4})); });
  EXPECT_NE(bad.find("features"), std::string::npos) << bad;
}

}  // namespace
}  // namespace t4g
