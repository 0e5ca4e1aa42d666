// Starting, watching and stopping worker processes; see launch/worker_group.h.
#include "launch/worker_group.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/error.h"
#include "common/log.h"

namespace t4g::launch {
namespace {

double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A pipe whose ends are never 0, 1 or 2 (when t4grun itself was started with a closed stdio
// stream, a pipe could land there and the child's dup2 would clobber it).
void make_pipe(int fds[2]) {
  T4G_CHECK(::pipe2(fds, O_CLOEXEC) == 0, "cannot create a pipe for worker output: ", std::strerror(errno));
  for (int i = 0; i < 2; ++i) {
    if (fds[i] > 2) continue;
    const int moved = ::fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    ::close(fds[i]);
    fds[i] = moved;
  }
}

// Runs in the forked child, before execve: only async-signal-safe calls (the parent has threads).
[[noreturn]] void exec_child(const char* program, char* const* argv, char* const* envp, int out_fd, int err_fd,
                             int max_fd) {
  ::setsid();  // own session and process group: killpg reaches the worker and its children
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  // t4grun's handlers and its ignored SIGPIPE must not leak into the worker.
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  ::dup2(out_fd, STDOUT_FILENO);
  ::dup2(err_fd, STDERR_FILENO);
  // Close everything else (the store's sockets, other workers' pipes).
  if (::close_range(3, ~0U, 0) != 0) {
    for (int fd = 3; fd < max_fd; ++fd) ::close(fd);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(program, argv, envp);
  const char msg[] = "t4grun: cannot execute the worker program\n";
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
  ::_exit(127);
}

// The worker's process group, and the worker itself: a child that has not reached setsid() yet
// has no group of its own, and killpg alone would miss it (the signal stays pending while the
// child blocks signals, and acts once it unblocks them).
void signal_worker(pid_t pid, int signum) {
  ::killpg(pid, signum);
  ::kill(pid, signum);
}

}  // namespace

std::string resolve_program(const std::string& name) {
  ErrorContext ctx;
  ctx.file = name;
  T4G_CHECK_CTX(!name.empty(), ctx, "empty worker program name");
  if (name.find('/') != std::string::npos) {
    T4G_CHECK_CTX(::access(name.c_str(), X_OK) == 0, ctx, "worker program is not an executable file: ",
                  std::strerror(errno));
    return name;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t colon = dirs.find(':', start);
    std::string dir = dirs.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  throw Error("worker program not found on PATH", ctx);
}

WorkerGroup::WorkerGroup(const std::vector<WorkerSpec>& specs) {
  workers_.reserve(specs.size());
  streams_.reserve(2 * specs.size());
  try {
    for (const WorkerSpec& spec : specs) start(spec);
  } catch (...) {
    stop(SIGKILL, 0);
    throw;
  }
}

WorkerGroup::~WorkerGroup() {
  try {
    if (!all_ended()) stop(SIGKILL, 0);
    finish();
  } catch (...) {
  }
}

void WorkerGroup::start(const WorkerSpec& spec) {
  int out[2], err[2];
  make_pipe(out);
  try {
    make_pipe(err);
  } catch (...) {
    ::close(out[0]);
    ::close(out[1]);
    throw;
  }
  const std::string prefix = str("[rank ", spec.rank, "]: ");
  Stream out_stream, err_stream;
  out_stream.fd = out[0];
  err_stream.fd = err[0];
  try {
    out_stream.forwarder =
        std::make_unique<OutputForwarder>(prefix, spec.stdout_to_console ? STDOUT_FILENO : -1, spec.stdout_log);
    err_stream.forwarder =
        std::make_unique<OutputForwarder>(prefix, spec.stderr_to_console ? STDERR_FILENO : -1, spec.stderr_log);
  } catch (...) {
    for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
    throw;
  }
  // Everything execve needs is built before fork: the child may not allocate.
  std::vector<char*> argv, envp;
  for (const std::string& a : spec.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : spec.envp) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const long open_max = ::sysconf(_SC_OPEN_MAX);
  const int max_fd = open_max > 0 && open_max < INT_MAX ? static_cast<int>(open_max) : 65536;

  // Block signals across fork so that a signal cannot run t4grun's handler inside the child.
  sigset_t all, previous;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &previous);
  const pid_t pid = ::fork();
  if (pid == 0) exec_child(spec.program.c_str(), argv.data(), envp.data(), out[1], err[1], max_fd);
  const int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  ::close(out[1]);
  ::close(err[1]);
  if (pid < 0) {
    ::close(out[0]);
    ::close(err[0]);
    throw Error(str("cannot start worker rank ", spec.rank, ": fork failed: ", std::strerror(fork_errno)));
  }
  ::fcntl(out[0], F_SETFL, ::fcntl(out[0], F_GETFL) | O_NONBLOCK);
  ::fcntl(err[0], F_SETFL, ::fcntl(err[0], F_GETFL) | O_NONBLOCK);
  WorkerState state;
  state.rank = spec.rank;
  state.local_rank = spec.local_rank;
  state.pid = pid;
  state.running = true;
  state.error_file = spec.error_file;
  workers_.push_back(state);
  streams_.push_back(std::move(out_stream));
  streams_.push_back(std::move(err_stream));
  T4G_DEBUG("t4grun: started rank ", spec.rank, " (pid ", pid, "): ", spec.program);
}

bool WorkerGroup::pump(double timeout_s, int wake_fd) {
  std::vector<struct pollfd> fds;
  std::vector<size_t> which;
  for (size_t i = 0; i < streams_.size(); ++i) {
    if (streams_[i].fd < 0) continue;
    fds.push_back({streams_[i].fd, POLLIN, 0});
    which.push_back(i);
  }
  if (wake_fd >= 0) fds.push_back({wake_fd, POLLIN, 0});
  const int timeout_ms = static_cast<int>(std::max(0.0, timeout_s) * 1000.0);
  const int ready = ::poll(fds.data(), fds.size(), timeout_ms);
  if (ready <= 0) return false;
  char buffer[65536];
  for (size_t k = 0; k < which.size(); ++k) {
    if (fds[k].revents == 0) continue;
    Stream& s = streams_[which[k]];
    // Bounded per call, so one chatty worker cannot starve the others or the monitor.
    for (int rounds = 0; rounds < 16; ++rounds) {
      const ssize_t n = ::read(s.fd, buffer, sizeof(buffer));
      if (n > 0) {
        s.forwarder->feed(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EINTR)) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      s.forwarder->finish();  // end of stream (or a read error: treat alike)
      ::close(s.fd);
      s.fd = -1;
      break;
    }
  }
  return true;
}

void WorkerGroup::reap(bool block) {
  for (WorkerState& w : workers_) {
    if (!w.running) continue;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(w.pid, &status, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) continue;
    w.running = false;
    w.exit_time = now_unix();
    if (r < 0) {  // cannot happen for our own child; record it as a failure rather than spin
      w.exit_code = 255;
    } else if (WIFEXITED(status)) {
      w.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      w.term_signal = WTERMSIG(status);
    }
  }
}

void WorkerGroup::poll(double timeout_s, int wake_fd) {
  pump(timeout_s, wake_fd);
  reap(/*block=*/false);
}

bool WorkerGroup::all_ended() const {
  for (const WorkerState& w : workers_) {
    if (w.running) return false;
  }
  return true;
}

bool WorkerGroup::any_failed() const {
  for (const WorkerState& w : workers_) {
    if (w.failed()) return true;
  }
  return false;
}

void WorkerGroup::stop(int signum, double grace_s) {
  for (WorkerState& w : workers_) {
    if (!w.running) continue;
    signal_worker(w.pid, signum);
    w.stopped_by_launcher = true;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
  reap(false);
  while (!all_ended() && std::chrono::steady_clock::now() < deadline) {
    pump(0.05, -1);
    reap(false);
  }
  for (WorkerState& w : workers_) {
    if (w.running) signal_worker(w.pid, SIGKILL);
  }
  reap(/*block=*/true);  // SIGKILL cannot be caught: this returns
  finish();
}

void WorkerGroup::finish() {
  if (finished_) return;
  finished_ = true;
  // Children of the workers left in their process groups.
  for (const WorkerState& w : workers_) {
    if (w.pid > 0) ::killpg(w.pid, SIGKILL);
  }
  // Forward the last output; a pipe still held open by an escaped grandchild is not waited for long.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    bool open = false;
    for (const Stream& s : streams_) open = open || s.fd >= 0;
    if (!open || std::chrono::steady_clock::now() >= deadline) break;
    pump(0.05, -1);
  }
  for (Stream& s : streams_) {
    if (s.forwarder) s.forwarder->finish();
    if (s.fd >= 0) ::close(s.fd);
    s.fd = -1;
  }
  // Orphaned descendants were reparented to t4grun (a child subreaper): reap them, briefly.
  const auto reap_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(-1, &status, WNOHANG);
    if (r > 0) continue;
    if (r < 0 || std::chrono::steady_clock::now() >= reap_deadline) {
      if (r == 0) T4G_WARN("t4grun: a worker left processes running outside its process group");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace t4g::launch
