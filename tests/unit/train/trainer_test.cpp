// The fine-tuning loop on the tiny model: a run stopped and resumed ends with bit-identical
// weights and optimizer state; the refiner-only mode leaves the backbone untouched; exports land in
// the documented layout; non-finite steps are skipped and stop the run after train.max_nan_steps.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include "common/config.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "models/model_components.h"
#include "tests/testing.h"
#include "train/checkpoint.h"
#include "train/datasets.h"
#include "train/precompute.h"
#include "data/shards.h"
#include "models/trained_model.h"

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
  // A random tiny base exists nowhere else, so its (untrained) backbone is exported beside the
  // refiner; a real base would be named in t4g_model.json instead (models/trained_model.h).
  EXPECT_TRUE(is_regular_file(path_join(r.export_dir, "transformer/config.json")));
  EXPECT_EQ(read_json(path_join(r.export_dir, "t4g_model.json"))["trainable"], "refiner");
}

ModelComponents load_cpu(const std::string& path, const std::string& weights = "auto") {
  ModelConfig m;
  m.path = path;
  m.device = DeviceKind::kCpu;
  m.weights = weights;
  return load_model_components(m, 0);
}

torch::Tensor forward_of(ModelComponents& c) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  const auto x = torch::randn({1, 3, c.transformer->config().in_channels, 8, 12});
  const auto text = torch::randn({1, c.text_tokens, c.text_embed_dim});
  return c.transformer->forward(x, text, torch::full({1}, 300, torch::kLong)).sample;
}

// What the user runs is what was trained: the export (EMA weights, the run kept them) and the last
// checkpoint read with model.weights=ema are the same network, the raw weights another one, and
// both carry the refiner; during training the evaluation hook sees the refiner attached (so the
// VBench samples include its residual).
TEST(Trainer, ExportAndCheckpointLoadAsTheTrainedModel) {
  testing::TempDir dir;
  TrainOptions o = quiet();
  int64_t residual_blocks = -1;
  o.evaluate = [&](TrainingModel& m, int64_t) {
    residual_blocks = static_cast<int64_t>(m.components.transformer->block_residuals().size());
    return std::map<std::string, double>{};
  };
  const TrainResult r = train(tiny_run(dir.path(), {"train.steps=3", "train.trainable=blocks",
                                                    "train.trainable_blocks=[0]", "train.lr=1e-2"}),
                              o);
  EXPECT_EQ(residual_blocks, 1);
  ModelComponents exported = load_cpu(r.export_dir);
  ModelComponents ema = load_cpu(r.last_checkpoint, "ema");
  ModelComponents raw = load_cpu(r.last_checkpoint, "raw");
  ModelComponents automatic = load_cpu(r.last_checkpoint);
  ASSERT_TRUE(exported.refiner && ema.refiner && raw.refiner);
  EXPECT_EQ(exported.weights, "ema");
  EXPECT_EQ(automatic.weights, "ema");
  const torch::Tensor want = forward_of(exported);
  EXPECT_TRUE(torch::equal(forward_of(ema), want));
  EXPECT_TRUE(torch::equal(forward_of(automatic), want));
  EXPECT_GT((forward_of(raw) - want).abs().max().item<double>(), 1e-6);
  // An export holds one set of weights; asking it for the other names the checkpoints.
  EXPECT_NE(testing::error_of([&] { load_cpu(r.export_dir, "raw"); }).find("checkpoints"), std::string::npos);
  // A trained folder is not a base to fine-tune from.
  Config again = tiny_run(dir.file("again"), {"train.steps=1", std::string("model.path=") + r.export_dir});
  EXPECT_NE(testing::error_of([&] { train(again, quiet()); }).find("--resume"), std::string::npos);
}

// LoRA runs load back the same way (adapters on the rebuilt base), without EMA.
TEST(Trainer, LoraExportAndCheckpointAgree) {
  testing::TempDir dir;
  const TrainResult r = train(tiny_run(dir.path(), {"train.trainable=lora", "train.steps=2", "train.ema_decay=0",
                                                    "train.lr=1e-2"}),
                              quiet());
  ModelComponents exported = load_cpu(r.export_dir);
  ModelComponents checkpoint = load_cpu(r.last_checkpoint);
  EXPECT_EQ(checkpoint.weights, "raw");
  EXPECT_TRUE(torch::equal(forward_of(exported), forward_of(checkpoint)));
  EXPECT_NE(testing::error_of([&] { load_cpu(r.last_checkpoint, "ema"); }).find("ema_decay"), std::string::npos);
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

// Shards of another size than the recipe's clips are never trained on silently: larger frames are
// an error naming data.fit (or random crops with data.fit=crop), smaller or shorter ones an error.
TEST(Trainer, ShardsThatDoNotFitTheRecipeAreRefusedOrCropped) {
  testing::TempDir dir;
  const Config big = tiny_run(dir.file("big"));  // 9 x 64 x 96
  const std::string shards = prepare_training_set(big, true);
  const std::string use = std::string("data.shards=") + shards;
  std::string err = testing::error_of(
      [&] { train(tiny_run(dir.file("a"), {use, "data.height=32", "data.width=48", "train.steps=1"}), quiet()); });
  EXPECT_NE(err.find("data.fit"), std::string::npos) << err;
  EXPECT_NE(err.find("64 x 96"), std::string::npos) << err;
  const TrainResult cropped =
      train(tiny_run(dir.file("b"), {use, "data.height=32", "data.width=48", "data.fit=crop", "train.steps=1"}), quiet());
  EXPECT_EQ(cropped.steps_done, 1);
  err = testing::error_of([&] { train(tiny_run(dir.file("c"), {use, "data.frames=13", "train.steps=1"}), quiet()); });
  EXPECT_NE(err.find("shorter or smaller"), std::string::npos) << err;
  // Longer videos than the clip are fine (a random window): 9-frame shards, 5-frame clips.
  EXPECT_EQ(train(tiny_run(dir.file("d"), {use, "data.frames=5", "train.steps=1"}), quiet()).steps_done, 1);
}

// Precomputed latents are what the trainer would have encoded: `t4g precompute` writes the VAE's
// latents into the shards (the trainer's seeded tiny VAE), a second run skips every shard, and a
// training step on them has the same diffusion loss as one that encodes the frames itself.
TEST(Trainer, PrecomputedLatentsTrainAsOnlineEncoding) {
  testing::TempDir dir;
  const Config base = tiny_run(dir.file("data"), {"data.batch_size=1"});
  const std::string shards = prepare_training_set(base, true);
  PrecomputeOptions po;
  po.shards = shards;
  const PrecomputeReport first = precompute_shards(base, po);
  EXPECT_EQ(first.written, first.shards);
  EXPECT_EQ(first.videos, 3);
  EXPECT_FALSE(first.text);  // the tiny model has no T5: its prompts are zeros
  const data::ShardReader reader(shards);
  for (const auto& e : reader.entries()) EXPECT_TRUE(e.has_latents) << e.id;
  ComponentRequest vae_only;
  ModelComponents m = load_model_components(base.model, base_model_seed(base.run.seed), vae_only);
  const data::ShardVideo v = reader.read(size_t{0});
  EXPECT_TRUE(torch::equal(v.latents, encode_frames_to_latents(m.vae, v.frames.unsqueeze(0))[0]));
  const PrecomputeReport again = precompute_shards(base, po);
  EXPECT_EQ(again.written, 0);
  EXPECT_EQ(again.skipped, first.shards);

  const std::string use = std::string("data.shards=") + shards;
  const TrainResult with = train(tiny_run(dir.file("with"), {use, "train.steps=1", "data.batch_size=1"}), quiet());
  const TrainResult without =
      train(tiny_run(dir.file("without"), {use, "train.steps=1", "data.batch_size=1", "data.latents=never"}), quiet());
  EXPECT_DOUBLE_EQ(with.last_train.at("loss_diffusion"), without.last_train.at("loss_diffusion"));
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
