#include "tests/testing.h"

#include "common/fs.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace t4g::testing {

std::string fixture(const std::string& relative) {
  return std::string(T4G_SOURCE_DIR) + "/tests/fixtures/" + relative;
}

std::string program(const std::string& name) { return std::string(T4G_BIN_DIR) + "/" + name; }

TempDir::TempDir() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path p = fs::temp_directory_path() / ("t4g-test-" + std::to_string(rd()));
    if (fs::create_directory(p)) {
      path_ = p.string();
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary folder");
}

// Not fs::remove_all: libtorch.so's exported copy of it crashes on non-empty folders (common/fs.h).
TempDir::~TempDir() { t4g::remove_tree(path_); }

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
