// Flow-track accuracy against exact synthetic tracks (see flow_track_accuracy.h).
#include "eval/flow_track_accuracy.h"

#include <chrono>
#include <ctime>

#include "eval/tapvid_metrics.h"

namespace t4g {
namespace {

double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// [..., 2] (x, y) pixels of a W x H frame -> TAP-Vid's 256 x 256 raster.
torch::Tensor to_256(const torch::Tensor& xy, int64_t height, int64_t width) {
  return xy * torch::tensor({256.0f / static_cast<float>(width), 256.0f / static_cast<float>(height)});
}

}  // namespace

FlowTrackAccuracy measure_flow_tracks(const data::SyntheticVideo& video, const data::FlowTrackOptions& options) {
  const int64_t H = video.frames.size(1), W = video.frames.size(2);
  FlowTrackAccuracy out;
  out.frames = video.frames.size(0);

  const auto wall = std::chrono::steady_clock::now();
  double start = cpu_now();
  const data::VideoFlow flow = data::compute_video_flow(video.frames, options.flow);
  out.flow_seconds = cpu_now() - start;
  out.flow_wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count();

  const TapVidQueries q = sample_queries(video.tracks, video.visibility.logical_not(), QueryMode::kFirst);
  out.queries = q.query_points.size(0);
  // (t, y, x) -> (t, x, y)
  const torch::Tensor txy = torch::stack({q.query_points.select(1, 0), q.query_points.select(1, 2), q.query_points.select(1, 1)}, 1);
  start = cpu_now();
  const data::FlowTracks pred = data::chain_tracks(flow, txy, options);
  out.chain_seconds = cpu_now() - start;

  out.metrics = compute_tapvid_metrics(q.query_points, q.occluded, to_256(q.target_points, H, W),
                                       pred.visibility.logical_not(), to_256(pred.tracks, H, W), QueryMode::kFirst);

  start = cpu_now();
  out.grid_tracks = data::grid_tracks(flow, options).tracks.size(0);
  out.grid_seconds = cpu_now() - start;
  return out;
}

}  // namespace t4g
