// t4g config show|check|doc: print a resolved recipe, validate one, or list every key.
#include <iostream>

#include "common/fs.h"
#include "common/log.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"

namespace t4g::tools {

void register_config(CLI::App& app) {
  CLI::App* config = app.add_subcommand("config", "Recipes: show the resolved config, check a file, list every key");
  config->require_subcommand(1);

  static RecipeFlags show_flags;
  CLI::App* show = config->add_subcommand("show", "Print the resolved recipe (defaults and --set applied) as YAML");
  add_recipe_flags(show, show_flags);
  show->callback([] { std::cout << to_yaml(load_recipe(show_flags)); });

  static RecipeFlags check_flags;
  CLI::App* check = config->add_subcommand("check", "Validate a recipe; exit 0 when it is valid");
  add_recipe_flags(check, check_flags);
  check->callback([] {
    const Config c = load_recipe(check_flags);
    // A valid recipe can still name files that are not there (yet): say so, without failing.
    for (const auto& [key, path] : {std::pair<const char*, std::string>{"model.path", c.model.path},
                                    {"data.shards", c.data.shards},
                                    {"eval.data", c.eval.data},
                                    {"eval.dino", c.eval.dino}}) {
      if (!path.empty() && !path_exists(path)) T4G_WARN(key, ": ", path, " does not exist (yet)");
    }
    std::cout << (check_flags.config_path.empty() ? "<embedded>" : check_flags.config_path) << ": ok\n";
  });

  CLI::App* doc = config->add_subcommand("doc", "Print every recipe key as a Markdown table");
  doc->callback([] { std::cout << config_reference(); });
}

}  // namespace t4g::tools
