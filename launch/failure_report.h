// The report t4grun prints when a worker group fails: which worker failed first (the root cause)
// and how every other worker ended, with the message the worker left in its torchelastic error
// file (research/distributed_and_style.md A.1.4 and A.1.6). Pure functions over WorkerState so the
// choice of the root cause is testable without processes.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error_file.h"
#include "launch/worker_group.h"

namespace t4g::launch {

// Error files read back for the failed workers, by global rank.
using ErrorRecords = std::map<int, ErrorFileRecord>;

// Reads the error file of every failed worker that has one.
ErrorRecords read_error_records(const std::vector<WorkerState>& workers);

// Index of the root-cause worker in `workers`, or nullopt when none failed. Workers that failed on
// their own come before workers t4grun had already signalled; among those, the earliest time wins:
// the error file's timestamp when there is one (whole seconds, as torchrun writes them), else the
// time t4grun saw the worker end; ties go to the one seen ending first.
std::optional<size_t> root_cause(const std::vector<WorkerState>& workers, const ErrorRecords& records);

// "exit code 3", "signal SIGSEGV (11)".
std::string describe_exit(const WorkerState& worker);

// Everything a failed run needs to report.
struct FailureContext {
  int attempt = 0;              // the last attempt (0-based)
  int max_restarts = 0;         // --max-restarts
  int node_rank = 0;            // this node
  int nnodes = 1;               // nodes in the job
  std::string peer_failure;     // set when another node's failure stopped this one
  int signal = 0;               // set when a signal to t4grun stopped the run
};

// The multi-line summary printed to stderr.
std::string format_failure_report(const std::vector<WorkerState>& workers, const ErrorRecords& records,
                                  const FailureContext& context);

// One line for the log when an attempt fails and the group restarts.
std::string describe_root_cause(const std::vector<WorkerState>& workers, const ErrorRecords& records);

}  // namespace t4g::launch
