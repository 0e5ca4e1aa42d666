// Parity with the reference implementations (fixtures made by tests/fixtures/safetensors/
// make_fixtures.py with safetensors 0.8, huggingface_hub 2.4, diffusers 0.42, transformers 5.23):
// every dtype decodes to the reference's bytes and values, and our writer reproduces the
// reference's files byte for byte (single file, and diffusers-style shards with their index).
// Tolerance: none; bytes and values are compared exactly (NaN by isnan).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/json.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "tests/testing.h"


namespace t4g {
namespace {

using testing::fixture;

std::string to_hex(const torch::Tensor& t) {
  static const char* digits = "0123456789abcdef";
  torch::Tensor c = t.contiguous();
  const auto* p = static_cast<const unsigned char*>(c.data_ptr());
  std::string out;
  for (int64_t i = 0; i < c.numel() * static_cast<int64_t>(c.element_size()); ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

// Compares a decoded floating value with the fixture's JSON value (a number or "nan"/"inf"/"-inf").
void expect_float(double got, const nlohmann::json& want, const std::string& where) {
  if (want.is_string()) {
    const std::string s = want.get<std::string>();
    if (s == "nan") {
      EXPECT_TRUE(std::isnan(got)) << where;
    } else {
      EXPECT_EQ(got, s == "inf" ? INFINITY : -INFINITY) << where;
    }
    return;
  }
  EXPECT_EQ(got, want.get<double>()) << where;
  EXPECT_EQ(std::signbit(got), std::signbit(want.get<double>())) << where << " (sign of zero)";
}

TEST(SafetensorsParity, EveryDtypeDecodesLikeTheReference) {
  const nlohmann::json expected = read_json(fixture("safetensors/dtypes.json"));
  SafetensorsFile file(fixture("safetensors/dtypes.safetensors"));
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(file.names().size(), expected["tensors"].size());
  for (const auto& [name, want] : expected["tensors"].items()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(file.contains(name));
    EXPECT_EQ(file.info(name).dtype, want["dtype"].get<std::string>());
    const torch::Tensor t = file.tensor(name);
    EXPECT_EQ(t.sizes().vec(), want["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(to_hex(t), want["hex"].get<std::string>());
    const torch::Tensor flat = t.reshape({-1});
    const auto& values = want["values"];
    ASSERT_EQ(static_cast<int64_t>(values.size()), flat.numel());
    if (t.scalar_type() == torch::kComplexFloat) {
      const auto parts = torch::view_as_real(flat).to(torch::kFloat64);
      for (int64_t i = 0; i < flat.numel(); ++i) {
        expect_float(parts[i][0].item<double>(), values[i][0], name + " re " + std::to_string(i));
        expect_float(parts[i][1].item<double>(), values[i][1], name + " im " + std::to_string(i));
      }
    } else if (c10::isFloatingType(t.scalar_type())) {
      const auto d = flat.to(torch::kFloat32).to(torch::kFloat64);
      for (int64_t i = 0; i < flat.numel(); ++i) expect_float(d[i].item<double>(), values[i], name + " " + std::to_string(i));
    } else if (t.scalar_type() == torch::kUInt64) {
      const auto* p = flat.contiguous().data_ptr<uint64_t>();
      for (int64_t i = 0; i < flat.numel(); ++i) EXPECT_EQ(p[i], values[i].get<uint64_t>()) << i;
    } else {
      const auto v = flat.to(torch::kInt64);
      for (int64_t i = 0; i < flat.numel(); ++i) EXPECT_EQ(v[i].item<int64_t>(), values[i].get<int64_t>()) << i;
    }
  }
}

TEST(SafetensorsParity, WriterIsByteIdenticalToReference) {
  const std::string reference = fixture("safetensors/dtypes.safetensors");
  SafetensorsFile file(reference);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& name : file.names()) tensors[name] = file.tensor(name);
  testing::TempDir dir;
  save_safetensors(dir.file("ours.safetensors"), tensors, file.metadata());
  EXPECT_EQ(testing::read_file(dir.file("ours.safetensors")), testing::read_file(reference));
}

TEST(SafetensorsParity, ShardedWriterMatchesHubAndDiffusers) {
  const std::string folder = fixture("safetensors/sharded");
  SafetensorsCheckpoint reference(folder);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& name : reference.names()) tensors[name] = reference.tensor(name);
  const uint64_t max_shard = std::stoull(testing::read_file(folder + "/max_shard_size.txt"));

  testing::TempDir dir;
  save_sharded_safetensors(dir.path(), "diffusion_pytorch_model", tensors, max_shard);
  std::vector<std::string> ours, theirs;
  for (const auto& name : list_dir(dir.path())) ours.push_back(name);
  for (const auto& name : list_dir(folder)) {
    if (name != "max_shard_size.txt") theirs.push_back(name);
  }
  std::sort(ours.begin(), ours.end());
  std::sort(theirs.begin(), theirs.end());
  ASSERT_EQ(ours, theirs);
  for (const auto& name : ours) {
    EXPECT_EQ(testing::read_file(dir.file(name)), testing::read_file(folder + "/" + name)) << name;
  }
}

TEST(SafetensorsParity, ReadsDiffusersAndTransformersShardedFolders) {
  const nlohmann::json expected = read_json(fixture("safetensors/pipeline.json"));
  for (const auto& [component, want] : expected["components"].items()) {
    SCOPED_TRACE(component);
    SafetensorsCheckpoint ckpt(fixture("safetensors/pipeline/" + component));
    std::vector<std::string> files;
    for (const auto& f : ckpt.files()) files.push_back(file_name(f));
    std::sort(files.begin(), files.end());
    EXPECT_EQ(files, want["files"].get<std::vector<std::string>>());
    ASSERT_EQ(ckpt.names().size(), want["tensors"].size());
    for (const auto& [name, info] : want["tensors"].items()) {
      EXPECT_EQ(ckpt.info(name).dtype, info["dtype"].get<std::string>()) << name;
      EXPECT_EQ(ckpt.info(name).shape, info["shape"].get<std::vector<int64_t>>()) << name;
      EXPECT_EQ(file_name(ckpt.file_of(name)), info["file"].get<std::string>()) << name;
      EXPECT_EQ(ckpt.tensor(name).sizes().vec(), info["shape"].get<std::vector<int64_t>>()) << name;
    }
  }
}

}  // namespace
}  // namespace t4g
