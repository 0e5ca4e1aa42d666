// The local workers of one attempt: started with fork + setsid + execve (each in its own process
// group, like torchrun's start_new_session), watched with waitpid(WNOHANG), their output pumped
// through OutputForwarder, and stopped by signalling whole process groups: SIGTERM (or a forwarded
// signal), a grace period, then SIGKILL (research/distributed_and_style.md A.1.4).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "launch/output_forwarder.h"

namespace t4g::launch {

// How to start one worker.
struct WorkerSpec {
  int rank = 0;                    // global rank (for the "[rank N]:" prefix and reports)
  int local_rank = 0;              // rank on this node
  std::string program;             // absolute path of the executable (see resolve_program)
  std::vector<std::string> args;   // argv, args[0] included
  std::vector<std::string> envp;   // the complete environment, "KEY=VALUE"
  std::string stdout_log;          // file for stdout ("" = none)
  std::string stderr_log;          // file for stderr ("" = none)
  bool stdout_to_console = true;   // show stdout on t4grun's stdout
  bool stderr_to_console = true;   // show stderr on t4grun's stderr
  std::string error_file;          // its TORCHELASTIC_ERROR_FILE (read back for reports)
};

// What happened to one worker.
struct WorkerState {
  int rank = 0;
  int local_rank = 0;
  pid_t pid = -1;
  bool running = false;
  int exit_code = 0;                 // exit status when it exited normally
  int term_signal = 0;               // signal number when a signal ended it
  double exit_time = 0;              // unix seconds when t4grun saw it end
  bool stopped_by_launcher = false;  // t4grun had signalled it before it ended
  std::string error_file;
  bool failed() const { return !running && (exit_code != 0 || term_signal != 0); }
};

// The program path execve needs: `name` itself when it contains '/', else the first executable
// match on PATH. Throws t4g::Error naming the program when there is none.
std::string resolve_program(const std::string& name);

class WorkerGroup {
 public:
  // Starts every worker. Throws t4g::Error (after killing those already started) when a pipe,
  // log file or fork fails.
  explicit WorkerGroup(const std::vector<WorkerSpec>& specs);
  // Kills and reaps whatever still runs: a group never outlives its owner.
  ~WorkerGroup();
  WorkerGroup(const WorkerGroup&) = delete;
  WorkerGroup& operator=(const WorkerGroup&) = delete;

  // Forwards available output and reaps workers that ended. Returns after at most `timeout_s`,
  // earlier when output arrives or `wake_fd` (>= 0) becomes readable.
  void poll(double timeout_s, int wake_fd);
  // Sends `signum` to every running worker's process group, keeps forwarding output for up to
  // `grace_s` while they exit, SIGKILLs the rest, then cleans up (see finish()).
  void stop(int signum, double grace_s);
  // Once every worker ended: SIGKILL what is left in their process groups, reap orphans (t4grun is
  // a child subreaper), forward the last output and close the pipes. Reaping uses waitpid(-1), so a
  // WorkerGroup must be the only source of child processes in its process (true in t4grun).
  void finish();

  const std::vector<WorkerState>& workers() const { return workers_; }
  bool all_ended() const;
  bool any_failed() const;

 private:
  struct Stream {
    int fd = -1;
    std::unique_ptr<OutputForwarder> forwarder;
  };
  void start(const WorkerSpec& spec);
  void reap(bool block);
  bool pump(double timeout_s, int wake_fd);  // true when any fd was ready

  std::vector<WorkerState> workers_;
  std::vector<Stream> streams_;  // two per worker: stdout, stderr
  bool finished_ = false;
};

}  // namespace t4g::launch
