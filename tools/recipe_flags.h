// The flags every recipe-driven subcommand shares: --config FILE and repeated --set key=value.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "common/config.h"
#include "models/model_components.h"

namespace t4g::tools {

struct RecipeFlags {
  std::string config_path;        // empty: the embedded tiny recipe
  std::vector<std::string> sets;  // "key.path=value"
};

void add_recipe_flags(CLI::App* app, RecipeFlags& flags);

// The recipe from --config (or the embedded tiny one) with every --set applied, validated.
Config load_recipe(const RecipeFlags& flags);

// The flags of every command that runs a model: which one, which of its weights, and whether a
// trained model's refiner is applied.
struct ModelFlags {
  std::string model;       // a diffusers pipeline, a run's export/ or a checkpoint folder
  std::string checkpoint;  // a checkpoint folder (RUN/checkpoints/step_N); the same as --model DIR
  std::string weights;     // auto | ema | raw ("" = the recipe's model.weights)
  bool no_refiner = false; // a trained model's backbone alone (what a plain diffusers pipeline runs)
};
void add_model_flags(CLI::App* app, ModelFlags& flags, const std::string& what = "");

// The recipe for a command that runs a model. With --model or --checkpoint, model.path is that
// folder and, unless --config names a recipe, the embedded tiny recipe's CPU and fp32 do not
// apply: model.device and model.dtype are auto (CUDA when present, bf16 there; a trained model's
// own dtype), so a model folder alone runs with its own sizes, dtype and device. --set wins.
Config load_model_recipe(const RecipeFlags& recipe, const ModelFlags& model);

// A flag that turns `target` off (--no-progress, --unscaled), shown in --help as a plain flag
// (CLI11's "!--name" form prints the stored value, e.g. "--no-progress{false}").
void add_off_flag(CLI::App* app, const std::string& name, bool& target, const std::string& help);

// --device / --dtype values of the commands that take them directly (vae, encode-text, forward):
// "auto" is cuda when a GPU is visible, else cpu; dtype "auto" is bf16 on CUDA, fp32 on the CPU.
std::string resolve_device_flag(const std::string& device);
std::string resolve_dtype_flag(const std::string& dtype, const std::string& device);

// The components to load for `flags` (ComponentRequest.refiner from --no-refiner).
ComponentRequest component_request(const ModelFlags& flags);

// "13,17,21" -> {13, 17, 21}, for flags that take block indices. Anything else is one t4g::Error
// naming `flag`: "<flag> must be comma-separated block indices, e.g. <example>, got '<text>'".
std::vector<int64_t> parse_index_list(const std::string& text, const std::string& flag, const std::string& example);

}  // namespace t4g::tools
