// T5 encoder parity with transformers' T5EncoderModel (tests/fixtures/t5/make_fixtures.py): a tiny
// random T5 v1.1 (gated-gelu, stored bf16 in two shards) on a batch of 3 x 226 ids, fp32 within
// 1e-5 max abs (with and without an attention mask), the bf16 run within 2% of the output range
// (8-bit mantissas through 2 blocks; the reference's own bf16 matmuls round differently), the
// relu form within 1e-5. Relative-position buckets equal the reference and research/cogvideox.md
// 6.3's anchors exactly. Strict loading: a missing tensor in a shard is named.
#include <gtest/gtest.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "models/diffusers_layout.h"
#include "models/t5_encoder.h"
#include "tests/testing.h"

namespace t4g {
namespace {

std::string encoder_folder() { return testing::fixture("t5/pipeline/text_encoder"); }

std::map<std::string, torch::Tensor> expected() {
  return load_safetensors(testing::fixture("t5/encoder_expected.safetensors"));
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

TEST(T5Encoder, ConfigFromTransformersJson) {
  const auto c = load_t5_encoder_config(encoder_folder() + "/config.json");
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.d_model, 32);
  EXPECT_EQ(c.d_kv, 8);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.d_ff, 64);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_TRUE(c.gated);
  EXPECT_EQ(c.activation, T5Activation::kGeluTanh);
  const auto relu = load_t5_encoder_config(testing::fixture("t5/relu_encoder/config.json"));
  EXPECT_FALSE(relu.gated);
  EXPECT_EQ(relu.activation, T5Activation::kRelu);
  EXPECT_EQ(relu.relative_attention_num_buckets, 16);
  EXPECT_DOUBLE_EQ(relu.layer_norm_epsilon, 1e-5);
}

TEST(T5Encoder, BadFeedForwardFormNamesTheKey) {
  testing::TempDir dir;
  testing::write_file(dir.file("config.json"),
                      "{\"vocab_size\": 8, \"d_model\": 4, \"d_kv\": 2, \"num_heads\": 2, \"d_ff\": 8, "
                      "\"num_layers\": 1, \"feed_forward_proj\": \"gated-swish-x\"}");
  const std::string err = testing::error_of([&] { load_t5_encoder_config(dir.file("config.json")); });
  EXPECT_NE(err.find("feed_forward_proj"), std::string::npos) << err;
  EXPECT_NE(err.find(dir.file("config.json")), std::string::npos) << err;
}

TEST(T5Encoder, ParameterNamesAreTransformers) {
  T5EncoderModel model(load_t5_encoder_config(encoder_folder() + "/config.json"));
  std::set<std::string> names;
  for (const auto& p : model->named_parameters()) names.insert(p.key());
  for (const char* n : {"shared.weight", "encoder.embed_tokens.weight", "encoder.block.0.layer.0.SelfAttention.q.weight",
                        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                        "encoder.block.1.layer.0.SelfAttention.o.weight", "encoder.block.1.layer.0.layer_norm.weight",
                        "encoder.block.1.layer.1.DenseReluDense.wi_0.weight",
                        "encoder.block.1.layer.1.DenseReluDense.wi_1.weight",
                        "encoder.block.1.layer.1.DenseReluDense.wo.weight", "encoder.block.1.layer.1.layer_norm.weight",
                        "encoder.final_layer_norm.weight"}) {
    EXPECT_EQ(names.count(n), 1u) << n;
  }
  EXPECT_EQ(names.count("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"), 0u);
  EXPECT_EQ(model->shared->weight.data_ptr(), model->encoder->embed_tokens->weight.data_ptr());  // tied
}

TEST(T5Encoder, Fp32MatchesTransformers) {
  const auto want = expected();
  auto model = load_t5_encoder(encoder_folder());
  torch::NoGradGuard no_grad;
  const auto got = model(want.at("input_ids"));
  EXPECT_EQ(got.scalar_type(), torch::kFloat32);
  EXPECT_LE(max_abs(got, want.at("last_hidden_state")), 1e-5);
  const auto masked = model(want.at("input_ids"), want.at("attention_mask"));
  EXPECT_LE(max_abs(masked, want.at("last_hidden_state_masked")), 1e-5);
  // The mask matters for these rows (padding is attended to otherwise): the test can fail.
  EXPECT_GT(max_abs(masked, want.at("last_hidden_state")), 1e-2);
}

TEST(T5Encoder, Bf16IsCloseToTransformersBf16) {
  const auto want = expected();
  auto model = load_t5_encoder(encoder_folder(), T5LoadOptions{torch::kBFloat16, torch::kCPU});
  torch::NoGradGuard no_grad;
  const auto got = model(want.at("input_ids"));
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  const auto ref = want.at("last_hidden_state_bf16");
  const double range = ref.to(torch::kFloat32).abs().max().item<double>();
  EXPECT_LE(max_abs(got, ref), 2e-2 * range);
  EXPECT_LE(max_abs(got, want.at("last_hidden_state")), 2e-2 * range);
}

TEST(T5Encoder, Fp16KeepsWoInFp32AndStaysClose) {
  const auto want = expected();
  auto model = load_t5_encoder(encoder_folder(), T5LoadOptions{torch::kFloat16, torch::kCPU});
  EXPECT_EQ(model->shared->weight.scalar_type(), torch::kFloat16);
  for (const auto& p : model->named_parameters()) {
    const bool wo = p.key().find("DenseReluDense.wo.") != std::string::npos;
    EXPECT_EQ(p.value().scalar_type(), wo ? torch::kFloat32 : torch::kFloat16) << p.key();
  }
  torch::NoGradGuard no_grad;
  const auto got = model(want.at("input_ids"));
  EXPECT_EQ(got.scalar_type(), torch::kFloat16);  // the final norm casts back
  const auto ref = want.at("last_hidden_state");
  // fp16 (11-bit mantissas), fp32 residual stream after the first feed-forward: 0.5% of the range.
  EXPECT_LE(max_abs(got, ref), 5e-3 * ref.abs().max().item<double>());
}

TEST(T5Encoder, ReluFormMatchesTransformers) {
  const auto want = expected();
  auto model = load_t5_encoder(testing::fixture("t5/relu_encoder"));
  torch::NoGradGuard no_grad;
  const auto got = model(want.at("input_ids").slice(0, 0, 1));
  EXPECT_LE(max_abs(got, want.at("relu_last_hidden_state")), 1e-5);
}

TEST(T5Encoder, RelativePositionBucketsMatchTheReference) {
  const Json ref = read_json(testing::fixture("t5/buckets_expected.json"));
  const auto rel = torch::tensor(ref.at("relative_position").get<std::vector<int64_t>>(), torch::kLong);
  const auto want = torch::tensor(ref.at("bucket").get<std::vector<int64_t>>(), torch::kLong);
  const auto got = t5_relative_position_bucket(rel, true, 32, 128);
  EXPECT_TRUE(torch::equal(got, want));
  // research/cogvideox.md 6.3 anchors (nb 32, md 128).
  const std::vector<std::pair<int64_t, int64_t>> anchors = {
      {0, 0},   {1, 17},  {7, 23},   {8, 24},   {12, 25},  {16, 26},  {32, 28},  {64, 30},   {91, 31},
      {225, 31}, {-1, 1}, {-8, 8},   {-16, 10}, {-32, 12}, {-64, 14}, {-128, 15}, {-300, 15}};
  for (const auto& [r, bucket] : anchors) {
    EXPECT_EQ(t5_relative_position_bucket(torch::tensor({r}), true, 32, 128).item<int64_t>(), bucket) << "rel " << r;
  }
}

TEST(T5Encoder, EmbedTokensAliasLoads) {
  // A checkpoint that names the table encoder.embed_tokens.weight (the tied alias) loads the same.
  testing::TempDir dir;
  const SafetensorsCheckpoint ckpt(find_safetensors_in_folder(encoder_folder()));
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& name : ckpt.names()) {
    tensors[name == "shared.weight" ? "encoder.embed_tokens.weight" : name] = ckpt.tensor(name);
  }
  save_safetensors(dir.file("model.safetensors"), tensors);
  testing::write_file(dir.file("config.json"), testing::read_file(encoder_folder() + "/config.json"));
  auto model = load_t5_encoder(dir.path());
  const auto want = expected();
  torch::NoGradGuard no_grad;
  EXPECT_LE(max_abs(model(want.at("input_ids")), want.at("last_hidden_state")), 1e-5);
}

TEST(T5Encoder, MissingTensorInAShardIsNamed) {
  // Copy the sharded folder, drop one tensor from the shard that holds it (and from the index).
  testing::TempDir dir;
  const std::string victim = "encoder.block.1.layer.1.DenseReluDense.wi_1.weight";
  Json index = read_json(encoder_folder() + "/model.safetensors.index.json");
  const std::string shard = index.at("weight_map").at(victim).get<std::string>();
  for (const auto& name : list_dir(encoder_folder())) {
    testing::write_file(dir.file(name), testing::read_file(encoder_folder() + "/" + name));
  }
  auto tensors = load_safetensors(encoder_folder() + "/" + shard);
  tensors.erase(victim);
  for (auto& [name, t] : tensors) t = t.clone();  // detach from the mapping of the file being replaced
  save_safetensors(dir.file(shard), tensors, {{"format", "pt"}});
  index["weight_map"].erase(victim);
  testing::write_file(dir.file("model.safetensors.index.json"), index.dump(2));
  const std::string err = testing::error_of([&] { load_t5_encoder(dir.path()); });
  EXPECT_NE(err.find("1 missing"), std::string::npos) << err;
  EXPECT_NE(err.find(victim), std::string::npos) << err;
  // A shard that lost the tensor while the index still lists it: named by the index check.
  index["weight_map"][victim] = shard;
  testing::write_file(dir.file("model.safetensors.index.json"), index.dump(2));
  const std::string err2 = testing::error_of([&] { load_t5_encoder(dir.path()); });
  EXPECT_NE(err2.find(victim), std::string::npos) << err2;
}

TEST(T5Encoder, MisShapedTensorIsNamed) {
  testing::TempDir dir;
  auto config = read_json(encoder_folder() + "/config.json");
  config["d_ff"] = 48;
  testing::write_file(dir.file("config.json"), config.dump());
  for (const auto& name : list_dir(encoder_folder())) {
    if (name != "config.json") testing::write_file(dir.file(name), testing::read_file(encoder_folder() + "/" + name));
  }
  const std::string err = testing::error_of([&] { load_t5_encoder(dir.path()); });
  EXPECT_NE(err.find("mis-shaped"), std::string::npos) << err;
  EXPECT_NE(err.find("DenseReluDense.w"), std::string::npos) << err;
}

}  // namespace
}  // namespace t4g
