// Parity of eval/vbench_i2v_subject with VBench-I2V's i2v_subject (vbench2_beta_i2v, executed by
// tests/fixtures/vbench_i2v/make_fixtures.py with torchvision, Pillow and the tiny DINO ViT of
// tests/fixtures/vbench): the CLS features of image and frames, per-video values and the mean;
// plus the formula by hand and the errors.
#include "eval/vbench_i2v_subject.h"

#include <gtest/gtest.h>

#include <cmath>

#include "common/json.h"
#include "common/png.h"
#include "common/safetensors.h"
#include "eval/video_frames.h"
#include "tests/testing.h"

namespace t4g {
namespace {

// fp32 features through preprocessing and the ViT: 1e-5 absolute on features and on scores.
constexpr double kTolerance = 1e-5;
const char* const kVideos[] = {"up", "portrait", "down", "exact"};

std::string video_path(const std::string& name) { return testing::fixture("vbench_i2v/videos/" + name + ".h5"); }
std::string image_path(const std::string& name) { return testing::fixture("vbench_i2v/images/" + name + ".png"); }

TEST(VbenchI2vSubject, FeaturesAndScoresMatchVBench) {
  DinoVit model = load_dino_vit(testing::fixture("vbench/dino_tiny.safetensors"));
  const auto features = load_safetensors(testing::fixture("vbench_i2v/features.safetensors"));
  const Json expected = read_json(testing::fixture("vbench_i2v/expected.json"));
  I2vSubjectOptions options;
  options.batch_size = 3;  // batches of 3 frames, and a partial last batch
  std::vector<I2vSubjectResult> per_image, one_image;
  const torch::Tensor shared_image = read_vbench_image(image_path("up"));
  for (const std::string name : kVideos) {
    SCOPED_TRACE(name);
    const torch::Tensor frames = read_frames_h5(video_path(name));
    const torch::Tensor image = read_vbench_image(image_path(name));
    const torch::Tensor g = dino_i2v_image_features(model, image, options);
    const torch::Tensor f = dino_i2v_frame_features(model, frames, options);
    const torch::Tensor g_ref = features.at("image_" + name), f_ref = features.at("frames_" + name);
    ASSERT_EQ(g.sizes(), g_ref.sizes());
    ASSERT_EQ(f.sizes(), f_ref.sizes());
    EXPECT_LE((g - g_ref).abs().max().item<double>(), kTolerance);
    EXPECT_LE((f - f_ref).abs().max().item<double>(), kTolerance);
    per_image.push_back(i2v_subject(model, image, frames, options));
    EXPECT_NEAR(per_image.back().score, expected["per_image"]["per_video"][name].get<double>(), kTolerance);
    one_image.push_back(i2v_subject(model, shared_image, frames, options));
    EXPECT_NEAR(one_image.back().score, expected["one_image"]["per_video"][name].get<double>(), kTolerance);
  }
  EXPECT_NEAR(i2v_subject_mean(per_image), expected["per_image"]["mean"].get<double>(), kTolerance);
  EXPECT_NEAR(i2v_subject_mean(one_image), expected["one_image"]["mean"].get<double>(), kTolerance);
}

TEST(VbenchI2vSubject, FormulaByHand) {
  // g = (1, 0); frames f0 = (0, 1), f1 = (1, 1)/sqrt2, f2 = (1, 0), f3 = (-1, 0) (scaled freely:
  // features are L2-normalised first). conf = (0, c, 1, 0) with c = 1/sqrt2, max 1; consecutive
  // cosines (c, c, -1 -> 0): mean 2c/3, min 0.
  const torch::Tensor g = torch::tensor({3.f, 0.f});
  const torch::Tensor f = torch::tensor({0.f, 2.f, 5.f, 5.f, 1.f, 0.f, -4.f, 0.f}).reshape({4, 2});
  const I2vSubjectResult r = i2v_subject_from_features(g, f);
  const double c = 1 / std::sqrt(2.0);
  EXPECT_NEAR(r.max_conformity, 1.0, 1e-7);  // fp32 cosines: 1e-7 on values of order 1
  EXPECT_NEAR(r.mean_consistency, 2 * c / 3, 1e-7);
  EXPECT_NEAR(r.min_consistency, 0.0, 1e-7);
  EXPECT_NEAR(r.score, 0.4 * 1.0 + 0.3 * (2 * c / 3) + 0.3 * 0.0, 1e-7);
  // The image feature may be [1, D] as well. g = (-1, 0) against f = (1, 0), (1, 1), (1, -1): every
  // conformity cosine is negative and clips to 0; consecutive cosines (c, 0).
  const I2vSubjectResult neg = i2v_subject_from_features(
      torch::tensor({-1.f, 0.f}).reshape({1, 2}), torch::tensor({1.f, 0.f, 1.f, 1.f, 1.f, -1.f}).reshape({3, 2}));
  EXPECT_EQ(neg.max_conformity, 0.0);
  EXPECT_NEAR(neg.mean_consistency, c / 2, 1e-7);
  EXPECT_NEAR(neg.min_consistency, 0.0, 1e-7);
  // The aggregate is the plain mean of the per-video scores.
  std::vector<I2vSubjectResult> videos(2);
  videos[0].score = 0.9;
  videos[1].score = 0.4;
  EXPECT_DOUBLE_EQ(i2v_subject_mean(videos), 0.65);
}

TEST(VbenchI2vSubject, PreprocessingShapes) {
  // Frames: short side 256, centre crop 224, whatever the aspect; the image likewise.
  EXPECT_EQ(vbench_i2v_frames_preprocess(torch::zeros({2, 24, 41, 3}, torch::kUInt8)).sizes(),
            torch::IntArrayRef({2, 3, 224, 224}));
  EXPECT_EQ(vbench_i2v_image_preprocess(torch::zeros({300, 20, 3}, torch::kUInt8)).sizes(),
            torch::IntArrayRef({1, 3, 224, 224}));
  // A 256-pixel short side is not resampled: only cropped (offset round(33) in x) and normalised.
  const torch::Tensor frame = torch::randint(0, 256, {1, 256, 290, 3}, torch::kUInt8);
  const torch::Tensor x = vbench_i2v_frames_preprocess(frame);
  const float v = frame[0][16 + 5][33 + 7][2].item<uint8_t>();
  EXPECT_FLOAT_EQ(x[0][2][5][7].item<float>(), (v / 255.0f - 0.406f) / 0.225f);
  const torch::Tensor image = vbench_i2v_image_preprocess(frame[0]);
  EXPECT_FLOAT_EQ(image[0][2][5][7].item<float>(), (v / 255.0f - 0.406f) / 0.225f);
  I2vSubjectOptions bad;
  bad.crop_size = 300;
  EXPECT_NE(testing::error_of([&] { vbench_i2v_frames_preprocess(frame, bad); }).find("crop size"),
            std::string::npos);
}

TEST(VbenchI2vSubject, BadInputIsOneErrorNamingIt) {
  DinoVit model = load_dino_vit(testing::fixture("vbench/dino_tiny.safetensors"));
  const torch::Tensor image = torch::zeros({16, 16, 3}, torch::kUInt8);
  // One frame: no consecutive pair (VBench's np.min of an empty list fails).
  std::string msg = testing::error_of([&] { i2v_subject(model, image, torch::zeros({1, 16, 16, 3}, torch::kUInt8)); });
  EXPECT_NE(msg.find("too few frames"), std::string::npos) << msg;
  msg = testing::error_of([] { i2v_subject_from_features(torch::zeros({4}), torch::zeros({1, 4})); });
  EXPECT_NE(msg.find("frame_features"), std::string::npos) << msg;
  msg = testing::error_of([] { i2v_subject_from_features(torch::zeros({3}), torch::zeros({2, 4})); });
  EXPECT_NE(msg.find("image_features"), std::string::npos) << msg;
  // Images of the wrong dtype, rank or channel count.
  const torch::Tensor video = torch::zeros({2, 16, 16, 3}, torch::kUInt8);
  msg = testing::error_of([&] { i2v_subject(model, torch::zeros({16, 16, 4}, torch::kUInt8), video); });
  EXPECT_NE(msg.find("uint8 RGB [H, W, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[16, 16, 4]"), std::string::npos) << msg;
  EXPECT_NE(testing::error_of([&] { i2v_subject(model, torch::zeros({16, 16, 3}), video); }), "");
  EXPECT_NE(testing::error_of([&] { i2v_subject(model, torch::zeros({16, 16}, torch::kUInt8), video); }), "");
  // PNG files: missing, and not RGB (VBench would hand RGBA or grey to Normalize and fail).
  testing::TempDir dir;
  msg = testing::error_of([&] { read_vbench_image(dir.file("absent.png")); });
  EXPECT_NE(msg.find("absent.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
  const std::string rgba = testing::fixture("vbench_i2v/png/RGBA.png");
  msg = testing::error_of([&] { read_vbench_image(rgba); });
  EXPECT_NE(msg.find(rgba), std::string::npos) << msg;
  EXPECT_NE(msg.find("4 channels"), std::string::npos) << msg;
  write_png(dir.file("grey.png"), torch::zeros({4, 4}, torch::kUInt8));
  msg = testing::error_of([&] { read_vbench_image(dir.file("grey.png")); });
  EXPECT_NE(msg.find("grey.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 channel"), std::string::npos) << msg;
}

}  // namespace
}  // namespace t4g
