// `t4g demo` on the embedded tiny recipe (shortened with --set): every stage runs and writes its
// outputs, both fine-tuning runs evaluate tracking before and after, and the report says so.
#include <gtest/gtest.h>

#include "common/fs.h"
#include "common/json.h"
#include "tests/testing.h"

namespace t4g {
namespace {

TEST(Demo, RunsEndToEndOnTheEmbeddedRecipe) {
  testing::TempDir dir;
  const std::string out = dir.file("demo");
  const std::string quick = " --set train.steps=4 --set train.checkpoint_every=2 --set refiner.layers=2";
  const auto r = testing::run_command(testing::program("t4g") + " demo --out " + out + quick);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json report = read_json(path_join(out, "report.json"));
  EXPECT_TRUE(path_exists(path_join(out, "data/train/index.json")));
  EXPECT_TRUE(path_exists(path_join(out, "data/heldout/index.json")));
  EXPECT_TRUE(path_exists(path_join(out, "config.yaml")));
  EXPECT_TRUE(path_exists(path_join(out, "report.md")));
  // The zero-motion baseline is a real, imperfect tracker on moving content.
  const double aj = report["baseline"]["average_jaccard"].get<double>();
  EXPECT_GT(aj, 0.0);
  EXPECT_LT(aj, 0.9);
  for (const char* run : {"track4gen", "no_corr"}) {
    const Json& runs = report["runs"][run];
    EXPECT_EQ(runs["steps"].get<int>(), 4) << run;
    ASSERT_EQ(runs["evaluations"].size(), 2u) << run;  // before and after
    const Json& after = runs["evaluations"][1]["metrics"];
    for (const char* key : {"qk/average_pts_within_thresh", "refined/average_pts_within_thresh",
                            "refined_softargmax/pixel_error"}) {
      ASSERT_TRUE(after.contains(key)) << run << " " << key;
      EXPECT_GE(after[key].get<double>(), 0.0) << run << " " << key;
    }
    EXPECT_TRUE(path_exists(path_join(out, std::string(run) + "/export/refiner.safetensors"))) << run;
    EXPECT_TRUE(path_exists(path_join(out, std::string(run) + "/checkpoints/step_00000004/state.json"))) << run;
  }
  EXPECT_TRUE(report["runs"]["track4gen"]["final_train"].contains("loss_corr"));
  EXPECT_FALSE(report["runs"]["no_corr"]["final_train"].contains("loss_corr"));
}

TEST(Demo, BadOverrideGivesOneLine) {
  testing::TempDir dir;
  const auto r = testing::run_command(testing::program("t4g") + " demo --out " + dir.file("d") + " --set data.frames=8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("data.frames"), std::string::npos) << r.err;
  EXPECT_FALSE(path_exists(dir.file("d"))) << "nothing written for a rejected recipe";
}

}  // namespace
}  // namespace t4g
