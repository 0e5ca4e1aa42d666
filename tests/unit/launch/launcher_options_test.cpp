// t4grun's command line: torchrun's flag spellings, PET_* fallbacks (a flag beats its variable),
// the worker command after the options or after "--", and errors naming the flag.
#include "launch/launcher_options.h"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>

#include "common/error.h"

namespace t4g::launch {
namespace {

LauncherOptions parse(std::vector<std::string> args) {
  args.insert(args.begin(), "t4grun");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  LauncherOptions o;
  EXPECT_TRUE(parse_launcher_options(static_cast<int>(argv.size()), argv.data(), o));
  return o;
}

void expect_error_naming(const std::vector<std::string>& args, const std::string& name) {
  try {
    parse(args);
    FAIL() << "accepted bad arguments; expected an error naming " << name;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

// Sets an environment variable for the scope of a test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_); }

 private:
  const char* name_;
};

TEST(LauncherOptions, TorchrunDefaults) {
  const LauncherOptions o = parse({"prog"});
  EXPECT_EQ(o.nproc_per_node, 1);
  EXPECT_EQ(o.nnodes, 1);
  EXPECT_EQ(o.node_rank, 0);
  EXPECT_EQ(o.master_addr, "127.0.0.1");
  EXPECT_EQ(o.master_port, 29500);
  EXPECT_FALSE(o.standalone);
  EXPECT_EQ(o.max_restarts, 0);
  EXPECT_DOUBLE_EQ(o.monitor_interval_s, 0.1);
  EXPECT_EQ(o.run_id, "none");
  EXPECT_EQ(o.command, std::vector<std::string>{"prog"});
}

TEST(LauncherOptions, DashedAndUnderscoredFlagsAndTheCommand) {
  const LauncherOptions o = parse({"--nproc-per-node", "4", "--nnodes=2", "--node_rank", "1", "--master-addr",
                                   "10.0.0.1", "--master_port=29533", "--max-restarts", "3", "--monitor-interval",
                                   "0.5", "--log-dir", "/tmp/logs", "-t", "3", "--redirects", "0:1,1:2", "--no-python",
                                   "./t4g", "train", "--config", "x.yaml", "--nproc-per-node", "9"});
  EXPECT_EQ(o.nproc_per_node, 4);
  EXPECT_EQ(o.nnodes, 2);
  EXPECT_EQ(o.node_rank, 1);
  EXPECT_EQ(o.master_addr, "10.0.0.1");
  EXPECT_EQ(o.master_port, 29533);
  EXPECT_EQ(o.max_restarts, 3);
  EXPECT_DOUBLE_EQ(o.monitor_interval_s, 0.5);
  EXPECT_EQ(o.log_dir, "/tmp/logs");
  EXPECT_EQ(o.tee.for_rank(5), 3);
  EXPECT_EQ(o.redirects.for_rank(0), 1);
  EXPECT_EQ(o.redirects.for_rank(1), 2);
  EXPECT_EQ(o.redirects.for_rank(2), 0);
  // Everything from the program on belongs to the worker, flags that look like ours included.
  EXPECT_EQ(o.command, (std::vector<std::string>{"./t4g", "train", "--config", "x.yaml", "--nproc-per-node", "9"}));
}

TEST(LauncherOptions, DoubleDashSeparatesTheCommand) {
  const LauncherOptions o = parse({"--nproc-per-node", "2", "--", "prog", "-x", "--", "y"});
  EXPECT_EQ(o.command, (std::vector<std::string>{"prog", "-x", "--", "y"}));
}

TEST(LauncherOptions, StandalonePicksAFreeLocalPort) {
  const LauncherOptions o = parse({"--standalone", "--master-port", "1234", "prog"});
  EXPECT_TRUE(o.standalone);
  EXPECT_EQ(o.master_port, 0);
  EXPECT_EQ(o.master_addr, "127.0.0.1");
  expect_error_naming({"--standalone", "--nnodes", "2", "prog"}, "--nnodes");
}

TEST(LauncherOptions, PetVariablesAndFlagPrecedence) {
  ScopedEnv nproc("PET_NPROC_PER_NODE", "3");
  ScopedEnv restarts("PET_MAX_RESTARTS", "2");
  ScopedEnv port("PET_MASTER_PORT", "29999");
  const LauncherOptions o = parse({"--max-restarts", "5", "prog"});
  EXPECT_EQ(o.nproc_per_node, 3);
  EXPECT_EQ(o.master_port, 29999);
  EXPECT_EQ(o.max_restarts, 5);  // the flag beats PET_MAX_RESTARTS
}

TEST(LauncherOptions, NprocKeywords) {
  EXPECT_GE(parse_nproc_per_node("cpu"), 1);
  EXPECT_GE(parse_nproc_per_node("auto"), 1);
  EXPECT_EQ(parse_nproc_per_node("7"), 7);
  if (!torch::cuda::is_available()) {
    EXPECT_THROW(parse_nproc_per_node("gpu"), Error);
  }
}

TEST(LauncherOptions, BadValuesNameTheFlag) {
  expect_error_naming({"--nproc-per-node", "0", "prog"}, "--nproc-per-node");
  expect_error_naming({"--nproc-per-node", "many", "prog"}, "--nproc-per-node");
  expect_error_naming({"--nnodes", "1:4", "prog"}, "--nnodes");  // elastic ranges
  expect_error_naming({"--nnodes", "2", "--node-rank", "2", "prog"}, "--node-rank");
  expect_error_naming({"--nnodes", "2", "--master-port", "0", "prog"}, "--master-port");
  expect_error_naming({"--master-port", "70000", "prog"}, "--master-port");
  expect_error_naming({"--max-restarts", "-1", "prog"}, "--max-restarts");
  expect_error_naming({"--monitor-interval", "0", "prog"}, "--monitor-interval");
  expect_error_naming({"--monitor-interval", "fast", "prog"}, "--monitor-interval");
  expect_error_naming({"-r", "4", "prog"}, "--redirects");
  expect_error_naming({"-t", "0:5", "prog"}, "--tee");
  expect_error_naming({"--signals-to-handle", "SIGTERM,SIGNOPE", "prog"}, "--signals-to-handle");
  expect_error_naming({"--rdzv-id", "a/b", "prog"}, "--rdzv-id");
  expect_error_naming({"--nproc-per-node", "2"}, "PROGRAM");
  expect_error_naming({"--bogus-flag", "prog"}, "--bogus-flag");
}

TEST(LauncherOptions, SignalNames) {
  EXPECT_EQ(parse_signal_list("SIGTERM,INT,SIGUSR1"), (std::vector<int>{SIGTERM, SIGINT, SIGUSR1}));
  EXPECT_EQ(signal_name(SIGKILL), "SIGKILL");
  EXPECT_EQ(signal_name(SIGTERM), "SIGTERM");
  EXPECT_THROW(parse_signal_list("SIGKILL"), Error);  // cannot be handled
}

}  // namespace
}  // namespace t4g::launch
