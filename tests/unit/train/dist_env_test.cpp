// DistEnv: the worker environment as torchrun and t4grun set it, its defaults, and the errors
// for broken environments (each must name the variable).
#include "train/dist_env.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "common/error.h"

namespace t4g {
namespace {

using Vars = std::map<std::string, std::string>;

// The environment torchrun --nproc-per-node=4 --nnodes=2 gives local rank 1 on node 1.
Vars torchrun_vars() {
  return {{"RANK", "5"},
          {"LOCAL_RANK", "1"},
          {"WORLD_SIZE", "8"},
          {"LOCAL_WORLD_SIZE", "4"},
          {"GROUP_RANK", "1"},
          {"MASTER_ADDR", "node0.cluster"},
          {"MASTER_PORT", "29533"},
          {"TORCHELASTIC_USE_AGENT_STORE", "True"},
          {"TORCHELASTIC_RESTART_COUNT", "2"},
          {"TORCHELASTIC_ERROR_FILE", "/tmp/x/attempt_2/1/error.json"}};
}

// Expects from_map to throw a t4g::Error whose text names `variable`.
void expect_error_naming(const Vars& vars, const std::string& variable) {
  try {
    DistEnv::from_map(vars);
    FAIL() << "no error for a bad " << variable;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(variable), std::string::npos) << e.what();
  }
}

TEST(DistEnv, EmptyEnvironmentIsOneProcess) {
  const DistEnv env = DistEnv::from_map({});
  EXPECT_FALSE(env.launched);
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.local_rank, 0);
  EXPECT_EQ(env.local_world_size, 1);
  EXPECT_FALSE(env.use_agent_store);
  EXPECT_EQ(env.restart_count, 0);
  EXPECT_TRUE(env.error_file.empty());
  EXPECT_FALSE(env.distributed());
  EXPECT_TRUE(env.is_main());
}

TEST(DistEnv, ReadsEveryTorchrunVariable) {
  const DistEnv env = DistEnv::from_map(torchrun_vars());
  EXPECT_TRUE(env.launched);
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_world_size, 4);
  EXPECT_EQ(env.group_rank, 1);
  EXPECT_EQ(env.master_addr, "node0.cluster");
  EXPECT_EQ(env.master_port, 29533);
  EXPECT_TRUE(env.use_agent_store);
  EXPECT_EQ(env.restart_count, 2);
  EXPECT_EQ(env.error_file, "/tmp/x/attempt_2/1/error.json");
  EXPECT_TRUE(env.distributed());
  EXPECT_FALSE(env.is_main());
  EXPECT_NE(describe(env).find("rank 5/8"), std::string::npos);
}

TEST(DistEnv, HandStartedWorkerDefaultsToOneNode) {
  // RANK, WORLD_SIZE and MASTER_* only (a hand-started or minimal launcher): one node, rank 0 hosts.
  const DistEnv env = DistEnv::from_map(
      {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "1234"}});
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.group_rank, 0);
  EXPECT_FALSE(env.use_agent_store);
}

TEST(DistEnv, AgentStoreSpellings) {
  for (const char* yes : {"True", "true", "1"}) {
    Vars v = torchrun_vars();
    v["TORCHELASTIC_USE_AGENT_STORE"] = yes;
    EXPECT_TRUE(DistEnv::from_map(v).use_agent_store) << yes;
  }
  for (const char* no : {"False", "false", "0"}) {
    Vars v = torchrun_vars();
    v["TORCHELASTIC_USE_AGENT_STORE"] = no;
    EXPECT_FALSE(DistEnv::from_map(v).use_agent_store) << no;
  }
  Vars v = torchrun_vars();
  v["TORCHELASTIC_USE_AGENT_STORE"] = "yes";
  expect_error_naming(v, "TORCHELASTIC_USE_AGENT_STORE");
}

TEST(DistEnv, BadValuesNameTheVariable) {
  struct Case {
    std::string variable, value;
  };
  const Case cases[] = {
      {"RANK", "8"},            // not < WORLD_SIZE
      {"RANK", "-1"},           // negative
      {"RANK", "1x"},           // trailing junk
      {"RANK", ""},             // empty
      {"WORLD_SIZE", "0"},      // not positive
      {"WORLD_SIZE", "two"},    // not a number
      {"LOCAL_RANK", "4"},      // not < LOCAL_WORLD_SIZE
      {"LOCAL_WORLD_SIZE", "9"},  // more than WORLD_SIZE
      {"GROUP_RANK", "-2"},
      {"MASTER_PORT", "0"},
      {"MASTER_PORT", "70000"},
      {"MASTER_PORT", "http"},
      {"MASTER_ADDR", ""},
      {"TORCHELASTIC_RESTART_COUNT", "-1"},
      {"WORLD_SIZE", "99999999999999999999"},  // overflow
  };
  for (const Case& c : cases) {
    Vars v = torchrun_vars();
    v[c.variable] = c.value;
    SCOPED_TRACE(c.variable + "=" + c.value);
    expect_error_naming(v, c.variable);
  }
}

TEST(DistEnv, MissingPartnersNameTheVariable) {
  Vars v = torchrun_vars();
  v.erase("WORLD_SIZE");
  expect_error_naming(v, "WORLD_SIZE");
  v = torchrun_vars();
  v.erase("RANK");
  expect_error_naming(v, "RANK");
  v = torchrun_vars();
  v.erase("MASTER_ADDR");
  expect_error_naming(v, "MASTER_ADDR");
  v = torchrun_vars();
  v.erase("MASTER_PORT");
  expect_error_naming(v, "MASTER_PORT");
  v = torchrun_vars();
  v.erase("LOCAL_RANK");  // LOCAL_WORLD_SIZE without LOCAL_RANK
  expect_error_naming(v, "LOCAL_RANK");
  // A launcher variable without RANK/WORLD_SIZE is a broken environment, not a single process.
  expect_error_naming({{"LOCAL_RANK", "0"}}, "LOCAL_RANK");
}

TEST(DistEnv, FromEnvReadsTheProcessEnvironment) {
  const Vars vars = torchrun_vars();
  for (const auto& [k, value] : vars) ::setenv(k.c_str(), value.c_str(), 1);
  const DistEnv env = DistEnv::from_env();
  for (const auto& [k, value] : vars) ::unsetenv(k.c_str());
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.master_port, 29533);
  EXPECT_EQ(env.restart_count, 2);
  // Every variable from_env reads is one of the documented ten.
  int count = 0;
  for (const char* const* name = dist_env_variable_names(); *name != nullptr; ++name) {
    EXPECT_EQ(vars.count(*name), 1u) << *name;
    ++count;
  }
  EXPECT_EQ(count, 10);
}

TEST(DistEnv, ErrorFileFromEnvNeverThrows) {
  ::setenv("RANK", "not-a-number", 1);  // a broken environment must not hide the original error
  ::setenv("TORCHELASTIC_ERROR_FILE", "/tmp/e.json", 1);
  EXPECT_EQ(error_file_from_env(), "/tmp/e.json");
  ::unsetenv("TORCHELASTIC_ERROR_FILE");
  EXPECT_EQ(error_file_from_env(), "");
  EXPECT_THROW(DistEnv::from_env(), Error);
  ::unsetenv("RANK");
}

}  // namespace
}  // namespace t4g
