// Signals turned into bytes on a pipe (the self-pipe trick), so the supervision loop sees them in
// the same poll() as the workers' output and can forward them (research A.1.5) outside a signal
// handler. One instance per process; the previous handlers come back when it is destroyed.
#pragma once

#include <csignal>
#include <vector>

namespace t4g::launch {

class SignalPipe {
 public:
  // Installs handlers for `signals`. SIGPIPE is ignored while the object lives (a closed console
  // must not kill the supervisor). Throws t4g::Error if a second instance is made.
  explicit SignalPipe(const std::vector<int>& signals);
  ~SignalPipe();
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  // Readable when a signal arrived: put it in poll().
  int fd() const { return read_fd_; }
  // Signals received since the last call, in arrival order.
  std::vector<int> take();

 private:
  int read_fd_ = -1;
  std::vector<int> signals_;
  std::vector<struct sigaction> previous_;
  struct sigaction previous_pipe_ {};
};

}  // namespace t4g::launch
