// `t4g prepare`: turns video sources (synthetic videos, a TAP-Vid pickle) into a shard dataset
// (data/shards.h). Work is parallel over videos (worker threads); each shard is written
// atomically when its last video is ready, so an interrupted run leaves only whole shards, and a
// rerun skips every shard that already holds the expected videos with the same recipe. The index
// is rewritten (atomically) at the end from all shards in the folder.
#pragma once

#include <cstdint>
#include <string>

#include "data/synthetic_video.h"

namespace t4g::data {

struct PrepareOptions {
  std::string out;                            // dataset folder (created if missing)
  int64_t synthetic = 0;                      // number of synthetic videos to generate
  uint64_t seed = 0;                          // seed of the synthetic set (video i uses a seed derived from it)
  SyntheticVideoOptions synthetic_options;    // size and motion of the synthetic videos
  std::string tapvid;                         // TAP-Vid pickle to convert ("" = none)
  int64_t jobs = 0;                           // worker threads; 0 = number of cores
  int64_t videos_per_shard = 16;              // videos per shard file
  int gzip_level = 4;                         // deflate level of frames and tracks
};

struct PrepareReport {
  int64_t videos = 0;          // videos in the requested sources
  int64_t videos_written = 0;  // videos generated or converted in this run
  int64_t shards_written = 0;
  int64_t shards_skipped = 0;  // already complete from an earlier run
  int64_t dataset_videos = 0;  // videos in the index after this run (all sources in the folder)
  double seconds = 0;
};

PrepareReport prepare_dataset(const PrepareOptions& options);

// The seed of synthetic video `index` in a set seeded with `seed`.
uint64_t synthetic_video_seed(uint64_t seed, int64_t index);

}  // namespace t4g::data
