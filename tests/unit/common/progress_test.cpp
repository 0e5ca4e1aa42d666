#include "common/progress.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace t4g {
namespace {

std::string read_stream(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  return out;
}

TEST(Progress, FormatDuration) {
  EXPECT_EQ(format_duration(0), "00:00");
  EXPECT_EQ(format_duration(125), "02:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(NAN), "?");
}

TEST(Progress, PlainModePrintsFinalLineWithCountsAndRate) {
  FILE* f = std::tmpfile();
  {
    ProgressOptions o;
    o.stream = f;
    o.force_terminal = 0;
    o.unit = "videos";
    ProgressBar bar("prepare", 4, o);
    bar.update(2);
    bar.update(2);
    bar.set_postfix("ok");
  }
  const std::string out = read_stream(f);
  std::fclose(f);
  // Plain mode: no carriage returns or escape codes, one line at the end.
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_NE(out.find("prepare 100% 4/4 ["), std::string::npos) << out;
  EXPECT_NE(out.find("videos/s] ok\n"), std::string::npos) << out;
}

TEST(Progress, TerminalModeRedrawsInPlace) {
  FILE* f = std::tmpfile();
  ProgressOptions o;
  o.stream = f;
  o.force_terminal = 1;
  o.width = 10;
  ProgressBar bar("steps", 10, o);
  bar.update(5);
  bar.update(5);
  bar.finish();
  bar.finish();  // idempotent: one final line
  const std::string out = read_stream(f);
  std::fclose(f);
  EXPECT_NE(out.find("\rsteps   0% |          |"), std::string::npos) << out;
  EXPECT_NE(out.find("\rsteps 100% |##########| 10/10"), std::string::npos) << out;
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
}

TEST(Progress, ThreadSafeCounting) {
  ProgressOptions o;
  o.enabled = false;
  ProgressBar bar("x", 4000, o);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { for (int i = 0; i < 1000; ++i) bar.update(); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(bar.count(), 4000);
}

}  // namespace
}  // namespace t4g
