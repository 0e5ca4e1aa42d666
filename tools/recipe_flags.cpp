#include "tools/recipe_flags.h"

#include <sstream>

#include "common/error.h"

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
