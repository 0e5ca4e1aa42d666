// `t4g demo` on the embedded tiny recipe: every stage runs and writes its outputs; a rerun
// reuses the prepared shards.
#include <gtest/gtest.h>

#include "common/fs.h"
#include "common/json.h"
#include "tests/testing.h"

namespace t4g {
namespace {

TEST(Demo, RunsEndToEndOnTheEmbeddedRecipe) {
  testing::TempDir dir;
  const std::string out = dir.file("demo");
  const auto r = testing::run_command(testing::program("t4g") + " demo --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json report = read_json(path_join(out, "report.json"));
  EXPECT_EQ(report["data"]["videos"].get<int>(), 4);
  EXPECT_TRUE(path_exists(path_join(out, "shards/index.json")));
  EXPECT_TRUE(path_exists(path_join(out, "config.yaml")));
  // The zero-motion baseline is a real, imperfect tracker on moving content.
  const double aj = report["baseline"]["average_jaccard"].get<double>();
  EXPECT_GT(aj, 0.0);
  EXPECT_LT(aj, 0.9);
  // Rerun: the shards are complete, nothing is rewritten.
  const auto again = testing::run_command(testing::program("t4g") + " demo --out " + out);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(read_json(path_join(out, "report.json"))["data"]["written"].get<int>(), 0);
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
