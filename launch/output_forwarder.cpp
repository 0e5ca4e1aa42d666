// Prefixing and logging of worker output; see launch/output_forwarder.h.
#include "launch/output_forwarder.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace t4g::launch {
namespace {

// Writes all of `data` (a console may accept it in pieces); gives up silently on a closed console
// because the workers' output must never make the supervisor fail.
void write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace

OutputForwarder::OutputForwarder(std::string prefix, int console_fd, const std::string& log_path)
    : prefix_(std::move(prefix)), console_fd_(console_fd) {
  if (!log_path.empty()) {
    file_ = std::fopen(log_path.c_str(), "wb");
    ErrorContext ctx;
    ctx.file = log_path;
    T4G_CHECK_CTX(file_ != nullptr, ctx, "cannot open worker log: ", std::strerror(errno));
  }
}

OutputForwarder::~OutputForwarder() { finish(); }

void OutputForwarder::feed(const char* data, size_t size) {
  if (file_ != nullptr) {
    std::fwrite(data, 1, size, file_);
    std::fflush(file_);  // a crashed launcher or a reader tailing the log sees everything
  }
  if (console_fd_ < 0) return;
  const char* end = data + size;
  const char* line = data;
  for (const char* p = data; p < end; ++p) {
    if (*p != '\n') continue;
    if (partial_.empty()) {
      emit_line(line, static_cast<size_t>(p - line));
    } else {
      partial_.append(line, static_cast<size_t>(p - line));
      emit_line(partial_.data(), partial_.size());
      partial_.clear();
    }
    line = p + 1;
  }
  partial_.append(line, static_cast<size_t>(end - line));
}

void OutputForwarder::finish() {
  if (console_fd_ >= 0 && !partial_.empty()) {
    emit_line(partial_.data(), partial_.size());
    partial_.clear();
  }
  if (file_ != nullptr) {
    std::fclose(file_);
    file_ = nullptr;
  }
}

void OutputForwarder::emit_line(const char* begin, size_t size) {
  // One write per line keeps lines of different workers from interleaving mid-line.
  std::string line;
  line.reserve(prefix_.size() + size + 1);
  line.append(prefix_).append(begin, size).push_back('\n');
  write_all(console_fd_, line.data(), line.size());
}

}  // namespace t4g::launch
