// The fine-tuning loop on the tiny model: a run stopped and resumed ends with bit-identical
// weights and optimizer state; the refiner-only mode leaves the backbone untouched; exports land in
// the documented layout; non-finite steps are skipped and stop the run after train.max_nan_steps.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include "common/config.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "tests/testing.h"
#include "train/checkpoint.h"

namespace t4g {
namespace {

Config tiny_run(const std::string& out_dir, std::vector<std::string> sets = {}) {
  std::vector<ConfigOverride> o;
  for (const std::string& s : {std::string("run.out_dir=") + out_dir, std::string("train.steps=6"),
                               std::string("train.checkpoint_every=3"), std::string("train.warmup_steps=2"),
                               std::string("train.log_every=1"), std::string("train.ema_decay=0.9"),
                               std::string("data.synthetic.videos=3"), std::string("data.loader_threads=1"),
                               std::string("refiner.layers=2"), std::string("loss.query_points=16"),
                               std::string("data.batch_size=2")}) {
    o.push_back(parse_override(s));
  }
  for (const auto& s : sets) o.push_back(parse_override(s));
  return parse_config(embedded_tiny_config(), "<tiny>", o);
}

TrainOptions quiet() {
  TrainOptions o;
  o.quiet = true;
  o.track_eval = false;  // tracking evaluation has its own test
  return o;
}

TEST(Trainer, StopAndResumeEndsWithTheSameWeights) {
  testing::TempDir dir;
  const TrainResult straight = train(tiny_run(dir.file("straight")), quiet());
  EXPECT_EQ(straight.steps_done, 6);
  ASSERT_FALSE(straight.export_dir.empty());

  TrainOptions first = quiet();
  first.stop_after_step = 4;  // not a checkpoint multiple: the stop itself checkpoints
  const TrainResult part1 = train(tiny_run(dir.file("resumed")), first);
  EXPECT_EQ(part1.steps_done, 4);
  EXPECT_TRUE(part1.export_dir.empty());
  TrainOptions second = quiet();
  second.resume = "latest";
  const TrainResult part2 = train(tiny_run(dir.file("resumed")), second);
  EXPECT_EQ(part2.start_step, 4);
  EXPECT_EQ(part2.steps_done, 6);

  const Checkpoint a = load_checkpoint(path_join(dir.file("straight"), "checkpoints/step_00000006"));
  const Checkpoint b = load_checkpoint(path_join(dir.file("resumed"), "checkpoints/step_00000006"));
  ASSERT_EQ(a.tensors.weights.size(), b.tensors.weights.size());
  for (const auto& [name, t] : a.tensors.weights) {
    EXPECT_TRUE(torch::equal(t, b.tensors.weights.at(name))) << name;
    EXPECT_TRUE(torch::equal(a.tensors.exp_avg_sq.at(name), b.tensors.exp_avg_sq.at(name))) << name;
    EXPECT_TRUE(torch::equal(a.tensors.ema.at(name), b.tensors.ema.at(name))) << name;
  }
  EXPECT_EQ(a.state.loader, b.state.loader);
  EXPECT_EQ(a.state.optimizer_steps, 6);
  // Training moved the weights: the comparison above is not between two untouched models.
  const Checkpoint early = load_checkpoint(path_join(dir.file("straight"), "checkpoints/step_00000003"));
  EXPECT_FALSE(torch::equal(early.tensors.weights.begin()->second, a.tensors.weights.begin()->second));
  // The metrics file of the resumed run has each step once.
  const std::string jsonl = testing::read_file(path_join(dir.file("resumed"), "metrics.jsonl"));
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 6);
  EXPECT_NE(straight.last_train.count("loss_corr"), 0u);
}

TEST(Trainer, RefinerOnlyLeavesTheBackboneAndExportsTheRefiner) {
  testing::TempDir dir;
  const TrainResult r = train(tiny_run(dir.path(), {"train.trainable=refiner", "train.steps=2"}), quiet());
  const auto weights = load_checkpoint(r.last_checkpoint).tensors.weights;
  for (const auto& [name, t] : weights) EXPECT_EQ(name.rfind("refiner.", 0), 0u) << name;
  EXPECT_TRUE(is_regular_file(path_join(r.export_dir, "refiner.safetensors")));
  EXPECT_FALSE(path_exists(path_join(r.export_dir, "transformer")));
}

TEST(Trainer, FullFineTuneExportsADiffusersTransformer) {
  testing::TempDir dir;
  const TrainResult r = train(tiny_run(dir.path(), {"train.steps=1", "train.ema_decay=0"}), quiet());
  const std::string t = path_join(r.export_dir, "transformer");
  EXPECT_TRUE(is_regular_file(path_join(t, "config.json")));
  const auto tensors = load_safetensors(path_join(t, "diffusion_pytorch_model.safetensors"));
  EXPECT_TRUE(tensors.count("transformer_blocks.0.attn1.to_q.weight"));
  EXPECT_FALSE(tensors.count("refiner.proj.weight"));  // the refiner has its own file
  // The export holds the trained weights.
  const auto ck = load_checkpoint(r.last_checkpoint).tensors.weights;
  EXPECT_TRUE(torch::equal(tensors.at("proj_out.weight"), ck.at("proj_out.weight")));
}

TEST(Trainer, LoraTrainsOnlyAdaptersAndExportsBothLayouts) {
  testing::TempDir dir;
  const TrainResult r = train(tiny_run(dir.path(), {"train.trainable=lora", "train.steps=1"}), quiet());
  const auto weights = load_checkpoint(r.last_checkpoint).tensors.weights;
  for (const auto& [name, t] : weights) {
    const bool adapter = name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
    EXPECT_TRUE(adapter || name.rfind("refiner.", 0) == 0) << name;
  }
  EXPECT_TRUE(is_regular_file(path_join(r.export_dir, "lora/adapter_model.safetensors")));
  EXPECT_TRUE(is_regular_file(path_join(r.export_dir, "lora/adapter_config.json")));
  EXPECT_TRUE(is_regular_file(path_join(r.export_dir, "lora/pytorch_lora_weights.safetensors")));
}

TEST(Trainer, NonFiniteStepsAreSkippedThenStopTheRun) {
  testing::TempDir dir;
  TrainOptions o = quiet();
  int64_t calls = 0;
  // The evaluation hook runs once before training: poison a trainable weight there.
  o.evaluate = [&](TrainingModel& m, int64_t) {
    ++calls;
    torch::NoGradGuard no_grad;
    m.params.param(0).detach().fill_(std::numeric_limits<float>::quiet_NaN());
    return std::map<std::string, double>{{"poisoned", 1.0}};
  };
  const std::string msg =
      testing::error_of([&] { train(tiny_run(dir.path(), {"train.max_nan_steps=2", "train.checkpoint_every=100"}), o); });
  EXPECT_NE(msg.find("train.max_nan_steps"), std::string::npos) << msg;
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(find_latest_checkpoint(dir.file("checkpoints")), "");  // nothing saved from a diverged run
}

}  // namespace
}  // namespace t4g
