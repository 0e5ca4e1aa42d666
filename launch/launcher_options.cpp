// Parsing and validation of t4grun's flags; see launch/launcher_options.h.
#include "launch/launcher_options.h"

#include <torch/cuda.h>  // torch::cuda::device_count for --nproc-per-node gpu|auto

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "common/error.h"
#include "launch/slurm.h"
#include "launch/worker_env.h"
#include "t4g/build_config.h"

namespace t4g::launch {
namespace {

constexpr std::pair<const char*, int> kSignals[] = {
    {"SIGTERM", SIGTERM}, {"SIGINT", SIGINT},   {"SIGHUP", SIGHUP},   {"SIGQUIT", SIGQUIT},
    {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGKILL", SIGKILL}, {"SIGSEGV", SIGSEGV},
    {"SIGABRT", SIGABRT}, {"SIGBUS", SIGBUS},   {"SIGFPE", SIGFPE},   {"SIGILL", SIGILL},
    {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTRAP", SIGTRAP}, {"SIGXCPU", SIGXCPU},
};

Error flag_error(const std::string& flag, const std::string& expected, const std::string& got,
                 const std::string& message = "invalid value") {
  ErrorContext ctx;
  ctx.key = flag;
  ctx.expected = expected;
  ctx.got = "'" + got + "'";
  return Error(message, ctx);
}

int parse_int(const std::string& text, const std::string& flag, const std::string& expected) {
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < INT32_MIN || value > INT32_MAX) {
    throw flag_error(flag, expected, text);
  }
  return static_cast<int>(value);
}

double parse_seconds(const std::string& text, const std::string& flag) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value >= 0)) throw flag_error(flag, "a non-negative number of seconds", text);
  return value;
}

}  // namespace

int StreamSpec::for_rank(int local_rank) const {
  const auto it = per_rank.find(local_rank);
  return it == per_rank.end() ? all : it->second;
}

bool StreamSpec::any() const {
  if (all != 0) return true;
  for (const auto& [rank, value] : per_rank) {
    if (value != 0) return true;
  }
  return false;
}

StreamSpec parse_stream_spec(const std::string& text, const std::string& flag) {
  const std::string expected = "0-3, or LOCAL_RANK:VALUE pairs like 0:1,1:2";
  StreamSpec spec;
  if (text.find(':') == std::string::npos) {
    spec.all = parse_int(text, flag, expected);
    if (spec.all < 0 || spec.all > 3) throw flag_error(flag, expected, text);
    return spec;
  }
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const size_t colon = item.find(':');
    if (colon == std::string::npos) throw flag_error(flag, expected, text);
    const int rank = parse_int(item.substr(0, colon), flag, expected);
    const int value = parse_int(item.substr(colon + 1), flag, expected);
    if (rank < 0 || value < 0 || value > 3) throw flag_error(flag, expected, text);
    spec.per_rank[rank] = value;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return spec;
}

int parse_nproc_per_node(const std::string& text) {
  const std::string flag = "--nproc-per-node";
  const int cpus = std::max(1u, std::thread::hardware_concurrency());
  if (text == "cpu") return cpus;
  if (text == "gpu" || text == "auto") {
    const int gpus = static_cast<int>(torch::cuda::device_count());
    if (gpus > 0) return gpus;
    if (text == "auto") return cpus;
    throw flag_error(flag, "a machine with CUDA devices", text, "no CUDA device is visible");
  }
  const int n = parse_int(text, flag, "a positive integer, gpu, cpu or auto");
  if (n < 1) throw flag_error(flag, "a positive integer, gpu, cpu or auto", text);
  return n;
}

int parse_nnodes(const std::string& text) {
  const std::string flag = "--nnodes";
  const std::string expected = "a positive integer N (or N:N)";
  const size_t colon = text.find(':');
  if (colon == std::string::npos) {
    const int n = parse_int(text, flag, expected);
    if (n < 1) throw flag_error(flag, expected, text);
    return n;
  }
  const int lo = parse_int(text.substr(0, colon), flag, expected);
  const int hi = parse_int(text.substr(colon + 1), flag, expected);
  if (lo < 1 || hi < lo) throw flag_error(flag, expected, text);
  if (lo != hi) {
    throw flag_error(flag, expected, text,
                     "elastic node ranges (MIN:MAX) are not supported: t4grun uses a static rendezvous");
  }
  return lo;
}

std::vector<int> parse_signal_list(const std::string& text) {
  std::vector<int> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    std::string name = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!name.empty() && name.rfind("SIG", 0) != 0) name = "SIG" + name;
    int found = 0;
    for (const auto& [n, value] : kSignals) {
      if (name == n) found = value;
    }
    if (found == 0 || found == SIGKILL) {
      throw flag_error("--signals-to-handle", "comma-separated catchable signal names (SIGTERM,SIGINT,...)", name);
    }
    out.push_back(found);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string signal_name(int signum) {
  for (const auto& [n, value] : kSignals) {
    if (value == signum) return n;
  }
  return "signal " + std::to_string(signum);
}

bool parse_launcher_options(int argc, const char* const* argv, LauncherOptions& options) {
  CLI::App app{
      "t4grun: start and supervise the workers of a distributed t4g job (torchrun's flags and worker "
      "environment, for C++ programs).\n"
      "Usage: t4grun [options] [--] PROGRAM [ARGS...]\n"
      "  one node:   t4grun --standalone --nproc-per-node gpu t4g train --config X.yaml\n"
      "  two nodes:  t4grun --nnodes 2 --node-rank R --master-addr HOST0 --master-port 29500 \\\n"
      "                     --nproc-per-node 8 --max-restarts 3 t4g train --config X.yaml   (R = 0, 1)\n"
      "  SLURM:      srun --ntasks-per-node=1 t4grun --slurm --master-port 29500 --nproc-per-node 8 t4g train ..."};
  app.set_version_flag("--version", std::string("t4grun ") + T4G_VERSION);
  // Everything from the first positional (or after "--") is the worker command, untouched.
  app.prefix_command();
  std::string nproc = "1", nnodes = "1", monitor = "0.1", grace = "30", rdzv_timeout = "300";
  std::string redirects = "0", tee = "0";
  app.add_option("--nproc-per-node,--nproc_per_node", nproc, "workers on this node: N, gpu, cpu or auto")
      ->envname("PET_NPROC_PER_NODE");
  app.add_option("--nnodes", nnodes, "number of nodes, one t4grun each (N or N:N)")->envname("PET_NNODES");
  app.add_option("--node-rank,--node_rank", options.node_rank, "rank of this node, 0..nnodes-1")
      ->envname("PET_NODE_RANK");
  app.add_option("--master-addr,--master_addr", options.master_addr, "address of node 0 (hosts the store)")
      ->envname("PET_MASTER_ADDR");
  app.add_option("--master-port,--master_port", options.master_port, "port of node 0's store")
      ->envname("PET_MASTER_PORT");
  app.add_flag("--standalone", options.standalone, "single node; the store takes a free local port")
      ->envname("PET_STANDALONE");
  app.add_option("--max-restarts,--max_restarts", options.max_restarts, "worker-group restarts before failing")
      ->envname("PET_MAX_RESTARTS");
  app.add_option("--monitor-interval,--monitor_interval", monitor, "seconds between polls of the workers")
      ->envname("PET_MONITOR_INTERVAL");
  app.add_option("--grace-period,--grace_period", grace, "seconds between SIGTERM and SIGKILL when stopping workers")
      ->envname("PET_GRACE_PERIOD");
  app.add_option("--rdzv-timeout,--rdzv_timeout", rdzv_timeout, "seconds to wait for the other nodes")
      ->envname("PET_RDZV_TIMEOUT");
  app.add_option("--log-dir,--log_dir", options.log_dir,
                 "folder for attempt_<k>/<local_rank>/{stdout.log,stderr.log,error.json}")
      ->envname("PET_LOG_DIR");
  app.add_option("-r,--redirects", redirects, "streams to log files only: 0 none, 1 out, 2 err, 3 both; or 0:1,1:2")
      ->envname("PET_REDIRECTS");
  app.add_option("-t,--tee", tee, "streams to log files and the console (same values as -r)")->envname("PET_TEE");
  app.add_option("--rdzv-id,--rdzv_id,--run-id,--run_id", options.run_id, "job id (TORCHELASTIC_RUN_ID)")
      ->envname("PET_RDZV_ID");
  app.add_option("--signals-to-handle,--signals_to_handle", options.signals_to_handle,
                 "signals forwarded to the workers")
      ->envname("PET_SIGNALS_TO_HANDLE");
  bool slurm = false;
  app.add_flag("--slurm", slurm,
               "take --nnodes, --node-rank, --master-addr and --rdzv-id from srun's SLURM_* variables "
               "(run one t4grun per node: srun --ntasks-per-node=1)")
      ->envname("PET_SLURM");
  bool no_python = false;
  app.add_flag("--no-python,--no_python", no_python,
               "accepted for torchrun command lines: the program is always executed directly")
      ->envname("PET_NO_PYTHON");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return false;
  } catch (const CLI::CallForVersion&) {
    std::cout << "t4grun " << T4G_VERSION << "\n";
    return false;
  } catch (const CLI::ParseError& e) {
    throw Error(std::string("command line: ") + e.what());
  }
  options.command = app.remaining();
  if (!options.command.empty() && options.command.front() == "--") options.command.erase(options.command.begin());
  if (!options.command.empty() && options.command.front().size() > 1 && options.command.front()[0] == '-') {
    ErrorContext ctx;
    ctx.key = options.command.front();
    throw Error("unknown option (the worker program comes after the options, or after --)", ctx);
  }
  options.nproc_per_node = parse_nproc_per_node(nproc);
  options.nnodes = parse_nnodes(nnodes);
  if (slurm) {
    ExplicitSettings given;
    given.nnodes = app.count("--nnodes") > 0;
    given.node_rank = app.count("--node-rank") > 0;
    given.master_addr = app.count("--master-addr") > 0;
    given.run_id = app.count("--rdzv-id") > 0;
    apply_slurm(options, current_environment(), given);
  }
  options.monitor_interval_s = parse_seconds(monitor, "--monitor-interval");
  options.grace_period_s = parse_seconds(grace, "--grace-period");
  options.rendezvous_timeout_s = parse_seconds(rdzv_timeout, "--rdzv-timeout");
  options.redirects = parse_stream_spec(redirects, "--redirects");
  options.tee = parse_stream_spec(tee, "--tee");
  if (options.standalone) {
    // torchrun --standalone: a private single-node store on a free port, fresh for this run.
    options.master_addr = "127.0.0.1";
    options.master_port = 0;
  }
  validate(options);
  return true;
}

void validate(const LauncherOptions& o) {
  auto fail = [](const std::string& flag, const std::string& expected, const std::string& got) {
    throw flag_error(flag, expected, got);
  };
  if (o.command.empty()) {
    ErrorContext ctx;
    ctx.key = "PROGRAM";
    throw Error("no worker program given: t4grun [options] [--] PROGRAM [ARGS...]", ctx);
  }
  if (o.nproc_per_node < 1) fail("--nproc-per-node", "a positive integer", std::to_string(o.nproc_per_node));
  if (o.nnodes < 1) fail("--nnodes", "a positive integer", std::to_string(o.nnodes));
  if (o.node_rank < 0 || o.node_rank >= o.nnodes) {
    fail("--node-rank", "an integer in [0, --nnodes=" + std::to_string(o.nnodes) + ")", std::to_string(o.node_rank));
  }
  if (o.standalone && o.nnodes != 1) fail("--nnodes", "1 with --standalone", std::to_string(o.nnodes));
  if (o.master_port < 0 || o.master_port > 65535) fail("--master-port", "a port in [0, 65535]", std::to_string(o.master_port));
  if (o.master_port == 0 && o.nnodes > 1) {
    fail("--master-port", "a fixed port when --nnodes > 1 (other nodes must know it)", "0");
  }
  if (o.master_addr.empty()) fail("--master-addr", "a host name or address", "");
  if (o.max_restarts < 0) fail("--max-restarts", "a non-negative integer", std::to_string(o.max_restarts));
  if (!(o.monitor_interval_s > 0)) fail("--monitor-interval", "a positive number of seconds", std::to_string(o.monitor_interval_s));
  if (!(o.rendezvous_timeout_s > 0)) fail("--rdzv-timeout", "a positive number of seconds", std::to_string(o.rendezvous_timeout_s));
  if (o.run_id.empty() || o.run_id.find('/') != std::string::npos) fail("--rdzv-id", "a non-empty id without '/'", o.run_id);
  parse_signal_list(o.signals_to_handle);
}

}  // namespace t4g::launch
