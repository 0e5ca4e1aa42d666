// diffusers layout resolution (on a pipeline saved by diffusers itself, see
// tests/fixtures/safetensors/make_fixtures.py), config reading, and the strict module loader:
// missing / unexpected / mis-shaped tensors listed in one error, non-strict reports, prefixes,
// tied weights, dtype conversion. Tolerance: exact (f16 -> f32 conversion is exact).
#include "models/diffusers_layout.h"
#include "common/fs.h"

#include <gtest/gtest.h>


#include "common/error.h"
#include "tests/testing.h"


namespace t4g {
namespace {

using testing::fixture;
using testing::TempDir;

TEST(DiffusersLayout, ResolvesAPipelineSavedByDiffusers) {
  const std::string root = fixture("safetensors/pipeline");
  const DiffusersLayout layout = resolve_diffusers_layout(root);
  EXPECT_EQ(layout.kind, DiffusersLayoutKind::kPipeline);
  EXPECT_EQ(layout.pipeline_class, "CogVideoXPipeline");
  // vae and tokenizer are [null, null] in model_index.json: saved without them.
  ASSERT_EQ(layout.components.size(), 3u);
  EXPECT_EQ(layout.components[0].name, "scheduler");
  EXPECT_EQ(layout.components[1].name, "text_encoder");
  EXPECT_EQ(layout.components[2].name, "transformer");

  const auto& scheduler = layout.component("scheduler");
  EXPECT_EQ(scheduler.class_name, "CogVideoXDDIMScheduler");
  EXPECT_EQ(scheduler.weights_path, "");
  EXPECT_EQ(file_name(scheduler.config_path), "scheduler_config.json");
  EXPECT_EQ(read_component_config(scheduler).get_int("num_train_timesteps"), 1000);

  const auto& transformer = layout.component("transformer");
  EXPECT_EQ(transformer.library, "diffusers");
  EXPECT_EQ(transformer.class_name, "CogVideoXTransformer3DModel");
  EXPECT_EQ(file_name(transformer.weights_path), "diffusion_pytorch_model.safetensors.index.json");
  const JsonObject config = read_component_config(transformer);
  EXPECT_EQ(config.get_int("num_layers"), 2);
  EXPECT_EQ(config.get_int("attention_head_dim"), 8);
  EXPECT_FALSE(config.has("patch_size_t")) << "null in the file counts as absent";

  const auto& text_encoder = layout.component("text_encoder");
  EXPECT_EQ(text_encoder.library, "transformers");
  EXPECT_EQ(file_name(text_encoder.weights_path), "model.safetensors.index.json");

  try {
    layout.component("vae");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scheduler, text_encoder, transformer"), std::string::npos) << e.what();
  }
}

TEST(DiffusersLayout, ComponentFolderAndSingleFile) {
  const DiffusersLayout folder = resolve_diffusers_layout(fixture("safetensors/pipeline/transformer"));
  EXPECT_EQ(folder.kind, DiffusersLayoutKind::kComponent);
  ASSERT_EQ(folder.components.size(), 1u);
  EXPECT_EQ(folder.components[0].name, "transformer");
  EXPECT_EQ(folder.components[0].class_name, "CogVideoXTransformer3DModel");
  const DiffusersLayout t5 = resolve_diffusers_layout(fixture("safetensors/pipeline/text_encoder"));
  EXPECT_EQ(t5.components[0].class_name, "T5EncoderModel");
  EXPECT_EQ(t5.components[0].library, "transformers");

  const DiffusersLayout file = resolve_diffusers_layout(fixture("safetensors/dtypes.safetensors"));
  EXPECT_EQ(file.kind, DiffusersLayoutKind::kWeightsFile);
  EXPECT_EQ(file.components[0].weights_path, fixture("safetensors/dtypes.safetensors"));
}

TEST(DiffusersLayout, BadLayoutsNameTheFile) {
  TempDir dir;
  const auto message = [](const std::string& path) {
    try {
      resolve_diffusers_layout(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message(dir.path()).find("not a diffusers pipeline"), std::string::npos);
  EXPECT_NE(message(dir.file("nothing")).find("no such file"), std::string::npos);
  testing::write_file(dir.file("model_index.json"), R"({"_class_name": "P", "vae": ["diffusers", "AutoencoderKL"]})");
  std::string msg = message(dir.path());
  EXPECT_NE(msg.find("model_index.json: vae: component folder"), std::string::npos) << msg;
  testing::write_file(dir.file("model_index.json"), R"({"_class_name": "P", "vae": ["diffusers"]})");
  msg = message(dir.path());
  EXPECT_NE(msg.find("[library, class]"), std::string::npos) << msg;
  testing::write_file(dir.file("model_index.json"), R"({"_class_name": )");
  msg = message(dir.path());
  EXPECT_NE(msg.find("model_index.json: not valid JSON"), std::string::npos) << msg;
}

// ---- strict loader --------------------------------------------------------------------------

struct TinyImpl : torch::nn::Module {
  TinyImpl() {
    lin = register_module("lin", torch::nn::Linear(3, 4));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({4})));
    steps = register_buffer("steps", torch::zeros({2}, torch::kInt64));
  }
  torch::nn::Linear lin{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::Tensor steps;
};
TORCH_MODULE(Tiny);

std::map<std::string, torch::Tensor> tiny_weights(torch::ScalarType dtype) {
  return {{"lin.weight", torch::arange(12, torch::kFloat32).reshape({4, 3}).to(dtype)},
          {"lin.bias", torch::full({4}, 0.5f).to(dtype)},
          {"norm.weight", torch::full({4}, 2.0f).to(dtype)},
          {"norm.bias", torch::full({4}, -1.0f).to(dtype)},
          {"steps", torch::tensor({7, 9}, torch::kInt32)}};
}

TEST(ModuleLoader, LoadsAndConvertsDtype) {
  TempDir dir;
  save_safetensors(dir.file("w.safetensors"), tiny_weights(torch::kFloat16));
  Tiny model;
  const ModuleLoadReport report = load_module_weights(*model, dir.file("w.safetensors"));
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(report.loaded.size(), 5u);
  EXPECT_EQ(model->lin->weight.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(model->lin->weight, torch::arange(12, torch::kFloat32).reshape({4, 3})));
  EXPECT_TRUE(torch::equal(model->norm->bias, torch::full({4}, -1.0f)));
  EXPECT_TRUE(torch::equal(model->steps, torch::tensor({7, 9}, torch::kInt64)));
  EXPECT_TRUE(model->lin->weight.requires_grad()) << "loading keeps parameters trainable";
  // The parameter owns its memory: the checkpoint's mapping is not aliased.
  EXPECT_NE(model->lin->weight.data_ptr(), SafetensorsFile(dir.file("w.safetensors")).tensor("lin.weight").data_ptr());
}

TEST(ModuleLoader, StrictListsEveryKindOfMismatchInOneError) {
  TempDir dir;
  auto weights = tiny_weights(torch::kFloat32);
  weights.erase("lin.bias");                                // missing
  weights["extra.weight"] = torch::ones({2});                // unexpected
  weights["norm.weight"] = torch::ones({5});                 // mis-shaped
  weights["norm.bias"] = torch::ones({4}, torch::kInt64);    // wrong kind (integer into float)
  save_safetensors(dir.file("w.safetensors"), weights);
  Tiny model;
  const torch::Tensor before = model->lin->weight.clone();
  try {
    load_module_weights(*model, dir.file("w.safetensors"));
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find(dir.file("w.safetensors") + ": checkpoint does not match the module: "), 0u) << msg;
    EXPECT_NE(msg.find("1 missing (lin.bias)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1 unexpected (extra.weight)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("2 mis-shaped or wrong kind (norm.bias: module [4] F32, checkpoint [4] I64, "
                       "norm.weight: module [4] F32, checkpoint [5] F32)"),
              std::string::npos)
        << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
  EXPECT_TRUE(torch::equal(model->lin->weight, before)) << "strict failure leaves the module unchanged";

  ModuleLoadOptions lenient;
  lenient.strict = false;
  const ModuleLoadReport report = load_module_weights(*model, dir.file("w.safetensors"), lenient);
  EXPECT_EQ(report.missing, std::vector<std::string>{"lin.bias"});
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"extra.weight"});
  EXPECT_EQ(report.mismatched.size(), 2u);
  EXPECT_EQ(report.loaded, (std::vector<std::string>{"lin.weight", "steps"}));
  EXPECT_TRUE(torch::equal(model->lin->weight, torch::arange(12, torch::kFloat32).reshape({4, 3})));
}

TEST(ModuleLoader, LongListsAreShortened) {
  TempDir dir;
  save_safetensors(dir.file("empty.safetensors"), {});
  torch::nn::Sequential seq;
  for (int i = 0; i < 4; ++i) seq->push_back(torch::nn::Linear(2, 2));
  try {
    load_module_weights(*seq, dir.file("empty.safetensors"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("8 missing (0.bias, 0.weight, 1.bias, 1.weight, 2.bias, ... 3 more)"),
              std::string::npos)
        << e.what();
  }
}

struct WithRefinerImpl : torch::nn::Module {
  WithRefinerImpl() {
    backbone = register_module("proj", torch::nn::Linear(2, 2));
    refiner = register_module("refiner", torch::nn::Linear(2, 3));
  }
  torch::nn::Linear backbone{nullptr}, refiner{nullptr};
};
TORCH_MODULE(WithRefiner);

TEST(ModuleLoader, PrefixesLoadABackboneAndARefinerFileBesideIt) {
  TempDir dir;
  save_safetensors(dir.file("diffusion_pytorch_model.safetensors"),
                   {{"proj.weight", torch::full({2, 2}, 1.0f)}, {"proj.bias", torch::full({2}, 2.0f)}});
  save_safetensors(dir.file("refiner.safetensors"),
                   {{"weight", torch::full({3, 2}, 3.0f)}, {"bias", torch::full({3}, 4.0f)}});
  WithRefiner model;
  // The backbone file alone is not a match for the whole model...
  EXPECT_THROW(load_module_weights(*model, dir.file("diffusion_pytorch_model.safetensors")), Error);
  // ...but is with the refiner skipped, and the refiner file fills the rest.
  ModuleLoadOptions backbone;
  backbone.skip = {"refiner"};
  EXPECT_TRUE(load_module_weights(*model, dir.path(), backbone).ok());
  ModuleLoadOptions refiner;
  refiner.module_prefix = "refiner.";
  EXPECT_TRUE(load_module_weights(*model, dir.file("refiner.safetensors"), refiner).ok());
  EXPECT_TRUE(torch::equal(model->backbone->bias, torch::full({2}, 2.0f)));
  EXPECT_TRUE(torch::equal(model->refiner->weight, torch::full({3, 2}, 3.0f)));

  // A combined file read back into a standalone refiner through checkpoint_prefix.
  save_safetensors(dir.file("combined.safetensors"),
                   {{"refiner.weight", torch::full({3, 2}, 5.0f)}, {"refiner.bias", torch::full({3}, 6.0f)},
                    {"proj.weight", torch::zeros({2, 2})}});
  torch::nn::Linear standalone(2, 3);
  ModuleLoadOptions from_combined;
  from_combined.checkpoint_prefix = "refiner.";
  EXPECT_TRUE(load_module_weights(*standalone, dir.file("combined.safetensors"), from_combined).ok());
  EXPECT_TRUE(torch::equal(standalone->bias, torch::full({3}, 6.0f)));
}

struct TiedImpl : torch::nn::Module {
  TiedImpl() {
    shared = register_parameter("shared", torch::zeros({4, 2}));
    encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
    encoder->register_parameter("embed_tokens", shared);  // the same tensor under a second name
  }
  torch::Tensor shared;
  std::shared_ptr<torch::nn::Module> encoder;
};

TEST(ModuleLoader, TiedWeightsNeedOnlyOneName) {
  TempDir dir;
  save_safetensors(dir.file("t5.safetensors"), {{"shared", torch::ones({4, 2})}});
  TiedImpl model;
  const ModuleLoadReport report = load_module_weights(model, dir.file("t5.safetensors"));
  EXPECT_TRUE(report.ok()) << report.summary();
  EXPECT_TRUE(torch::equal(model.encoder->named_parameters()["embed_tokens"], torch::ones({4, 2})));
}

}  // namespace
}  // namespace t4g
