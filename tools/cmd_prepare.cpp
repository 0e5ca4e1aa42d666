// `t4g prepare`: flags -> data::PrepareOptions -> data::prepare_dataset (data/prepare.h).
#include <CLI/CLI.hpp>

#include "common/log.h"
#include "data/prepare.h"
#include "tools/commands.h"

namespace t4g::tools {

void register_prepare(CLI::App& app) {
  auto options = std::make_shared<data::PrepareOptions>();
  // Enum-valued flags as text, converted in the callback.
  struct EnumFlags {
    std::string synthetic_tracks = "exact";
    std::string flow_method, dis_preset;
  };
  auto enums = std::make_shared<EnumFlags>();
  enums->flow_method = data::flow_method_name(options->flow.flow.method);
  enums->dis_preset = data::dis_preset_name(options->flow.flow.dis_preset);
  CLI::App* cmd = app.add_subcommand(
      "prepare",
      "Turn videos into HDF5 shards with tracks: synthetic videos (exact or flow tracks), a TAP-Vid pickle, and/or real "
      "videos (files or frame folders) with optical-flow tracks");
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
  // Real videos.
  cmd->add_option("--input", options->input,
                  "real videos: a folder of video files (.mp4/.avi/.webm/...) and frame folders, or a text file "
                  "listing them one per line; a sidecar <name>.txt holds a video's prompt")
      ->check(CLI::ExistingPath);
  cmd->add_option("--video-frames", options->video.frames, "real videos: frames per video (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--video-height", options->video.height, "real videos: frame height after resize and centre crop")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--video-width", options->video.width, "real videos: frame width after resize and centre crop")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--video-stride", options->video.stride, "real videos: keep every N-th source frame")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--video-start", options->video.start, "real videos: first source frame")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--allow-short", options->video.allow_short, "real videos: keep videos shorter than --video-frames");
  cmd->add_flag("--skip-bad-videos", options->skip_bad_videos,
                "real videos: skip (and count) videos that cannot be read instead of stopping");
  // Flow tracks.
  cmd->add_option("--synthetic-tracks", enums->synthetic_tracks, "synthetic: store 'exact' tracks or 'flow' tracks")
      ->capture_default_str()
      ->check(CLI::IsMember({"exact", "flow"}));
  cmd->add_option("--flow-method", enums->flow_method, "optical flow: dis, farneback or tvl1")
      ->capture_default_str()
      ->check(CLI::IsMember({"dis", "farneback", "tvl1"}));
  cmd->add_option("--dis-preset", enums->dis_preset, "DIS flow: ultrafast, fast or medium")
      ->capture_default_str()
      ->check(CLI::IsMember({"ultrafast", "fast", "medium"}));
  cmd->add_option("--dis-finest-scale", options->flow.flow.dis_finest_scale,
                  "DIS flow: finest pyramid level (0 = full resolution: more accurate, about 5x slower; -1 = preset's)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 8));
  cmd->add_option("--flow-grid-step", options->flow.grid_step, "flow tracks: seed grid spacing, pixels")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--reseed-every", options->flow.reseed_every,
                  "flow tracks: re-seed empty grid cells every N frames (0 = frame 0 only)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-tracks", options->flow.max_tracks, "flow tracks: stop re-seeding at this many (0 = no limit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--fb-alpha", options->flow.fb_alpha,
                  "flow tracks: occluded when |f+b|^2 >= alpha (|f|^2+|b|^2) + beta; this is alpha")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--fb-beta", options->flow.fb_beta, "flow tracks: ... and this is beta (pixels squared)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--gzip", options->gzip_level, "deflate level of frames and tracks (-1 = none)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 9));
  cmd->callback([options, enums]() {
    options->synthetic_flow_tracks = enums->synthetic_tracks == "flow";
    options->flow.flow.method = data::parse_flow_method(enums->flow_method);
    options->flow.flow.dis_preset = data::parse_dis_preset(enums->dis_preset);
    const data::PrepareReport r = data::prepare_dataset(*options);
    T4G_INFO("prepared ", options->out, ": ", r.videos_written, " videos written in ", r.shards_written, " shards, ",
             r.shards_skipped, " shards already complete; ", r.videos_skipped, " unreadable videos skipped; the dataset holds ",
             r.dataset_videos, " videos (", r.seconds, " s)");
  });
}

}  // namespace t4g::tools
