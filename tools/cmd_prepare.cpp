// `t4g prepare`: flags -> data::PrepareOptions -> data::prepare_dataset (data/prepare.h).
#include <CLI/CLI.hpp>

#include "common/log.h"
#include "data/prepare.h"
#include "tools/commands.h"

namespace t4g::tools {

void register_prepare(CLI::App& app) {
  auto options = std::make_shared<data::PrepareOptions>();
  CLI::App* cmd = app.add_subcommand(
      "prepare", "Turn videos into HDF5 shards with tracks: synthetic videos (exact tracks) and/or a TAP-Vid pickle");
  cmd->add_option("--out", options->out, "dataset folder (created; rerunning resumes)")->required();
  cmd->add_option("--synthetic", options->synthetic, "number of synthetic videos to generate")->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", options->seed, "seed of the synthetic set")->capture_default_str();
  cmd->add_option("--tapvid", options->tapvid, "TAP-Vid pickle to convert (DAVIS, Kinetics or RGB-Stacking form)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--jobs,-j", options->jobs, "worker threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--videos-per-shard", options->videos_per_shard, "videos per shard file")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--frames", options->synthetic_options.frames, "synthetic: frames per video")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--height", options->synthetic_options.height, "synthetic: frame height")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--width", options->synthetic_options.width, "synthetic: frame width")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--sprites", options->synthetic_options.sprites, "synthetic: sprites per video")->capture_default_str();
  cmd->add_option("--grid-step", options->synthetic_options.grid_step, "synthetic: spacing of tracked points, pixels")
      ->capture_default_str();
  cmd->add_option("--gzip", options->gzip_level, "deflate level of frames and tracks (-1 = none)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 9));
  cmd->callback([options]() {
    const data::PrepareReport r = data::prepare_dataset(*options);
    T4G_INFO("prepared ", options->out, ": ", r.videos_written, " videos written in ", r.shards_written, " shards, ",
             r.shards_skipped, " shards already complete; the dataset holds ", r.dataset_videos, " videos (", r.seconds,
             " s)");
  });
}

}  // namespace t4g::tools
