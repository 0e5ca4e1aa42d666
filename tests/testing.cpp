#include "tests/testing.h"

#include "common/error.h"
#include "common/fs.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>


namespace t4g::testing {

std::string fixture(const std::string& relative) {
  return std::string(T4G_SOURCE_DIR) + "/tests/fixtures/" + relative;
}

std::string program(const std::string& name) { return std::string(T4G_BIN_DIR) + "/" + name; }

TempDir::TempDir() : path_(make_temp_dir("t4g-test-")) {}

TempDir::~TempDir() { remove_all(path_); }

int64_t modification_time_ns(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path);
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

CommandResult run_command(const std::string& command) {
  TempDir tmp;
  const std::string out_path = tmp.file("stdout"), err_path = tmp.file("stderr");
  const std::string full = command + " >" + out_path + " 2>" + err_path + " </dev/null";
  CommandResult r;
  const int status = std::system(full.c_str());
  if (status == -1) throw std::runtime_error("cannot run: " + command);
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.exit_code = 128 + WTERMSIG(status);
  }
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

}  // namespace t4g::testing
