// Choosing the root cause of a failed group and writing the summary: own failures before those
// t4grun caused, error-file timestamps before observed times, ties by observed time.
#include "launch/failure_report.h"

#include <gtest/gtest.h>

#include <csignal>

namespace t4g::launch {
namespace {

WorkerState worker(int rank, int exit_code, int term_signal, double exit_time, bool stopped = false) {
  WorkerState w;
  w.rank = rank;
  w.local_rank = rank;
  w.pid = 1000 + rank;
  w.running = false;
  w.exit_code = exit_code;
  w.term_signal = term_signal;
  w.exit_time = exit_time;
  w.stopped_by_launcher = stopped;
  w.error_file = "/logs/attempt_0/" + std::to_string(rank) + "/error.json";
  return w;
}

TEST(FailureReport, NoFailureNoRootCause) {
  const std::vector<WorkerState> ws = {worker(0, 0, 0, 100), worker(1, 0, 0, 101)};
  EXPECT_FALSE(root_cause(ws, {}).has_value());
}

TEST(FailureReport, OwnFailureBeatsOneCausedByT4grun) {
  // Rank 0 was SIGTERMed by t4grun and reaped first; rank 1 failed on its own.
  const std::vector<WorkerState> ws = {worker(0, 0, SIGTERM, 100.0, true), worker(1, 3, 0, 100.5)};
  EXPECT_EQ(root_cause(ws, {}), 1u);
}

TEST(FailureReport, ErrorFileTimestampBeatsObservedTime) {
  // Rank 1 was seen ending first, but rank 2's error file says it failed a second earlier.
  const std::vector<WorkerState> ws = {worker(0, 0, 0, 100), worker(1, 1, 0, 200.2), worker(2, 1, 0, 200.7)};
  ErrorRecords records;
  records[2] = ErrorFileRecord{"boom", "", 199};
  EXPECT_EQ(root_cause(ws, records), 2u);
  // Same second: the one seen ending first wins.
  records[2].timestamp = 200;
  EXPECT_EQ(root_cause(ws, records), 1u);
}

TEST(FailureReport, SummaryNamesRootCauseMessageAndOthers) {
  const std::vector<WorkerState> ws = {worker(0, 143, 0, 101, true), worker(1, 3, 0, 100)};
  ErrorRecords records;
  records[1] = ErrorFileRecord{"t4g::Error: x.yaml: train.lr: must be positive", "ctx line 1\nctx line 2", 100};
  FailureContext c;
  c.attempt = 1;
  c.max_restarts = 1;
  const std::string report = format_failure_report(ws, records, c);
  EXPECT_NE(report.find("failed on attempt 1 (1 of 1 restarts used)"), std::string::npos) << report;
  EXPECT_NE(report.find("root cause (first failure): rank 1"), std::string::npos) << report;
  EXPECT_NE(report.find("exit code 3"), std::string::npos) << report;
  EXPECT_NE(report.find("(from the error file)"), std::string::npos) << report;
  EXPECT_NE(report.find("message: t4g::Error: x.yaml: train.lr: must be positive"), std::string::npos) << report;
  EXPECT_NE(report.find("      ctx line 2"), std::string::npos) << report;
  EXPECT_NE(report.find("rank 0: exit code 143 (stopped by t4grun)"), std::string::npos) << report;
  EXPECT_EQ(describe_root_cause(ws, records), "rank 1 ended with exit code 3: t4g::Error: x.yaml: train.lr: must be positive");
}

TEST(FailureReport, SignalAndPeerFailureHaveNoLocalRootCause) {
  const std::vector<WorkerState> ws = {worker(0, 0, SIGTERM, 100, true), worker(1, 0, SIGKILL, 102, true)};
  FailureContext c;
  c.signal = SIGINT;
  std::string report = format_failure_report(ws, {}, c);
  EXPECT_NE(report.find("stopped by SIGINT"), std::string::npos) << report;
  EXPECT_EQ(report.find("root cause"), std::string::npos) << report;
  EXPECT_NE(report.find("rank 1: signal SIGKILL (9) (stopped by t4grun)"), std::string::npos) << report;
  c.signal = 0;
  c.peer_failure = "rank 3 ended with exit code 1 on node 1";
  c.nnodes = 2;
  report = format_failure_report(ws, {}, c);
  EXPECT_NE(report.find("(node 0 of 2)"), std::string::npos) << report;
  EXPECT_NE(report.find("failure on another node: rank 3 ended with exit code 1 on node 1"), std::string::npos)
      << report;
}

}  // namespace
}  // namespace t4g::launch
