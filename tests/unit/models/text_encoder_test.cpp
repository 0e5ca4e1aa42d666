// TextEncoder: prompts -> tokenizer -> T5 on the fixture pipeline root equals transformers'
// last_hidden_state of the same prompts (fp32, 1e-5 max abs); the embedding cache returns the
// same tensors (bit-exact: they are the stored bytes), counts hits and misses, keys on prompt,
// max_length and encoder identity, and survives a foreign file; missing folders are named.
#include <gtest/gtest.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "models/model_components.h"
#include "models/text_encoder.h"
#include "tests/testing.h"

namespace t4g {
namespace {

std::string root() { return testing::fixture("t5/pipeline"); }

// The prompts of the fixture's encoder batch (rows 0, 1 and 9 of the tokenizer cases).
std::vector<std::string> batch_prompts() {
  const Json cases = read_json(testing::fixture("t5/tokenizer_expected.json")).at("cases");
  return {cases[0].at("prompt").get<std::string>(), cases[1].at("prompt").get<std::string>(),
          cases[9].at("prompt").get<std::string>()};
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

TEST(TextEncoder, EncodeMatchesThePipeline) {
  auto encoder = TextEncoder::load(root());
  const auto want = load_safetensors(testing::fixture("t5/encoder_expected.safetensors"));
  const auto prompts = batch_prompts();
  const auto tokens = encoder.tokenize(prompts);
  EXPECT_TRUE(torch::equal(tokens.input_ids, want.at("input_ids")));
  const auto embeds = encoder.encode(prompts);
  EXPECT_EQ(embeds.sizes(), (std::vector<int64_t>{3, 226, 32}));
  EXPECT_EQ(embeds.scalar_type(), torch::kFloat32);
  EXPECT_LE(max_abs(embeds, want.at("last_hidden_state")), 1e-5);
}

TEST(TextEncoder, LoadsFromAFolderWithoutModelIndex) {
  testing::TempDir dir;
  make_dirs(dir.file("text_encoder"));
  make_dirs(dir.file("tokenizer"));
  for (const char* sub : {"text_encoder", "tokenizer"}) {
    for (const auto& name : list_dir(root() + "/" + sub)) {
      testing::write_file(dir.file(std::string(sub) + "/" + name),
                          testing::read_file(root() + "/" + sub + "/" + name));
    }
  }
  auto encoder = TextEncoder::load(dir.path());
  auto reference = TextEncoder::load(root());
  EXPECT_TRUE(torch::equal(encoder.encode({"a cat"}), reference.encode({"a cat"})));
}

TEST(TextEncoder, MissingFoldersAreNamed) {
  testing::TempDir dir;
  make_dirs(dir.file("text_encoder"));
  std::string err = testing::error_of([&] { TextEncoder::load(dir.path()); });
  EXPECT_NE(err.find(dir.file("tokenizer")), std::string::npos) << err;
  testing::TempDir other;
  make_dirs(other.file("tokenizer"));
  err = testing::error_of([&] { TextEncoder::load(other.path()); });
  EXPECT_NE(err.find(other.file("text_encoder")), std::string::npos) << err;
  // A pipeline root whose index lists a tokenizer folder that is not there.
  testing::TempDir pipe;
  testing::write_file(pipe.file("model_index.json"), testing::read_file(root() + "/model_index.json"));
  make_dirs(pipe.file("text_encoder"));
  err = testing::error_of([&] { TextEncoder::load(pipe.path()); });
  EXPECT_NE(err.find(pipe.file("tokenizer")), std::string::npos) << err;
}

TEST(TextEncoder, CacheHitsAreTheEncodedTensors) {
  testing::TempDir dir;
  auto encoder = TextEncoder::load(root());
  encoder.enable_cache(dir.file("cache"));
  const std::vector<std::string> prompts = {"a red car", "", "a red car", "a dog runs"};
  const auto first = encoder.encode_cached(prompts);
  EXPECT_EQ(encoder.cache()->misses(), 3);  // the repeated prompt is looked up once
  EXPECT_EQ(encoder.cache()->hits(), 0);
  EXPECT_EQ(list_dir(dir.file("cache")).size(), 3u);
  const auto direct = encoder.encode(prompts);
  EXPECT_TRUE(torch::equal(first, direct));

  const auto second = encoder.encode_cached({"a dog runs", "a red car", "a new prompt"});
  EXPECT_EQ(encoder.cache()->hits(), 2);
  EXPECT_EQ(encoder.cache()->misses(), 4);
  EXPECT_TRUE(torch::equal(second[0], direct[3]));
  EXPECT_TRUE(torch::equal(second[1], direct[0]));

  // Another max_length is another entry; another encoder identity misses the same prompt.
  EXPECT_EQ(encoder.encode_cached({"a red car"}, 16).size(1), 16);
  EXPECT_EQ(encoder.cache()->misses(), 5);
  auto other = TextEncoder::load(root());
  other.enable_cache(dir.file("cache"), "my-model");
  other.encode_cached({"a red car"});
  EXPECT_EQ(other.cache()->misses(), 1);
  EXPECT_NE(other.cache()->encoder_id(), encoder.cache()->encoder_id());
  // The same files under the same identity hit, from a fresh encoder (e.g. the next process).
  auto again = TextEncoder::load(root());
  again.enable_cache(dir.file("cache"));
  EXPECT_EQ(again.identity(), encoder.identity());
  EXPECT_TRUE(torch::equal(again.encode_cached({"a red car"}), direct.slice(0, 0, 1)));
  EXPECT_EQ(again.cache()->hits(), 1);
}

// Without a cache folder, encode_cached is encode (sampling with --prompt needs no --text-cache).
TEST(TextEncoder, EncodeCachedWithoutACacheEncodes) {
  TextEncoder encoder = TextEncoder::load(root());
  EXPECT_EQ(encoder.cache(), nullptr);
  EXPECT_TRUE(torch::equal(encoder.encode_cached({"a red car", ""}, 16), encoder.encode({"a red car", ""}, 16)));
}

TEST(TextEncoder, ForeignCacheFileIsAMiss) {
  testing::TempDir dir;
  auto encoder = TextEncoder::load(root());
  encoder.enable_cache(dir.path());
  const std::string path = encoder.cache()->path_for("a red car", 226);
  // A file at the key's name that belongs to another prompt (as a hash collision would).
  save_safetensors(path, {{"prompt_embeds", torch::zeros({226, 32})}},
                   {{"prompt", "something else"}, {"max_length", "226"}, {"encoder", encoder.identity()}});
  ::testing::internal::CaptureStderr();
  const auto got = encoder.encode_cached({"a red car"});
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(encoder.cache()->misses(), 1);
  EXPECT_TRUE(torch::equal(got, encoder.encode({"a red car"})));
  // It was replaced by the right entry.
  EXPECT_EQ(SafetensorsFile(path).metadata().at("prompt"), "a red car");
  testing::write_file(path, "garbage");
  ::testing::internal::CaptureStderr();
  encoder.encode_cached({"a red car"});
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(encoder.cache()->misses(), 2);
  EXPECT_NE(log.find(path), std::string::npos) << log;
}

TEST(TextEncoder, Bf16EncodeIsBf16) {
  auto encoder = TextEncoder::load(root(), torch::kCPU, torch::kBFloat16);
  const auto want = load_safetensors(testing::fixture("t5/encoder_expected.safetensors"));
  const auto got = encoder.encode(batch_prompts());
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  const auto ref = want.at("last_hidden_state_bf16");
  // As t5_encoder_test: 2% of the output range.
  EXPECT_LE(max_abs(got, ref), 2e-2 * ref.to(torch::kFloat32).abs().max().item<double>());
  EXPECT_NE(encoder.identity(), TextEncoder::load(root()).identity());  // dtype is part of the identity
}

// The empty prompt's embedding: T5("") of a real model folder (equal to encoding "" directly),
// a given file ([L, D] or [1, L, D]), zeros for random-weight models; bad files name the tensor.
TEST(EmptyPromptEmbedding, FromTheFolderAFileOrZeros) {
  ModelComponents c;
  c.source = root();
  c.text_root = root();  // a pipeline root with text_encoder/ and tokenizer/
  c.text_tokens = 12;
  c.text_embed_dim = 32;
  const auto t5 = empty_prompt_embedding(c);
  EXPECT_EQ(t5.sizes(), (std::vector<int64_t>{1, 12, 32}));
  EXPECT_TRUE(torch::equal(t5, TextEncoder::load(root()).encode({""}, 12)));
  EXPECT_GT(t5.abs().sum().item<double>(), 0.0);  // T5 of padding is not zero

  testing::TempDir dir;
  const auto e = torch::randn({12, 32});
  save_safetensors(dir.file("e.safetensors"), {{"text_embedding", e}});
  EXPECT_TRUE(torch::equal(empty_prompt_embedding(c, dir.file("e.safetensors")), e.unsqueeze(0)));
  save_safetensors(dir.file("narrow.safetensors"), {{"text_embedding", torch::zeros({12, 8})}});
  try {
    empty_prompt_embedding(c, dir.file("narrow.safetensors"));
    FAIL() << "a [12, 8] embedding for a 32-wide model was accepted";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("text_embedding"), std::string::npos) << err.what();
  }
  save_safetensors(dir.file("two.safetensors"), {{"a", e}, {"b", e}});
  EXPECT_THROW(empty_prompt_embedding(c, dir.file("two.safetensors")), Error);

  c.source = "tiny";
  c.tiny = c.random_weights = true;
  c.text_root.clear();
  EXPECT_TRUE(torch::equal(empty_prompt_embedding(c), torch::zeros({1, 12, 32})));
}

}  // namespace
}  // namespace t4g
