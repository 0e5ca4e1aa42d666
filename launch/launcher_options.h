// t4grun's command line: torchrun's flag names and meanings for a C++ worker program
// (research/distributed_and_style.md A.1.1 and A.1.7), each also readable from PET_<NAME> like
// torchrun (a flag beats its variable). Parsed and validated in this one place.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace t4g::launch {

// Which of a worker's streams go to a log file: torchrun's -r/-t values, 0 none, 1 stdout,
// 2 stderr, 3 both, either one value for every local rank ("3") or per local rank ("0:1,1:2").
struct StreamSpec {
  int all = 0;                  // value for local ranks not in per_rank
  std::map<int, int> per_rank;  // local rank -> value
  int for_rank(int local_rank) const;
  bool any() const;
};

struct LauncherOptions {
  int nproc_per_node = 1;                    // workers on this node (--nproc-per-node: N, cpu, gpu or auto)
  int nnodes = 1;                            // nodes in the job, one t4grun each (--nnodes: N or N:N)
  int node_rank = 0;                         // this node's rank (--node-rank); node 0 hosts the store
  std::string master_addr = "127.0.0.1";     // host of node 0's store (--master-addr)
  int master_port = 29500;                   // port of node 0's store (--master-port); 0 = pick a free one
  bool standalone = false;                   // one node, store on a free local port (--standalone)
  int max_restarts = 0;                      // worker-group restarts before giving up (--max-restarts)
  double monitor_interval_s = 0.1;           // how often workers are polled (--monitor-interval, seconds)
  double grace_period_s = 30.0;              // SIGTERM to SIGKILL delay when stopping workers (--grace-period)
  double rendezvous_timeout_s = 300.0;       // wait for the other nodes at each attempt (--rdzv-timeout)
  std::string log_dir;                       // per-attempt, per-rank logs and error files (--log-dir; "" = temp)
  StreamSpec redirects;                      // streams written only to log files (-r/--redirects)
  StreamSpec tee;                            // streams written to log files and the console (-t/--tee)
  std::string run_id = "none";               // job id, TORCHELASTIC_RUN_ID (--rdzv-id / --run-id)
  std::string signals_to_handle = "SIGTERM,SIGINT,SIGHUP,SIGQUIT";  // forwarded to workers (--signals-to-handle)
  std::vector<std::string> command;          // the worker program and its arguments
};

// Parses argv (argv[0] is the program name) and the PET_* variables. Returns false after printing
// --help or --version (the caller exits 0). Throws t4g::Error naming the flag on bad input.
bool parse_launcher_options(int argc, const char* const* argv, LauncherOptions& options);

// Checks ranges and combinations; throws t4g::Error naming the flag.
void validate(const LauncherOptions& options);

// "0:1,1:2" or "3" -> StreamSpec; throws t4g::Error naming `flag`.
StreamSpec parse_stream_spec(const std::string& text, const std::string& flag);
// "gpu", "cpu", "auto" or a positive integer -> worker count; throws t4g::Error.
int parse_nproc_per_node(const std::string& text);
// "N" or "N:N" -> N; a true elastic range MIN:MAX (MIN != MAX) is refused.
int parse_nnodes(const std::string& text);
// "SIGTERM,SIGINT" -> signal numbers; throws t4g::Error on unknown names.
std::vector<int> parse_signal_list(const std::string& text);
// "SIGTERM" for 15.
std::string signal_name(int signum);

}  // namespace t4g::launch
