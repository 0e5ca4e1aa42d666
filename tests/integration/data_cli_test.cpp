// Runs `t4g prepare` and `t4g inspect shards` as a user would: a small synthetic set, a rerun
// that resumes, a TAP-Vid conversion, and bad input that must give one line and a non-zero exit.
#include <gtest/gtest.h>

#include "tests/testing.h"

namespace t4g {
namespace {

using t4g::testing::program;
using t4g::testing::run_command;

TEST(DataCli, PrepareInspectAndResume) {
  t4g::testing::TempDir dir;
  const std::string out = dir.file("ds");
  // The summary is an info line; ctest runs with T4G_LOG_LEVEL=warn.
  const std::string prepare = "T4G_LOG_LEVEL=info " + program("t4g") + " prepare --out " + out +
                              " --synthetic 3 --frames 4 --height 32 --width 48 --jobs 2 --videos-per-shard 2";
  auto r = run_command(prepare);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("3 videos written in 2 shards"), std::string::npos) << r.err;
  r = run_command(prepare);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("0 videos written in 0 shards, 2 shards already complete"), std::string::npos) << r.err;
  r = run_command(program("t4g") + " prepare --out " + out + " --tapvid " + t4g::testing::fixture("tapvid/davis_p3.pkl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command(program("t4g") + " inspect shards " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("videos: 5, frames: 17"), std::string::npos) << r.out;  // 3 x 4 synthetic + 3 + 2 DAVIS
  EXPECT_NE(r.out.find("32x48 (3)"), std::string::npos) << r.out;
}

TEST(DataCli, BadInputGivesOneLine) {
  t4g::testing::TempDir dir;
  auto r = run_command(program("t4g") + " prepare --out " + dir.file("ds") + " --tapvid " +
                       t4g::testing::fixture("tapvid/evil_eval_p4.pkl"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("refusing global 'builtins.eval'"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = run_command(program("t4g") + " inspect shards " + dir.file("missing"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no shard index here"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace t4g
