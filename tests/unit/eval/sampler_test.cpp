// The sampling loop against diffusers' CogVideoXPipeline on tiny pipelines
// (tests/fixtures/pipeline/make_fixtures.py): per-step latents, decoded frames and the seeded
// noise; CAG against direct transformer calls and its variant chosen per CFG as DiffTrack's
// pipeline chooses it; the file side of `t4g sample`; bad inputs.
// Tolerances (fp32 on CPU): latents 2e-5 of their largest magnitude (the reference runs different
// kernels, and three steps compound rounding; 10x the error measured here, for other CPUs' vector
// units); the [0, 1] video 1e-4 absolute; uint8 frames within
// one level; the seeded noise exactly; CAG against separate calls 1e-4 of the magnitude.
#include "eval/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <optional>

#include "common/error.h"
#include "common/fs.h"
#include "common/hdf5.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "eval/sample_file.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::error_of;
using testing::fixture;

constexpr double kLatentTolerance = 2e-5;  // relative to the reference's max |value| (measured: <= 2.2e-6)
constexpr double kVideoTolerance = 1e-4;   // absolute, on the [0, 1] video (measured: 5.8e-6)

struct Case {
  ModelComponents components;
  std::map<std::string, torch::Tensor> expected;
  JsonObject meta{nlohmann::json::object(), ""};
  PromptEmbeddings prompts;
};

Case load_case(const std::string& name) {
  Case c;
  ModelConfig model;
  model.path = fixture("pipeline/" + name);
  model.device = DeviceKind::kCpu;
  c.components = load_model_components(model, 0);
  c.expected = load_safetensors(fixture("pipeline/" + name + "/expected.safetensors"));
  c.meta = JsonObject::from_file(fixture("pipeline/" + name + "/expected.json"));
  c.prompts.positive = c.expected.at("prompt_embeds");
  c.prompts.negative = c.expected.at("negative_prompt_embeds");
  return c;
}

SampleOptions fixture_options(const Case& c) {
  SampleOptions o;
  o.steps = c.meta.get_int("steps");
  o.guidance_scale = c.meta.get_double("guidance_scale");
  o.dynamic_cfg = c.meta.get_bool("use_dynamic_cfg");
  o.seed = static_cast<uint64_t>(c.meta.get_int("seed"));
  o.progress = false;
  return o;  // frames / height / width: the model's sample size, as the fixture's call
}

double relative_error(const torch::Tensor& got, const torch::Tensor& want) {
  EXPECT_EQ(got.sizes(), want.sizes());
  if (got.sizes() != want.sizes()) return 1e30;
  return (got.to(torch::kFloat32) - want).abs().max().item<double>() / want.abs().max().item<double>();
}

// Runs the fixture's call and checks every step's latents against diffusers'.
SampleResult run_and_check_steps(Case& c) {
  SampleOptions o = fixture_options(c);
  std::vector<torch::Tensor> steps;
  std::vector<double> guidance;
  o.on_step = [&](const SampleStep& s) {
    steps.push_back(s.latents->clone());
    guidance.push_back(s.guidance_scale);
  };
  SampleResult r = sample_video(c.components, c.prompts, o);
  const auto want_timesteps = c.meta.json().at("timesteps");
  const auto want_guidance = c.meta.json().at("guidance_per_step");
  EXPECT_EQ(r.timesteps.size(), want_timesteps.size());
  EXPECT_EQ(steps.size(), static_cast<size_t>(o.steps));
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    EXPECT_EQ(r.timesteps[i], want_timesteps[i].get<int64_t>());
    EXPECT_NEAR(guidance[i], want_guidance[i].get<double>(), 1e-12);
    EXPECT_LE(relative_error(steps[i], c.expected.at("latents_step" + std::to_string(i))), kLatentTolerance);
  }
  EXPECT_LE(relative_error(r.latents, c.expected.at("latents")), kLatentTolerance);
  return r;
}

TEST(Sampler, DdimWithCfgMatchesDiffusersPipeline) {
  Case c = load_case("ddim_2b");
  const SampleResult r = run_and_check_steps(c);
  // Decoded video: the pipeline's "np" output is (video / 2 + 0.5).clamp(0, 1) as [B, F, H, W, 3].
  const torch::Tensor video = decode_latents_to_video(c.components.vae, r.latents);
  const torch::Tensor np = (video / 2 + 0.5).clamp(0, 1).permute({0, 2, 3, 4, 1});
  const torch::Tensor& want = c.expected.at("video");
  ASSERT_EQ(np.sizes(), want.sizes());
  EXPECT_LE((np - want).abs().max().item<double>(), kVideoTolerance);
  // uint8 frames of the same call: within one level of PIL's rounding of the reference.
  const torch::Tensor want_u8 = (want * 255).round();
  ASSERT_EQ(r.frames.sizes(), want.sizes());
  EXPECT_EQ(r.frames.scalar_type(), torch::kUInt8);
  EXPECT_LE((r.frames.to(torch::kFloat32) - want_u8).abs().max().item<double>(), 1.0);
}

TEST(Sampler, DpmWithDynamicCfgAndRopeMatchesDiffusersPipeline) {
  Case c = load_case("dpm_5b");
  ASSERT_TRUE(c.components.transformer->config().use_rotary_positional_embeddings);
  ASSERT_EQ(c.components.scheduler.config().class_name, "CogVideoXDPMScheduler");
  const SampleResult r = run_and_check_steps(c);
  const torch::Tensor& want = c.expected.at("frames");
  ASSERT_EQ(r.frames.sizes(), want.sizes());
  const torch::Tensor diff = (r.frames.to(torch::kInt32) - want.to(torch::kInt32)).abs();
  EXPECT_LE(diff.max().item<int>(), 1);
  EXPECT_LE(diff.gt(0).to(torch::kFloat64).mean().item<double>(), 0.01) << "at most 1% of values off by one";
}

TEST(Sampler, EvenLatentCountsDecodeToFourFramesEachAsTheReference) {
  // 13 frames -> 4 latents -> the reference's chunked decode makes 16 frames (a warning says so).
  Case c = load_case("ddim_2b");
  SampleOptions o = fixture_options(c);
  o.steps = 1;
  o.frames = 13;
  const SampleResult r = sample_video(c.components, c.prompts, o);
  EXPECT_EQ(r.latents.size(1), 4);
  EXPECT_EQ(r.frames.size(1), 16);
}

TEST(Sampler, SeededNoiseIsTorchsRandn) {
  Case c = load_case("ddim_2b");
  const torch::Tensor& want = c.expected.at("initial_latents");
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(42);
  EXPECT_TRUE(torch::equal(initial_noise(want.sizes().vec(), torch::kFloat32, g), want));
  // In bf16 (the pipeline's dtype with bf16 embeddings) torch draws differently; still exact.
  g = at::make_generator<at::CPUGeneratorImpl>(42);
  const torch::Tensor bf16 = initial_noise(want.sizes().vec(), torch::kBFloat16, g);
  EXPECT_EQ(bf16.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(bf16.to(torch::kFloat32), c.expected.at("initial_latents_bf16")));
  EXPECT_FALSE(torch::equal(bf16.to(torch::kFloat32), want));
}

TEST(Sampler, GivenInitialLatentsReplaceTheNoise) {
  Case c = load_case("ddim_2b");
  SampleOptions o = fixture_options(c);
  o.decode = false;
  o.steps = 2;
  const torch::Tensor seeded = sample_video(c.components, c.prompts, o).latents;
  o.initial_latents = c.expected.at("initial_latents");
  EXPECT_TRUE(torch::equal(sample_video(c.components, c.prompts, o).latents, seeded));  // DDIM is deterministic
  o.initial_latents = c.expected.at("initial_latents") * 0.5;
  EXPECT_FALSE(torch::equal(sample_video(c.components, c.prompts, o).latents, seeded));
}

TEST(Sampler, DynamicGuidanceIsTheLiteralFormula) {
  // research/cogvideox.md 5: g = 6, 50 steps -> 2.29, 2.54, 6.97, 6.42 at t = 999, 979, 959, 939.
  EXPECT_NEAR(dynamic_guidance_scale(6, 999, 50), 2.29, 0.005);
  EXPECT_NEAR(dynamic_guidance_scale(6, 979, 50), 2.54, 0.005);
  EXPECT_NEAR(dynamic_guidance_scale(6, 959, 50), 6.97, 0.005);
  EXPECT_NEAR(dynamic_guidance_scale(6, 939, 50), 6.42, 0.005);
  // At t = N the phase is 0: scale 1.
  EXPECT_DOUBLE_EQ(dynamic_guidance_scale(6, 50, 50), 1.0);
}

TEST(Sampler, WithoutCfgNoNegativeIsNeeded) {
  Case c = load_case("ddim_2b");
  SampleOptions o = fixture_options(c);
  o.guidance_scale = 1.0;
  o.steps = 1;
  o.decode = false;
  PromptEmbeddings positive_only{c.prompts.positive, {}};
  torch::Tensor prediction;
  o.on_step = [&](const SampleStep& s) { prediction = s.prediction->clone(); };
  sample_video(c.components, positive_only, o);
  // One step from the seeded noise: the prediction is the plain conditional forward.
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const torch::Tensor x = initial_noise(c.expected.at("initial_latents").sizes().vec(), torch::kFloat32, g);
  torch::NoGradGuard no_grad;
  const torch::Tensor direct =
      c.components.transformer->forward(x, c.prompts.positive, torch::full({1}, 999, torch::kLong)).sample;
  EXPECT_LE((prediction - direct).abs().max().item<double>(), 1e-6 * direct.abs().max().item<double>());
}

// One step with the given CAG settings from the seeded noise; returns the guided prediction (and
// the CFG scale the step used).
torch::Tensor first_prediction(Case& c, const std::set<int64_t>& layers, double scale, CagMode mode,
                               double* guidance = nullptr) {
  SampleOptions o = fixture_options(c);
  o.steps = 1;
  o.decode = false;
  o.cag_layers = layers;
  o.cag_scale = scale;
  o.cag_mode = mode;
  torch::Tensor prediction;
  o.on_step = [&](const SampleStep& s) {
    prediction = s.prediction->clone();
    if (guidance != nullptr) *guidance = s.guidance_scale;
  };
  sample_video(c.components, c.prompts, o);
  return prediction;
}

TEST(Sampler, CagWithScaleZeroIsCfg) {
  Case c = load_case("dpm_5b");
  const torch::Tensor cfg = first_prediction(c, {}, 0.0, CagMode::kDropWithoutRenorm);
  const torch::Tensor cag0 = first_prediction(c, {0, 1}, 0.0, CagMode::kDropWithoutRenorm);
  // The batch of three may round differently from the batch of two in the shared rows' kernels:
  // 1e-6 of the prediction's magnitude.
  EXPECT_LE((cag0 - cfg).abs().max().item<double>(), 1e-6 * cfg.abs().max().item<double>());
  const torch::Tensor cag1 = first_prediction(c, {0, 1}, 1.0, CagMode::kDropWithoutRenorm);
  EXPECT_GT((cag1 - cfg).abs().max().item<double>(), 1e-3 * cfg.abs().max().item<double>());
}

TEST(Sampler, CagBranchIsTheTransformerWithCrossFrameAttentionRemoved) {
  for (const CagMode mode : {CagMode::kDropWithoutRenorm, CagMode::kRenormalized}) {
    Case c = load_case("dpm_5b");
    const double scale = 1.5;
    double g = 0;
    const torch::Tensor got = first_prediction(c, {1}, scale, mode, &g);

    torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(42);
    const torch::Tensor x = initial_noise(c.expected.at("initial_latents").sizes().vec(), torch::kFloat32, gen);
    const torch::Tensor t = torch::full({1}, 999, torch::kLong);
    torch::NoGradGuard no_grad;
    auto& model = c.components.transformer;
    const torch::Tensor uncond = model->forward(x, c.prompts.negative, t).sample;
    const torch::Tensor cond = model->forward(x, c.prompts.positive, t).sample;
    ProbeOptions probes;
    probes.cag_layers = {1};
    probes.cag_mode = mode;  // every batch element of this call is perturbed
    TransformerForwardOptions options;
    options.probes = &probes;
    const torch::Tensor perturbed = model->forward(x, c.prompts.positive, t, options).sample;
    // The perturbation matters, so the comparison below can tell the branches apart.
    EXPECT_GT((perturbed - cond).abs().max().item<double>(), 1e-3 * cond.abs().max().item<double>());
    const torch::Tensor want = uncond + g * (cond - uncond) + scale * (cond - perturbed);
    // One batch of three against three separate calls: 1e-4 of the magnitude (kernels round
    // differently per batch size), far below the 1e-3 effect of the perturbation checked above.
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-4 * want.abs().max().item<double>());
  }
}

// DiffTrack's pipeline picks the CAG processor once per call from the CFG scale
// (pipelines/pag/pag_utils.py, PAGMixin._set_pag_attn_processor): the drop-without-renormalising
// one with CFG, the -inf mask (renormalised) without. "auto" must be exactly the explicit variant
// the reference would pick (same calls, same latents bit for bit); the two variants differ on the
// same inputs, so the comparison can tell them apart.
TEST(Sampler, CagAutoModeIsRenormWithoutCfgAndDropWithIt) {
  Case c = load_case("ddim_2b");
  auto latents = [&](double guidance, std::optional<CagMode> mode) {
    SampleOptions o = fixture_options(c);
    o.steps = 2;
    o.decode = false;
    o.guidance_scale = guidance;
    o.cag_layers = {0, 1};
    o.cag_scale = 1.0;
    o.cag_mode = mode;
    return sample_video(c.components, c.prompts, o).latents;
  };
  for (const double guidance : {1.0, 6.0}) {
    SCOPED_TRACE("guidance " + std::to_string(guidance));
    const torch::Tensor drop = latents(guidance, CagMode::kDropWithoutRenorm);
    const torch::Tensor renorm = latents(guidance, CagMode::kRenormalized);
    EXPECT_GT((drop - renorm).abs().max().item<double>(), 1e-4 * renorm.abs().max().item<double>());
    const torch::Tensor automatic = latents(guidance, std::nullopt);
    EXPECT_TRUE(torch::equal(automatic, guidance > 1.0 ? drop : renorm));
  }
  SampleOptions o;
  o.guidance_scale = 1.0;
  EXPECT_EQ(resolve_cag_mode(o), CagMode::kRenormalized);
  o.guidance_scale = 1.0001;
  EXPECT_EQ(resolve_cag_mode(o), CagMode::kDropWithoutRenorm);
  o.cag_mode = CagMode::kRenormalized;
  EXPECT_EQ(resolve_cag_mode(o), CagMode::kRenormalized);
  EXPECT_EQ(parse_cag_mode("auto"), std::nullopt);
  EXPECT_EQ(parse_cag_mode("drop"), CagMode::kDropWithoutRenorm);
  EXPECT_EQ(parse_cag_mode("renorm"), CagMode::kRenormalized);
  EXPECT_NE(error_of([] { parse_cag_mode("mask"); }).find("--cag-mode must be auto, drop or renorm, got 'mask'"),
            std::string::npos);
}

TEST(Sampler, BadOptionsAreClearErrors) {
  Case c = load_case("ddim_2b");
  SampleOptions o = fixture_options(c);
  o.decode = false;
  auto err = [&](const SampleOptions& options, const PromptEmbeddings& prompts) {
    return error_of([&] { sample_video(c.components, prompts, options); });
  };
  SampleOptions bad = o;
  bad.frames = 10;
  EXPECT_NE(err(bad, c.prompts).find("4k+1"), std::string::npos) << err(bad, c.prompts);
  bad = o;
  bad.height = 40;
  EXPECT_NE(err(bad, c.prompts).find("height = 40 must be a positive multiple of 16"), std::string::npos);
  bad = o;
  bad.cag_layers = {0, 2};
  EXPECT_NE(err(bad, c.prompts).find("CAG layer 2 is outside the model's transformer blocks [0, 2)"),
            std::string::npos)
      << err(bad, c.prompts);
  bad = o;
  bad.cag_layers = {-1};
  EXPECT_NE(err(bad, c.prompts).find("CAG layer -1"), std::string::npos);
  bad = o;
  bad.steps = 0;
  EXPECT_NE(err(bad, c.prompts).find("at least one step"), std::string::npos);
  bad = o;
  bad.initial_latents = torch::zeros({1, 2, 4, 4, 6});
  EXPECT_NE(err(bad, c.prompts).find("initial latents must be [B, F_lat, C, H/8, W/8] = [1, 3, 4, 4, 6]"),
            std::string::npos)
      << err(bad, c.prompts);

  EXPECT_NE(err(o, {c.prompts.positive, {}}).find("negative_prompt_embeds missing"), std::string::npos);
  EXPECT_NE(err(o, {c.prompts.positive, c.prompts.negative.narrow(1, 0, 4)}).find("negative_prompt_embeds must be"),
            std::string::npos);
  EXPECT_NE(err(o, {torch::zeros({1, 5, 23}), c.prompts.negative}).find("prompt_embeds must be [B, 5, 24]"),
            std::string::npos)
      << err(o, {torch::zeros({1, 5, 23}), c.prompts.negative});

  // Decoding without a VAE.
  ModelConfig model;
  model.path = fixture("pipeline/ddim_2b");
  model.device = DeviceKind::kCpu;
  ComponentRequest no_vae;
  no_vae.vae = false;
  ModelComponents transformer_only = load_model_components(model, 0, no_vae);
  o.decode = true;
  EXPECT_NE(error_of([&] { sample_video(transformer_only, c.prompts, o); }).find("needs the VAE"), std::string::npos);
}

TEST(SampleFile, PromptEmbeddingsFileErrorsNameFileAndTensor) {
  testing::TempDir dir;
  EXPECT_NE(error_of([&] { read_prompt_embeddings(dir.file("missing.safetensors")); }).find("not found"),
            std::string::npos);
  save_safetensors(dir.file("wrong.safetensors"), {{"embeds", torch::zeros({1, 5, 24})}});
  const std::string e = error_of([&] { read_prompt_embeddings(dir.file("wrong.safetensors")); });
  EXPECT_NE(e.find("wrong.safetensors: no tensor prompt_embeds (found: embeds)"), std::string::npos) << e;
  save_safetensors(dir.file("mismatch.safetensors"),
                   {{"prompt_embeds", torch::zeros({1, 5, 24})}, {"negative_prompt_embeds", torch::zeros({2, 5, 24})}});
  const std::string m = error_of([&] { read_prompt_embeddings(dir.file("mismatch.safetensors")); });
  EXPECT_NE(m.find("negative_prompt_embeds must have the shape of prompt_embeds"), std::string::npos) << m;
  save_safetensors(dir.file("ints.safetensors"), {{"prompt_embeds", torch::zeros({1, 5, 24}, torch::kInt64)}});
  EXPECT_NE(error_of([&] { read_prompt_embeddings(dir.file("ints.safetensors")); }).find("floating-point"),
            std::string::npos);

  const PromptEmbeddings ok = read_prompt_embeddings(fixture("pipeline/ddim_2b/expected.safetensors"));
  EXPECT_EQ(ok.positive.sizes(), (std::vector<int64_t>{1, 5, 24}));
  EXPECT_TRUE(ok.negative.defined());
}

TEST(SampleFile, OutputPathsAndHdf5Frames) {
  testing::TempDir dir;
  EXPECT_EQ(sample_output_paths(dir.file("v.h5"), 1), std::vector<std::string>{dir.file("v.h5")});
  EXPECT_EQ(sample_output_paths(dir.file("v.h5"), 2), (std::vector<std::string>{dir.file("v_0.h5"), dir.file("v_1.h5")}));

  const torch::Tensor frames = torch::randint(0, 256, {5, 16, 24, 3}, torch::kLong).to(torch::kUInt8);
  SampleOptions o;
  o.cag_layers = {13, 17};
  write_sampled_video(dir.file("sub/v.h5"), frames, 8, o);
  h5::File f = h5::File::open(dir.file("sub/v.h5"));
  EXPECT_TRUE(torch::equal(f.root().read("frames"), frames));
  EXPECT_EQ(f.root().attr_string("cag_layers"), "13,17");
  EXPECT_EQ(f.root().attr_string("cag_mode"), "drop");  // auto with the default CFG 6
  EXPECT_EQ(f.root().attr_int("steps"), 50);
  EXPECT_NE(error_of([&] { write_sampled_video(dir.file("bad.h5"), frames.to(torch::kFloat32), 8, o); })
                .find("frames to write must be uint8 [F, H, W, 3]"),
            std::string::npos);
  EXPECT_FALSE(path_exists(dir.file("bad.h5")));
}

}  // namespace
}  // namespace t4g
