// `t4g vbench` on HDF5 videos written here (the layout `t4g sample` writes), with the tiny DINO ViT
// of tests/fixtures/vbench: values against VBench's (fixture), and its one-line errors; i2v_subject
// on the videos and images of tests/fixtures/vbench_i2v, per-video images and one shared image.
#include <gtest/gtest.h>

#include "common/fs.h"
#include "common/hdf5.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "eval/vbench_temporal_flickering.h"
#include "tests/testing.h"

namespace t4g {
namespace {

void write_video(const std::string& path, const torch::Tensor& frames) {
  h5::File file = h5::File::create(path);
  file.root().write("frames", frames);
  file.commit();
}

TEST(VbenchCli, ScoresAFolderOfVideosAsVBench) {
  testing::TempDir dir;
  const auto data = load_safetensors(testing::fixture("vbench/subject_consistency.safetensors"));
  make_dirs(dir.file("videos"));
  const char* names[] = {"a", "b", "c"};
  for (int i = 0; i < 3; ++i) {
    write_video(dir.file("videos/") + names[i] + ".h5", data.at("video_" + std::to_string(i)));
  }
  testing::write_file(dir.file("videos/notes.txt"), "not a video");
  const std::string dino = testing::fixture("vbench/dino_tiny.safetensors");
  const auto r = testing::run_command(testing::program("t4g") + " vbench --videos " + dir.file("videos") +
                                      " --dims temporal_flickering,subject_consistency --dino " + dino +
                                      " --batch 2 --out " + dir.file("m.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json m = read_json(dir.file("m.json"));
  const Json expected = read_json(testing::fixture("vbench/expected.json"))["subject_consistency"];
  EXPECT_EQ(m["videos"].get<int>(), 3);
  // VBench's values on the same videos with the same tiny ViT: 1e-5 (fp32 features).
  EXPECT_NEAR(m["mean"]["subject_consistency"].get<double>(), expected["frame_weighted"].get<double>(), 1e-5);
  double flicker = 0;
  for (int i = 0; i < 3; ++i) {
    const Json& v = m["per_video"][names[i]];
    EXPECT_NEAR(v["subject_consistency"].get<double>(), expected["per_video"][i].get<double>(), 1e-5);
    const double tf = temporal_flickering(data.at("video_" + std::to_string(i)));
    EXPECT_NEAR(v["temporal_flickering"].get<double>(), tf, 1e-12);  // JSON round trip of a double
    flicker += tf / 3;
  }
  EXPECT_NEAR(m["mean"]["temporal_flickering"].get<double>(), flicker, 1e-12);
}

// A video file (what VBench itself scores) reads through OpenCV where the build has it, and its
// flickering is the one of its decoded frames; without OpenCV it is one line saying so.
TEST(VbenchCli, ReadsVideoFilesWhereOpenCvIsPresent) {
  testing::TempDir dir;
  const auto r = testing::run_command(testing::program("t4g") + " sample --no-progress --steps 2 --out " +
                                      dir.file("v.mp4") + " --save-latents " + dir.file("l.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string written = path_exists(dir.file("v.mp4")) ? dir.file("v.mp4") : dir.file("v.h5");
  const auto s = testing::run_command(testing::program("t4g") + " vbench --videos " + written + " --out " +
                                      dir.file("m.json"));
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const Json m = read_json(dir.file("m.json"));
  EXPECT_EQ(m["videos"].get<int>(), 1);
  const double tf = m["mean"]["temporal_flickering"].get<double>();
  EXPECT_GT(tf, 0.0);
  EXPECT_LE(tf, 1.0);
  if (written.size() > 4 && written.compare(written.size() - 4, 4, ".mp4") != 0) return;  // no OpenCV: h5 only
  // The same folder holding the mp4 scores the same.
  const auto f = testing::run_command(testing::program("t4g") + " vbench --videos " + dir.path() + " --out " +
                                      dir.file("f.json"));
  ASSERT_EQ(f.exit_code, 0) << f.err;
  EXPECT_EQ(read_json(dir.file("f.json"))["mean"]["temporal_flickering"].get<double>(), tf);
}

TEST(VbenchCli, ErrorsAreOneLineNamingTheFile) {
  testing::TempDir dir;
  write_video(dir.file("v.h5"), torch::randint(0, 256, {3, 16, 16, 3}, torch::kUInt8));
  const std::string t4g = testing::program("t4g") + " vbench --videos ";
  auto one_line = [](const std::string& err) { return err.find('\n') == err.size() - 1; };

  // Temporal flickering alone needs no model; one file works as well as a folder.
  auto r = testing::run_command(t4g + dir.file("v.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"temporal_flickering\""), std::string::npos) << r.out;

  const std::string absent = dir.file("absent_dino.safetensors");
  r = testing::run_command(t4g + dir.file("v.h5") + " --dims subject_consistency --dino " + absent);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("DINO weights file not found"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(absent), std::string::npos) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;

  r = testing::run_command(t4g + dir.file("v.h5") + " --dims subject_consistency");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--dino"), std::string::npos) << r.err;

  r = testing::run_command(t4g + dir.file("v.h5") + " --dims dynamic_degree");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("dynamic_degree"), std::string::npos) << r.err;

  h5::File other = h5::File::create(dir.file("other.h5"));
  other.root().write("video", torch::zeros({3, 4, 4, 3}, torch::kUInt8));
  other.commit();
  r = testing::run_command(t4g + dir.file("other.h5"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("other.h5"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("frames"), std::string::npos) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;

  write_video(dir.file("single.h5"), torch::zeros({1, 4, 4, 3}, torch::kUInt8));
  r = testing::run_command(t4g + dir.file("single.h5"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("single.h5"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("too few frames"), std::string::npos) << r.err;

  make_dirs(dir.file("empty"));
  r = testing::run_command(t4g + dir.file("empty"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no videos"), std::string::npos) << r.err;
}

TEST(VbenchCli, I2vSubjectMatchesVBenchWithPerVideoOrSharedImage) {
  testing::TempDir dir;
  const Json expected = read_json(testing::fixture("vbench_i2v/expected.json"));
  const std::string base = testing::program("t4g") + " vbench --videos " + testing::fixture("vbench_i2v/videos") +
                           " --dims i2v_subject --dino " + testing::fixture("vbench/dino_tiny.safetensors") +
                           " --batch 2";
  const std::vector<std::pair<std::string, std::string>> runs = {
      {"per_image", testing::fixture("vbench_i2v/images")},  // a folder: <video stem>.png per video
      {"one_image", testing::fixture("vbench_i2v/images/up.png")}};
  for (const auto& [key, image] : runs) {
    SCOPED_TRACE(key);
    const auto r = testing::run_command(base + " --image " + image + " --out " + dir.file(key + ".json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Json m = read_json(dir.file(key + ".json"));
    EXPECT_EQ(m["videos"].get<int>(), 4);
    // VBench's values on the same files with the same tiny ViT: 1e-5 (fp32 features).
    for (const auto& [name, value] : expected[key]["per_video"].items()) {
      EXPECT_NEAR(m["per_video"][name]["i2v_subject"].get<double>(), value.get<double>(), 1e-5) << name;
    }
    EXPECT_NEAR(m["mean"]["i2v_subject"].get<double>(), expected[key]["mean"].get<double>(), 1e-5);
  }
}

TEST(VbenchCli, I2vSubjectErrorsAreOneLineNamingTheFile) {
  testing::TempDir dir;
  write_video(dir.file("v.h5"), torch::randint(0, 256, {3, 16, 16, 3}, torch::kUInt8));
  const std::string t4g = testing::program("t4g") + " vbench --dims i2v_subject --dino " +
                          testing::fixture("vbench/dino_tiny.safetensors") + " --videos ";
  auto one_line = [](const std::string& err) { return err.find('\n') == err.size() - 1; };
  auto fails_with = [&](const std::string& args, const std::vector<std::string>& parts, const std::string& program = "") {
    const auto r = testing::run_command((program.empty() ? t4g : program) + args);
    EXPECT_NE(r.exit_code, 0) << args;
    for (const auto& part : parts) EXPECT_NE(r.err.find(part), std::string::npos) << part << " in: " << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
  };
  fails_with(dir.file("v.h5"), {"--image"});
  fails_with(dir.file("v.h5") + " --image " + dir.file("absent.png"), {dir.file("absent.png"), "not found"});
  // A folder of images without this video's <stem>.png.
  make_dirs(dir.file("images"));
  fails_with(dir.file("v.h5") + " --image " + dir.file("images"), {dir.file("images/v.png"), "v.h5"});
  // Not RGB: VBench's transform would fail on it too.
  const std::string rgba = testing::fixture("vbench_i2v/png/RGBA.png");
  fails_with(dir.file("v.h5") + " --image " + rgba, {rgba, "4 channels"});
  testing::write_file(dir.file("images/v.png"), "not a png");
  fails_with(dir.file("v.h5") + " --image " + dir.file("images"), {dir.file("images/v.png"), "PNG"});
  // One frame: no consecutive pair.
  write_video(dir.file("single.h5"), torch::zeros({1, 16, 16, 3}, torch::kUInt8));
  fails_with(dir.file("single.h5") + " --image " + testing::fixture("vbench_i2v/images/up.png"),
             {"single.h5", "too few frames"});
  fails_with(dir.file("v.h5") + " --dims i2v_background", {"i2v_background", "DreamSim"},
             testing::program("t4g") + " vbench --videos ");
}

}  // namespace
}  // namespace t4g
