// t4g precompute: the model's VAE latents and T5 embeddings into a shard dataset, so that training
// on it needs neither model per step; flags -> PrecomputeOptions -> precompute_shards
// (train/precompute.h).
#include "common/log.h"
#include "train/precompute.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"

namespace t4g::tools {

void register_precompute(CLI::App& app) {
  struct Flags {
    RecipeFlags recipe;
    ModelFlags model;
    PrecomputeOptions options;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "precompute",
      "Encode a shard dataset's videos with the model's VAE and their prompts with its T5, into the shards "
      "(resumable; split over ranks under t4grun)");
  add_recipe_flags(cmd, flags->recipe);
  add_model_flags(cmd, flags->model, "Use the model (and dtype) the run will train");
  cmd->add_option("--data", flags->options.shards, "shard folder (index.json)")->required()->check(CLI::ExistingDirectory);
  cmd->add_flag("--force", flags->options.force, "recompute shards that already hold these models' tensors");
  cmd->callback([flags] {
    const Config recipe = load_model_recipe(flags->recipe, flags->model);
    set_log_level(parse_log_level(recipe.run.log_level));
    const PrecomputeReport r = precompute_shards(recipe, flags->options);
    T4G_INFO("precompute: ", r.written, " shard(s) written, ", r.skipped, " already done (of ", r.shards, "), ",
             r.videos, " video(s) encoded in ", r.seconds, " s; latents", r.text ? " and text embeddings" : "",
             " in ", flags->options.shards);
  });
}

}  // namespace t4g::tools
