#include "common/config.h"

#include <gtest/gtest.h>

#include <sstream>

#include "common/error.h"
#include "tests/testing.h"

namespace t4g {
namespace {

const char* kMinimal = "run:\n  name: t\n  out_dir: /tmp/t\n";

// Runs parse_config and returns the error text ("" when it parsed).
std::string parse_error(const std::string& yaml, const std::vector<ConfigOverride>& overrides = {}) {
  try {
    parse_config(yaml, "recipe.yaml", overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, EmbeddedTinyParsesAndMatchesDefaults) {
  const Config c = parse_config(embedded_tiny_config(), "<embedded>");
  EXPECT_EQ(c.run.name, "tiny");
  EXPECT_EQ(c.data.frames, 9);
  EXPECT_EQ(c.model.device, DeviceKind::kCpu);
  EXPECT_EQ(c.model.tiny.num_layers, 2);
}

TEST(Config, MissingKeysKeepDefaults) {
  const Config c = parse_config(kMinimal, "recipe.yaml");
  EXPECT_EQ(c.data.height, DataConfig{}.height);
  EXPECT_EQ(c.model.dtype, DType::kAuto);  // bf16 on CUDA, fp32 on the CPU (models/model_components.h)
  EXPECT_EQ(c.model.weights, "auto");
}

TEST(Config, ReadsEveryType) {
  const Config c = parse_config(std::string(kMinimal) +
                                    "model:\n  dtype: bf16\n  gradient_checkpointing: true\n  path: /m\n"
                                    "data:\n  frames: 49\n  synthetic:\n    videos: 7\n",
                                "recipe.yaml");
  EXPECT_EQ(c.model.dtype, DType::kBFloat16);
  EXPECT_TRUE(c.model.gradient_checkpointing);
  EXPECT_EQ(c.model.path, "/m");
  EXPECT_EQ(c.data.frames, 49);
  EXPECT_EQ(c.data.synthetic.videos, 7);
}

TEST(Config, UnknownKeyNamesPathFileAndLine) {
  EXPECT_EQ(parse_error(std::string(kMinimal) + "data:\n  frame: 9\n"),
            "recipe.yaml:5: data.frame: unknown key (`t4g config doc` lists every key)");
  EXPECT_EQ(parse_error(std::string(kMinimal) + "trian:\n  lr: 1\n"),
            "recipe.yaml:4: trian: unknown key (`t4g config doc` lists every key)");
  EXPECT_EQ(parse_error(std::string(kMinimal) + "model:\n  tiny:\n    layers: 3\n"),
            "recipe.yaml:6: model.tiny.layers: unknown key (`t4g config doc` lists every key)");
}

TEST(Config, WrongTypeNamesExpectedAndGot) {
  EXPECT_EQ(parse_error(std::string(kMinimal) + "data:\n  frames: many\n"),
            "recipe.yaml:5: data.frames: wrong type (expected an integer, got 'many')");
  EXPECT_EQ(parse_error(std::string(kMinimal) + "data:\n  frames: 4.5\n"),
            "recipe.yaml:5: data.frames: wrong type (expected an integer, got '4.5')");
  EXPECT_EQ(parse_error(std::string(kMinimal) + "model:\n  gradient_checkpointing: maybe\n"),
            "recipe.yaml:5: model.gradient_checkpointing: wrong type (expected a bool, got 'maybe')");
  EXPECT_EQ(parse_error(std::string(kMinimal) + "data: [1, 2]\n"),
            "recipe.yaml:4: data: wrong type (expected a mapping of keys, got a list)");
  EXPECT_EQ(parse_error(std::string(kMinimal) + "model:\n  dtype: fp64\n"),
            "recipe.yaml:5: model.dtype: not an allowed value (expected one of fp32|bf16|auto, got fp64)");
}

TEST(Config, MissingRequiredKey) {
  EXPECT_EQ(parse_error("run:\n  name: x\n"), "recipe.yaml: run.out_dir: missing required key");
  EXPECT_EQ(parse_error(""), "recipe.yaml: run.name: missing required key");
}

TEST(Config, RangesAndCrossFieldRules) {
  EXPECT_EQ(parse_error(std::string(kMinimal) + "data:\n  batch_size: 0\n"),
            "recipe.yaml:5: data.batch_size: out of range (expected [1, 4096], got 0)");
  EXPECT_EQ(parse_error(std::string(kMinimal) + "data:\n  frames: 10\n"),
            "recipe.yaml: data.frames: CogVideoX's causal VAE needs 4k+1 frames (expected 4k+1 (1, 5, 9, ..., 49), got 10)");
  EXPECT_EQ(parse_error(std::string(kMinimal) + "data:\n  height: 100\n"),
            "recipe.yaml: data.height: not a multiple of 16 (VAE 8 x patch 2) (expected a multiple of 16, got 100)");
  EXPECT_EQ(parse_error(std::string(kMinimal) + "model:\n  checkpoint_keep_attention: true\n"),
            "recipe.yaml: model.checkpoint_keep_attention: only applies with gradient checkpointing (expected "
            "model.gradient_checkpointing: true, or false here, got true)");
}

TEST(Config, InvalidYamlAndNonMapping) {
  EXPECT_NE(parse_error("run: [unclosed\n").find("recipe.yaml:"), std::string::npos);
  EXPECT_NE(parse_error("run: [unclosed\n").find("invalid YAML"), std::string::npos);
  EXPECT_EQ(parse_error("- a\n- b\n"),
            "recipe.yaml: a recipe must be a YAML mapping (expected a mapping of sections (run, model, data, ...))");
}

TEST(Config, OverridesApplyAndAreChecked) {
  const Config c = parse_config(kMinimal, "recipe.yaml",
                                {parse_override("data.frames=49"), parse_override("model.tiny.num_layers=4"),
                                 parse_override("model.dtype=bf16")});
  EXPECT_EQ(c.data.frames, 49);
  EXPECT_EQ(c.model.tiny.num_layers, 4);
  EXPECT_EQ(c.model.dtype, DType::kBFloat16);
  // An override can supply a required key.
  EXPECT_EQ(parse_config("run:\n  name: x\n", "r.yaml", {parse_override("run.out_dir=/o")}).run.out_dir, "/o");
  EXPECT_EQ(parse_error(kMinimal, {parse_override("data.frams=49")}),
            "--set data.frams: unknown key (`t4g config doc` lists every key)");
  EXPECT_EQ(parse_error(kMinimal, {parse_override("data.frames=lots")}),
            "--set data.frames: data.frames: wrong type (expected an integer, got 'lots')");
  EXPECT_THROW(parse_override("novalue"), Error);
  EXPECT_THROW(parse_override("=3"), Error);
}

TEST(Config, ShowRoundTrips) {
  Config c = parse_config(kMinimal, "recipe.yaml", {parse_override("data.frames=13"), parse_override("model.device=cuda")});
  const Config again = parse_config(to_yaml(c), "shown.yaml");
  EXPECT_EQ(to_yaml(again), to_yaml(c));
  EXPECT_EQ(again.data.frames, 13);
  EXPECT_EQ(again.model.device, DeviceKind::kCuda);
}

TEST(Config, ReferenceListsEveryKey) {
  const std::string doc = config_reference();
  for (const char* key : {"`run.name`", "`model.tiny.num_layers`", "`data.synthetic.grid_step`", "`model.dtype`"}) {
    EXPECT_NE(doc.find(key), std::string::npos) << key;
  }
  EXPECT_NE(doc.find("fp32 \\| bf16"), std::string::npos);
}

}  // namespace
}  // namespace t4g

namespace t4g {
namespace {

TEST(Config, DocsConfigMdIsCurrent) {
  const std::string doc = testing::read_file(std::string(T4G_SOURCE_DIR) + "/docs/config.md");
  EXPECT_NE(doc.find(config_reference()), std::string::npos)
      << "docs/config.md is out of date: regenerate it with `t4g config doc`";
}

}  // namespace
}  // namespace t4g

namespace t4g {
namespace {

TEST(Config, ListsParseInBlockAndFlowStyle) {
  const Config c = parse_config(std::string(kMinimal) +
                                    "train:\n  trainable: blocks\n  trainable_blocks:\n    - 0\n    - 1\n"
                                    "lora:\n  target_modules: [to_q, ff.net.2]\n",
                                "recipe.yaml");
  EXPECT_EQ(c.train.trainable_blocks, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(c.lora.target_modules, (std::vector<std::string>{"to_q", "ff.net.2"}));
  // Shown and read back unchanged.
  EXPECT_EQ(parse_config(to_yaml(c), "shown.yaml").lora.target_modules, c.lora.target_modules);
  EXPECT_NE(parse_error(std::string(kMinimal) + "train:\n  trainable_blocks: 3\n").find("expected a list of integers"),
            std::string::npos);
  EXPECT_NE(parse_error(std::string(kMinimal) + "train:\n  trainable_blocks: [x]\n").find("train.trainable_blocks"),
            std::string::npos);
}

TEST(Config, TrainingCrossFieldRules) {
  EXPECT_NE(parse_error(std::string(kMinimal) + "refiner:\n  block: 5\n").find("refiner.block"), std::string::npos);
  EXPECT_NE(parse_error(std::string(kMinimal) + "train:\n  trainable: blocks\n").find("train.trainable_blocks"),
            std::string::npos);
  EXPECT_NE(parse_error(std::string(kMinimal) + "train:\n  trainable: blocks\n  trainable_blocks: [9]\n")
                .find("lists a block the model does not have"),
            std::string::npos);
  EXPECT_NE(parse_error(std::string(kMinimal) + "refiner:\n  enabled: false\n").find("nothing would train"),
            std::string::npos);
  EXPECT_NE(parse_error(std::string(kMinimal) + "refiner:\n  kernel: 4\n").find("must be odd"), std::string::npos);
  EXPECT_EQ(default_refiner_block(30), 17);
  EXPECT_EQ(default_refiner_block(2), 1);
}

}  // namespace
}  // namespace t4g

namespace t4g {
namespace {

// Every recipe shipped in configs/ parses and validates, and lists every key (so the recipes
// document the whole field table, as `t4g config doc` does).
TEST(Config, ShippedRecipesAreValidAndComplete) {
  const std::vector<std::string> recipes = {"tiny.yaml", "cogvideox-2b.yaml", "cogvideox-5b.yaml",
                                            "cogvideox-5b-lora.yaml"};
  for (const std::string& name : recipes) {
    const std::string path = std::string(T4G_SOURCE_DIR) + "/configs/" + name;
    const Config c = load_config(path);
    const std::string text = testing::read_file(path);
    // Each key of the resolved recipe appears in the file, except, in recipes for real models, the
    // subsections that only the tiny model and synthetic data read (model.tiny, data.synthetic).
    const bool tiny = name == "tiny.yaml";
    const std::string shown = to_yaml(c);
    std::istringstream lines(shown);
    std::string line;
    bool skipping = false;
    while (std::getline(lines, line)) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      const std::string key = line.substr(0, colon);
      const size_t indent = key.find_first_not_of(' ');
      if (indent <= 2) skipping = !tiny && (key == "  tiny" || key == "  synthetic");
      if (skipping) continue;
      EXPECT_NE(text.find(key + ":"), std::string::npos) << name << " lacks " << key;
    }
  }
}

}  // namespace
}  // namespace t4g
