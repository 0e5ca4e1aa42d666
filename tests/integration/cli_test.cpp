// The t4g command line as a user meets it: help, recipes, and bad input giving one line + exit 1.
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/testing.h"

namespace t4g {
namespace {

using testing::run_command;

// A user's mistake: exit code 1, nothing on stdout, exactly one stderr line starting "t4g: error:".
void expect_one_line_error(const testing::CommandResult& r, const std::string& must_contain) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("t4g: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(must_contain), std::string::npos) << r.err;
}

std::string t4g() { return testing::program("t4g"); }

TEST(Cli, HelpForEverySubcommand) {
  const auto top = run_command(t4g() + " --help");
  EXPECT_EQ(top.exit_code, 0);
  for (const char* sub : {"config", "demo"}) {
    EXPECT_NE(top.out.find(sub), std::string::npos) << sub;
    const auto r = run_command(t4g() + " " + sub + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << r.out;
  }
  const auto version = run_command(t4g() + " --version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.out.find("torch 2.11"), std::string::npos) << version.out;
}

TEST(Cli, ConfigShowAppliesOverrides) {
  const auto r = run_command(t4g() + " config show --set data.frames=49 --set model.dtype=bf16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("frames: 49"), std::string::npos);
  EXPECT_NE(r.out.find("dtype: bf16"), std::string::npos);
}

TEST(Cli, BadRecipesGiveOneLine) {
  testing::TempDir dir;
  const std::string base = "run:\n  name: x\n  out_dir: " + dir.file("out") + "\n";
  testing::write_file(dir.file("unknown.yaml"), base + "data:\n  frams: 9\n");
  testing::write_file(dir.file("type.yaml"), base + "data:\n  frames: nine\n");
  testing::write_file(dir.file("missing.yaml"), "run:\n  name: x\n");
  testing::write_file(dir.file("range.yaml"), base + "data:\n  batch_size: -2\n");
  testing::write_file(dir.file("syntax.yaml"), base + "data: {frames: 9\n");
  testing::write_file(dir.file("ok.yaml"), base);

  expect_one_line_error(run_command(t4g() + " config check --config " + dir.file("unknown.yaml")),
                        dir.file("unknown.yaml") + ":5: data.frams: unknown key");
  expect_one_line_error(run_command(t4g() + " config check --config " + dir.file("type.yaml")),
                        "data.frames: wrong type (expected an integer, got 'nine')");
  expect_one_line_error(run_command(t4g() + " config check --config " + dir.file("missing.yaml")),
                        dir.file("missing.yaml") + ": run.out_dir: missing required key");
  expect_one_line_error(run_command(t4g() + " config check --config " + dir.file("range.yaml")),
                        "data.batch_size: out of range");
  expect_one_line_error(run_command(t4g() + " config check --config " + dir.file("syntax.yaml")),
                        "invalid YAML");
  expect_one_line_error(run_command(t4g() + " config check --config " + dir.file("absent.yaml")),
                        dir.file("absent.yaml") + ": cannot open");
  expect_one_line_error(run_command(t4g() + " config check --config " + dir.file("ok.yaml") + " --set data.frames=x"),
                        "--set data.frames");
  const auto ok = run_command(t4g() + " config check --config " + dir.file("ok.yaml"));
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  // Valid, but naming folders that are not there: one warning each, still exit 0.
  const auto missing = run_command("T4G_LOG_LEVEL=warn " + t4g() + " config check --config " + dir.file("ok.yaml") +
                                   " --set model.path=/no/such/model --set data.shards=/no/such/shards");
  EXPECT_EQ(missing.exit_code, 0) << missing.err;
  EXPECT_NE(missing.err.find("model.path: /no/such/model does not exist"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("data.shards: /no/such/shards does not exist"), std::string::npos) << missing.err;
}

// A command-line mistake is one `t4g: error:` line and exit 1, like every other error; a word near
// a command's name is suggested.
TEST(Cli, UnknownSubcommandOrFlagFails) {
  expect_one_line_error(run_command(t4g() + " frobnicate"), "unknown command 'frobnicate'");
  expect_one_line_error(run_command(t4g() + " sampel --out x.h5"), "did you mean 'sample'?");
  expect_one_line_error(run_command(t4g() + " inspect weigths x"), "did you mean 'weights'?");
  expect_one_line_error(run_command(t4g() + " config show --no-such-flag"), "--no-such-flag");
  expect_one_line_error(run_command(t4g() + " sample --steps many --out x.h5"), "--steps");
  expect_one_line_error(run_command(t4g()), "t4g --help");
  EXPECT_EQ(run_command(t4g() + " sample --help").exit_code, 0);
}

}  // namespace
}  // namespace t4g
