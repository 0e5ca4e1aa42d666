// t4g train: Track4Gen fine-tuning on a recipe (train/trainer.h). Runs the same alone, under
// t4grun and under PyTorch's torchrun (the worker environment is read in train/dist_env).
#include "common/log.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"
#include "train/trainer.h"

namespace t4g::tools {

void register_train(CLI::App& app) {
  static RecipeFlags flags;
  static std::string resume;
  static int64_t stop_after = -1;
  static int64_t fail_at = -1;
  static int fail_rank = 0;
  CLI::App* cmd = app.add_subcommand("train", "Fine-tune with the refiner and the correspondence loss (a recipe)");
  add_recipe_flags(cmd, flags);
  cmd->add_option("--resume", resume, "continue from 'latest' (newest checkpoint in run.out_dir) or a checkpoint folder");
  cmd->add_option("--stop-after", stop_after, "checkpoint and exit after this many steps (preemption drills)");
  cmd->add_option("--fail-at-step", fail_at, "restart drill: fail after this step on the first attempt (see --fail-rank)");
  cmd->add_option("--fail-rank", fail_rank, "restart drill: the rank that fails (default 0)");
  cmd->callback([] {
    const Config config = load_recipe(flags);
    set_log_level(parse_log_level(config.run.log_level));
    TrainOptions options;
    options.resume = resume;
    options.stop_after_step = stop_after;
    options.fail_at_step = fail_at;
    options.fail_rank = fail_rank;
    train(config, options);
  });
}

}  // namespace t4g::tools
