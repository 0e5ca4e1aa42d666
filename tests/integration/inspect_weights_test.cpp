// `t4g inspect weights` end to end: listings of the reference-made fixtures, and bad inputs made
// here byte by byte. Every bad input must end with exit code 1 and exactly one stderr line
// "t4g: error: ..." naming the file: no crash, no stack trace, nothing on stdout.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::CommandResult;
using testing::fixture;
using testing::program;
using testing::run_command;
using testing::TempDir;

CommandResult inspect(const std::string& args) { return run_command(program("t4g") + " inspect weights " + args); }

std::string file_bytes(const std::string& header, const std::string& data, uint64_t length) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return out + header + data;
}
std::string file_bytes(const std::string& header, const std::string& data) {
  return file_bytes(header, data, header.size());
}

// One bad input: exit 1, one error line naming `names` (the file, and e.g. the tensor), no stdout.
void expect_one_line_error(const std::string& path, const std::vector<std::string>& needles) {
  const CommandResult r = inspect(path);
  SCOPED_TRACE(path + " -> " + r.err);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find("t4g: error: "), 0u);
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "exactly one line";
  for (const auto& needle : needles) EXPECT_NE(r.err.find(needle), std::string::npos) << needle;
}

TEST(InspectWeights, ListsAPipeline) {
  const CommandResult r = inspect(fixture("safetensors/pipeline"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("diffusers pipeline CogVideoXPipeline"), std::string::npos);
  EXPECT_NE(r.out.find("[text_encoder] transformers T5EncoderModel: 12 tensors in 5 files"), std::string::npos);
  EXPECT_NE(r.out.find("  shared.weight"), std::string::npos);
  EXPECT_NE(r.out.find("total: 10.47 K (10,472) parameters"), std::string::npos) << r.out;
}

// A run's export lists everything that trained: the backbone (here the tiny base's whole
// pipeline), the LoRA adapters and the refiner.
TEST(InspectWeights, ListsATrainedExport) {
  const CommandResult r = inspect(fixture("trained_export/lora/export"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* part : {"transformer", "vae", "lora", "refiner"}) {
    EXPECT_NE(r.out.find(std::string("\n  ") + part + " "), std::string::npos) << part << "\n" << r.out;
  }
  EXPECT_NE(r.out.find("lora_A.weight"), std::string::npos);
  EXPECT_NE(r.out.find("proj.weight"), std::string::npos);
}

TEST(InspectWeights, JsonForFilesAndFolders) {
  for (const std::string& path : {fixture("safetensors/dtypes.safetensors"), fixture("safetensors/sharded"),
                                 fixture("safetensors/sharded/diffusion_pytorch_model.safetensors.index.json")}) {
    const CommandResult r = inspect(path + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto json = nlohmann::json::parse(r.out);
    EXPECT_EQ(json["components"].size(), 1u);
    EXPECT_GT(json["parameters"].get<int64_t>(), 0);
  }
}

TEST(InspectWeights, HelpAndUsageErrors) {
  CommandResult r = run_command(program("t4g") + " inspect weights --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--json"), std::string::npos);
  r = run_command(program("t4g") + " inspect");
  EXPECT_NE(r.exit_code, 0);
  r = run_command(program("t4g") + " inspect weights");
  EXPECT_NE(r.exit_code, 0);
}

TEST(InspectWeights, BadFilesGiveOneLine) {
  TempDir dir;
  save_safetensors(dir.file("good.safetensors"), {{"w", torch::ones({4, 4})}, {"b", torch::ones({4})}});
  const std::string good = testing::read_file(dir.file("good.safetensors"));
  ASSERT_EQ(inspect(dir.file("good.safetensors")).exit_code, 0);

  const auto write = [&](const std::string& name, const std::string& bytes) {
    testing::write_file(dir.file(name), bytes);
    return dir.file(name);
  };
  expect_one_line_error(write("truncated.safetensors", good.substr(0, good.size() - 10)),
                        {"truncated.safetensors", "past the end of the file", "tensor w"});
  expect_one_line_error(write("tiny.safetensors", good.substr(0, 5)), {"tiny.safetensors", "too small"});
  expect_one_line_error(write("long_header.safetensors", file_bytes("{}", "", 4096)),
                        {"long_header.safetensors", "header length larger than the file"});
  expect_one_line_error(write("huge_header.safetensors", file_bytes("{}", "", uint64_t{1} << 63)),
                        {"huge_header.safetensors", "header length too large"});
  expect_one_line_error(write("overlap.safetensors",
                              file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                         std::string(12, '\0'))),
                        {"overlap.safetensors", "overlap tensor 'a'", "tensor b"});
  expect_one_line_error(write("past_end.safetensors", file_bytes(R"({"a":{"dtype":"F32","shape":[4],)"
                                                                 R"("data_offsets":[0,16]}})",
                                                                 std::string(8, '\0'))),
                        {"past_end.safetensors", "past the end of the file", "tensor a"});
  expect_one_line_error(write("mismatch.safetensors", file_bytes(R"({"a":{"dtype":"F32","shape":[3],)"
                                                                 R"("data_offsets":[0,8]}})",
                                                                 std::string(8, '\0'))),
                        {"mismatch.safetensors", "do not match shape and dtype", "tensor a", "expected 12 bytes"});
  expect_one_line_error(write("dtype.safetensors", file_bytes(R"({"a":{"dtype":"F24","shape":[2],)"
                                                              R"("data_offsets":[0,6]}})",
                                                              std::string(6, '\0'))),
                        {"dtype.safetensors", "unknown dtype", "'F24'", "tensor a"});
  expect_one_line_error(write("json.safetensors", file_bytes("{\"a\":{\"dtype\":\n\"F32\"", "")),
                        {"json.safetensors", "not valid JSON"});
  expect_one_line_error(write("binary.safetensors", file_bytes(std::string("{\"\x01\xff\":[]}"), "")),
                        {"binary.safetensors", "not valid JSON"});
}

TEST(InspectWeights, MissingShardGivesOneLine) {
  TempDir dir;
  std::map<std::string, torch::Tensor> tensors;
  for (int i = 0; i < 6; ++i) tensors["layer" + std::to_string(i) + ".weight"] = torch::ones({16, 16});
  save_sharded_safetensors(dir.path(), "diffusion_pytorch_model", tensors, 2048);
  ASSERT_EQ(inspect(dir.path()).exit_code, 0);
  std::remove(dir.file("diffusion_pytorch_model-00002-of-00003.safetensors").c_str());
  expect_one_line_error(dir.path(), {"diffusion_pytorch_model.safetensors.index.json",
                                     "diffusion_pytorch_model-00002-of-00003.safetensors", "does not exist"});
}

TEST(InspectWeights, MissingPathGivesOneLine) {
  TempDir dir;
  expect_one_line_error(dir.file("nowhere"), {"nowhere", "no such file or folder"});
  expect_one_line_error(dir.path(), {dir.path(), "not a diffusers pipeline"});
}

}  // namespace
}  // namespace t4g
