// `t4g sample` end to end on the diffusers-made tiny pipeline (tests/fixtures/pipeline): the HDF5
// frames equal diffusers' decoded video within one uint8 level; the tiny recipe samples without a
// prompt file; bad inputs end with exit code 1 and one stderr line naming the rule or the tensor.
#include <gtest/gtest.h>

#include "common/fs.h"
#include "common/hdf5.h"
#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::CommandResult;
using testing::fixture;
using testing::program;
using testing::run_command;
using testing::TempDir;

CommandResult sample(const std::string& args) {
  return run_command(program("t4g") + " sample --no-progress " + args);
}

std::string fixture_pipeline() {
  const std::string root = fixture("pipeline/ddim_2b");
  // The fixture is diffusers' fp32 run: pin fp32 on the CPU (a model folder alone runs where it is
  // fastest, bf16 on a GPU).
  return "--model " + root + " --prompt-embeds " + root + "/expected.safetensors --set model.device=cpu "
         "--set model.dtype=fp32";
}

void expect_one_line_error(const CommandResult& r, const std::vector<std::string>& needles) {
  SCOPED_TRACE(r.err);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.find("t4g: error: "), 0u);
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "exactly one line";
  for (const auto& needle : needles) EXPECT_NE(r.err.find(needle), std::string::npos) << needle;
}

TEST(SampleCli, FixturePipelineToHdf5MatchesDiffusers) {
  TempDir dir;
  const CommandResult r = sample(fixture_pipeline() + " --steps 3 --cfg 6 --seed 42 --out " + dir.file("v.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  h5::File f = h5::File::open(dir.file("v.h5"));
  const torch::Tensor frames = f.root().read("frames");
  const torch::Tensor want = (load_safetensors(fixture("pipeline/ddim_2b/expected.safetensors")).at("video")[0] * 255).round();
  ASSERT_EQ(frames.sizes(), want.sizes());  // [9, 32, 48, 3]: the model's sample size by default
  EXPECT_EQ(frames.scalar_type(), torch::kUInt8);
  EXPECT_LE((frames.to(torch::kFloat32) - want).abs().max().item<double>(), 1.0);  // one uint8 level
  EXPECT_EQ(f.root().attr_int("steps"), 3);
  EXPECT_EQ(f.root().attr_int("seed"), 42);
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"v.h5"}) << "no temporary left behind";
}

TEST(SampleCli, TinyRecipeWithCagWritesFrames) {
  TempDir dir;
  const CommandResult r = sample("--set model.device=cpu --steps 2 --cag-layers 0,1 --cag-scale 1 --out " +
                                 dir.file("tiny.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  h5::File f = h5::File::open(dir.file("tiny.h5"));
  EXPECT_EQ(f.root().read("frames").sizes(), (std::vector<int64_t>{9, 64, 96, 3}));  // tiny sample size
  EXPECT_EQ(f.root().attr_string("cag_layers"), "0,1");
}

// A model t4g trained samples with its refiner: `--model RUN/export` and `--checkpoint` of the
// same step give the same latents, and the backbone alone (--no-refiner, what a plain diffusers
// pipeline would run) gives others.
TEST(SampleCli, ATrainedModelSamplesWithItsRefiner) {
  TempDir dir;
  const std::string run = dir.file("run");
  const CommandResult t = run_command(program("t4g") + " train --set run.out_dir=" + run +
                                      " --set train.steps=3 --set train.lr=1e-2 --set refiner.layers=2"
                                      " --set eval.vbench_videos=0 --set eval.videos=1 --set train.log_every=1");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const std::string common = " --steps 3 --cfg 6 --seed 42 --set model.device=cpu";
  ASSERT_EQ(sample("--model " + run + "/export --out " + dir.file("a.h5") + " --save-latents " + dir.file("a.st") + common)
                .exit_code,
            0);
  ASSERT_EQ(sample("--checkpoint " + run + "/checkpoints/step_00000003 --out " + dir.file("c.h5") + " --save-latents " +
                   dir.file("c.st") + common)
                .exit_code,
            0);
  const CommandResult bare = sample("--model " + run + "/export --no-refiner --out " + dir.file("b.h5") +
                                    " --save-latents " + dir.file("b.st") + common);
  ASSERT_EQ(bare.exit_code, 0) << bare.err;
  const auto a = load_safetensors(dir.file("a.st")), b = load_safetensors(dir.file("b.st")),
             c = load_safetensors(dir.file("c.st"));
  EXPECT_TRUE(torch::equal(a.at("latents"), c.at("latents")));
  EXPECT_TRUE(torch::equal(a.at("video"), c.at("video")));
  EXPECT_GT((a.at("latents") - b.at("latents")).abs().max().item<double>(), 1e-4);
  EXPECT_EQ(a.at("video").dim(), 5);  // [B, F, 3, H, W] as diffusers' output_type="pt"
  EXPECT_EQ(a.at("video").size(2), 3);
  EXPECT_GE(a.at("video").min().item<double>(), 0.0);
  EXPECT_LE(a.at("video").max().item<double>(), 1.0);
}

// The diffusers side of an export: diffusers' own pipeline with the export's t4g_diffusers.py
// (tests/fixtures/trained_export/make_fixtures.py) and `t4g sample` give the same latents and
// video (fp32, CPU) for a fully trained and a LoRA-trained tiny model, with and without the refiner.
TEST(SampleCli, AnExportSamplesAsDiffusersWithItsLoaderFile) {
  TempDir dir;
  for (const std::string cs : {"full", "lora"}) {
    SCOPED_TRACE(cs);
    const std::string root = fixture("trained_export/" + cs);
    const std::string common = " --model " + root + "/export --steps 3 --cfg 6 --seed 42 --frames 9 --height 32 " +
                               "--width 48 --set model.device=cpu --set model.dtype=fp32 --out " + dir.file(cs + ".h5");
    const auto want = load_safetensors(root + "/expected.safetensors");
    CommandResult r = sample(common + " --save-latents " + dir.file(cs + ".st"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto got = load_safetensors(dir.file(cs + ".st"));
    EXPECT_LE((got.at("latents") - want.at("latents")).abs().max().item<double>(), 1e-4);
    EXPECT_LE((got.at("video") - want.at("video")).abs().max().item<double>(), 1e-4);
    r = sample(common + " --no-refiner --save-latents " + dir.file(cs + "_bare.st"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto bare = load_safetensors(dir.file(cs + "_bare.st"));
    EXPECT_LE((bare.at("latents") - want.at("latents_no_refiner")).abs().max().item<double>(), 1e-4);
    // The two references differ, so the comparisons above can tell them apart.
    EXPECT_GT((want.at("latents") - want.at("latents_no_refiner")).abs().max().item<double>(), 1e-3);
  }
}

// --cag-mode reaches the options: auto resolves per CFG scale as DiffTrack's pipeline (drop with
// CFG, renorm without), an explicit mode is kept; the HDF5 file records the variant used.
TEST(SampleCli, CagModeAutoFollowsTheCfgScale) {
  TempDir dir;
  auto mode = [&](const std::string& flags) {
    const std::string out = dir.file("m.h5");
    const CommandResult r = sample("--set model.device=cpu --steps 1 --cag-layers 0,1 " + flags + " --out " + out);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return h5::File::open(out).root().attr_string("cag_mode");
  };
  EXPECT_EQ(mode(""), "drop");  // the default --cfg 6
  EXPECT_EQ(mode("--cfg 1"), "renorm");
  EXPECT_EQ(mode("--cag-mode auto --cfg 1"), "renorm");
  EXPECT_EQ(mode("--cag-mode renorm --cfg 6"), "renorm");
  EXPECT_EQ(mode("--cag-mode drop --cfg 1"), "drop");
}

TEST(SampleCli, BadInputsAreOneLineErrors) {
  TempDir dir;
  const std::string out = " --out " + dir.file("x.h5");
  expect_one_line_error(sample(fixture_pipeline() + " --steps 1 --frames 10" + out), {"frames = 10", "4k+1"});
  expect_one_line_error(sample(fixture_pipeline() + " --steps 1 --cag-layers 1,5" + out),
                        {"CAG layer 5 is outside", "[0, 2)"});
  expect_one_line_error(sample(fixture_pipeline() + " --steps 1 --cag-layers 1,x" + out), {"--cag-layers"});
  // A model folder without a VAE.
  expect_one_line_error(sample("--model " + fixture("pipeline/ddim_2b/transformer") + " --prompt-embeds " +
                               fixture("pipeline/ddim_2b/expected.safetensors") + " --steps 1" + out),
                        {"not a pipeline root"});
  // Embeddings of another width than the model's text_embed_dim.
  save_safetensors(dir.file("e.safetensors"), {{"prompt_embeds", torch::zeros({1, 5, 7})},
                                               {"negative_prompt_embeds", torch::zeros({1, 5, 7})}});
  expect_one_line_error(sample("--model " + fixture("pipeline/ddim_2b") + " --prompt-embeds " +
                               dir.file("e.safetensors") + " --steps 1" + out),
                        {"prompt_embeds must be [B, 5, 24]"});
  EXPECT_FALSE(path_exists(dir.file("x.h5")));
}

}  // namespace
}  // namespace t4g
