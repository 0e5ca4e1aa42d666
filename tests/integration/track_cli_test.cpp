// `t4g track` and `t4g analyze` as a user runs them: the tiny recipe on two synthetic videos and on
// a TAP-Vid pickle (whose PRED.h5 `t4g tapvid score` must score exactly as METRICS.json says),
// and bad inputs that must end in one clear error line.
#include <gtest/gtest.h>

#include "common/fs.h"
#include "common/hdf5.h"
#include "common/json.h"
#include "models/model_components.h"
#include "models/trained_model.h"
#include "tests/testing.h"

namespace {

using t4g::testing::fixture;
using t4g::testing::program;
using t4g::testing::run_command;

// Tiny-model flags: 2 blocks (layer 1), chunks of 5 frames, whole-frame VAE encoding.
const std::string kTiny = " --layer 1 --chunk-len 5 --no-vae-tiling";
// Only warnings and errors on stderr (as under ctest), so an error is the only line.
const std::string kQuiet = "T4G_LOG_LEVEL=warn ";

std::string synthetic_shards(const t4g::testing::TempDir& dir) {
  const std::string ds = dir.file("ds");
  const auto r = run_command(program("t4g") + " prepare --out " + ds + " --synthetic 2 --frames 9 --height 64 --width 96");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return ds;
}

int64_t count_lines(const std::string& text) { return static_cast<int64_t>(std::count(text.begin(), text.end(), '\n')); }

// Exactly one line on stderr containing `needle`, and a failing exit code.
void expect_one_error_line(const t4g::testing::CommandResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

// A new user's first try: no flags but the data. The defaults follow the model and the video (the
// tiny model's last block, one chunk for a 9-frame video, whole-frame encoding where the VAE's
// tiles do not fit 64 x 96) instead of DiffTrack's 2B constants.
TEST(TrackCli, RunsWithTheDefaultsOnTheTinyModelsData) {
  t4g::testing::TempDir dir;
  const std::string ds = synthetic_shards(dir);
  const auto r = run_command(kQuiet + program("t4g") + " track --data " + ds + " --out " + dir.file("out"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");  // no warning either: the tiny model runs at its own size
  const t4g::Json m = t4g::read_json(dir.file("out") + "/METRICS.json");
  EXPECT_EQ(m["layers"], t4g::Json::array({1}));
  EXPECT_EQ(m["model_input"]["height"], 64);
  EXPECT_EQ(m["model_input"]["width"], 96);
}

// A model folder brings its own size: a pipeline whose transformer config has CogVideoX-2B's sample
// size (49 x 480 x 720; tiny widths so that it runs on a CPU) tracks at 480 x 720 with no size flag,
// on the CPU in fp32 here (CUDA and bf16 where a GPU is present); a size it was not trained at
// gets one warning line.
TEST(TrackCli, AModelFolderTracksAtItsOwnSize) {
  t4g::testing::TempDir dir;
  t4g::TinyModelConfig tiny;
  t4g::CogVideoXTransformerConfig tc = t4g::tiny_transformer_config(tiny);
  tc.sample_height = 60;
  tc.sample_width = 90;
  tc.sample_frames = 49;
  t4g::ModelComponents c;
  c.transformer = t4g::CogVideoXTransformer3DModel(tc);
  t4g::init_random_weights(*c.transformer, 1);
  t4g::CogVideoXVaeConfig vc = t4g::tiny_vae_config(tiny);
  vc.sample_height = 480;  // the released VAE's: tiles of 240 x 360
  vc.sample_width = 720;
  c.vae = t4g::AutoencoderKLCogVideoX(vc);
  t4g::save_diffusers_pipeline(c, dir.file("model"));

  const auto ds = dir.file("ds");
  ASSERT_EQ(run_command(program("t4g") + " prepare --out " + ds + " --synthetic 1 --frames 5 --height 64 --width 96")
                .exit_code,
            0);
  auto r = run_command(kQuiet + program("t4g") + " track --model " + dir.file("model") + " --data " + ds + " --out " +
                       dir.file("out"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("is not the size"), std::string::npos) << r.err;  // (T5 is absent: that warning stays)
  t4g::Json m = t4g::read_json(dir.file("out") + "/METRICS.json");
  EXPECT_EQ(m["model_input"]["height"], 480);
  EXPECT_EQ(m["model_input"]["width"], 720);
  if (m["device"] == "cpu") EXPECT_EQ(m["dtype"], "Float");

  r = run_command(kQuiet + program("t4g") + " track --model " + dir.file("model") + " --data " + ds + " --out " +
                  dir.file("out2") + " --height 240 --width 368");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("track: 240 x 368 is not the size"), std::string::npos) << r.err;
}

TEST(TrackCli, SyntheticShardsEndToEnd) {
  t4g::testing::TempDir dir;
  const std::string ds = synthetic_shards(dir);
  const std::string out = dir.file("out");
  const auto r = run_command(program("t4g") + " track --data " + ds + " --out " + out + kTiny);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const t4g::Json m = t4g::read_json(out + "/METRICS.json");
  EXPECT_EQ(m["videos"].get<int64_t>(), 2);
  EXPECT_EQ(m["model"].get<std::string>(), "tiny");
  for (const char* name : {"average_jaccard", "average_pts_within_thresh", "occlusion_accuracy"}) {
    ASSERT_TRUE(m["mean"][name].is_number()) << name;
    EXPECT_GE(m["mean"][name].get<double>(), 0.0);
    EXPECT_LE(m["mean"][name].get<double>(), 1.0);
  }
  const auto pred = t4g::h5::File::open(out + "/PRED.h5");
  for (const auto& [name, metrics] : m["per_video"].items()) {
    ASSERT_TRUE(pred.root().has_group(name)) << name;
    const auto tracks = pred.root().group(name).read("tracks");
    EXPECT_EQ(tracks.size(0), metrics["queries"].get<int64_t>());
    EXPECT_EQ(tracks.size(1), 9);
    EXPECT_TRUE(t4g::path_exists(out + "/strips/" + name + ".png")) << name;
  }
}

TEST(TrackCli, TapVidPredictionsRescoreToTheSameMetrics) {
  t4g::testing::TempDir dir;
  const std::string data = fixture("tapvid/davis_p4.pkl");  // 2 videos of 3 and 2 frames
  const std::string out = dir.file("out");
  auto r = run_command(program("t4g") + " track --data " + data + " --out " + out +
                       " --layer 1 --chunk-len 2 --no-vae-tiling --occlusion cycle");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command(program("t4g") + " tapvid score --data " + data + " --pred " + out + "/PRED.h5 --out " +
                  dir.file("score.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const t4g::Json tracked = t4g::read_json(out + "/METRICS.json");
  const t4g::Json scored = t4g::read_json(dir.file("score.json"));
  // The same numbers from the same file: equal to double rounding (1e-12).
  for (const auto& [name, value] : scored["mean"].items()) {
    if (value.is_null()) {
      EXPECT_TRUE(tracked["mean"][name].is_null()) << name;
    } else {
      EXPECT_NEAR(tracked["mean"][name].get<double>(), value.get<double>(), 1e-12) << name;
    }
  }
}

// Shards score too: the PRED.h5 of `t4g track --data SHARDS` against the shards' own tracks gives
// METRICS.json's numbers; a folder that is neither is one error line naming what is read.
TEST(TrackCli, ShardPredictionsRescoreToTheSameMetrics) {
  t4g::testing::TempDir dir;
  const std::string ds = synthetic_shards(dir);
  const std::string out = dir.file("out");
  auto r = run_command(program("t4g") + " track --data " + ds + " --out " + out + kTiny);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command(program("t4g") + " tapvid score --data " + ds + " --pred " + out + "/PRED.h5 --out " +
                  dir.file("score.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const t4g::Json tracked = t4g::read_json(out + "/METRICS.json");
  const t4g::Json scored = t4g::read_json(dir.file("score.json"));
  EXPECT_EQ(scored["videos"], 2);
  for (const auto& [name, value] : scored["mean"].items()) {
    ASSERT_FALSE(value.is_null()) << name;
    EXPECT_NEAR(tracked["mean"][name].get<double>(), value.get<double>(), 1e-6) << name;
  }
  r = run_command(kQuiet + program("t4g") + " tapvid score --data " + dir.path() + " --pred " + out +
                  "/PRED.h5 --out " + dir.file("x.json"));
  expect_one_error_line(r, "a TAP-Vid .pkl or a shard folder");
}

TEST(TrackCli, BadInputsGiveOneLine) {
  t4g::testing::TempDir dir;
  const std::string ds = synthetic_shards(dir);
  const std::string track = kQuiet + program("t4g") + " track --data " + ds + " --out " + dir.file("o") + " --chunk-len 5 --no-vae-tiling";
  expect_one_error_line(run_command(track + " --layer 5"), "layer 5 is out of range: the model has 2 transformer blocks");
  expect_one_error_line(run_command(track + " --layer 1 --timestep-index 50"), "timestep index 50 is out of range");
  expect_one_error_line(run_command(kQuiet + program("t4g") + " track --data " + dir.file("nope.pkl") + " --out " + dir.file("o")),
                        "nope.pkl");
  // A shard folder whose index names a video the shard does not hold: the error names the id.
  const std::string broken = dir.file("broken");
  ASSERT_EQ(run_command("cp -r " + ds + " " + broken).exit_code, 0);
  t4g::Json index = t4g::read_json(broken + "/index.json");
  index["videos"][0]["id"] = "synthetic-missing";
  t4g::write_json(broken + "/index.json", index);
  const auto r = run_command(kQuiet + program("t4g") + " track --data " + broken + " --out " + dir.file("o2") + kTiny);
  expect_one_error_line(r, "synthetic-missing");
}

TEST(AnalyzeCli, GridTableHeatmapsAndBestCell) {
  t4g::testing::TempDir dir;
  const std::string ds = synthetic_shards(dir);
  const std::string out = dir.file("an");
  const auto r = run_command(program("t4g") + " analyze --data " + ds + " --out " + out + " --timestep-indices 0 49");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("best (harmonic mean): layer "), std::string::npos) << r.out;
  const std::string csv = t4g::read_file(out + "/ANALYSIS.csv");
  EXPECT_EQ(count_lines(csv), 1 + 2 * 2);  // header + 2 timesteps x 2 layers
  EXPECT_EQ(csv.substr(0, csv.find(',')), "timestep_index");
  const t4g::Json a = t4g::read_json(out + "/ANALYSIS.json");
  EXPECT_EQ(a["videos"].get<int64_t>(), 2);
  const double best = a["best_qk_accuracy"]["qk_accuracy"].get<double>();
  EXPECT_GE(best, 0.0);
  EXPECT_LE(best, 100.0);
  for (const char* png : {"heatmap_qk_accuracy.png", "heatmap_harmonic_mean.png", "heatmap_hidden_accuracy.png"}) {
    const std::string bytes = t4g::read_file(out + "/" + png);
    EXPECT_EQ(bytes.substr(1, 3), "PNG") << png;
  }
  expect_one_error_line(run_command(kQuiet + program("t4g") + " analyze --data " + ds + " --out " + out + " --layers 2"),
                        "layer 2 is out of range");
}

}  // namespace
