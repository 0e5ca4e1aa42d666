// `t4g track` as a library call: picks the input kind (TAP-Vid pickle, shard folder, or one video
// file without ground truth), runs the zero-shot tracker over it, and writes PRED.h5 (the layout of
// eval/tapvid_score.h), METRICS.json and one PNG strip of tracks per video into an output folder.
#pragma once

#include <string>

#include "common/json.h"
#include "eval/track_drawing.h"
#include "eval/zero_shot_tracker.h"

namespace t4g {

// What --data names.
enum class TrackInputKind { kTapVid, kShards, kVideo };

// .pkl -> TAP-Vid; a folder with index.json -> shards; anything else that data/video_io reads ->
// video. Errors name the path when it is none of these.
TrackInputKind detect_track_input(const std::string& path);

struct TrackRunOptions {
  std::string data;                // TAP-Vid pickle, shard folder or video file / frame folder
  std::string out;                 // output folder (created)
  int64_t max_videos = 0;          // evaluate only the first N videos (0 = all)
  TrackingEvalOptions eval;        // tracker options and the TAP-Vid protocol
  int64_t grid = 10;               // video input: a grid x grid set of frame-0 queries (margin W / 64, as DiffTrack's grid)
  int64_t video_frames = 49;       // video input: frames to read (0 = all)
  bool strips = true;              // write strips/<video>.png
  TrackStripOptions strip;         // how strips look
};

// Runs and writes everything; returns the METRICS.json document: {"data", "model", "refiner" (its
// block, or null), "model_input": {height, width}, "layers", "device", "dtype", "query_mode",
// "frame0_queries_only", "videos", "per_video": {name: {metric: value, "seconds": s, "queries": Q}},
// "mean": {metric: value}} (no metrics for a video input: it has no ground truth).
Json run_tracking(ModelComponents& components, const TrackRunOptions& options);

// DiffTrack's query grid on an image (utils/matching.py get_points_on_a_grid, margin W / 64 on
// both axes): [size * size, 2] (x, y) pixels in row-major order.
torch::Tensor grid_queries(int64_t size, int64_t height, int64_t width);

}  // namespace t4g
