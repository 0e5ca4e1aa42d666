// `t4g prepare`: turns video sources (synthetic videos, a TAP-Vid pickle, real videos: files or
// frame folders, decoded, fitted to the model's size and given flow-chained tracks) into a shard dataset
// (data/shards.h). Work is parallel over videos (worker threads); each shard is written
// atomically when its last video is ready, so an interrupted run leaves only whole shards, and a
// rerun skips every shard that already holds the expected videos with the same recipe. The index
// is rewritten (atomically) at the end from all shards in the folder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/flow_tracks.h"
#include "data/synthetic_video.h"
#include "data/video_io.h"

namespace t4g::data {

struct PrepareOptions {
  std::string out;                            // dataset folder (created if missing)
  int64_t synthetic = 0;                      // number of synthetic videos to generate
  uint64_t seed = 0;                          // seed of the synthetic set (video i uses a seed derived from it)
  SyntheticVideoOptions synthetic_options;    // size and motion of the synthetic videos
  std::string tapvid;                         // TAP-Vid pickle to convert ("" = none)
  std::string input;                          // real videos: a folder of video files / frame folders, or a text file listing them ("" = none)
  VideoReadOptions video;                     // real videos: frames, size, stride (defaults: CogVideoX's 49 x 480 x 720)
  FlowTrackOptions flow;                      // real videos (and synthetic with synthetic_flow_tracks): flow-track options
  bool synthetic_flow_tracks = false;         // synthetic videos store flow-chained tracks instead of the exact ones
  bool skip_bad_videos = false;               // a real video that cannot be read is skipped and counted (else an error)
  int64_t jobs = 0;                           // worker threads; 0 = number of cores
  int64_t videos_per_shard = 16;              // videos per shard file
  int gzip_level = 4;                         // deflate level of frames and tracks
};

struct PrepareReport {
  int64_t videos = 0;          // videos in the requested sources
  int64_t videos_written = 0;  // videos generated or converted in this run
  int64_t videos_skipped = 0;  // unreadable real videos skipped (skip_bad_videos); their shards are retried on a rerun
  int64_t shards_written = 0;
  int64_t shards_skipped = 0;  // already complete from an earlier run
  int64_t dataset_videos = 0;  // videos in the index after this run (all sources in the folder)
  double seconds = 0;
};

PrepareReport prepare_dataset(const PrepareOptions& options);

// The real videos named by `input`: a folder's video files and frame folders (sorted by name), a
// single video file, or a list file's non-empty lines that are not '#' comments (relative paths are relative
// to the list's folder). Throws t4g::Error naming the input when it names nothing.
std::vector<std::string> list_video_inputs(const std::string& input);

// A shard id for a real video: its file stem (folder name for frame folders) with characters other
// than [A-Za-z0-9._-] replaced by '_', prefixed "video-".
std::string video_input_id(const std::string& path);

// The seed of synthetic video `index` in a set seeded with `seed`.
uint64_t synthetic_video_seed(uint64_t seed, int64_t index);

}  // namespace t4g::data
