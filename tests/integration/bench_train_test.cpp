// bench_train under t4grun on CPU (2 ranks, the store Communicator) at a tiny shape: it runs the
// trainer's data-parallel optimizer at the ZeRO stage asked for, reports the stage, the bucket
// cap and the phase breakdown in its JSON line, and under ZeRO-2 each rank holds half of stage
// 0's optimizer state. The GPU figures come from scripts/gpu_bench_all.sh.
#include <gtest/gtest.h>

#include "common/json.h"
#include "tests/testing.h"

namespace t4g {
namespace {

// Runs bench_train on 2 ranks with `args`; returns rank 0's JSON line (t4grun prefixes it with
// "[rank 0]: ").
Json run_bench(const std::string& args) {
  const auto r = testing::run_command(testing::program("t4grun") + " --standalone --nproc-per-node 2 " +
                                      testing::program("bench_train") +
                                      " --preset tiny --checkpointing 0 --frames 3 --height 8 --width 8 --tracks 16"
                                      " --warmup 1 " +
                                      args);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  const size_t at = r.out.find("{\"");
  if (at == std::string::npos) {
    ADD_FAILURE() << "no JSON line in: " << r.out << r.err;
    return Json::object();
  }
  return parse_json(r.out.substr(at, r.out.find('\n', at) - at), "bench_train output");
}

TEST(BenchTrain, RunsZeroStagesUnderT4grunAndReportsThePhases) {
  const Json plain = run_bench("--iters 2 --zero-stage 0");
  // One timed step, so the medians are that step's phases.
  const Json sharded = run_bench("--iters 1 --zero-stage 2 --bucket-mb 1 --breakdown");
  EXPECT_EQ(plain.at("world_size"), 2);
  EXPECT_EQ(plain.at("comm"), "store");
  EXPECT_EQ(plain.at("zero_stage"), 0);
  EXPECT_EQ(plain.at("bucket_mb"), 25);
  EXPECT_EQ(plain.at("breakdown"), false);
  EXPECT_EQ(sharded.at("zero_stage"), 2);
  EXPECT_EQ(sharded.at("bucket_mb"), 1);
  EXPECT_EQ(sharded.at("breakdown"), true);
  EXPECT_GE(sharded.at("buckets").get<int64_t>(), 1);
  // Every phase is timed on the CPU, and the four partition the step (consecutive intervals of
  // one clock: tolerance 1 us for the float sum).
  double phases = 0;
  for (const char* key : {"forward_s", "backward_s", "reduce_wait_s", "optimizer_s"}) {
    ASSERT_TRUE(sharded.at(key).is_number()) << key;
    EXPECT_GE(sharded.at(key).get<double>(), 0.0) << key;
    phases += sharded.at(key).get<double>();
  }
  EXPECT_GT(sharded.at("forward_s").get<double>(), 0.0);
  EXPECT_GT(sharded.at("backward_s").get<double>(), 0.0);
  const double step = sharded.at("median_step_s").get<double>();
  EXPECT_NEAR(phases, step, 1e-6);
  // ZeRO-2 on 2 ranks: half of the replicated optimizer state per rank (the flat space may split
  // unevenly by one element: tolerance 1e-3 relative).
  EXPECT_EQ(plain.at("trainable_params"), sharded.at("trainable_params"));
  EXPECT_NEAR(sharded.at("optimizer_state_gib").get<double>() * 2, plain.at("optimizer_state_gib").get<double>(),
              1e-3 * plain.at("optimizer_state_gib").get<double>());
}

}  // namespace
}  // namespace t4g
