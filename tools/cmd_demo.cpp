// t4g demo: the main job, end to end, on the embedded tiny recipe and bundled synthetic data.
// It grows with the pipeline: each stage that exists in the libraries runs here.
#include <iostream>

#include "common/fs.h"
#include "common/log.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"

namespace t4g::tools {

void register_demo(CLI::App& app) {
  static RecipeFlags flags;
  static std::string out = "runs/demo";
  CLI::App* demo = app.add_subcommand("demo", "Run the pipeline end to end on the embedded tiny recipe (CPU, minutes)");
  add_recipe_flags(demo, flags);
  demo->add_option("--out", out, "output folder");
  demo->callback([] {
    const Config config = load_recipe(flags);
    set_log_level(parse_log_level(config.run.log_level));
    make_dirs(out);
    write_file_atomically(out + "/config.yaml", to_yaml(config));
    T4G_INFO("demo: resolved recipe written to ", out, "/config.yaml");
  });
}

}  // namespace t4g::tools
