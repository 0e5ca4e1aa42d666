// The flags every recipe-driven subcommand shares: --config FILE and repeated --set key=value.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "common/config.h"

namespace t4g::tools {

struct RecipeFlags {
  std::string config_path;        // empty: the embedded tiny recipe
  std::vector<std::string> sets;  // "key.path=value"
};

void add_recipe_flags(CLI::App* app, RecipeFlags& flags);

// The recipe from --config (or the embedded tiny one) with every --set applied, validated.
Config load_recipe(const RecipeFlags& flags);

// "13,17,21" -> {13, 17, 21}, for flags that take block indices. Anything else is one t4g::Error
// naming `flag`: "<flag> must be comma-separated block indices, e.g. <example>, got '<text>'".
std::vector<int64_t> parse_index_list(const std::string& text, const std::string& flag, const std::string& example);

}  // namespace t4g::tools
