// A progress bar with rate and ETA. On a terminal it redraws one line in place (at most 10 times
// a second); elsewhere (CI, log files, t4grun's prefixed output) it prints a plain log line at
// most every `plain_interval_s` seconds and once at the end, so logs stay readable.
// update() is thread-safe: worker threads may report progress directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace t4g {

struct ProgressOptions {
  std::string unit = "it";          // what is counted: "it", "videos", "steps"
  double plain_interval_s = 10.0;   // seconds between plain lines when not on a terminal
  int width = 30;                   // bar width in characters (terminal mode)
  bool enabled = true;              // false: print nothing (quiet mode, non-zero ranks)
  int force_terminal = -1;          // -1: detect with isatty(stderr); 0/1: force (tests)
  FILE* stream = stderr;            // where to draw
};

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, ProgressOptions options = {});
  ~ProgressBar();  // finishes the bar if finish() was not called
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Adds n to the count and redraws when due.
  void update(int64_t n = 1);
  // Text shown after the numbers (e.g. "loss 0.123").
  void set_postfix(const std::string& postfix);
  // Draws the final state and ends the line. Idempotent.
  void finish();

  int64_t count() const;

 private:
  void draw_locked(bool final);
  std::string line_locked(bool final) const;

  std::string label_;
  int64_t total_;
  ProgressOptions options_;
  bool terminal_ = false;
  bool finished_ = false;
  int64_t count_ = 0;
  std::string postfix_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  mutable std::mutex mutex_;
};

// "1:02:03" or "02:03" for a duration in seconds; "?" when not finite.
std::string format_duration(double seconds);

}  // namespace t4g
