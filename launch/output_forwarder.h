// One worker stream (stdout or stderr) on its way out of t4grun: whole lines go to the console
// with a "[rank N]:" prefix (so interleaved workers stay readable) and, when asked, unprefixed to
// a log file (torchrun's -r/-t). Partial lines wait for their newline or for end of stream.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace t4g::launch {

class OutputForwarder {
 public:
  // `console_fd` < 0: not shown on the console. `log_path` empty: no file. Throws t4g::Error
  // naming the file when it cannot be opened.
  OutputForwarder(std::string prefix, int console_fd, const std::string& log_path);
  ~OutputForwarder();
  OutputForwarder(const OutputForwarder&) = delete;
  OutputForwarder& operator=(const OutputForwarder&) = delete;

  // Bytes read from the worker's pipe.
  void feed(const char* data, size_t size);
  // End of stream: flushes a last line without newline, closes the file.
  void finish();

 private:
  void emit_line(const char* begin, size_t size);

  std::string prefix_;
  int console_fd_;
  std::FILE* file_ = nullptr;
  std::string partial_;  // bytes after the last newline
};

}  // namespace t4g::launch
