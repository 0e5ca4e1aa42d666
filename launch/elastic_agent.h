// t4grun's supervision loop (research/distributed_and_style.md A.1.4, A.1.5, A.1.7): rendezvous,
// start the local workers, poll them every --monitor-interval, stop the group on the first
// failure (SIGTERM, grace period, SIGKILL), restart it with TORCHELASTIC_RESTART_COUNT+1 while
// --max-restarts allows, forward signals, and report the first failure.
#pragma once

#include <string>

#include "launch/launcher_options.h"

namespace t4g::launch {

struct RunResult {
  int exit_code = 0;    // 0 success, 1 failed group, 128+N stopped by signal N
  std::string report;   // failure summary for stderr ("" on success)
};

// Runs the job to completion. Throws t4g::Error for launcher problems (bad log folder, store or
// rendezvous failures); worker failures are reported in the result instead.
RunResult run_agent(const LauncherOptions& options);

}  // namespace t4g::launch
