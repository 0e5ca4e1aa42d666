#include "common/error.h"

#include <gtest/gtest.h>

namespace t4g {
namespace {

TEST(Error, FormatsContextOnOneLine) {
  ErrorContext ctx;
  ctx.file = "cfg.yaml";
  ctx.key = "train.lr";
  ctx.expected = "a number";
  ctx.got = "'fast'\nsecond line";
  Error e("wrong type", ctx);
  EXPECT_STREQ(e.what(), "cfg.yaml: train.lr: wrong type (expected a number, got 'fast' second line)");
  EXPECT_EQ(e.context().key, "train.lr");
  EXPECT_EQ(e.message(), "wrong type");
}

TEST(Error, CheckMacroThrowsWithMessage) {
  const int frames = 3;
  try {
    T4G_CHECK(frames == 49, "expected 49 frames, got ", frames);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "expected 49 frames, got 3");
  }
  EXPECT_NO_THROW(T4G_CHECK(frames == 3, "unused"));
}

TEST(Error, TensorContext) {
  ErrorContext ctx;
  ctx.tensor = "x";
  ctx.expected = "[2,3]";
  EXPECT_EQ(format_error("bad shape", ctx), "bad shape (tensor x; expected [2,3])");
  // Only what is known is printed: no "?" placeholder for a missing side.
  ErrorContext got_only;
  got_only.got = "7";
  EXPECT_EQ(format_error("bad", got_only), "bad (got 7)");
}

}  // namespace
}  // namespace t4g
