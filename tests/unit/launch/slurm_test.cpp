// --slurm: node count, node rank, node 0's host and job id from srun's variables; explicit
// settings win; missing variables are named.
#include "launch/slurm.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "common/error.h"

namespace t4g::launch {
namespace {

TEST(Slurm, FirstHostOfAHostList) {
  EXPECT_EQ(first_slurm_host("gpu[03-05,09],cpu1"), "gpu03");
  EXPECT_EQ(first_slurm_host("node7,node8"), "node7");
  EXPECT_EQ(first_slurm_host("a-b-c"), "a-b-c");
  EXPECT_EQ(first_slurm_host("rack[2,4]-node[1-3]"), "rack2-node[1-3]");  // only the first bracket is expanded
  EXPECT_THROW(first_slurm_host("gpu[03-05"), Error);
}

TEST(Slurm, FillsWhatWasNotGiven) {
  const std::map<std::string, std::string> env = {{"SLURM_STEP_NUM_NODES", "4"},
                                                  {"SLURM_NNODES", "8"},
                                                  {"SLURM_NODEID", "2"},
                                                  {"SLURM_STEP_NODELIST", "h100-[017-020]"},
                                                  {"SLURM_JOB_ID", "4242"}};
  LauncherOptions o;
  apply_slurm(o, env, {});
  EXPECT_EQ(o.nnodes, 4);
  EXPECT_EQ(o.node_rank, 2);
  EXPECT_EQ(o.master_addr, "h100-017");
  EXPECT_EQ(o.run_id, "4242");

  LauncherOptions kept;
  kept.master_addr = "10.0.0.9";
  kept.nnodes = 3;
  ExplicitSettings given;
  given.master_addr = true;
  given.nnodes = true;
  apply_slurm(kept, env, given);
  EXPECT_EQ(kept.master_addr, "10.0.0.9");
  EXPECT_EQ(kept.nnodes, 3);
  EXPECT_EQ(kept.node_rank, 2);
}

TEST(Slurm, MissingOrBadVariablesAreNamed) {
  LauncherOptions o;
  try {
    apply_slurm(o, {{"SLURM_NNODES", "2"}, {"SLURM_JOB_NODELIST", "n1,n2"}}, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SLURM_NODEID"), std::string::npos) << e.what();
  }
  try {
    apply_slurm(o, {{"SLURM_NNODES", "two"}, {"SLURM_NODEID", "0"}, {"SLURM_JOB_NODELIST", "n1"}}, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SLURM_NNODES"), std::string::npos) << e.what();
  }
}

TEST(Slurm, FlagReadsTheEnvironment) {
  ::setenv("SLURM_NNODES", "2", 1);
  ::setenv("SLURM_NODEID", "1", 1);
  ::setenv("SLURM_JOB_NODELIST", "nodeA,nodeB", 1);
  const char* argv[] = {"t4grun", "--slurm", "--master-port", "29600", "prog"};
  LauncherOptions o;
  const bool ok = parse_launcher_options(5, argv, o);
  ::unsetenv("SLURM_NNODES");
  ::unsetenv("SLURM_NODEID");
  ::unsetenv("SLURM_JOB_NODELIST");
  ASSERT_TRUE(ok);
  EXPECT_EQ(o.nnodes, 2);
  EXPECT_EQ(o.node_rank, 1);
  EXPECT_EQ(o.master_addr, "nodeA");
  EXPECT_EQ(o.master_port, 29600);
}

}  // namespace
}  // namespace t4g::launch
