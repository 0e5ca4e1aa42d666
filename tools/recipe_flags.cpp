#include "tools/recipe_flags.h"

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

}  // namespace t4g::tools
