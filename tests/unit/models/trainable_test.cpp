// set_trainable: which parameters require grad in each mode, the returned order (named_parameters
// order), that a backward step reaches only those, and the error paths.
#include "models/trainable.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "models/cogvideox_transformer.h"
#include "models/lora.h"
#include "tests/testing.h"

namespace t4g {
namespace {

CogVideoXTransformer3DModel tiny_model() {
  CogVideoXTransformerConfig c;
  c.num_attention_heads = 2;
  c.attention_head_dim = 16;
  c.in_channels = 4;
  c.out_channels = 4;
  c.time_embed_dim = 16;
  c.text_embed_dim = 24;
  c.num_layers = 3;
  c.sample_height = 8;
  c.sample_width = 12;
  c.sample_frames = 9;
  c.max_text_seq_length = 5;
  CogVideoXTransformer3DModel model(c);
  init_random_weights(*model, 2, 0.2);
  return model;
}

// The names named_parameters() lists, filtered by `keep`, in its order.
std::vector<std::string> names_where(torch::nn::Module& m, const std::function<bool(const std::string&)>& keep) {
  std::vector<std::string> out;
  for (const auto& item : m.named_parameters()) {
    if (keep(item.key())) out.push_back(item.key());
  }
  return out;
}

std::vector<std::string> names_of(const NamedParameters& params) {
  std::vector<std::string> out;
  for (const auto& [name, p] : params) out.push_back(name);
  return out;
}

void expect_requires_grad_exactly(torch::nn::Module& m, const std::vector<std::string>& names) {
  const std::set<std::string> want(names.begin(), names.end());
  for (const auto& item : m.named_parameters()) {
    EXPECT_EQ(item.value().requires_grad(), want.count(item.key()) == 1) << item.key();
  }
}

TEST(SetTrainable, EachModeInStateDictOrder) {
  auto model = tiny_model();
  LoraConfig lora;
  lora.rank = 2;
  add_lora(*model, lora, 0);
  const auto is_lora = [](const std::string& n) { return n.find(".lora_") != std::string::npos; };

  auto params = set_trainable(*model, {TrainMode::kLora, {}});
  EXPECT_EQ(names_of(params), names_where(*model, is_lora));
  EXPECT_EQ(params.size(), 3u * 4u * 2u);
  expect_requires_grad_exactly(*model, names_of(params));

  params = set_trainable(*model, {TrainMode::kBlocks, {2, 0}});
  const auto in_blocks = [](const std::string& n) {
    return n.rfind("transformer_blocks.0.", 0) == 0 || n.rfind("transformer_blocks.2.", 0) == 0;
  };
  EXPECT_EQ(names_of(params), names_where(*model, in_blocks));
  expect_requires_grad_exactly(*model, names_of(params));

  params = set_trainable(*model, {TrainMode::kFull, {}});
  EXPECT_EQ(names_of(params), names_where(*model, [](const std::string&) { return true; }));

  params = set_trainable(*model, {TrainMode::kNone, {}});
  EXPECT_TRUE(params.empty());
  expect_requires_grad_exactly(*model, {});
}

TEST(SetTrainable, BackwardReachesOnlyTheTrainableParameters) {
  auto model = tiny_model();
  LoraConfig lora;
  lora.rank = 2;
  add_lora(*model, lora, 0);
  const auto params = set_trainable(*model, {TrainMode::kLora, {}});
  torch::manual_seed(1);
  const auto out = model(torch::randn({1, 2, 4, 8, 12}), torch::randn({1, 5, 24}), torch::tensor({500})).sample;
  out.square().mean().backward();
  for (const auto& item : model->named_parameters()) {
    const bool is_lora_b = item.key().find(".lora_B.") != std::string::npos;
    const bool has_grad = item.value().grad().defined() && item.value().grad().abs().sum().item<double>() > 0;
    // B = 0 at init, so only B moves at step 0 (A's gradient is B^T times something: zero).
    EXPECT_EQ(has_grad, is_lora_b) << item.key();
  }
}

TEST(SetTrainable, Errors) {
  auto model = tiny_model();
  auto message = testing::error_of([&] { set_trainable(*model, {TrainMode::kLora, {}}); });
  EXPECT_NE(message.find("no LoRA adapters"), std::string::npos) << message;
  message = testing::error_of([&] { set_trainable(*model, {TrainMode::kBlocks, {1, 3}}); });
  EXPECT_NE(message.find("3 blocks"), std::string::npos) << message;
  message = testing::error_of([&] { set_trainable(*model, {TrainMode::kBlocks, {}}); });
  EXPECT_NE(message.find("at least one block"), std::string::npos) << message;
  EXPECT_EQ(parse_train_mode("blocks"), TrainMode::kBlocks);
  EXPECT_EQ(parse_train_mode("refiner"), TrainMode::kNone);
  EXPECT_EQ(parse_train_mode(train_mode_name(TrainMode::kNone)), TrainMode::kNone);
  EXPECT_NE(testing::error_of([] { parse_train_mode("most"); }).find("most"), std::string::npos);
}

}  // namespace
}  // namespace t4g
