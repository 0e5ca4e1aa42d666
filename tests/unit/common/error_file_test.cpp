// The torchelastic error file: what write_error_file produces is the JSON torchrun reads (the dict
// form of torch/distributed/elastic/multiprocessing/errors), and read_error_file accepts both
// forms torchrun accepts and survives garbage.
#include "common/error_file.h"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "tests/testing.h"

namespace t4g {
namespace {

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TEST(ErrorFile, WritesTorchelasticDictForm) {
  testing::TempDir dir;
  const std::string path = dir.file("attempt_0/1/error.json");  // parents are created
  const int64_t before = now_seconds();
  write_error_file(path, "t4g::Error: weights.safetensors: missing tensor", "line one\nline two");
  const int64_t after = now_seconds();
  const auto doc = nlohmann::json::parse(testing::read_file(path));
  EXPECT_EQ(doc["message"]["message"], "t4g::Error: weights.safetensors: missing tensor");
  EXPECT_EQ(doc["message"]["extraInfo"]["py_callstack"], "line one\nline two");
  // torchrun does int(timestamp): it must be a string of whole seconds.
  ASSERT_TRUE(doc["message"]["extraInfo"]["timestamp"].is_string());
  const int64_t stamp = std::stoll(doc["message"]["extraInfo"]["timestamp"].get<std::string>());
  EXPECT_GE(stamp, before);
  EXPECT_LE(stamp, after);

  const auto record = read_error_file(path);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->message, "t4g::Error: weights.safetensors: missing tensor");
  EXPECT_EQ(record->details, "line one\nline two");
  EXPECT_EQ(record->timestamp, stamp);
}

TEST(ErrorFile, EmptyPathWritesNothing) {
  EXPECT_NO_THROW(write_error_file("", "message", "details"));
  EXPECT_FALSE(read_error_file("").has_value());
}

TEST(ErrorFile, ReadsPlainStringFormAndMissingFiles) {
  testing::TempDir dir;
  EXPECT_FALSE(read_error_file(dir.file("absent.json")).has_value());
  testing::write_file(dir.file("plain.json"), R"({"message": "boom", "timestamp": "1700000000"})");
  const auto plain = read_error_file(dir.file("plain.json"));
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->message, "boom");
  EXPECT_EQ(plain->timestamp, 1700000000);
}

TEST(ErrorFile, GarbageBecomesAMessageNotAnException) {
  testing::TempDir dir;
  testing::write_file(dir.file("bad.json"), "{not json");
  const auto record = read_error_file(dir.file("bad.json"));
  ASSERT_TRUE(record.has_value());
  EXPECT_NE(record->message.find("not torchelastic JSON"), std::string::npos);
  EXPECT_EQ(record->timestamp, 0);
}

TEST(ErrorFile, UnwritablePathNamesTheFile) {
  testing::TempDir dir;
  testing::write_file(dir.file("a_file"), "x");
  try {
    write_error_file(dir.file("a_file/error.json"), "m", "d");  // parent is a file
    FAIL() << "wrote below a file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a_file"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace t4g
