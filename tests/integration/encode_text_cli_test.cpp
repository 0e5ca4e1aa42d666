// `t4g encode-text` end to end on the transformers-made fixture pipeline (tests/fixtures/t5):
// prompt_embeds equal transformers' last_hidden_state within 1e-5 (fp32 CPU) and input_ids
// exactly; an over-long prompt gives one warning line; the cache answers a second run; bad input
// ends with exit code 1 and one stderr line naming the folder.
#include <gtest/gtest.h>

#include "common/json.h"
#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::CommandResult;
using testing::fixture;
using testing::program;
using testing::run_command;
using testing::TempDir;

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (const char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

CommandResult encode_text(const std::string& args) {
  // The fixtures are fp32 on the CPU; pin both where a test does not choose (auto is CUDA and bf16 on a GPU).
  std::string pin;
  if (args.find("--device") == std::string::npos) pin += " --device cpu";
  if (args.find("--dtype") == std::string::npos) pin += " --dtype fp32";
  return run_command("T4G_LOG_LEVEL=info " + program("t4g") + " encode-text " + args + pin);
}

int64_t count(const std::string& text, const std::string& needle) {
  int64_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

TEST(EncodeTextCli, MatchesTransformersAndCaches) {
  TempDir dir;
  const Json cases = read_json(fixture("t5/tokenizer_expected.json")).at("cases");
  std::string prompts;
  for (const int i : {0, 1, 9}) prompts += " --prompt " + quoted(cases[i].at("prompt").get<std::string>());
  const std::string common = "--model " + fixture("t5/pipeline") + prompts + " --cache " + dir.file("cache");
  const CommandResult r = encode_text(common + " --out " + dir.file("out.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(count(r.err, "T5 tokenizer: prompt 2 has 261 tokens"), 1) << r.err;  // the over-long one
  // Prompt 1 is "": the negative prompt (default "") and the empty prompt reuse its cached row.
  EXPECT_NE(r.err.find("1 hits, 3 misses"), std::string::npos) << r.err;

  const auto want = load_safetensors(fixture("t5/encoder_expected.safetensors"));
  SafetensorsFile out(dir.file("out.safetensors"));
  const auto embeds = out.tensor("prompt_embeds");
  EXPECT_EQ(embeds.scalar_type(), torch::kFloat32);
  EXPECT_EQ(embeds.sizes(), (std::vector<int64_t>{3, 226, 32}));
  EXPECT_LE((embeds - want.at("last_hidden_state")).abs().max().item<double>(), 1e-5);
  EXPECT_TRUE(torch::equal(out.tensor("input_ids"), want.at("input_ids")));
  EXPECT_TRUE(torch::equal(out.tensor("attention_mask"), want.at("attention_mask")));
  EXPECT_EQ(out.metadata().at("max_length"), "226");
  EXPECT_EQ(parse_json(out.metadata().at("prompts"), "metadata").size(), 3u);
  // One file for sample (CFG) and transfer: the negative prompt's rows and T5("") once.
  EXPECT_EQ(out.tensor("negative_prompt_embeds").sizes(), (std::vector<int64_t>{3, 226, 32}));
  EXPECT_EQ(out.tensor("empty_prompt_embeds").sizes(), (std::vector<int64_t>{1, 226, 32}));
  for (int64_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(out.tensor("negative_prompt_embeds")[i], embeds[1]));
  EXPECT_TRUE(torch::equal(out.tensor("empty_prompt_embeds")[0], embeds[1]));

  // Second run: every prompt from the cache, the same bytes out.
  const CommandResult again = encode_text(common + " --out " + dir.file("again.safetensors"));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("4 hits, 0 misses"), std::string::npos) << again.err;
  EXPECT_TRUE(torch::equal(SafetensorsFile(dir.file("again.safetensors")).tensor("prompt_embeds"), embeds));
}

TEST(EncodeTextCli, MaxLengthAndBf16) {
  TempDir dir;
  const CommandResult r = encode_text("--model " + fixture("t5/pipeline") +
                                      " --prompt 'a cat' --prompt '' --max-length 16 --dtype bf16 --out " +
                                      dir.file("out.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SafetensorsFile out(dir.file("out.safetensors"));
  EXPECT_EQ(out.tensor("prompt_embeds").sizes(), (std::vector<int64_t>{2, 16, 32}));
  EXPECT_EQ(out.tensor("prompt_embeds").scalar_type(), torch::kFloat32);  // written float32 whatever the compute dtype
  EXPECT_EQ(out.metadata().at("dtype"), "bf16");
  EXPECT_EQ(out.tensor("input_ids")[1][0].item<int64_t>(), 1);  // empty prompt: </s> then padding
  EXPECT_EQ(out.tensor("attention_mask")[1].sum().item<int64_t>(), 1);
}

// A negative prompt of its own: negative_prompt_embeds encode it, empty_prompt_embeds stay T5("").
TEST(EncodeTextCli, NegativePromptAndEmptyPrompt) {
  TempDir dir;
  const std::string model = "--model " + fixture("t5/pipeline") + " --max-length 16";
  ASSERT_EQ(encode_text(model + " --prompt 'a cat' --negative-prompt 'blurry' --out " + dir.file("a.safetensors"))
                .exit_code,
            0);
  ASSERT_EQ(encode_text(model + " --prompt 'blurry' --prompt '' --out " + dir.file("b.safetensors")).exit_code, 0);
  SafetensorsFile a(dir.file("a.safetensors")), b(dir.file("b.safetensors"));
  EXPECT_TRUE(torch::equal(a.tensor("negative_prompt_embeds")[0], b.tensor("prompt_embeds")[0]));
  EXPECT_TRUE(torch::equal(a.tensor("empty_prompt_embeds")[0], b.tensor("prompt_embeds")[1]));
  EXPECT_FALSE(torch::equal(a.tensor("negative_prompt_embeds")[0], a.tensor("empty_prompt_embeds")[0]));
  EXPECT_EQ(a.metadata().at("negative_prompt"), "\"blurry\"");
}

TEST(EncodeTextCli, MissingTokenizerIsOneLine) {
  TempDir dir;
  testing::write_file(dir.file("model_index.json"),
                      "{\"_class_name\": \"CogVideoXPipeline\", \"text_encoder\": [\"transformers\", "
                      "\"T5EncoderModel\"], \"tokenizer\": [\"transformers\", \"T5Tokenizer\"]}");
  const CommandResult r = encode_text("--model " + dir.path() + " --prompt x --out " + dir.file("o.safetensors"));
  SCOPED_TRACE(r.err);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.find("t4g: error: "), 0u);
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "exactly one line";
  EXPECT_NE(r.err.find(dir.path()), std::string::npos);
  const CommandResult bad_device = encode_text("--model " + fixture("t5/pipeline") + " --prompt x --device tpu --out " +
                                               dir.file("o.safetensors"));
  EXPECT_EQ(bad_device.exit_code, 1);
  EXPECT_NE(bad_device.err.find("unknown device"), std::string::npos) << bad_device.err;
}

TEST(EncodeTextCli, UnloadableSentencePieceShimIsOneLine) {
  // libsentencepiece is reached through a dlopen'ed shim (models/sentencepiece_model.h); a wrong
  // path names it. (Every other test here also proves that t4g, which loads OpenCV and thus the
  // system libprotobuf, survives loading SentencePiece.)
  TempDir dir;
  const CommandResult r = run_command("T4G_SPM_SHIM=" + dir.file("missing.so") + " " + program("t4g") +
                                      " encode-text --model " + fixture("t5/pipeline") + " --prompt x --out " +
                                      dir.file("o.safetensors"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.find("t4g: error: "), 0u) << r.err;
  EXPECT_NE(r.err.find(dir.file("missing.so")), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

}  // namespace
}  // namespace t4g
