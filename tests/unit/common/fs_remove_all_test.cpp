// remove_tree, the replacement for std::filesystem::remove_all (whose libtorch.so copy crashes on
// non-empty folders): nested folders, plain files, symlinks not followed, missing paths.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "tests/testing.h"

namespace t4g {
namespace {

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

TEST(RemoveAll, RemovesNestedFoldersButNotSymlinkTargets) {
  testing::TempDir dir;
  make_dirs(dir.file("tree/a/b"));
  testing::write_file(dir.file("tree/a/b/f.bin"), "x");
  testing::write_file(dir.file("tree/top.txt"), "y");
  make_dirs(dir.file("outside"));
  testing::write_file(dir.file("outside/keep.txt"), "z");
  ASSERT_EQ(::symlink(dir.file("outside").c_str(), dir.file("tree/link").c_str()), 0);
  EXPECT_TRUE(remove_all(dir.file("tree")));
  EXPECT_FALSE(exists(dir.file("tree")));
  EXPECT_TRUE(exists(dir.file("outside/keep.txt")));
}

TEST(RemoveAll, FilesAndMissingPaths) {
  testing::TempDir dir;
  testing::write_file(dir.file("f"), "x");
  EXPECT_TRUE(remove_all(dir.file("f")));
  EXPECT_FALSE(exists(dir.file("f")));
  EXPECT_TRUE(remove_all(dir.file("never-existed")));
}

}  // namespace
}  // namespace t4g
