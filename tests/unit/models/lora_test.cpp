// LoRA adapters against PEFT and diffusers (tests/fixtures/lora/make_fixtures.py): a tiny
// CogVideoX transformer with adapters made by PEFT (r 4 / alpha 8 on the attention projections,
// and r 2 / alpha 3 / dropout 0.1 on every Linear) loads from both layouts and matches PEFT's
// forward within 1e-5 max abs (fp32, CPU); merged weights give the same output; the files we
// write have exactly the fixture's keys, shapes, values and configuration fields. Plus PEFT's
// naming and init, the matching rule, dtype handling and the error paths.
#include "models/lora.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "models/cogvideox_io.h"
#include "tests/testing.h"

namespace t4g {
namespace {

constexpr double kTolerance = 1e-5;  // fp32 forward vs PEFT's, max abs

std::string lora_fixture(const std::string& relative) { return testing::fixture("lora/" + relative); }

torch::Tensor run(CogVideoXTransformer3DModel& model) {
  const auto in = load_safetensors(lora_fixture("inputs.safetensors"));
  torch::NoGradGuard no_grad;
  return model(in.at("hidden_states"), in.at("encoder_hidden_states"), in.at("timestep")).sample;
}

torch::Tensor want(const std::string& the_case) {
  return load_safetensors(lora_fixture(the_case + "/output.safetensors")).at("sample");
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

std::set<std::string> as_set(const Json& list) {
  const auto v = list.get<std::vector<std::string>>();
  return {v.begin(), v.end()};
}

class LoraParity : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraParity, BothLayoutsMatchPeftsForward) {
  const std::string the_case = GetParam();
  auto model = load_cogvideox_transformer(lora_fixture("transformer"));
  ASSERT_LE(max_abs_diff(run(model), load_safetensors(lora_fixture("base_output.safetensors")).at("sample")),
            kTolerance);
  const LoraConfig config = load_lora(*model, lora_fixture(the_case + "/peft"));
  EXPECT_LE(max_abs_diff(run(model), want(the_case)), kTolerance);
  if (the_case == "attn") {
    EXPECT_EQ(config.rank, 4);
    EXPECT_EQ(config.alpha, 8.0);
    EXPECT_EQ(lora_module_names(*model).size(), 2u * 4u);
  } else {
    EXPECT_EQ(config.rank, 2);
    EXPECT_EQ(config.alpha, 3.0);
    EXPECT_EQ(config.dropout, 0.1);                    // eval mode: no dropout in the forward above
    EXPECT_EQ(lora_module_names(*model).size(), 21u);  // every Linear of the tiny model
  }

  // diffusers' file, by folder and by file path.
  for (const std::string& path : {the_case + "/diffusers", the_case + "/diffusers/pytorch_lora_weights.safetensors"}) {
    auto other = load_cogvideox_transformer(lora_fixture("transformer"));
    const LoraConfig c = load_lora(*other, lora_fixture(path));
    EXPECT_EQ(c.rank, config.rank) << path;
    EXPECT_EQ(c.alpha, config.alpha) << path;
    EXPECT_LE(max_abs_diff(run(other), want(the_case)), kTolerance) << path;
  }

  // Merged into the base weights: the same output, and only diffusers' base names remain.
  auto base_names = load_cogvideox_transformer(lora_fixture("transformer"))->named_parameters().keys();
  EXPECT_EQ(merge_lora(*model), static_cast<int64_t>(the_case == "attn" ? 8 : 21));
  EXPECT_EQ(model->named_parameters().keys(), base_names);
  EXPECT_TRUE(lora_module_names(*model).empty());
  EXPECT_LE(max_abs_diff(run(model), want(the_case)), kTolerance);
}

TEST_P(LoraParity, WrittenFilesEqualPeftsAndDiffusers) {
  const std::string the_case = GetParam();
  auto model = load_cogvideox_transformer(lora_fixture("transformer"));
  const LoraConfig config = load_lora(*model, lora_fixture(the_case + "/peft"));
  testing::TempDir dir;
  save_lora_peft(dir.file("peft"), *model, config);
  save_lora_diffusers(dir.file("diffusers"), *model, config);

  // Same keys, shapes, dtypes and values as the files PEFT and diffusers wrote.
  for (const char* file : {"peft/adapter_model.safetensors", "diffusers/pytorch_lora_weights.safetensors"}) {
    const auto ours = load_safetensors(dir.file(file));
    const auto theirs = load_safetensors(lora_fixture(the_case + "/" + file));
    ASSERT_EQ(ours.size(), theirs.size()) << file;
    for (const auto& [name, t] : theirs) {
      ASSERT_EQ(ours.count(name), 1u) << file << ": " << name;
      EXPECT_EQ(ours.at(name).scalar_type(), t.scalar_type()) << name;
      EXPECT_TRUE(torch::equal(ours.at(name), t)) << name;
    }
  }
  // Every configuration field we write equals PEFT's (target_modules as a set: PEFT keeps a set).
  const Json ours = read_json(dir.file("peft/adapter_config.json"));
  const Json theirs = read_json(lora_fixture(the_case + "/peft/adapter_config.json"));
  for (const auto& [key, value] : ours.items()) {
    ASSERT_TRUE(theirs.contains(key)) << key;
    if (key == "target_modules") {
      EXPECT_EQ(as_set(value), as_set(theirs.at(key)));
    } else {
      EXPECT_EQ(value, theirs.at(key)) << key;
    }
  }
  for (const char* key : {"peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "bias", "use_dora"}) {
    EXPECT_TRUE(ours.contains(key)) << key;
  }
  // diffusers' adapter metadata: the same rule.
  const SafetensorsFile our_file(dir.file("diffusers/pytorch_lora_weights.safetensors"));
  const SafetensorsFile their_file(lora_fixture(the_case + "/diffusers/pytorch_lora_weights.safetensors"));
  const Json our_meta = parse_json(our_file.metadata().at("lora_adapter_metadata"), "ours");
  const Json their_meta = parse_json(their_file.metadata().at("lora_adapter_metadata"), "theirs");
  EXPECT_EQ(our_file.metadata().at("format"), "pt");
  for (const auto& [key, value] : our_meta.items()) {
    ASSERT_TRUE(their_meta.contains(key)) << key;
    if (key == "transformer.target_modules") {
      EXPECT_EQ(as_set(value), as_set(their_meta.at(key)));
    } else {
      EXPECT_EQ(value, their_meta.at(key)) << key;
    }
  }

  // And our files load back to PEFT's output.
  for (const char* path : {"peft", "diffusers"}) {
    auto again = load_cogvideox_transformer(lora_fixture("transformer"));
    load_lora(*again, dir.file(path));
    EXPECT_LE(max_abs_diff(run(again), want(the_case)), kTolerance) << path;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LoraParity, ::testing::Values("attn", "all"));

TEST(Lora, PeftNamesInitAndAnUnchangedOutputAtInit) {
  auto model = load_cogvideox_transformer(lora_fixture("transformer"));
  const auto before = run(model);
  LoraConfig config;
  config.rank = 3;
  config.alpha = 6;
  const auto adapted = add_lora(*model, config, 5);
  EXPECT_EQ(adapted.size(), 8u);
  EXPECT_EQ(adapted.front(), "transformer_blocks.0.attn1.to_q");
  const auto params = model->named_parameters();
  const auto& a = params["transformer_blocks.0.attn1.to_q.lora_A.weight"];
  const auto& b = params["transformer_blocks.0.attn1.to_out.0.lora_B.weight"];
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{3, 32}));
  EXPECT_EQ(b.sizes(), (std::vector<int64_t>{32, 3}));
  EXPECT_EQ(b.abs().max().item<double>(), 0.0);
  // kaiming_uniform_(a = sqrt(5)): U(-1/sqrt(in), 1/sqrt(in)).
  EXPECT_LE(a.abs().max().item<double>(), 1.0 / std::sqrt(32.0));
  EXPECT_GT(a.abs().max().item<double>(), 0.8 / std::sqrt(32.0));
  EXPECT_TRUE(torch::equal(run(model), before));  // B = 0: bit-identical

  // Seeded: the same seed gives the same A, another seed another one.
  auto same = load_cogvideox_transformer(lora_fixture("transformer"));
  add_lora(*same, config, 5);
  EXPECT_TRUE(torch::equal(same->named_parameters()["transformer_blocks.0.attn1.to_q.lora_A.weight"], a));
  auto other = load_cogvideox_transformer(lora_fixture("transformer"));
  add_lora(*other, config, 6);
  EXPECT_FALSE(torch::equal(other->named_parameters()["transformer_blocks.0.attn1.to_q.lora_A.weight"], a));
}

// Checkpointed blocks rerun in backward with the adapters' parameters as explicit inputs: the
// adapter gradients equal the plain path's within 1e-6 (fp32).
TEST(Lora, GradientCheckpointingGivesTheSameAdapterGradients) {
  auto grads = [](bool checkpointing) {
    auto model = load_cogvideox_transformer(lora_fixture("transformer"));
    load_lora(*model, lora_fixture("all/peft"));
    model->set_gradient_checkpointing(checkpointing);
    const auto in = load_safetensors(lora_fixture("inputs.safetensors"));
    model(in.at("hidden_states"), in.at("encoder_hidden_states"), in.at("timestep")).sample.square().mean().backward();
    std::map<std::string, torch::Tensor> out;
    for (const auto& item : model->named_parameters()) {
      if (item.key().find(".lora_") != std::string::npos) out[item.key()] = item.value().grad();
    }
    return out;
  };
  const auto plain = grads(false);
  const auto checkpointed = grads(true);
  ASSERT_EQ(plain.size(), 42u);
  for (const auto& [name, g] : plain) {
    ASSERT_TRUE(g.defined()) << name;
    ASSERT_TRUE(checkpointed.at(name).defined()) << name;
    EXPECT_GT(g.abs().max().item<double>(), 0.0) << name;
    EXPECT_LE(max_abs_diff(checkpointed.at(name), g), 1e-6) << name;
  }
}

TEST(Lora, PeftMatchingRule) {
  const std::vector<std::string> targets{"to_q", "to_out.0", "ff.net.2"};
  EXPECT_TRUE(lora_targets("transformer_blocks.0.attn1.to_q", targets));
  EXPECT_TRUE(lora_targets("to_q", targets));
  EXPECT_TRUE(lora_targets("transformer_blocks.3.attn1.to_out.0", targets));
  EXPECT_TRUE(lora_targets("transformer_blocks.3.ff.net.2", targets));
  EXPECT_FALSE(lora_targets("transformer_blocks.0.attn1.xto_q", targets));
  EXPECT_FALSE(lora_targets("transformer_blocks.0.attn1.to_out", targets));
  EXPECT_FALSE(lora_targets("transformer_blocks.0.attn1.to_q.lora_A", targets));
}

TEST(Lora, AdaptersOnABf16LinearKeepTheirOwnDtypeAndDropoutFollowsTrainingMode) {
  torch::nn::Linear linear(8, 4);
  torch::nn::Sequential holder;
  holder->push_back("lin", linear);
  LoraConfig config;
  config.rank = 2;
  config.dropout = 0.5;
  config.target_modules = {"lin"};
  add_lora(*holder, config, 1);
  {
    torch::NoGradGuard no_grad;
    linear->named_parameters()["lora_B.weight"].fill_(0.5);
  }
  linear->to(torch::kBFloat16);
  for (auto& p : linear->named_parameters()) {
    if (p.key().find("lora_") != std::string::npos) p.value().set_data(p.value().to(torch::kFloat32));
  }
  const auto x = torch::randn({16, 8}).to(torch::kBFloat16);
  holder->train();
  const auto y = linear_forward(linear, x);
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_FALSE(torch::equal(linear_forward(linear, x), y));  // dropout draws differ
  holder->eval();
  EXPECT_TRUE(torch::equal(linear_forward(linear, x), linear_forward(linear, x)));
}

TEST(Lora, Errors) {
  auto model = load_cogvideox_transformer(lora_fixture("transformer"));
  LoraConfig config;
  config.target_modules = {"to_nothing"};
  auto message = testing::error_of([&] { add_lora(*model, config, 0); });
  EXPECT_NE(message.find("no module of the model matches"), std::string::npos) << message;
  config.target_modules = {"to_out"};  // the ModuleList [Linear, Dropout]
  message = testing::error_of([&] { add_lora(*model, config, 0); });
  EXPECT_NE(message.find("not a Linear"), std::string::npos) << message;
  EXPECT_NE(message.find("transformer_blocks.0.attn1.to_out"), std::string::npos) << message;
  config.target_modules = {"to_q"};
  config.rank = 0;
  EXPECT_NE(testing::error_of([&] { add_lora(*model, config, 0); }).find("rank"), std::string::npos);
  config.rank = 2;
  add_lora(*model, config, 0);
  message = testing::error_of([&] { add_lora(*model, config, 0); });
  EXPECT_NE(message.find("already has a LoRA adapter"), std::string::npos) << message;
  message = testing::error_of([&] { load_lora(*model, lora_fixture("attn/peft")); });
  EXPECT_NE(message.find("already has LoRA adapters"), std::string::npos) << message;

  // A file whose adapter does not fit the model: the tensor is named, the model left unadapted.
  testing::TempDir dir;
  auto tensors = load_safetensors(lora_fixture("attn/diffusers/pytorch_lora_weights.safetensors"));
  tensors["transformer.transformer_blocks.1.attn1.to_v.lora_B.weight"] = torch::zeros({31, 4});
  tensors.erase("transformer.transformer_blocks.0.attn1.to_k.lora_A.weight");
  const SafetensorsFile original(lora_fixture("attn/diffusers/pytorch_lora_weights.safetensors"));
  save_safetensors(dir.file("pytorch_lora_weights.safetensors"), tensors, original.metadata());
  auto fresh = load_cogvideox_transformer(lora_fixture("transformer"));
  message = testing::error_of([&] { load_lora(*fresh, dir.path()); });
  EXPECT_NE(message.find("pytorch_lora_weights.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("transformer_blocks.0.attn1.to_k.lora_A.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("transformer_blocks.1.attn1.to_v.lora_B.weight"), std::string::npos) << message;
  EXPECT_TRUE(lora_module_names(*fresh).empty());

  // An unsupported PEFT feature is refused by name.
  Json json = read_json(lora_fixture("attn/peft/adapter_config.json"));
  json["use_dora"] = true;
  make_dirs(dir.file("dora"));
  write_json(dir.file("dora/adapter_config.json"), json);
  message = testing::error_of([&] { load_lora(*fresh, dir.file("dora")); });
  EXPECT_NE(message.find("use_dora"), std::string::npos) << message;
  EXPECT_NE(testing::error_of([&] { load_lora(*fresh, dir.file("nowhere")); }).find("nowhere"), std::string::npos);
}

TEST(Lora, DiffusersFileWithoutMetadataGetsAlphaEqualToRank) {
  testing::TempDir dir;
  const auto tensors = load_safetensors(lora_fixture("attn/diffusers/pytorch_lora_weights.safetensors"));
  save_safetensors(dir.file("pytorch_lora_weights.safetensors"), tensors);
  auto model = load_cogvideox_transformer(lora_fixture("transformer"));
  const LoraConfig config = load_lora(*model, dir.file("pytorch_lora_weights.safetensors"));
  EXPECT_EQ(config.rank, 4);
  EXPECT_EQ(config.alpha, 4.0);  // diffusers' default when the file carries no alpha
  EXPECT_EQ(config.target_modules.size(), 8u);
  EXPECT_EQ(lora_module_names(*model).size(), 8u);
  // Scale alpha / r = 1 instead of the fixture's 2: the output is not PEFT's for alpha 8.
  EXPECT_GT(max_abs_diff(run(model), want("attn")), 1e-3);
}

}  // namespace
}  // namespace t4g
