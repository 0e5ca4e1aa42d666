// A small distributed worker that the t4grun integration tests start: it reads its environment
// through DistEnv, joins the rendezvous store, runs the store Communicator's collectives and
// writes what it saw to --out so the test can compare ranks. Flags make one rank fail, sleep,
// ignore SIGTERM or leave a grandchild behind, to exercise t4grun's failure handling.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/error.h"
#include "common/error_file.h"
#include "common/fs.h"
#include "train/communicator.h"
#include "train/dist_env.h"
#include "train/rendezvous.h"

namespace {

// Path of the marker written from the signal handler: prepared before handlers are installed,
// because a handler may only use async-signal-safe calls.
char g_signal_marker[4096];

void on_signal(int signum) {
  const int fd = ::open(g_signal_marker, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    char text[8];
    int n = 0;
    if (signum >= 10) text[n++] = static_cast<char>('0' + signum / 10);
    text[n++] = static_cast<char>('0' + signum % 10);
    [[maybe_unused]] const ssize_t w = ::write(fd, text, static_cast<size_t>(n));
    ::close(fd);
  }
  ::_exit(128 + signum);
}

std::string hex(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  const auto* p = static_cast<const unsigned char*>(c.data_ptr());
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < c.nbytes(); ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 15]);
  }
  return out;
}

// Values of very different magnitudes, so a sum in another order would differ in the last bits.
torch::Tensor rank_values(int rank) {
  torch::manual_seed(1000 + rank);
  return torch::randn({257}, torch::kFloat) * std::pow(10.0, 3 * (rank % 3)) + 0.1 * rank;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  T4G_CHECK(out.good(), "cannot write ", path);
}

int run(int argc, char** argv) {
  CLI::App app{"dist_worker: test worker for t4grun"};
  std::string out_dir;
  int fail_rank = -1, fail_attempts = 1, exit_code = 3, sleep_ms = 0, timeout_ms = 60000, ignore_term_rank = -1;
  bool grandchild = false;
  std::string backend = "store";
  app.add_option("--out", out_dir, "folder for the per-rank result files")->required();
  app.add_option("--fail-rank", fail_rank, "this rank fails on purpose");
  app.add_option("--fail-attempts", fail_attempts, "... while TORCHELASTIC_RESTART_COUNT is below this");
  app.add_option("--exit-code", exit_code, "exit code of the failing rank");
  app.add_option("--sleep-ms", sleep_ms, "sleep before the collectives (after writing the ready marker)");
  app.add_option("--timeout-ms", timeout_ms, "collective timeout");
  app.add_option("--ignore-sigterm-rank", ignore_term_rank, "this rank ignores SIGTERM");
  app.add_flag("--spawn-grandchild", grandchild, "leave a child process that ignores SIGTERM");
  app.add_option("--backend", backend, "communicator: store, nccl or auto");
  app.parse(argc, argv);

  const t4g::DistEnv env = t4g::DistEnv::from_env();
  const std::string base = t4g::str(out_dir, "/rank", env.rank, "_attempt", env.restart_count);
  std::snprintf(g_signal_marker, sizeof(g_signal_marker), "%s.signal", base.c_str());
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) std::signal(sig, on_signal);
  if (env.rank == ignore_term_rank) std::signal(SIGTERM, SIG_IGN);

  if (grandchild) {
    const pid_t child = ::fork();
    if (child == 0) {
      std::signal(SIGTERM, SIG_IGN);
      std::signal(SIGINT, SIG_IGN);
      for (;;) ::pause();
    }
    write_text(t4g::str(base, ".grandchild"), std::to_string(child));
  }

  const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
  const char* async = std::getenv("TORCH_NCCL_ASYNC_ERROR_HANDLING");
  write_text(base + ".env",
             t4g::str("rank=", env.rank, "\nworld_size=", env.world_size, "\nlocal_rank=", env.local_rank,
                      "\nlocal_world_size=", env.local_world_size, "\ngroup_rank=", env.group_rank,
                      "\nrestart_count=", env.restart_count, "\nuse_agent_store=", env.use_agent_store,
                      "\nerror_file_set=", !env.error_file.empty(), "\nnccl_nvls_enable=", nvls ? nvls : "unset",
                      "\ntorch_nccl_async_error_handling=", async ? async : "unset", "\n"));
  std::cout << "rank " << env.rank << " of " << env.world_size << " up (attempt " << env.restart_count << ")"
            << std::endl;

  if (env.rank == fail_rank && env.restart_count < fail_attempts) {
    // Fail only once every peer of this attempt has its signal handlers installed (its .ready
    // marker exists), so the tests that check how peers are stopped do not race libtorch's
    // start-up. Bounded: after 30 s fail anyway.
    const std::string prefix = out_dir + "/rank";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (int r = 0; r < env.world_size; ++r) {
      if (r == env.rank) continue;
      const std::string ready = t4g::str(prefix, r, "_attempt", env.restart_count, ".ready");
      while (!t4g::path_exists(ready) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    t4g::write_error_file(env.error_file, t4g::str("dist_worker: rank ", env.rank, " fails on purpose"),
                          t4g::str("attempt ", env.restart_count, ", exit code ", exit_code));
    std::cerr << "rank " << env.rank << " failing on purpose" << std::endl;
    return exit_code;
  }
  write_text(base + ".ready", "1");
  if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));

  t4g::RendezvousOptions rdzv;
  rdzv.connect_timeout = std::chrono::milliseconds(timeout_ms);
  auto store = t4g::connect_store(env, rdzv);
  t4g::CommunicatorOptions copts;
  copts.backend = t4g::parse_comm_backend(backend, "--backend");
  copts.timeout = std::chrono::milliseconds(timeout_ms);
  const auto comm = t4g::make_communicator(env, store, copts);
  const bool nccl = comm->backend_name() == "nccl";
  const torch::Device device = nccl ? torch::Device(torch::kCUDA, env.local_rank) : torch::Device(torch::kCPU);

  torch::Tensor sum = rank_values(env.rank).to(device);
  comm->all_reduce(sum, t4g::ReduceOp::kSum);
  sum = sum.cpu();
  torch::Tensor expected = rank_values(0);
  for (int r = 1; r < env.world_size; ++r) expected.add_(rank_values(r));
  // The store sums in rank order: bit-exact. NCCL picks its own order (ring/tree): within a few
  // float32 roundings of the largest magnitude (atol = 1e-5 * max|expected|, rtol = 1e-5).
  const bool sum_ok = nccl ? torch::allclose(sum, expected, 1e-5, 1e-5 * expected.abs().max().item<double>())
                           : torch::equal(sum, expected);

  torch::Tensor token = torch::full({3}, env.rank == env.world_size - 1 ? 42.0 : -1.0).to(device);
  comm->broadcast(token, env.world_size - 1);
  const auto gathered = comm->all_gather(torch::full({2}, static_cast<double>(env.rank), torch::kLong).to(device));
  bool gather_ok = static_cast<int>(gathered.size()) == env.world_size;
  for (int r = 0; gather_ok && r < env.world_size; ++r) gather_ok = gathered[r][1].item<int64_t>() == r;
  comm->barrier();
  comm->shutdown();

  write_text(base + ".result", t4g::str("sum=", hex(sum), "\nsum_ok=", sum_ok, "\nbroadcast_ok=",
                                        token.eq(42.0).all().item<bool>(), "\ngather_ok=", gather_ok,
                                        "\nbackend=", comm->backend_name(), "\n"));
  std::cout << "rank " << env.rank << " done" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string error_file;
  try {
    if (const char* f = std::getenv("TORCHELASTIC_ERROR_FILE")) error_file = f;
    return run(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::cerr << "dist_worker: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "dist_worker: error: " << e.what() << std::endl;
    try {
      t4g::write_error_file(error_file, e.what(), "dist_worker");
    } catch (...) {
    }
    return 1;
  }
}
