// The whole story on a recipe, at whatever scale it sets: what `t4g demo` (and `make demo`) runs
// on the embedded tiny recipe, on 2 CPU cores in minutes. Under one folder:
//   config.yaml             the resolved recipe
//   data/                   synthetic training and held-out shards (exact tracks)
//   baseline_metrics.json   TAP-Vid metrics of the zero-motion baseline on the held-out videos
//   track4gen/              fine-tuning with the correspondence loss (lambda = loss.corr_weight):
//                           metrics.jsonl, tb/, checkpoints/, export/
//   no_corr/                the same run with lambda = 0 (same data, seeds and budget)
//   report.json, report.md  losses and tracking accuracy (query-key probes and refined features)
//                           before and after, for both runs
#pragma once

#include <string>

#include "common/config.h"
#include "common/json.h"

namespace t4g {

// Runs the demo into `out_dir` (created if missing) and returns report.json's content.
Json run_demo(const Config& config, const std::string& out_dir);

}  // namespace t4g
