// Scoring tracker output on a TAP-Vid file or a shard folder (`t4g tapvid score`): reads the ground
// truth (the pickle's, or the shards' exact or flow tracks), samples queries per the protocol, reads predictions from PRED.h5 and computes
// tapnet's metrics per video and their unweighted mean.
//
// PRED.h5 layout (also what `t4g track` writes): one group per video, named by the pickle's key
// (DAVIS form) or `video_NNNN` by index (list form), holding
//   tracks    float32 [Q, T, 2]  (x, y) in 256x256 raster pixels
//   occluded  uint8   [Q, T]     1 = predicted occluded
// where Q counts the queries the query mode keeps, in tapnet's order (eval/tapvid_metrics.h).
#pragma once

#include <string>
#include <vector>

#include "common/json.h"
#include "eval/tapvid_metrics.h"

namespace t4g {

// The TAP-Vid evaluation resolution: tracks are scored in 256x256 raster pixels.
constexpr int64_t kTapVidResolution = 256;

// One video's predictions for PRED.h5.
struct TapVidPrediction {
  std::string name;        // group name
  torch::Tensor tracks;    // float32 [Q, T, 2]
  torch::Tensor occluded;  // bool or uint8 [Q, T]
};

// The group name of video `index` of a TAP-Vid file: its key, or video_NNNN for list-form files.
std::string tapvid_group_name(const std::string& key, int64_t index);

// Writes PRED.h5 atomically.
void write_tapvid_predictions(const std::string& path, const std::vector<TapVidPrediction>& predictions);

struct TapVidScoreOptions {
  std::string data;                     // TAP-Vid pickle, or a shard folder (group names = video ids)
  std::string pred;                     // PRED.h5
  QueryMode query_mode = QueryMode::kFirst;
  int64_t query_stride = 5;             // 'strided' mode
};

// {"query_mode", "videos", "per_video": {name: {metric: value}}, "mean": {metric: value}};
// NaN (no evaluation points) is written as null. Errors name PRED.h5 and the video's group or
// dataset when a prediction is missing or has the wrong shape.
Json score_tapvid(const TapVidScoreOptions& options);

}  // namespace t4g
