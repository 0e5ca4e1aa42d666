// The supervision loop; see launch/elastic_agent.h.
#include "launch/elastic_agent.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <memory>
#include <optional>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "launch/agent_rendezvous.h"
#include "launch/failure_report.h"
#include "launch/signal_pipe.h"
#include "launch/worker_env.h"
#include "launch/worker_group.h"

namespace t4g::launch {
namespace {

enum class Outcome { kSucceeded, kFailed, kPeerFailed, kInterrupted };

// The log root: --log-dir, or a temporary folder removed at the end (error files need a home).
class LogRoot {
 public:
  explicit LogRoot(const std::string& log_dir) {
    if (!log_dir.empty()) {
      path_ = log_dir;
      make_dirs(path_);
      return;
    }
    path_ = make_temp_dir("t4grun_");
    temporary_ = true;
  }
  ~LogRoot() {
    if (temporary_) remove_all(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool temporary_ = false;
};

struct AttemptResult {
  Outcome outcome = Outcome::kSucceeded;
  std::vector<WorkerState> workers;
  ErrorRecords records;
  std::string peer_failure;
  int signal = 0;
};

class Agent {
 public:
  explicit Agent(const LauncherOptions& options)
      : options_(options),
        program_(resolve_program(options.command.front())),
        rendezvous_(options),
        signals_(parse_signal_list(options.signals_to_handle)),
        logs_(options.log_dir),
        parent_env_(current_environment()) {}

  RunResult run() {
    T4G_INFO("t4grun: node ", options_.node_rank, " of ", options_.nnodes, ", ", options_.nproc_per_node,
             " worker(s), store ", options_.master_addr, ":", rendezvous_.port(), ", logs in ", logs_.path());
    const auto interrupted = [this] { return take_signal(); };
    for (int attempt = 0;; ++attempt) {
      AttemptResult result = run_attempt(attempt);
      if (result.outcome == Outcome::kInterrupted && result.workers.empty()) {
        return {128 + result.signal, str("t4grun: stopped by ", signal_name(result.signal),
                                         " while waiting for the other nodes (attempt ", attempt, ")\n")};
      }
      if (result.outcome == Outcome::kSucceeded) {
        rendezvous_.leave(interrupted);
        return {0, ""};
      }
      const bool can_restart = result.outcome != Outcome::kInterrupted && attempt < options_.max_restarts;
      if (can_restart) {
        const std::string why = result.outcome == Outcome::kPeerFailed
                                    ? "another node failed (" + result.peer_failure + ")"
                                    : describe_root_cause(result.workers, result.records);
        T4G_WARN("t4grun: attempt ", attempt, " failed: ", why, "; restarting the worker group (restart ",
                 attempt + 1, " of ", options_.max_restarts, ")");
        continue;
      }
      FailureContext context;
      context.attempt = attempt;
      context.max_restarts = options_.max_restarts;
      context.node_rank = options_.node_rank;
      context.nnodes = options_.nnodes;
      context.peer_failure = result.peer_failure;
      context.signal = result.signal;
      RunResult run_result;
      run_result.exit_code = result.signal != 0 ? 128 + result.signal : 1;
      run_result.report = format_failure_report(result.workers, result.records, context);
      rendezvous_.leave(interrupted);
      return run_result;
    }
  }

 private:
  std::vector<WorkerSpec> make_specs(int attempt, const Assignment& assignment) {
    std::vector<WorkerSpec> specs;
    for (int local = 0; local < options_.nproc_per_node; ++local) {
      WorkerSpec spec;
      spec.local_rank = local;
      spec.rank = assignment.rank_offset + local;
      const std::string dir = str(logs_.path(), "/attempt_", attempt, "/", spec.rank);
      make_dirs(dir);
      spec.error_file = dir + "/error.json";
      remove_all(spec.error_file);  // never report a previous run's error
      const int redirect = options_.redirects.for_rank(local);
      const int tee = options_.tee.for_rank(local);
      if ((redirect | tee) & 1) spec.stdout_log = dir + "/stdout.log";
      if ((redirect | tee) & 2) spec.stderr_log = dir + "/stderr.log";
      spec.stdout_to_console = !(redirect & 1) || (tee & 1);
      spec.stderr_to_console = !(redirect & 2) || (tee & 2);
      WorkerPlacement p;
      p.rank = spec.rank;
      p.local_rank = local;
      p.world_size = assignment.world_size;
      p.local_world_size = options_.nproc_per_node;
      p.node_rank = options_.node_rank;
      p.nnodes = options_.nnodes;
      p.master_addr = options_.master_addr;
      p.master_port = rendezvous_.port();
      p.restart_count = attempt;
      p.max_restarts = options_.max_restarts;
      p.run_id = options_.run_id;
      p.error_file = spec.error_file;
      p.signals_to_handle = options_.signals_to_handle;
      spec.envp = to_envp(worker_environment(parent_env_, p));
      spec.program = program_;
      spec.args = options_.command;
      specs.push_back(std::move(spec));
    }
    return specs;
  }

  // True when a signal arrived (kept in pending_signal_) while no workers run.
  bool take_signal() {
    const std::vector<int> s = signals_.take();
    if (!s.empty() && pending_signal_ == 0) pending_signal_ = s.front();
    return pending_signal_ != 0;
  }

  AttemptResult run_attempt(int attempt) {
    AttemptResult result;
    const std::optional<Assignment> joined = rendezvous_.join(attempt, [this] { return take_signal(); });
    if (!joined) {
      result.outcome = Outcome::kInterrupted;
      result.signal = pending_signal_;
      return result;
    }
    const Assignment& assignment = *joined;
    T4G_INFO("t4grun: attempt ", attempt, ": starting ranks ", assignment.rank_offset, "..",
             assignment.rank_offset + options_.nproc_per_node - 1, " of ", assignment.world_size);
    WorkerGroup group(make_specs(attempt, assignment));
    for (;;) {
      group.poll(options_.monitor_interval_s, signals_.fd());
      const std::vector<int> received = signals_.take();
      if (!received.empty()) {
        result.outcome = Outcome::kInterrupted;
        result.signal = received.front();
        T4G_WARN("t4grun: received ", signal_name(result.signal), ", forwarding it to the workers");
        report_failure(attempt, str("node ", options_.node_rank, " received ", signal_name(result.signal)));
        group.stop(result.signal, options_.grace_period_s);
        break;
      }
      if (group.any_failed()) {
        result.outcome = Outcome::kFailed;
        // Tell the other nodes first, so they stop while this one waits out the grace period.
        const ErrorRecords early = read_error_records(group.workers());
        report_failure(attempt, str(describe_root_cause(group.workers(), early), " on node ", options_.node_rank));
        group.stop(SIGTERM, options_.grace_period_s);
        break;
      }
      if (options_.nnodes > 1) {
        if (auto peer = rendezvous_.reported_failure(attempt)) {
          result.outcome = Outcome::kPeerFailed;
          result.peer_failure = *peer;
          group.stop(SIGTERM, options_.grace_period_s);
          break;
        }
      }
      if (group.all_ended()) {
        group.finish();
        const ExitVote vote =
            rendezvous_.exit_barrier(attempt, options_.monitor_interval_s, [this] { return take_signal(); });
        result.signal = pending_signal_;
        if (vote == ExitVote::kAllSucceeded) {
          result.outcome = Outcome::kSucceeded;
        } else if (vote == ExitVote::kInterrupted) {
          result.outcome = Outcome::kInterrupted;
        } else {
          result.outcome = Outcome::kPeerFailed;
          result.peer_failure = rendezvous_.reported_failure(attempt).value_or("unknown");
        }
        break;
      }
    }
    result.workers = group.workers();
    result.records = read_error_records(result.workers);
    return result;
  }

  void report_failure(int attempt, const std::string& what) {
    try {
      rendezvous_.report_failure(attempt, what);
    } catch (const std::exception& e) {
      T4G_WARN("t4grun: cannot tell the other nodes about the failure: ", e.what());
    }
  }

  // Construction order matters: until the store is reached no worker exists, so a Ctrl-C there
  // may simply end t4grun (the default action); the signal handlers come after.
  LauncherOptions options_;
  std::string program_;
  AgentRendezvous rendezvous_;
  SignalPipe signals_;
  LogRoot logs_;
  std::map<std::string, std::string> parent_env_;
  int pending_signal_ = 0;  // a signal that arrived while no workers were running
};

}  // namespace

RunResult run_agent(const LauncherOptions& options) {
  // Orphaned grandchildren of the workers are reparented to t4grun, which reaps (and so really
  // removes) them when a group ends (WorkerGroup::finish).
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  Agent agent(options);
  return agent.run();
}

}  // namespace t4g::launch
