// JsonObject: typed getters, null-as-absent, and errors that name the file and key path.
#include "common/json.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using t4g::testing::error_of;

TEST(JsonFile, TypedGettersAndErrors) {
  testing::TempDir dir;
  const std::string path = dir.file("config.json");
  testing::write_file(path, R"({"num_layers": 30, "eps": 1e-6, "ratio": 2.0, "name": "x", "flag": true,
                                "sizes": [1, 2, 3], "patch_size_t": null, "sub": {"k": "v"}})");
  const JsonObject c = JsonObject::from_file(path);
  EXPECT_EQ(c.get_int("num_layers"), 30);
  EXPECT_EQ(c.get_int("ratio"), 2) << "an integral float is accepted as an integer";
  EXPECT_DOUBLE_EQ(c.get_double("eps"), 1e-6);
  EXPECT_DOUBLE_EQ(c.get_double("num_layers"), 30.0);
  EXPECT_EQ(c.get_string("name"), "x");
  EXPECT_TRUE(c.get_bool("flag"));
  EXPECT_EQ(c.get_int_list("sizes"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_FALSE(c.has("patch_size_t"));
  EXPECT_EQ(c.get_int("patch_size_t", -1), -1);
  EXPECT_EQ(c.get_object("sub").get_string("k"), "v");

  EXPECT_EQ(error_of([&] { c.get_int("name"); }), path + ": name: wrong type (expected an integer, got \"x\")");
  EXPECT_EQ(error_of([&] { c.get_int("eps"); }), path + ": eps: wrong type (expected an integer, got 1e-06)");
  EXPECT_EQ(error_of([&] { c.get_string("missing"); }), path + ": missing: required key is missing");
  EXPECT_EQ(error_of([&] { c.get_object("sub").get_int("k"); }),
            path + ": sub.k: wrong type (expected an integer, got \"v\")");
  EXPECT_NE(error_of([&] { c.get_int_list("name"); }).find("a list of integers"), std::string::npos);
}

TEST(JsonFile, MalformedAndMissingFiles) {
  testing::TempDir dir;
  testing::write_file(dir.file("bad.json"), "{\"a\": ");
  const std::string msg = error_of([&] { read_json(dir.file("bad.json")); });
  EXPECT_EQ(msg.find(dir.file("bad.json") + ": not valid JSON: parse error at line 1"), 0u) << msg;
  EXPECT_NE(error_of([&] { read_json(dir.file("none.json")); }).find("cannot open"), std::string::npos);
  testing::write_file(dir.file("list.json"), "[1]");
  EXPECT_NE(error_of([&] { JsonObject::from_file(dir.file("list.json")); }).find("expected a JSON object"),
            std::string::npos);
}

}  // namespace
}  // namespace t4g
