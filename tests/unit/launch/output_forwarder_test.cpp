// Worker output: whole lines get the "[rank N]: " prefix on the console, partial lines wait for
// their newline (or end of stream), and log files get the raw bytes.
#include "launch/output_forwarder.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "common/error.h"
#include "tests/testing.h"

namespace t4g::launch {
namespace {

TEST(OutputForwarder, PrefixesWholeLinesAndLogsRawBytes) {
  testing::TempDir dir;
  const std::string console = dir.file("console"), log = dir.file("stdout.log");
  const int fd = ::open(console.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  {
    OutputForwarder f("[rank 3]: ", fd, log);
    f.feed("hel", 3);
    f.feed("lo\nwor", 6);
    f.feed("ld\n\nlast", 8);
    f.finish();
  }
  ::close(fd);
  EXPECT_EQ(testing::read_file(console), "[rank 3]: hello\n[rank 3]: world\n[rank 3]: \n[rank 3]: last\n");
  EXPECT_EQ(testing::read_file(log), "hello\nworld\n\nlast");
}

TEST(OutputForwarder, FileOnlyAndBadLogPath) {
  testing::TempDir dir;
  {
    OutputForwarder f("[rank 0]: ", -1, dir.file("only.log"));
    f.feed("x\n", 2);
  }
  EXPECT_EQ(testing::read_file(dir.file("only.log")), "x\n");
  try {
    OutputForwarder bad("p", -1, dir.file("missing-folder/x.log"));
    FAIL() << "opened a log in a missing folder";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing-folder/x.log"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace t4g::launch
