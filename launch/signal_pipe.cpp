// Self-pipe signal delivery; see launch/signal_pipe.h.
#include "launch/signal_pipe.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace t4g::launch {
namespace {

std::atomic<int> g_write_fd{-1};

void on_signal(int signum) {
  const int saved = errno;  // the interrupted code may be looking at errno
  const int fd = g_write_fd.load();
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(signum);
    [[maybe_unused]] const ssize_t n = ::write(fd, &byte, 1);
  }
  errno = saved;
}

}  // namespace

SignalPipe::SignalPipe(const std::vector<int>& signals) : signals_(signals) {
  T4G_CHECK(g_write_fd.load() < 0, "SignalPipe: only one instance per process");
  int fds[2];
  T4G_CHECK(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0, "cannot create the signal pipe: ", std::strerror(errno));
  read_fd_ = fds[0];
  g_write_fd = fds[1];
  previous_.resize(signals_.size());
  for (size_t i = 0; i < signals_.size(); ++i) {
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(signals_[i], &action, &previous_[i]);
  }
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ::sigaction(SIGPIPE, &ignore, &previous_pipe_);
}

SignalPipe::~SignalPipe() {
  for (size_t i = 0; i < signals_.size(); ++i) ::sigaction(signals_[i], &previous_[i], nullptr);
  ::sigaction(SIGPIPE, &previous_pipe_, nullptr);
  const int write_fd = g_write_fd.exchange(-1);
  ::close(write_fd);
  ::close(read_fd_);
}

std::vector<int> SignalPipe::take() {
  std::vector<int> out;
  unsigned char buffer[64];
  for (;;) {
    const ssize_t n = ::read(read_fd_, buffer, sizeof(buffer));
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) out.push_back(buffer[i]);
  }
  return out;
}

}  // namespace t4g::launch
