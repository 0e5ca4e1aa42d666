// Logging with levels. One line per message: "[t4g I 12:00:01 r0] text". The level comes from
// T4G_LOG_LEVEL (debug|info|warn|error, default info) or set_log_level(); the rank tag from
// set_log_rank() (set once the distributed environment is known). Thread-safe.
#pragma once

#include <atomic>
#include <string>

#include "common/error.h"  // t4g::str, used by the macros below

namespace t4g {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug", "info", "warn", "error"; throws t4g::Error otherwise.
LogLevel parse_log_level(const std::string& text);
// Rank shown in every line; negative hides it (single process).
void set_log_rank(int rank);
void log_message(LogLevel level, const std::string& text);

}  // namespace t4g

#define T4G_LOG(level, ...)                                     \
  do {                                                          \
    if (static_cast<int>(level) >= static_cast<int>(::t4g::log_level())) \
      ::t4g::log_message(level, ::t4g::str(__VA_ARGS__));       \
  } while (0)
#define T4G_DEBUG(...) T4G_LOG(::t4g::LogLevel::kDebug, __VA_ARGS__)
#define T4G_INFO(...) T4G_LOG(::t4g::LogLevel::kInfo, __VA_ARGS__)
#define T4G_WARN(...) T4G_LOG(::t4g::LogLevel::kWarn, __VA_ARGS__)
#define T4G_ERROR(...) T4G_LOG(::t4g::LogLevel::kError, __VA_ARGS__)
