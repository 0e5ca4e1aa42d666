// Tests of video input and output (data/video_io.h): frame folders in natural order with stride,
// start and count; resize + centre crop geometry; mp4 round trip through the writer; and the
// errors for non-videos, empty folders, short videos and mixed frame sizes. Built without
// OpenCV, every entry point must throw one error saying so.
#include "data/video_io.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/fs.h"
#include "t4g/build_config.h"
#include "tests/testing.h"

#if T4G_HAVE_OPENCV
#include <opencv2/imgcodecs.hpp>
#endif

namespace t4g::data {
namespace {

using t4g::testing::TempDir;

using t4g::testing::error_of;

// Frame k is a flat image of value 10 k (RGB all equal), so order and selection are visible.
torch::Tensor numbered_frames(int64_t count, int64_t h, int64_t w) {
  torch::Tensor f = torch::empty({count, h, w, 3}, torch::kUInt8);
  for (int64_t k = 0; k < count; ++k) f[k].fill_(10 * k);
  return f;
}

#if T4G_HAVE_OPENCV
void write_png(const std::string& path, const torch::Tensor& rgb) {
  torch::Tensor bgr = rgb.flip({2}).contiguous();
  const cv::Mat m(static_cast<int>(bgr.size(0)), static_cast<int>(bgr.size(1)), CV_8UC3, bgr.data_ptr<uint8_t>());
  ASSERT_TRUE(cv::imwrite(path, m));
}

void write_frame_folder(const std::string& dir, const torch::Tensor& frames) {
  make_dirs(dir);
  for (int64_t k = 0; k < frames.size(0); ++k) write_png(dir + "/frame_" + std::to_string(k) + ".png", frames[k]);
}

TEST(VideoIo, FrameFolderNaturalOrderStrideStartCount) {
  TempDir tmp;
  write_frame_folder(tmp.file("clip"), numbered_frames(12, 6, 8));  // frame_10 must come after frame_9
  VideoReadOptions o;
  o.height = 0;
  o.width = 0;
  o.frames = 4;
  o.stride = 3;
  o.start = 1;
  const DecodedVideo v = read_video(tmp.file("clip"), o);
  ASSERT_EQ(v.frames.sizes(), torch::IntArrayRef({4, 6, 8, 3}));
  for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(v.frames[k][0][0][0].item<int>(), 10 * (1 + 3 * k)) << k;  // PNG is lossless
  EXPECT_EQ(v.source_frames, 12);
  EXPECT_TRUE(is_video_source(tmp.file("clip")));

  o.frames = 0;  // every frame the stride reaches: 1, 4, 7, 10
  EXPECT_EQ(read_video(tmp.file("clip"), o).frames.size(0), 4);
  o.frames = 5;
  EXPECT_NE(error_of([&] { read_video(tmp.file("clip"), o); }).find("video too short"), std::string::npos);
  o.allow_short = true;
  EXPECT_EQ(read_video(tmp.file("clip"), o).frames.size(0), 4);
}

TEST(VideoIo, ResizeCoversAndCropsTheCentre) {
  // 40 x 100, column j has red = j: scaling to cover 20 x 20 halves it (20 x 50), then the
  // centre 20 columns (source columns 30..69) remain.
  torch::Tensor img = torch::zeros({40, 100, 3}, torch::kUInt8);
  for (int64_t j = 0; j < 100; ++j) img.select(1, j).select(1, 0).fill_(j);
  const torch::Tensor out = resize_and_center_crop(img, 20, 20);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({20, 20, 3}));
  // Area averaging of columns 2j, 2j+1 -> 2j + 0.5, rounded by OpenCV to within 1.
  EXPECT_NEAR(out[10][0][0].item<int>(), 30.5, 1.0);
  EXPECT_NEAR(out[10][19][0].item<int>(), 68.5, 1.0);
  // Enlarging: 10 x 10 -> 30 x 20: scale 3 covers, rows cropped 0..29 of 30, cols 5..24 of 30.
  const torch::Tensor up = resize_and_center_crop(torch::full({10, 10, 3}, 77, torch::kUInt8), 30, 20);
  EXPECT_EQ(up.sizes(), torch::IntArrayRef({30, 20, 3}));
  EXPECT_EQ(up.min().item<int>(), 77);
  EXPECT_EQ(up.max().item<int>(), 77);
}

TEST(VideoIo, Mp4RoundTripThroughWriter) {
  TempDir tmp;
  torch::Tensor frames = numbered_frames(10, 64, 96);
  frames.select(3, 1).fill_(128);  // colour: the RGB order must survive
  const std::string path = tmp.file("out.mp4");
  VideoWriteOptions wo;
  wo.fps = 12;
  write_video(path, frames, wo);
  ASSERT_TRUE(is_regular_file(path));
  EXPECT_EQ(list_dir(tmp.path()).size(), 1u);  // no temporary left behind
  VideoReadOptions o;
  o.frames = 0;
  o.height = 32;
  o.width = 48;
  const DecodedVideo v = read_video(path, o);
  ASSERT_EQ(v.frames.sizes(), torch::IntArrayRef({10, 32, 48, 3}));
  EXPECT_NEAR(v.fps, 12.0, 1e-6);
  // An .mp4 is H.264 where the OpenCV build encodes it (Debian 12's does, through FFmpeg's x264:
  // what players expect; mp4v would be the fallback); its sample entry is named avc1.
  EXPECT_NE(read_file(path).find("avc1"), std::string::npos);
  // Both are lossy: flat frames come back within a few levels (tolerance 6 of 255).
  for (int64_t k = 0; k < 10; ++k) {
    const torch::Tensor f = v.frames[k].to(torch::kFloat32);
    EXPECT_NEAR(f.select(2, 0).mean().item<float>(), 10.0f * k, 6.0f) << k;
    EXPECT_NEAR(f.select(2, 1).mean().item<float>(), 128.0f, 6.0f) << k;
  }
  o.stride = 2;
  o.frames = 3;
  const DecodedVideo s = read_video(path, o);
  EXPECT_EQ(s.frames.size(0), 3);
  EXPECT_NEAR(s.frames[2].select(2, 0).to(torch::kFloat32).mean().item<float>(), 40.0f, 6.0f);
  EXPECT_NEAR(s.fps, 6.0, 1e-6);
}

TEST(VideoIo, BadInputsNameTheFile) {
  TempDir tmp;
  t4g::testing::write_file(tmp.file("fake.mp4"), "this is not a video");
  std::string e = error_of([&] { read_video(tmp.file("fake.mp4")); });
  EXPECT_NE(e.find("fake.mp4"), std::string::npos) << e;
  EXPECT_NE(e.find("not a readable video"), std::string::npos) << e;

  make_dirs(tmp.file("empty"));
  e = error_of([&] { read_video(tmp.file("empty")); });
  EXPECT_NE(e.find("no frame images"), std::string::npos) << e;
  EXPECT_FALSE(is_video_source(tmp.file("empty")));

  e = error_of([&] { read_video(tmp.file("missing.mp4")); });
  EXPECT_NE(e.find("no such video file"), std::string::npos) << e;

  make_dirs(tmp.file("mixed"));
  write_png(tmp.file("mixed/0.png"), torch::zeros({4, 4, 3}, torch::kUInt8));
  write_png(tmp.file("mixed/1.png"), torch::zeros({5, 4, 3}, torch::kUInt8));
  VideoReadOptions o;
  o.frames = 0;
  e = error_of([&] { read_video(tmp.file("mixed"), o); });
  EXPECT_NE(e.find("1.png"), std::string::npos) << e;
  EXPECT_NE(e.find("frame size differs"), std::string::npos) << e;

  o.stride = 0;
  e = error_of([&] { read_video(tmp.file("mixed"), o); });
  EXPECT_NE(e.find("stride must be >= 1"), std::string::npos) << e;

  e = error_of([&] { write_video(tmp.file("x.mp4"), torch::zeros({2, 4, 4}, torch::kUInt8)); });
  EXPECT_NE(e.find("uint8 [F, H, W, 3]"), std::string::npos) << e;
}
#endif  // T4G_HAVE_OPENCV

TEST(VideoIo, WithoutOpenCvEveryEntryPointSaysSo) {
  if (have_opencv()) GTEST_SKIP() << "this build has OpenCV (the other tests cover it)";
  TempDir tmp;
  for (const std::string& e :
       {error_of([&] { read_video(tmp.file("a.mp4")); }),
        error_of([&] { write_video(tmp.file("a.mp4"), numbered_frames(2, 4, 4)); }),
        error_of([&] { resize_and_center_crop(torch::zeros({4, 4, 3}, torch::kUInt8), 2, 2); })}) {
    EXPECT_NE(e.find("needs OpenCV"), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace t4g::data
