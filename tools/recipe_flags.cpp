#include "tools/recipe_flags.h"

#include <sstream>

#include "common/error.h"
#include "models/trained_model.h"

namespace t4g::tools {

void add_recipe_flags(CLI::App* app, RecipeFlags& flags) {
  app->add_option("--config", flags.config_path, "YAML recipe (default: the embedded configs/tiny.yaml)");
  app->add_option("--set", flags.sets, "override a key: --set data.frames=49 (repeatable)")->take_all();
}

Config load_recipe(const RecipeFlags& flags) {
  std::vector<ConfigOverride> overrides;
  for (const std::string& s : flags.sets) overrides.push_back(parse_override(s));
  if (flags.config_path.empty()) return parse_config(embedded_tiny_config(), "<embedded configs/tiny.yaml>", overrides);
  return load_config(flags.config_path, overrides);
}

void add_model_flags(CLI::App* app, ModelFlags& flags, const std::string& what) {
  app->add_option("--model", flags.model,
                  "diffusers pipeline folder, or a t4g run's export/ or checkpoints/step_N folder (backbone, "
                  "adapters and refiner together); default: the recipe's model, tiny if none" +
                      (what.empty() ? std::string() : ". " + what));
  app->add_option("--checkpoint", flags.checkpoint, "a run's checkpoint folder (RUN/checkpoints/step_N) to load")
      ->check(CLI::ExistingDirectory);
  app->add_option("--weights", flags.weights, "a trained model's weights: auto (EMA when the run kept them), ema, raw")
      ->check(CLI::IsMember({"auto", "ema", "raw"}));
  app->add_flag("--no-refiner", flags.no_refiner,
                "run a trained model's backbone without its refiner's residual (not the network that was trained)");
}

Config load_model_recipe(const RecipeFlags& recipe, const ModelFlags& model) {
  ErrorContext ctx;
  ctx.key = "--model / --checkpoint";
  T4G_CHECK_CTX(model.model.empty() || model.checkpoint.empty(), ctx, "give one model: --model or --checkpoint, not both");
  std::string path = model.model.empty() ? model.checkpoint : model.model;
  if (!model.checkpoint.empty()) {
    ErrorContext c;
    c.file = model.checkpoint;
    c.key = "--checkpoint";
    c.expected = "a checkpoint folder with state.json and weights.safetensors";
    T4G_CHECK_CTX(trained_folder_kind(path) == TrainedFolderKind::kCheckpoint, c, "not a checkpoint folder");
  }
  // Values are YAML: a path goes in single quotes (a ':' or '#' in it stays text).
  auto quoted = [](const std::string& text) {
    std::string out = "'";
    for (const char ch : text) out += ch == '\'' ? std::string("''") : std::string(1, ch);
    return out + "'";
  };
  std::vector<ConfigOverride> overrides;
  if (!path.empty()) {
    overrides.push_back({"model.path", quoted(path)});
    if (recipe.config_path.empty()) {
      overrides.push_back({"model.device", "auto"});
      overrides.push_back({"model.dtype", "auto"});
    }
  }
  if (!model.weights.empty()) overrides.push_back({"model.weights", model.weights});
  for (const std::string& s : recipe.sets) overrides.push_back(parse_override(s));
  if (recipe.config_path.empty()) return parse_config(embedded_tiny_config(), "<embedded configs/tiny.yaml>", overrides);
  return load_config(recipe.config_path, overrides);
}

void add_off_flag(CLI::App* app, const std::string& name, bool& target, const std::string& help) {
  app->add_flag_callback(name, [&target] { target = false; }, help);
}

std::string resolve_device_flag(const std::string& device) {
  if (device != "auto") return device;
  return torch::cuda::is_available() ? "cuda" : "cpu";
}

std::string resolve_dtype_flag(const std::string& dtype, const std::string& device) {
  if (dtype != "auto") return dtype;
  return resolve_device_flag(device).rfind("cuda", 0) == 0 ? "bf16" : "fp32";
}

ComponentRequest component_request(const ModelFlags& flags) {
  ComponentRequest r;
  r.refiner = !flags.no_refiner;
  return r;
}

std::vector<int64_t> parse_index_list(const std::string& text, const std::string& flag, const std::string& example) {
  std::vector<int64_t> values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    int64_t value = -1;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    ErrorContext ctx;
    ctx.key = flag;
    ctx.expected = "comma-separated block indices, e.g. " + example;
    ctx.got = text;
    T4G_CHECK_CTX(used > 0 && used == item.size(), ctx, flag, " must be ", ctx.expected, ", got '", text, "'");
    values.push_back(value);
  }
  return values;
}

}  // namespace t4g::tools
