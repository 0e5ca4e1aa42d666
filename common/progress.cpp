#include "common/progress.h"

#include <unistd.h>

#include <cmath>

#include "common/log.h"

namespace t4g {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

ProgressBar::ProgressBar(std::string label, int64_t total, ProgressOptions options)
    : label_(std::move(label)), total_(total), options_(std::move(options)) {
  terminal_ = options_.force_terminal >= 0 ? options_.force_terminal == 1 : ::isatty(::fileno(options_.stream)) == 1;
  start_ = last_draw_ = std::chrono::steady_clock::now();
  if (options_.enabled && terminal_) {
    std::lock_guard<std::mutex> lock(mutex_);
    draw_locked(false);
  }
}

ProgressBar::~ProgressBar() { finish(); }

int64_t ProgressBar::count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return count_;
}

void ProgressBar::update(int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  count_ += n;
  if (!options_.enabled || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (terminal_ ? 0.1 : options_.plain_interval_s)) draw_locked(false);
}

void ProgressBar::set_postfix(const std::string& postfix) {
  std::lock_guard<std::mutex> lock(mutex_);
  postfix_ = postfix;
}

void ProgressBar::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  if (options_.enabled) draw_locked(true);
}

std::string ProgressBar::line_locked(bool final) const {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // The mean rate since the start: steadier than an instantaneous one for slow, uneven steps.
  const double rate = elapsed > 0 ? static_cast<double>(count_) / elapsed : 0.0;
  std::string text = label_;
  char buf[160];
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(count_) / static_cast<double>(total_));
    std::snprintf(buf, sizeof(buf), " %3d%%", static_cast<int>(frac * 100.0));
    text += buf;
    if (terminal_) {
      const int filled = static_cast<int>(frac * options_.width);
      text += " |" + std::string(filled, '#') + std::string(options_.width - filled, ' ') + "|";
    }
    const double eta = rate > 0 ? static_cast<double>(total_ - count_) / rate : NAN;
    std::snprintf(buf, sizeof(buf), " %lld/%lld [%s<%s, %.2f %s/s]", static_cast<long long>(count_),
                  static_cast<long long>(total_), format_duration(elapsed).c_str(),
                  final ? "00:00" : format_duration(eta).c_str(), rate, options_.unit.c_str());
  } else {
    std::snprintf(buf, sizeof(buf), " %lld [%s, %.2f %s/s]", static_cast<long long>(count_),
                  format_duration(elapsed).c_str(), rate, options_.unit.c_str());
  }
  text += buf;
  if (!postfix_.empty()) text += " " + postfix_;
  return text;
}

void ProgressBar::draw_locked(bool final) {
  last_draw_ = std::chrono::steady_clock::now();
  const std::string line = line_locked(final);
  if (terminal_) {
    // \r and clear-to-end-of-line redraw in place; the final draw ends the line.
    std::fprintf(options_.stream, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
    std::fflush(options_.stream);
  } else if (options_.stream == stderr) {
    log_message(LogLevel::kInfo, line);
  } else {
    std::fprintf(options_.stream, "%s\n", line.c_str());
    std::fflush(options_.stream);
  }
}

}  // namespace t4g
