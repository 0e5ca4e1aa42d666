#include "common/log.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace t4g {
namespace {

LogLevel initial_level() {
  const char* env = std::getenv("T4G_LOG_LEVEL");
  if (env == nullptr || *env == '\0') return LogLevel::kInfo;
  try {
    return parse_log_level(env);
  } catch (const Error&) {
    return LogLevel::kInfo;
  }
}

std::atomic<int>& level_storage() {
  static std::atomic<int> level{static_cast<int>(initial_level())};
  return level;
}
std::atomic<int> g_rank{-1};
std::mutex g_mutex;

}  // namespace

void set_log_level(LogLevel level) { level_storage() = static_cast<int>(level); }
LogLevel log_level() { return static_cast<LogLevel>(level_storage().load()); }
void set_log_rank(int rank) { g_rank = rank; }

LogLevel parse_log_level(const std::string& text) {
  if (text == "debug") return LogLevel::kDebug;
  if (text == "info") return LogLevel::kInfo;
  if (text == "warn" || text == "warning") return LogLevel::kWarn;
  if (text == "error") return LogLevel::kError;
  ErrorContext ctx;
  ctx.key = "log level";
  ctx.expected = "debug|info|warn|error";
  ctx.got = text;
  throw Error("unknown log level", ctx);
}

void log_message(LogLevel level, const std::string& text) {
  static const char kLetters[] = {'D', 'I', 'W', 'E'};
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[16];
  std::strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
  const int rank = g_rank.load();
  std::lock_guard<std::mutex> lock(g_mutex);
  if (rank >= 0) {
    std::fprintf(stderr, "[t4g %c %s r%d] %s\n", kLetters[static_cast<int>(level)], stamp, rank, text.c_str());
  } else {
    std::fprintf(stderr, "[t4g %c %s] %s\n", kLetters[static_cast<int>(level)], stamp, text.c_str());
  }
  std::fflush(stderr);
}

}  // namespace t4g
