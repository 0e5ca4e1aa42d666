// Helpers shared by the test suites: paths to fixtures and programs, scratch folders,
// running a program and capturing its output.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace t4g::testing {

// Absolute path of a file under tests/fixtures/.
std::string fixture(const std::string& relative);
// Absolute path of a built program (build/bin/NAME).
std::string program(const std::string& name);
// A fresh, empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;  // the process's exit status, 128+N when killed by signal N
  std::string out;     // standard output
  std::string err;     // standard error
};
// Runs `command` through /bin/sh with stdout and stderr captured separately.
CommandResult run_command(const std::string& command);

// Last modification time of a file in nanoseconds (for "was it rewritten?" checks).
int64_t modification_time_ns(const std::string& path);

// The message of the t4g::Error that fn throws, or "" when it throws none.
std::string error_of(const std::function<void()>& fn);

// Writes bytes to a file (binary).
void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

}  // namespace t4g::testing
