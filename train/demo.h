// The main job end to end on a recipe, at whatever scale the recipe sets: what `t4g demo` runs
// on the embedded tiny recipe (CPU, a minute or two). Each stage that exists in the libraries runs
// here, in the order of ARCHITECTURE.md's flows, and writes its outputs under one folder:
//   shards/                 synthetic videos with exact tracks (the `t4g prepare` flow)
//   config.yaml             the resolved recipe
//   baseline_metrics.json   TAP-Vid metrics of the zero-motion baseline on those videos
//   report.json             what ran, with the numbers
#pragma once

#include <string>

#include "common/config.h"
#include "common/json.h"

namespace t4g {

// Runs the demo into `out_dir` (created if missing) and returns report.json's content.
Json run_demo(const Config& config, const std::string& out_dir);

}  // namespace t4g
