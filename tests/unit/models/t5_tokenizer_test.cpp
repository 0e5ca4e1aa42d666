// T5Tokenizer against transformers 4.57's slow T5Tokenizer (legacy) on a SentencePiece model
// trained by sentencepiece itself (tests/fixtures/t5/make_fixtures.py): ids and attention masks
// exactly equal at max_length 226 and 16 for unicode, extra spaces, punctuation, the empty
// string, literal special tokens (</s> mid-text, at the end and at the truncation boundary),
// <extra_id_N> with their whitespace stripping, and an over-long prompt (one warning line).
#include <gtest/gtest.h>

#include "common/error.h"
#include "common/json.h"
#include "models/t5_tokenizer.h"
#include "tests/testing.h"

namespace t4g {
namespace {

std::string tokenizer_folder() { return testing::fixture("t5/pipeline/tokenizer"); }

std::vector<int64_t> row(const torch::Tensor& t, int64_t b) {
  const auto r = t[b].contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

TEST(T5Tokenizer, LoadsTheConfiguredSpecialTokens) {
  const auto tok = T5Tokenizer::load(tokenizer_folder());
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.unk_id(), 2);
  EXPECT_EQ(tok.model_max_length(), 226);
  EXPECT_EQ(tok.piece_count(), 320);
  EXPECT_EQ(tok.size(), 420);  // len(tokenizer): 320 pieces + 100 sentinels
  EXPECT_EQ(tok.added_tokens().size(), 103u);
  EXPECT_EQ(tok.encode("<extra_id_0>"), std::vector<int64_t>{419});
  EXPECT_EQ(tok.encode("<extra_id_99>"), std::vector<int64_t>{320});
}

TEST(T5Tokenizer, IdsEqualTransformersSlowTokenizer) {
  const auto tok = T5Tokenizer::load(tokenizer_folder());
  const Json expected = read_json(testing::fixture("t5/tokenizer_expected.json"));
  ASSERT_GE(expected.at("cases").size(), 20u);
  // Group by max_length and tokenize each group as one batch, as the pipeline does.
  for (const int64_t length : {expected.at("max_length").get<int64_t>(), expected.at("short_length").get<int64_t>()}) {
    std::vector<std::string> prompts;
    std::vector<Json> cases;
    for (const auto& c : expected.at("cases")) {
      if (c.at("max_length").get<int64_t>() != length) continue;
      prompts.push_back(c.at("prompt").get<std::string>());
      cases.push_back(c);
    }
    ::testing::internal::CaptureStderr();
    const auto out = tok.tokenize(prompts, length);
    const std::string log = ::testing::internal::GetCapturedStderr();
    ASSERT_EQ(out.input_ids.sizes(), (std::vector<int64_t>{static_cast<int64_t>(prompts.size()), length}));
    EXPECT_EQ(out.input_ids.scalar_type(), torch::kLong);
    int64_t truncated = 0;
    for (size_t b = 0; b < cases.size(); ++b) {
      SCOPED_TRACE("max_length " + std::to_string(length) + ", prompt: " + prompts[b]);
      EXPECT_EQ(row(out.input_ids, b), cases[b].at("input_ids").get<std::vector<int64_t>>());
      EXPECT_EQ(row(out.attention_mask, b), cases[b].at("attention_mask").get<std::vector<int64_t>>());
      EXPECT_EQ(out.truncated[b], cases[b].at("truncated").get<bool>());
      truncated += out.truncated[b] ? 1 : 0;
    }
    // One warning line per truncated prompt, none otherwise.
    int64_t lines = 0;
    for (size_t pos = log.find("T5 tokenizer: prompt "); pos != std::string::npos;
         pos = log.find("T5 tokenizer: prompt ", pos + 1)) {
      ++lines;
    }
    EXPECT_EQ(lines, truncated) << log;
  }
}

TEST(T5Tokenizer, OverLongPromptIsCutWithOneWarning) {
  const auto tok = T5Tokenizer::load(tokenizer_folder());
  std::string prompt;
  for (int i = 0; i < 300; ++i) prompt += "river ";
  ::testing::internal::CaptureStderr();
  const auto out = tok.tokenize({prompt, "a cat"}, 226);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(out.truncated[0]);
  EXPECT_FALSE(out.truncated[1]);
  EXPECT_EQ(out.input_ids[0][225].item<int64_t>(), 1);       // </s> last
  EXPECT_EQ(out.attention_mask[0].sum().item<int64_t>(), 226);  // no padding left
  EXPECT_NE(log.find("prompt 0 has 300 tokens"), std::string::npos) << log;
  EXPECT_NE(log.find("dropped 75 tokens"), std::string::npos) << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
}

TEST(T5Tokenizer, NotASentencePieceModelNamesTheFile) {
  testing::TempDir dir;
  testing::write_file(dir.file("spiece.model"), "{\"this is\": \"json, not a model\"}\n");
  const std::string err = testing::error_of([&] { T5Tokenizer::load(dir.path()); });
  EXPECT_NE(err.find(dir.file("spiece.model")), std::string::npos) << err;
  EXPECT_NE(err.find("not a SentencePiece model"), std::string::npos) << err;
  testing::write_file(dir.file("spiece.model"), "");
  EXPECT_NE(testing::error_of([&] { T5Tokenizer::load(dir.path()); }).find("not a SentencePiece model"),
            std::string::npos);
}

TEST(T5Tokenizer, MissingFolderOrModelNamesIt) {
  testing::TempDir dir;
  std::string err = testing::error_of([&] { T5Tokenizer::load(dir.file("nope")); });
  EXPECT_NE(err.find(dir.file("nope")), std::string::npos) << err;
  err = testing::error_of([&] { T5Tokenizer::load(dir.path()); });
  EXPECT_NE(err.find(dir.file("spiece.model")), std::string::npos) << err;
}

TEST(T5Tokenizer, NonLegacyConfigIsRefusedByName) {
  testing::TempDir dir;
  testing::write_file(dir.file("spiece.model"), testing::read_file(tokenizer_folder() + "/spiece.model"));
  testing::write_file(dir.file("tokenizer_config.json"), "{\"legacy\": false}");
  const std::string err = testing::error_of([&] { T5Tokenizer::load(dir.path()); });
  EXPECT_NE(err.find("tokenizer_config.json"), std::string::npos) << err;
  EXPECT_NE(err.find("legacy"), std::string::npos) << err;
}

TEST(T5Tokenizer, WithoutAConfigTheSentinelsAreT5s) {
  // google/t5-v1_1-xxl style folder with only spiece.model: <extra_id_i> = pieces - 1 + 100 - i,
  // eating the spaces around them; ids otherwise as with the full config.
  testing::TempDir dir;
  testing::write_file(dir.file("spiece.model"), testing::read_file(tokenizer_folder() + "/spiece.model"));
  const auto bare = T5Tokenizer::load(dir.path());
  const auto full = T5Tokenizer::load(tokenizer_folder());
  const std::string text = "special tokens <pad> <unk> <extra_id_0> and <extra_id_99>word  <extra_id_5>   spaced";
  EXPECT_EQ(bare.encode(text), full.encode(text));
  EXPECT_EQ(bare.size(), 420);
}

}  // namespace
}  // namespace t4g
