// `t4g transfer` end to end on the tiny recipe with synthetic reference videos (an HDF5 frames
// file and a shard dataset DIR:ID): the video, the JSON report with a falling AMF loss, the saved
// positional embeddings and their zero-shot reuse (same seed and prompt: the same frames, exactly,
// since the reused run does the same float32 denoising with the same tables and injected K/V); the
// KV injection flags; bad inputs end with exit code 1 and one stderr line naming the problem.
#include <gtest/gtest.h>

#include "common/fs.h"
#include "common/hdf5.h"
#include "common/json.h"
#include "data/shards.h"
#include "data/synthetic_video.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::CommandResult;
using testing::program;
using testing::run_command;
using testing::TempDir;

CommandResult transfer(const std::string& args) {
  return run_command(program("t4g") + " transfer --no-progress --set model.device=cpu " + args);
}

// A synthetic clip of `frames` frames at the tiny model's 64 x 96.
data::SyntheticVideo clip(int64_t frames) {
  data::SyntheticVideoOptions o;
  o.frames = frames;
  o.sprites = 1;
  return data::generate_synthetic_video(o, 7);
}

std::string write_frames(const TempDir& dir, const std::string& name, int64_t frames) {
  const std::string path = dir.file(name);
  h5::File f = h5::File::create(path);
  f.root().write("frames", clip(frames).frames);
  f.commit();
  return path;
}

void expect_one_line_error(const CommandResult& r, const std::string& needle) {
  SCOPED_TRACE(r.err);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.find("t4g: error: "), 0u);
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "exactly one line";
  EXPECT_NE(r.err.find(needle), std::string::npos) << needle;
}

const char* kQuick = " --steps 3 --guidance-steps 2 --iterations 3 --lr 0.05 --lr-end 0.02";

TEST(TransferCli, LatentsTargetWritesVideoAndReport) {
  TempDir dir;
  const std::string ref = write_frames(dir, "ref.h5", 9);
  const CommandResult r = transfer("--reference " + ref + kQuick + " --out " + dir.file("out.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  h5::File f = h5::File::open(dir.file("out.h5"));
  EXPECT_EQ(f.root().read("frames").sizes(), (std::vector<int64_t>{9, 64, 96, 3}));
  const Json report = read_json(dir.file("out.json"));
  ASSERT_EQ(report.at("iterations").size(), 6u);  // 2 guided steps x 3 iterations
  for (int step = 0; step < 2; ++step) {
    EXPECT_LT(report["iterations"][step * 3 + 2]["loss"].get<double>(),
              report["iterations"][step * 3]["loss"].get<double>())
        << "the AMF loss falls within guided step " << step;
  }
  EXPECT_EQ(report.at("target"), "latents");
  EXPECT_EQ(report.at("blocks"), Json::array({1}));
  EXPECT_EQ(report.at("guided_timesteps").size(), 2u);
  if (report.at("motion_fidelity_flow").is_number()) {  // builds with OpenCV
    const double mf = report["motion_fidelity_flow"].get<double>();
    EXPECT_TRUE(mf >= -2.0 && mf <= 1.0) << mf;  // S - I entries lie in [-2, 1]
  }
}

TEST(TransferCli, PosembSavedAndReusedZeroShotFromAShardReference) {
  TempDir dir;
  data::SyntheticVideo video = clip(9);
  data::ShardVideo shard;
  shard.id = "walk";
  shard.frames = video.frames;
  shard.tracks = video.tracks;
  shard.visibility = video.visibility;
  make_dirs(dir.file("ds"));
  data::write_shard(dir.file("ds/shard_0.h5"), {shard});
  data::write_shard_index(dir.file("ds"));

  CommandResult r =
      transfer("--reference " + dir.file("ds") + ":walk --target posemb" + kQuick + " --out " + dir.file("a.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(path_exists(dir.file("a.posemb.safetensors")));
  // KV injection (on by default) takes its K/V from the reference, so the zero-shot run names it too.
  r = transfer("--reference " + dir.file("ds") + ":walk --load-posemb " + dir.file("a.posemb.safetensors") + kQuick +
               " --out " + dir.file("b.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const torch::Tensor a = h5::File::open(dir.file("a.h5")).root().read("frames");
  const torch::Tensor b = h5::File::open(dir.file("b.h5")).root().read("frames");
  EXPECT_TRUE(torch::equal(a, b)) << "reusing the saved embeddings reproduces the optimising run";
  EXPECT_EQ(read_json(dir.file("b.json")).at("iterations").size(), 0u);
}

// The KV injection flags reach the options: the report names the blocks, and injection changes the
// video against --no-injection at the same seed and prompt.
TEST(TransferCli, KvInjectionIsOnByDefaultAndTheFlagsReachTheOptions) {
  TempDir dir;
  const std::string ref = write_frames(dir, "ref.h5", 9);
  auto run = [&](const std::string& name, const std::string& flags) {
    const CommandResult r = transfer("--reference " + ref + flags + " --out " + dir.file(name + ".h5"));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::make_pair(h5::File::open(dir.file(name + ".h5")).root().read("frames"),
                          read_json(dir.file(name + ".json")).at("injection_blocks"));
  };
  const auto [on, on_blocks] = run("on", kQuick);
  EXPECT_EQ(on_blocks, Json::array({0}));
  const auto [off, off_blocks] = run("off", std::string(kQuick) + " --no-injection");
  EXPECT_EQ(off_blocks, Json::array());
  EXPECT_FALSE(torch::equal(on, off)) << "injection changes the video";
  // The "Injection" baseline: no AMF optimisation, so block 1 (the tiny model's AMF block) may inject.
  const auto [baseline, baseline_blocks] =
      run("baseline", " --steps 3 --guidance-steps 2 --iterations 0 --injection-blocks 1");
  EXPECT_EQ(baseline_blocks, Json::array({1}));
  const auto [plain, plain_blocks] = run("plain", " --steps 3 --guidance-steps 2 --iterations 0 --no-injection");
  EXPECT_FALSE(torch::equal(baseline, plain)) << "the injection at block 1 ran";
}

TEST(TransferCli, BadInputsAreOneLineErrors) {
  TempDir dir;
  const std::string short_ref = write_frames(dir, "short.h5", 5);
  const std::string out = " --out " + dir.file("x.h5");
  expect_one_line_error(transfer("--reference " + short_ref + " --frames 9" + kQuick + out),
                        "has 5 frames, the transfer needs 9");
  const std::string ref = write_frames(dir, "ref.h5", 9);
  expect_one_line_error(transfer("--reference " + ref + " --blocks 7" + kQuick + out), "AMF block 7 is outside");
  expect_one_line_error(transfer("--reference " + ref + " --reference-timestep 1000" + kQuick + out),
                        "reference timestep 1000 is outside");
  expect_one_line_error(transfer("--reference " + dir.file("missing.h5") + kQuick + out), "reference video not found");
  expect_one_line_error(transfer(kQuick + out), "a reference video is required");
  expect_one_line_error(transfer("--reference " + ref + " --injection-blocks 1" + kQuick + out),
                        "KV injection block 1 is also an AMF block");
  // CLI11 rejects the contradiction itself (its own message and exit code).
  EXPECT_NE(transfer("--reference " + ref + " --injection-blocks 0 --no-injection" + kQuick + out).exit_code, 0);
  EXPECT_FALSE(path_exists(dir.file("x.h5")));
}

}  // namespace
}  // namespace t4g
