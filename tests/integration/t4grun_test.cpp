// t4grun end to end: real worker processes (tests/integration/workers/dist_worker.cpp) that read
// their environment through DistEnv and all-reduce through the store Communicator, under
// t4grun (single node, two "nodes" on loopback) and under PyTorch's own torchrun. Every wait is
// bounded; every test checks that more than one worker really ran.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "tests/testing.h"
#include "common/fs.h"

namespace t4g {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kRunTimeoutS = 120;  // bound on any t4grun run (a 2-core machine shared by many)

std::string worker_program() { return testing::program("t4g_dist_worker"); }

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool exists(const std::string& path) { return path_exists(path); }

// "key=value" lines of a worker's .env or .result file.
std::map<std::string, std::string> read_kv(const std::string& path) {
  std::map<std::string, std::string> kv;
  std::istringstream in(testing::read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

// A program running in the background in its own process group, output to files.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const testing::TempDir& dir, const std::string& name)
      : out_(dir.file(name + ".out")), err_(dir.file(name + ".err")) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      const int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out, 1);
      ::dup2(err, 2);
      ::execvp(args[0], args.data());  // PATH lookup: T4G_PYTHON may be a bare "python3"
      ::_exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0 && exit_code_ < 0) {
      ::killpg(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // Exit status (128+N for signal N); on timeout kills the process group and returns -1.
  int wait(double seconds) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "timed out after " << seconds << " s; stderr so far:\n" << err();
    return -1;
  }
  std::string out() const { return testing::read_file(out_); }
  std::string err() const { return testing::read_file(err_); }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// Runs t4grun with `args` to completion (bounded).
struct RunOutput {
  int exit_code;
  std::string out, err;
};
RunOutput t4grun(const std::vector<std::string>& args, const testing::TempDir& dir, const std::string& name = "t4grun") {
  std::vector<std::string> argv = {testing::program("t4grun")};
  argv.insert(argv.end(), args.begin(), args.end());
  Background p(argv, dir, name);
  const int code = p.wait(kRunTimeoutS);
  return {code, p.out(), p.err()};
}

// Polls until every path exists (bounded).
bool wait_for_files(const std::vector<std::string>& paths, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    bool all = true;
    for (const auto& p : paths) all = all && exists(p);
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Checks the result files of `world` ranks for one attempt: all collectives right, sums
// bit-identical across ranks (compared as hex of the raw float32 bytes, tolerance 0).
void expect_good_results(const std::string& dir, int world, int attempt, const std::string& backend = "store") {
  std::string first_sum;
  for (int r = 0; r < world; ++r) {
    const std::string base = dir + "/rank" + std::to_string(r) + "_attempt" + std::to_string(attempt);
    ASSERT_TRUE(exists(base + ".result")) << base;
    const auto result = read_kv(base + ".result");
    EXPECT_EQ(result.at("sum_ok"), "1") << "rank " << r;
    EXPECT_EQ(result.at("broadcast_ok"), "1") << "rank " << r;
    EXPECT_EQ(result.at("gather_ok"), "1") << "rank " << r;
    EXPECT_EQ(result.at("backend"), backend) << "rank " << r;
    if (r == 0) first_sum = result.at("sum");
    EXPECT_EQ(result.at("sum"), first_sum) << "rank " << r << " differs from rank 0";
    const auto env = read_kv(base + ".env");
    EXPECT_EQ(env.at("rank"), std::to_string(r));
    EXPECT_EQ(env.at("world_size"), std::to_string(world));
    EXPECT_EQ(env.at("restart_count"), std::to_string(attempt));
  }
  EXPECT_FALSE(exists(dir + "/rank" + std::to_string(world) + "_attempt" + std::to_string(attempt) + ".env"))
      << "more workers than expected";
}

TEST(T4grun, ThreeWorkersAllReduceThroughTheAgentStore) {
  testing::TempDir dir;
  const RunOutput run = t4grun({"--standalone", "--nproc-per-node", "3", worker_program(), "--out", dir.path()}, dir);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  expect_good_results(dir.path(), 3, 0);
  const auto env = read_kv(dir.path() + "/rank1_attempt0.env");
  EXPECT_EQ(env.at("local_rank"), "1");
  EXPECT_EQ(env.at("local_world_size"), "3");
  EXPECT_EQ(env.at("group_rank"), "0");
  EXPECT_EQ(env.at("use_agent_store"), "1");
  EXPECT_EQ(env.at("error_file_set"), "1");
  EXPECT_EQ(env.at("nccl_nvls_enable"), "0");
  EXPECT_EQ(env.at("torch_nccl_async_error_handling"), "1");
  // Worker output is prefixed with its rank.
  for (int r = 0; r < 3; ++r) {
    const std::string line = "[rank " + std::to_string(r) + "]: rank " + std::to_string(r) + " done";
    EXPECT_NE(run.out.find(line), std::string::npos) << run.out;
  }
}

TEST(T4grun, FailingWorkerStopsItsPeerAndIsReported) {
  testing::TempDir dir;
  const std::string logs = dir.file("logs");
  const RunOutput run = t4grun({"--standalone", "--nproc-per-node", "2", "--grace-period", "10", "--log-dir", logs,
                          worker_program(), "--out", dir.path(), "--fail-rank", "1", "--exit-code", "7",
                          "--sleep-ms", "60000", "--spawn-grandchild"},
                         dir);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_NE(run.err.find("root cause (first failure): rank 1"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("exit code 7"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("message: dist_worker: rank 1 fails on purpose"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("(from the error file)"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("rank 0: exit code 143 (stopped by t4grun)"), std::string::npos) << run.err;
  EXPECT_TRUE(exists(logs + "/attempt_0/1/error.json"));
  // Rank 0 was running (two workers really started) and got SIGTERM.
  ASSERT_TRUE(exists(dir.path() + "/rank0_attempt0.ready"));
  EXPECT_EQ(testing::read_file(dir.path() + "/rank0_attempt0.signal"), "15");
  // The children the workers left behind (they ignore SIGTERM) are gone too.
  for (int r = 0; r < 2; ++r) {
    const std::string f = dir.path() + "/rank" + std::to_string(r) + "_attempt0.grandchild";
    ASSERT_TRUE(exists(f)) << f;
    EXPECT_TRUE(process_gone(std::stoi(testing::read_file(f)))) << "orphan of rank " << r;
  }
}

TEST(T4grun, RestartSucceedsOnTheSecondAttempt) {
  testing::TempDir dir;
  const RunOutput run = t4grun({"--standalone", "--nproc-per-node", "2", "--max-restarts", "2", "--grace-period", "10",
                          worker_program(), "--out", dir.path(), "--fail-rank", "0", "--fail-attempts", "1"},
                         dir);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.err.find("attempt 0 failed: rank 0 ended with exit code 3"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("restarting the worker group (restart 1 of 2)"), std::string::npos) << run.err;
  expect_good_results(dir.path(), 2, 1);  // TORCHELASTIC_RESTART_COUNT seen as 1
  EXPECT_FALSE(exists(dir.path() + "/rank0_attempt0.result"));
  EXPECT_FALSE(exists(dir.path() + "/rank0_attempt2.env"));  // no third attempt
}

TEST(T4grun, RestartsRunOut) {
  testing::TempDir dir;
  const RunOutput run = t4grun({"--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "--grace-period", "10",
                          worker_program(), "--out", dir.path(), "--fail-rank", "1", "--fail-attempts", "5"},
                         dir);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_NE(run.err.find("failed on attempt 1 (1 of 1 restarts used)"), std::string::npos) << run.err;
  EXPECT_TRUE(exists(dir.path() + "/rank1_attempt1.env"));
  EXPECT_FALSE(exists(dir.path() + "/rank1_attempt2.env"));
}

TEST(T4grun, SigintIsForwardedToEveryWorker) {
  testing::TempDir dir;
  Background run({testing::program("t4grun"), "--standalone", "--nproc-per-node", "2", "--grace-period", "10",
                  worker_program(), "--out", dir.path(), "--sleep-ms", "60000"},
                 dir, "t4grun");
  ASSERT_TRUE(wait_for_files({dir.file("rank0_attempt0.ready"), dir.file("rank1_attempt0.ready")}, kRunTimeoutS))
      << run.err();
  ASSERT_EQ(::kill(run.pid(), SIGINT), 0);  // to t4grun only: the workers are in their own sessions
  EXPECT_EQ(run.wait(kRunTimeoutS), 128 + SIGINT) << run.err();
  EXPECT_EQ(testing::read_file(dir.file("rank0_attempt0.signal")), "2");
  EXPECT_EQ(testing::read_file(dir.file("rank1_attempt0.signal")), "2");
  EXPECT_NE(run.err().find("stopped by SIGINT"), std::string::npos) << run.err();
}

TEST(T4grun, SigtermEscalatesToSigkillAfterTheGracePeriod) {
  testing::TempDir dir;
  Background run({testing::program("t4grun"), "--standalone", "--nproc-per-node", "2", "--grace-period", "1",
                  worker_program(), "--out", dir.path(), "--sleep-ms", "60000", "--ignore-sigterm-rank", "1"},
                 dir, "t4grun");
  ASSERT_TRUE(wait_for_files({dir.file("rank0_attempt0.ready"), dir.file("rank1_attempt0.ready")}, kRunTimeoutS))
      << run.err();
  ASSERT_EQ(::kill(run.pid(), SIGTERM), 0);
  EXPECT_EQ(run.wait(kRunTimeoutS), 128 + SIGTERM) << run.err();
  EXPECT_EQ(testing::read_file(dir.file("rank0_attempt0.signal")), "15");
  EXPECT_FALSE(exists(dir.file("rank1_attempt0.signal")));  // it ignored SIGTERM...
  EXPECT_NE(run.err().find("rank 1: signal SIGKILL (9) (stopped by t4grun)"), std::string::npos) << run.err();
}

TEST(T4grun, RedirectsAndTeeWriteLogFiles) {
  testing::TempDir dir;
  const std::string logs = dir.file("logs");
  const RunOutput run = t4grun({"--standalone", "--nproc-per-node", "2", "--log-dir", logs, "--redirects", "1", "--tee",
                          "2", "/bin/sh", "-c", "echo out$RANK; echo err$RANK >&2"},
                         dir);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (int r = 0; r < 2; ++r) {
    const std::string n = std::to_string(r);
    EXPECT_EQ(testing::read_file(logs + "/attempt_0/" + n + "/stdout.log"), "out" + n + "\n");
    EXPECT_EQ(testing::read_file(logs + "/attempt_0/" + n + "/stderr.log"), "err" + n + "\n");
    EXPECT_EQ(run.out.find("out" + n), std::string::npos) << "redirected stdout reached the console";
    EXPECT_NE(run.err.find("[rank " + n + "]: err" + n), std::string::npos) << "tee'd stderr missing";
  }
}

TEST(T4grun, TwoNodesOnLoopbackRestartTogether) {
  testing::TempDir dir;
  const std::string port = std::to_string(free_port());
  auto node = [&](int rank, int nproc) {
    return std::vector<std::string>{testing::program("t4grun"), "--nnodes", "2", "--node-rank", std::to_string(rank),
                                    "--nproc-per-node", std::to_string(nproc), "--master-addr", "127.0.0.1",
                                    "--master-port", port, "--max-restarts", "1", "--grace-period", "10",
                                    "--rdzv-timeout", "60", worker_program(), "--out", dir.path(),
                                    // global rank 2 lives on node 1 and fails on the first attempt
                                    "--fail-rank", "2", "--fail-attempts", "1"};
  };
  Background node1(node(1, 1), dir, "node1");  // started first: it waits for node 0's store
  Background node0(node(0, 2), dir, "node0");
  EXPECT_EQ(node0.wait(kRunTimeoutS), 0) << node0.err();
  EXPECT_EQ(node1.wait(kRunTimeoutS), 0) << node1.err();
  expect_good_results(dir.path(), 3, 1);
  EXPECT_EQ(read_kv(dir.file("rank2_attempt1.env")).at("group_rank"), "1");
  EXPECT_EQ(read_kv(dir.file("rank2_attempt1.env")).at("local_rank"), "0");
  EXPECT_EQ(read_kv(dir.file("rank1_attempt1.env")).at("group_rank"), "0");
  EXPECT_EQ(read_kv(dir.file("rank1_attempt1.env")).at("local_world_size"), "2");
  // Node 0 restarted because of node 1's failure.
  EXPECT_NE(node0.err().find("another node failed (rank 2 ended with exit code 3"), std::string::npos)
      << node0.err();
  EXPECT_EQ(testing::read_file(dir.file("rank0_attempt0.signal")), "15");
}

TEST(T4grun, MissingNodeTimesOutOrIsInterrupted) {
  testing::TempDir dir;
  const std::string port = std::to_string(free_port());
  // Node 1 never comes: the rendezvous gives up after --rdzv-timeout and names it.
  RunOutput run = t4grun({"--nnodes", "2", "--node-rank", "0", "--master-port", port, "--rdzv-timeout", "1",
                          "/bin/true"},
                         dir, "timeout");
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_NE(run.err.find("waiting for node(s) 1 of 2"), std::string::npos) << run.err;
  // The same wait ends at once on SIGINT.
  // (info level: the test waits for t4grun's "node 0 of 2" line, whatever ctest's T4G_LOG_LEVEL)
  Background waiting({"/usr/bin/env", "T4G_LOG_LEVEL=info", testing::program("t4grun"), "--nnodes", "2",
                      "--node-rank", "0", "--master-port", port, "/bin/true"},
                     dir, "interrupted");
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (waiting.err().find("t4grun: node 0 of 2") == std::string::npos && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_NE(waiting.err().find("t4grun: node 0 of 2"), std::string::npos) << waiting.err();
  ASSERT_EQ(::kill(waiting.pid(), SIGINT), 0);
  EXPECT_EQ(waiting.wait(30), 128 + SIGINT) << waiting.err();
  EXPECT_NE(waiting.err().find("stopped by SIGINT while waiting for the other nodes"), std::string::npos)
      << waiting.err();
}

TEST(T4grun, UsageErrorsAreOneLine) {
  testing::TempDir dir;
  RunOutput run = t4grun({"--standalone", "t4g-no-such-program"}, dir, "a");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err.rfind("t4grun: error: ", 0), 0u) << run.err;
  EXPECT_NE(run.err.find("t4g-no-such-program"), std::string::npos) << run.err;
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
  run = t4grun({"--nproc-per-node", "zero", "prog"}, dir, "b");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--nproc-per-node"), std::string::npos) << run.err;
  // A store port that is taken is named, not a hang.
  const int busy = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(::bind(busy, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(busy, 1), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(busy, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  run = t4grun({"--master-port", port, "/bin/true"}, dir, "c");
  ::close(busy);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--master-port 127.0.0.1:" + port + ": cannot host the rendezvous store"), std::string::npos)
      << run.err;
}

// NCCL through t4grun: one process per GPU. Runs on the GPU machines (2+ GPUs); here it skips, the
// only skip in this file, because the device it needs is absent (not because something failed).
TEST(T4grun, NcclWorkersOnTwoGpus) {
  const int gpus = static_cast<int>(torch::cuda::device_count());
  if (gpus < 2) GTEST_SKIP() << "needs 2 CUDA devices, found " << gpus;
  testing::TempDir dir;
  const RunOutput run = t4grun({"--standalone", "--nproc-per-node", "2", worker_program(), "--out", dir.path(),
                                "--backend", "nccl"},
                               dir);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // NCCL's sum order is its own: the ranks agree with each other (same collective result) and
  // with the rank-order sum within the worker's tolerance (sum_ok).
  expect_good_results(dir.path(), 2, 0, "nccl");
  EXPECT_EQ(read_kv(dir.file("rank0_attempt0.env")).at("nccl_nvls_enable"), "0");
}

// The same worker under PyTorch's torchrun (from the Python whose torch this build uses): the
// environment and the agent-hosted store are torchrun's own, so this shows t4g workers are drop-in.
TEST(T4grun, WorkerRunsUnderPytorchTorchrun) {
  testing::TempDir dir;
  Background run({T4G_PYTHON_EXE, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                  "--no-python", worker_program(), "--out", dir.path()},
                 dir, "torchrun");
  ASSERT_EQ(run.wait(kRunTimeoutS), 0) << run.err();
  expect_good_results(dir.path(), 2, 0);
  EXPECT_EQ(read_kv(dir.file("rank0_attempt0.env")).at("use_agent_store"), "1");
  EXPECT_EQ(read_kv(dir.file("rank0_attempt0.env")).at("error_file_set"), "1");
}

}  // namespace
}  // namespace t4g
