// Runs `t4g prepare --input` on real video files as a user would: an mp4 and a folder of PNG
// frames (with a sidecar prompt) become shards with flow tracks; an unreadable file stops the run
// with one line naming it, or is skipped and counted with --skip-bad-videos; a synthetic set can
// store flow tracks instead of exact ones. Without OpenCV the command says it needs OpenCV.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "data/prepare.h"
#include "data/shards.h"
#include "data/synthetic_video.h"
#include "data/video_io.h"
#include "t4g/build_config.h"
#include "tests/testing.h"

#if T4G_HAVE_OPENCV
#include <opencv2/imgcodecs.hpp>
#endif

namespace t4g {
namespace {

using t4g::testing::program;
using t4g::testing::run_command;
using t4g::testing::TempDir;

#if T4G_HAVE_OPENCV
// A moving synthetic scene as an mp4 and as a folder of PNG frames.
void make_inputs(const std::string& dir) {
  data::SyntheticVideoOptions o;
  o.frames = 10;
  o.height = 72;
  o.width = 96;
  const torch::Tensor a = data::generate_synthetic_video(o, 1).frames;
  const torch::Tensor b = data::generate_synthetic_video(o, 2).frames;
  make_dirs(dir);
  data::write_video(dir + "/clip a.mp4", a);
  make_dirs(dir + "/frames_b");
  for (int64_t k = 0; k < b.size(0); ++k) {
    torch::Tensor bgr = b[k].flip({2}).contiguous();
    const cv::Mat m(72, 96, CV_8UC3, bgr.data_ptr<uint8_t>());
    cv::imwrite(dir + "/frames_b/" + std::to_string(k) + ".png", m);
  }
  t4g::testing::write_file(dir + "/frames_b.txt", "  a folder of frames\n");
  t4g::testing::write_file(dir + "/notes.md", "ignored: not a video");
}

TEST(PrepareVideos, FolderOfVideosToShardsWithFlowTracks) {
  TempDir tmp;
  make_inputs(tmp.file("in"));
  const std::string out = tmp.file("ds");
  const std::string prepare = "T4G_LOG_LEVEL=info " + program("t4g") + " prepare --out " + out + " --input " +
                              tmp.file("in") + " --video-frames 8 --video-height 48 --video-width 64 --jobs 2" +
                              " --flow-grid-step 8 --dis-preset fast";
  auto r = run_command(prepare);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("2 videos written in 1 shards"), std::string::npos) << r.err;
  const data::ShardReader reader(out);
  ASSERT_EQ(reader.size(), 2u);
  ASSERT_TRUE(reader.contains("video-clip_a"));
  ASSERT_TRUE(reader.contains("video-frames_b"));
  const data::ShardVideo a = reader.read("video-clip_a");
  EXPECT_EQ(a.frames.sizes(), torch::IntArrayRef({8, 48, 64, 3}));
  EXPECT_GE(a.tracks.size(0), 48);  // at least the 6 x 8 seed grid
  EXPECT_NEAR(a.fps, 8.0, 1e-6);    // write_video's default
  EXPECT_EQ(a.source, "file:" + tmp.file("in") + "/clip a.mp4");
  const data::ShardVideo b = reader.read("video-frames_b");
  EXPECT_EQ(b.prompt, "a folder of frames");
  EXPECT_GT(b.visibility.to(torch::kFloat32).mean().item<float>(), 0.5f);
  // A list file names the same videos (relative to its folder; '#' comments and blanks ignored).
  t4g::testing::write_file(tmp.file("in/list.txt"), "# two videos\nclip a.mp4\n\n  frames_b  \n");
  const auto listed = data::list_video_inputs(tmp.file("in/list.txt"));
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0], tmp.file("in") + "/clip a.mp4");
  EXPECT_EQ(data::video_input_id(listed[1] + "/"), "video-frames_b");
  // The rerun resumes: nothing to do.
  r = run_command(prepare);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("0 videos written in 0 shards, 1 shards already complete"), std::string::npos) << r.err;
}

TEST(PrepareVideos, BadVideoStopsOrIsSkipped) {
  TempDir tmp;
  make_inputs(tmp.file("in"));
  t4g::testing::write_file(tmp.file("in/broken.mp4"), "not a video at all");
  const std::string base = program("t4g") + " prepare --input " + tmp.file("in") +
                           " --video-frames 8 --video-height 48 --video-width 64 --jobs 1 --out ";
  auto r = run_command(base + tmp.file("ds1"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("broken.mp4"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not a readable video"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = run_command("T4G_LOG_LEVEL=info " + base + tmp.file("ds2") + " --skip-bad-videos");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("1 unreadable videos skipped"), std::string::npos) << r.err;
  EXPECT_EQ(data::ShardReader(tmp.file("ds2")).size(), 2u);
  // One video file too short for the request (49 frames by default): one line with the counts.
  r = run_command(program("t4g") + " prepare --input '" + tmp.file("in/clip a.mp4") + "' --out " + tmp.file("ds3"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("video too short: 10 frames at stride 1 from frame 0, need 49"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(PrepareVideos, SyntheticSetWithFlowTracks) {
  TempDir tmp;
  const std::string out = tmp.file("ds");
  auto r = run_command(program("t4g") + " prepare --out " + out +
                       " --synthetic 2 --frames 6 --height 48 --width 64 --synthetic-tracks flow --flow-grid-step 8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const data::ShardReader reader(out);
  const data::ShardVideo v = reader.read(0);
  // Flow tracks start on the 8-pixel seed grid (exact tracks would not have seed_frame structure,
  // but their first grid is the same; the recipe tells them apart).
  EXPECT_GE(v.tracks.size(0), 48);
  const auto recipe = nlohmann::json::parse(data::read_shard_header(out + "/synthetic-00000.h5").recipe);
  EXPECT_EQ(recipe.at("tracks"), "flow");
  EXPECT_EQ(recipe.at("flow").at("method"), "dis");
}
#endif  // T4G_HAVE_OPENCV

TEST(PrepareVideos, WithoutOpenCvSaysSo) {
  if (data::have_opencv()) GTEST_SKIP() << "this build has OpenCV";
  TempDir tmp;
  make_dirs(tmp.file("in"));
  t4g::testing::write_file(tmp.file("in/a.mp4"), "x");
  const auto r = run_command(program("t4g") + " prepare --out " + tmp.file("ds") + " --input " + tmp.file("in"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("need OpenCV"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace t4g
