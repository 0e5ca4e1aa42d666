// How good flow-chained tracks (data/flow_tracks.h) are, measured against a synthetic video's
// exact tracks: TAP-Vid's metrics under the 'first' protocol (one query per ground-truth track at
// its first visible frame, scored on later frames), with positions rescaled to 256x256 as TAP-Vid
// does, plus the time the flow and the chaining took. It is the yardstick for the flow defaults
// (bench/bench_flow_tracks.cpp and tests/unit/eval/flow_track_accuracy_test.cpp).
#pragma once

#include <map>
#include <string>

#include "data/flow_tracks.h"
#include "data/synthetic_video.h"

namespace t4g {

struct FlowTrackAccuracy {
  std::map<std::string, double> metrics;  // tapnet's names (average_pts_within_thresh is <delta_avg)
  int64_t queries = 0;                    // ground-truth tracks queried
  int64_t frames = 0;                     // frames in the video
  // Times are CPU seconds of this process (CLOCK_PROCESS_CPUTIME_ID): on a shared machine they
  // measure the work, not the neighbours; run single-threaded, they are per-core figures.
  double flow_seconds = 0;                // forward + backward flow for every frame pair
  double chain_seconds = 0;               // chaining the queries
  double grid_seconds = 0;                // seeding and chaining the grid tracks `t4g prepare` stores
  double flow_wall_seconds = 0;           // wall-clock time of the flow
  int64_t grid_tracks = 0;                // how many grid tracks that made
};

// Computes the video's flow with options.flow, chains the ground-truth queries through it and
// scores them; also times grid_tracks on the same flow (the work `t4g prepare` does per video).
FlowTrackAccuracy measure_flow_tracks(const data::SyntheticVideo& video, const data::FlowTrackOptions& options);

}  // namespace t4g
