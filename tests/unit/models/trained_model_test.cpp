// A trained model is one thing: what save_trained_model writes, load_model_components loads back
// with the refiner attached, and every forward then adds the refiner's residual exactly as the
// training step's probe hook adds it.
#include "models/trained_model.h"

#include <gtest/gtest.h>

#include "common/fs.h"
#include "common/json.h"
#include "models/cogvideox_vae_config.h"
#include "tests/testing.h"

namespace t4g {
namespace {

Config tiny_recipe(const std::vector<std::string>& sets = {}) {
  std::vector<ConfigOverride> o;
  for (const auto& s : sets) o.push_back(parse_override(s));
  return parse_config(embedded_tiny_config(), "<tiny>", o);
}

// A refiner whose projection is not zero (as after training), so that its residual shows.
Refiner trained_refiner(const ModelComponents& c, int64_t block, uint64_t seed) {
  RefinerConfig rc;
  rc.block = block;
  rc.layers = 2;
  Refiner r(rc, c.transformer->config().inner_dim());
  init_random_weights(*r, seed, 0.05);
  return r;
}

struct Inputs {
  torch::Tensor latents, text, timestep;
};

Inputs inputs(const ModelComponents& c) {
  torch::manual_seed(3);
  return {torch::randn({1, 3, c.transformer->config().in_channels, 8, 12}),
          torch::randn({1, c.text_tokens, c.text_embed_dim}), torch::full({1}, 500, torch::kLong)};
}

torch::Tensor run(ModelComponents& c, const Inputs& in, const ProbeOptions* probes = nullptr) {
  torch::NoGradGuard no_grad;
  TransformerForwardOptions fo;
  fo.probes = probes;
  return c.transformer->forward(in.latents, in.text, in.timestep, fo).sample;
}

ModelConfig cpu_model(const std::string& path) {
  ModelConfig m;
  m.path = path;
  m.device = DeviceKind::kCpu;
  return m;
}

// The attached residual is the training step's: a forward with the refiner attached equals one
// with refiner->install(probes) (what train/training_step.cpp does), and differs from the backbone
// alone; an early-stopping probe forward sees the same block output either way.
TEST(TrainedModel, AttachedRefinerAddsTheResidualAsTrainingDoes) {
  const Config recipe = tiny_recipe();
  ModelComponents c = load_model_components(recipe.model, 7);
  const Inputs in = inputs(c);
  const torch::Tensor backbone = run(c, in);
  Refiner refiner = trained_refiner(c, 0, 11);

  ProbeOptions training;
  refiner->install(training, std::make_shared<RefinedFeatures>());
  const torch::Tensor as_trained = run(c, in, &training);

  attach_refiner(c, refiner);
  ASSERT_EQ(c.transformer->block_residuals().count(0), 1u);
  const torch::Tensor attached = run(c, in);
  EXPECT_TRUE(torch::equal(attached, as_trained));
  EXPECT_GT((attached - backbone).abs().max().item<double>(), 1e-4);

  // A probe's own hook at the block replaces the attached one (no double residual).
  EXPECT_TRUE(torch::equal(run(c, in, &training), as_trained));

  attach_refiner(c, nullptr);
  EXPECT_TRUE(c.transformer->block_residuals().empty());
  EXPECT_TRUE(torch::equal(run(c, in), backbone));
}

// save -> load gives the same network: same forward, bit for bit, on the CPU; the backbone alone
// (ComponentRequest.refiner = false) differs. A tiny base makes the export a whole diffusers
// pipeline (model_index.json, vae/, scheduler/) that t4g's own readers accept.
TEST(TrainedModel, ExportLoadsBackTheSameModel) {
  testing::TempDir dir;
  const Config recipe = tiny_recipe({"train.trainable=full"});
  ModelComponents c = load_model_components(recipe.model, 7);
  attach_refiner(c, trained_refiner(c, 1, 5));
  const Inputs in = inputs(c);
  const torch::Tensor want = run(c, in);

  TrainedModelExport what;
  what.dir = dir.file("export");
  what.recipe = recipe;
  what.weights = "raw";
  what.step = 3;
  save_trained_model(c, what);
  for (const char* f : {"t4g_model.json", "config.yaml", "refiner.safetensors", "t4g_diffusers.py", "model_index.json",
                        "transformer/config.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
                        "scheduler/scheduler_config.json"}) {
    EXPECT_TRUE(is_regular_file(path_join(what.dir, f))) << f;
  }
  EXPECT_EQ(trained_folder_kind(what.dir), TrainedFolderKind::kExport);
  const Json manifest = read_json(path_join(what.dir, "t4g_model.json"));
  EXPECT_EQ(manifest["base_model"], "");  // the export is the pipeline
  EXPECT_EQ(manifest["weights"], "raw");
  EXPECT_EQ(manifest["step"], 3);
  EXPECT_EQ(read_vae_config(path_join(what.dir, "vae/config.json")).block_out_channels,
            c.vae->config().block_out_channels);
  EXPECT_EQ(read_scheduler_config(path_join(what.dir, "scheduler/scheduler_config.json")).snr_shift_scale,
            c.scheduler.config().snr_shift_scale);

  ModelComponents loaded = load_model_components(cpu_model(what.dir), 0);
  ASSERT_TRUE(loaded.refiner);
  EXPECT_EQ(loaded.refiner->config().block, 1);
  EXPECT_TRUE(loaded.is_tiny());
  EXPECT_TRUE(loaded.has_random_weights());
  EXPECT_EQ(loaded.weights, "raw");
  EXPECT_TRUE(torch::equal(run(loaded, in), want));
  // The VAE came along too (the same weights).
  EXPECT_TRUE(torch::equal(loaded.vae->parameters().front(), c.vae->parameters().front()));

  ComponentRequest backbone_only;
  backbone_only.refiner = false;
  ModelComponents bare = load_model_components(cpu_model(what.dir), 0, backbone_only);
  EXPECT_FALSE(bare.refiner);
  EXPECT_GT((run(bare, in) - want).abs().max().item<double>(), 1e-4);
}

// Bad folders are one error naming the file and what is wrong.
TEST(TrainedModel, BadExportsAreOneClearError) {
  testing::TempDir dir;
  const Config recipe = tiny_recipe();
  ModelComponents c = load_model_components(recipe.model, 7);
  attach_refiner(c, trained_refiner(c, 1, 5));
  TrainedModelExport what;
  what.dir = dir.file("export");
  what.recipe = recipe;
  save_trained_model(c, what);

  ModelConfig ema = cpu_model(what.dir);
  ema.weights = "ema";
  std::string err = testing::error_of([&] { load_model_components(ema, 0); });
  EXPECT_NE(err.find("t4g_model.json"), std::string::npos) << err;
  EXPECT_NE(err.find("raw weights only"), std::string::npos) << err;

  const std::string manifest = path_join(what.dir, "t4g_model.json");
  Json m = read_json(manifest);
  m["base_model"] = "/nowhere/CogVideoX-2b";
  write_json(manifest, m);
  err = testing::error_of([&] { load_model_components(cpu_model(what.dir), 0); });
  EXPECT_NE(err.find("base_model"), std::string::npos) << err;
  EXPECT_NE(err.find("/nowhere/CogVideoX-2b"), std::string::npos) << err;

  m["base_model"] = "";
  m["format"] = "something-else";
  write_json(manifest, m);
  err = testing::error_of([&] { load_model_components(cpu_model(what.dir), 0); });
  EXPECT_NE(err.find("t4g_model.json"), std::string::npos) << err;
  EXPECT_NE(err.find("format"), std::string::npos) << err;

  // A refiner of another model's width.
  m["format"] = "t4g-trained-model";
  write_json(manifest, m);
  RefinerConfig rc;
  rc.block = 0;
  rc.layers = 1;
  Refiner wide(rc, 48);
  save_refiner(path_join(what.dir, "refiner.safetensors"), wide);
  err = testing::error_of([&] { load_model_components(cpu_model(what.dir), 0); });
  EXPECT_NE(err.find("does not fit this transformer"), std::string::npos) << err;
}

TEST(TrainedModel, WeightChoicesParse) {
  EXPECT_EQ(parse_weight_choice("auto"), WeightChoice::kAuto);
  EXPECT_EQ(parse_weight_choice("ema"), WeightChoice::kEma);
  EXPECT_EQ(parse_weight_choice("raw"), WeightChoice::kRaw);
  EXPECT_NE(testing::error_of([] { parse_weight_choice("best"); }).find("model.weights"), std::string::npos);
}

}  // namespace
}  // namespace t4g
