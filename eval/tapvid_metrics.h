// TAP-Vid scoring, exactly as tapnet's evaluation_datasets.py: the query sampling of the two
// protocols ('first' and 'strided') and compute_tapvid_metrics (occlusion accuracy,
// pts_within_{1,2,4,8,16}, jaccard_{1,2,4,8,16}, average_jaccard, average_pts_within_thresh)
// on tracks in 256x256 raster pixels (research/benchmarks.md sections 1.3 to 1.7).
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace t4g {

enum class QueryMode { kFirst, kStrided };

// "first" | "strided"; throws t4g::Error otherwise.
QueryMode parse_query_mode(const std::string& text);

// The queries one video yields under a protocol, in tapnet's order.
struct TapVidQueries {
  torch::Tensor query_points;  // float32 [Q, 3] as (t, y, x), positions in the units of the tracks given
  torch::Tensor target_points; // float32 [Q, T, 2] as (x, y): the queried track, every frame
  torch::Tensor occluded;      // bool [Q, T]
  torch::Tensor track_index;   // int64 [Q]: which input track each query came from
};

// 'first': one query per track at its first visible frame (never-visible tracks dropped).
// 'strided': for t = 0, stride, 2 stride, ... every track visible at t gives a query at t.
// tracks: float [N, T, 2] (x, y); occluded: bool [N, T].
TapVidQueries sample_queries(const torch::Tensor& tracks, const torch::Tensor& occluded, QueryMode mode,
                             int64_t stride = 5);

// Metric name -> value for one video, under tapnet's names. Zero denominators give NaN, as in
// the reference. query_points [Q, 3] (t, y, x); gt/pred tracks [Q, T, 2]; gt/pred occluded [Q, T].
std::map<std::string, double> compute_tapvid_metrics(const torch::Tensor& query_points,
                                                     const torch::Tensor& gt_occluded,
                                                     const torch::Tensor& gt_tracks,
                                                     const torch::Tensor& pred_occluded,
                                                     const torch::Tensor& pred_tracks, QueryMode mode);

// The metric names in tapnet's order.
const std::vector<std::string>& tapvid_metric_names();

// The unweighted mean over videos of each metric (the benchmark number). Like the reference's
// np.mean, a NaN in any video makes that metric's mean NaN.
std::map<std::string, double> mean_over_videos(const std::vector<std::map<std::string, double>>& per_video);

}  // namespace t4g
