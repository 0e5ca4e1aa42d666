#include "common/fs.h"

#include <ftw.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace fs = std::filesystem;

namespace t4g {

std::string temp_path_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string tmp = temp_path_for(path);
  try {
    write(tmp);
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    remove_tree(tmp);
    ErrorContext ctx;
    ctx.file = path;
    throw Error("cannot rename the finished temporary file into place: " + ec.message(), ctx);
  }
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    ErrorContext ctx;
    ctx.file = path;
    T4G_CHECK_CTX(out.good(), ctx, "cannot open for writing: ", std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    T4G_CHECK_CTX(out.good(), ctx, "write failed (disk full?)");
  });
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(in.good(), ctx, "cannot open: ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(!ec, ctx, "cannot create folder: ", ec.message());
}

namespace {
int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return ::remove(path) == 0 ? 0 : 1; }
}  // namespace

bool remove_tree(const std::string& path) noexcept {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  // Depth first (contents before their folder), without following symlinks.
  return ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

}  // namespace t4g
