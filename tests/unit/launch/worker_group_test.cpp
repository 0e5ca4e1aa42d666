// Worker processes: started with their environment and logs, exit codes and signals recorded,
// stop() escalating from SIGTERM to SIGKILL after the grace period, and a worker's leftover
// children killed with its process group. Workers are small /bin/sh scripts.
#include "launch/worker_group.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "common/error.h"
#include "tests/testing.h"

namespace t4g::launch {
namespace {

using Clock = std::chrono::steady_clock;

WorkerSpec shell_worker(int rank, const std::string& script, const testing::TempDir& dir) {
  WorkerSpec s;
  s.rank = rank;
  s.local_rank = rank;
  s.program = resolve_program("sh");
  s.args = {"sh", "-c", script};
  s.envp = {"PATH=/usr/bin:/bin", "T4G_TEST_VALUE=v" + std::to_string(rank)};
  s.stdout_log = dir.file("out" + std::to_string(rank));
  s.stderr_log = dir.file("err" + std::to_string(rank));
  s.stdout_to_console = false;
  s.stderr_to_console = false;
  return s;
}

// Polls until every worker ended; fails the test after `seconds`.
void wait_all(WorkerGroup& g, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (!g.all_ended() && Clock::now() < deadline) g.poll(0.02, -1);
  ASSERT_TRUE(g.all_ended()) << "workers still running after " << seconds << " s";
}

bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';  // zombie = dead
}

TEST(WorkerGroup, RunsWorkersWithEnvironmentAndRecordsExits) {
  testing::TempDir dir;
  WorkerGroup g({shell_worker(0, "echo out $T4G_TEST_VALUE; echo err >&2; exit 0", dir),
                 shell_worker(1, "echo partial-line-without-newline; printf tail; exit 4", dir),
                 shell_worker(2, "kill -SEGV $$", dir)});
  wait_all(g, 20);
  g.finish();
  const auto& w = g.workers();
  EXPECT_FALSE(w[0].failed());
  EXPECT_EQ(w[1].exit_code, 4);
  EXPECT_EQ(w[2].term_signal, SIGSEGV);
  EXPECT_TRUE(g.any_failed());
  EXPECT_GT(w[0].exit_time, 1.6e9);  // unix seconds
  EXPECT_EQ(testing::read_file(dir.file("out0")), "out v0\n");
  EXPECT_EQ(testing::read_file(dir.file("err0")), "err\n");
  EXPECT_EQ(testing::read_file(dir.file("out1")), "partial-line-without-newline\ntail");
}

TEST(WorkerGroup, StopEscalatesToSigkillAfterGrace) {
  testing::TempDir dir;
  // Worker 0 ignores SIGTERM (the ignore is inherited by its sleeps); worker 1 dies from it.
  WorkerGroup g({shell_worker(0, "trap '' TERM; echo ready; while :; do sleep 0.05; done", dir),
                 shell_worker(1, "exec sleep 60", dir)});
  // Let worker 0 install its trap before signalling.
  const auto ready_deadline = Clock::now() + std::chrono::seconds(20);
  while (testing::read_file(dir.file("out0")).empty() && Clock::now() < ready_deadline) g.poll(0.02, -1);
  ASSERT_FALSE(testing::read_file(dir.file("out0")).empty());
  const auto start = Clock::now();
  g.stop(SIGTERM, 0.5);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(g.all_ended());
  EXPECT_EQ(g.workers()[0].term_signal, SIGKILL);
  EXPECT_EQ(g.workers()[1].term_signal, SIGTERM);
  EXPECT_TRUE(g.workers()[0].stopped_by_launcher);
  EXPECT_GE(seconds, 0.45);  // waited out the grace period
  EXPECT_LT(seconds, 10.0);
}

TEST(WorkerGroup, LeftoverChildrenDieWithTheGroup) {
  testing::TempDir dir;
  const std::string pid_file = dir.file("grandchild.pid");
  WorkerGroup g({shell_worker(0, "trap '' TERM; sleep 60 & echo $! > " + pid_file + "; exit 0", dir)});
  wait_all(g, 20);
  g.finish();
  const pid_t grandchild = std::stoi(testing::read_file(pid_file));
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!process_gone(grandchild) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(process_gone(grandchild)) << "pid " << grandchild;
}

TEST(WorkerGroup, DestructorKillsRunningWorkers) {
  testing::TempDir dir;
  pid_t pid = -1;
  {
    WorkerGroup g({shell_worker(0, "exec sleep 60", dir)});
    pid = g.workers()[0].pid;
  }
  EXPECT_TRUE(process_gone(pid));
}

TEST(WorkerGroup, ResolveProgram) {
  EXPECT_NE(resolve_program("sh").find("/sh"), std::string::npos);
  EXPECT_EQ(resolve_program("/bin/sh"), "/bin/sh");
  try {
    resolve_program("t4g-no-such-program");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t4g-no-such-program"), std::string::npos) << e.what();
  }
  testing::TempDir dir;
  testing::write_file(dir.file("data.txt"), "not a program");  // created 0644: not executable
  EXPECT_THROW(resolve_program(dir.file("data.txt")), Error);
}

}  // namespace
}  // namespace t4g::launch
