#include <gtest/gtest.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/rng.h"
#include "tests/testing.h"

namespace t4g {
namespace {

TEST(Fs, AtomicWriteLeavesNothingOnFailure) {
  testing::TempDir dir;
  const std::string path = dir.file("out.bin");
  write_file_atomically(path, "first");
  EXPECT_EQ(read_file(path), "first");
  EXPECT_THROW(write_atomically(path, [](const std::string& tmp) {
                 testing::write_file(tmp, "partial");
                 throw Error("disk on fire");
               }),
               Error);
  // The old content survives and no temporary is left behind.
  EXPECT_EQ(read_file(path), "first");
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"out.bin"});
}

TEST(Fs, FoldersAndPaths) {
  testing::TempDir dir;
  const std::string deep = path_join(dir.path(), "a/b/c");
  make_dirs(deep);
  EXPECT_TRUE(is_directory(deep));
  write_file_atomically(path_join(deep, "f.txt"), "12345");
  EXPECT_TRUE(is_regular_file(path_join(deep, "f.txt")));
  EXPECT_EQ(file_size(path_join(deep, "f.txt")), 5u);
  EXPECT_THROW(make_dirs(path_join(deep, "f.txt")), Error);  // a file is in the way
  remove_all(path_join(dir.path(), "a"));
  EXPECT_FALSE(path_exists(path_join(dir.path(), "a")));
  remove_all(path_join(dir.path(), "a"));  // missing: no error
  EXPECT_EQ(parent_path("a/b/c.txt"), "a/b");
  EXPECT_EQ(parent_path("c.txt"), ".");
  EXPECT_EQ(parent_path("/c"), "/");
  EXPECT_EQ(file_name("a/b/c.txt"), "c.txt");
  EXPECT_EQ(file_name("a/b/"), "b");
  EXPECT_EQ(path_join("a/", "b"), "a/b");
  EXPECT_EQ(path_join("a", "/abs"), "/abs");
}

TEST(Fs, ReadMissingFileNamesIt) {
  try {
    read_file("/nonexistent/t4g.bin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("/nonexistent/t4g.bin: cannot open", 0), 0u) << e.what();
  }
}

TEST(Json, ErrorsNameFileAndKey) {
  testing::TempDir dir;
  testing::write_file(dir.file("bad.json"), "{\"a\": 1,");
  try {
    read_json(dir.file("bad.json"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json: invalid JSON"), std::string::npos) << e.what();
  }
  const Json j = parse_json(R"({"n": 3, "s": "x"})", "c.json");
  EXPECT_EQ(json_get<int>(j, "n", "c.json"), 3);
  EXPECT_EQ(json_get_or<int>(j, "m", 7, "c.json"), 7);
  EXPECT_THROW(json_get<int>(j, "s", "c.json"), Error);
  try {
    json_get<int>(j, "missing", "c.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "c.json: missing: missing key");
  }
  write_json(dir.file("w.json"), j);
  EXPECT_EQ(read_json(dir.file("w.json")), j);
}

TEST(Rng, StreamsAreReproducibleAndDistinct) {
  EXPECT_EQ(derive_seed(1, {0, 5}), derive_seed(1, {0, 5}));
  EXPECT_NE(derive_seed(1, {0, 5}), derive_seed(1, {1, 5}));
  EXPECT_NE(derive_seed(1, {0, 5}), derive_seed(1, {5, 0}));
  EXPECT_NE(derive_seed(1, {0}), derive_seed(2, {0}));
  auto g1 = make_generator(7, {0, 3});
  auto g2 = make_generator(7, {0, 3});
  auto g3 = make_generator(7, {1, 3});
  const auto a = torch::randn({16}, g1), b = torch::randn({16}, g2), c = torch::randn({16}, g3);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
}

}  // namespace
}  // namespace t4g
