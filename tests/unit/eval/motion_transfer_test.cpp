// DiTFlow's guided sampling on the tiny model (2B sin-cos form and 5B RoPE form): the AMF loss falls
// over each guided step's iterations for both targets; gradient checkpointing does not change the
// losses; the saved positional embeddings, reused without optimising, give the optimising run's
// latents for the same seed and prompt; KV injection replayed by hand from the reference's
// procedure; save/load of the tables; bad inputs. Tolerances: losses with and without
// checkpointing 1e-5 relative (the same float32 kernels, recomputed); reuse latents 1e-6 absolute
// (the same tables and the same float32 denoising, only the optimisation skipped).
#include "eval/motion_transfer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>

#include "common/fs.h"
#include "common/safetensors.h"
#include "data/synthetic_video.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::error_of;
using testing::TempDir;

struct TransferCase {
  ModelComponents m;
  torch::Tensor reference;  // latents [1, 3, 4, 8, 12]
  PromptEmbeddings prompts;
  torch::Tensor empty;
};

TransferCase make_setup(bool rope) {
  TransferCase s;
  ModelConfig model;
  model.device = DeviceKind::kCpu;
  model.tiny.use_rotary_positional_embeddings = rope;
  s.m = load_model_components(model, 0);
  data::SyntheticVideoOptions video;
  video.frames = 9;
  video.sprites = 1;
  const torch::Tensor frames = data::generate_synthetic_video(video, 4).frames;
  s.reference = encode_frames_to_latents(s.m.vae, frames.unsqueeze(0));
  s.prompts.positive = tiny_text_embeddings(s.m, 1);
  s.prompts.negative = tiny_text_embeddings(s.m, 1);
  s.empty = tiny_text_embeddings(s.m, 1);
  return s;
}

MotionTransferOptions quick_options(TransferTarget target) {
  MotionTransferOptions o;
  o.target = target;
  o.sample.steps = 3;
  o.sample.frames = 9;
  o.sample.decode = false;
  o.sample.progress = false;
  o.guidance_steps = 2;
  o.iterations = 5;
  o.lr_start = 0.05;  // larger than the reference's 2e-3 so that 5 iterations move the tiny model visibly
  o.lr_end = 0.02;
  return o;
}

void expect_loss_falls(const MotionTransferResult& r, int64_t steps, int64_t iterations) {
  ASSERT_EQ(static_cast<int64_t>(r.iterations.size()), steps * iterations);
  for (int64_t i = 0; i < steps; ++i) {
    const double first = r.iterations[static_cast<size_t>(i * iterations)].loss;
    const double last = r.iterations[static_cast<size_t>((i + 1) * iterations - 1)].loss;
    EXPECT_LT(last, first) << "guided step " << i;
  }
}

class MotionTransferForms : public ::testing::TestWithParam<bool> {};

TEST_P(MotionTransferForms, LatentLossFallsAndCheckpointingChangesNothing) {
  TransferCase s = make_setup(GetParam());
  const MotionTransferOptions o = quick_options(TransferTarget::kLatents);
  const MotionTransferResult plain = transfer_motion(s.m, s.reference, s.prompts, s.empty, o);
  expect_loss_falls(plain, 2, 5);
  EXPECT_EQ(plain.guided_timesteps.size(), 2u);
  EXPECT_EQ(plain.reference_amf.count(1), 1u);  // the tiny model's default block: 2 / 2
  EXPECT_NEAR(plain.iterations[0].lr, 0.05, 1e-12);
  EXPECT_NEAR(plain.iterations[5].lr, 0.035, 1e-12);  // linspace(0.05, 0.02, 3)[1]
  s.m.transformer->set_gradient_checkpointing(true);
  const MotionTransferResult checkpointed = transfer_motion(s.m, s.reference, s.prompts, s.empty, o);
  for (size_t k = 0; k < plain.iterations.size(); ++k) {
    EXPECT_NEAR(checkpointed.iterations[k].loss, plain.iterations[k].loss, 1e-5 * std::abs(plain.iterations[k].loss));
  }
}

TEST_P(MotionTransferForms, PositionalEmbeddingsReusedZeroShotGiveTheSameVideo) {
  TransferCase s = make_setup(GetParam());
  // The embeddings alone first (no KV injection, so no reference is needed when reusing).
  MotionTransferOptions o = quick_options(TransferTarget::kPositions);
  o.injection_blocks.clear();
  const MotionTransferResult optimised = transfer_motion(s.m, s.reference, s.prompts, s.empty, o);
  expect_loss_falls(optimised, 2, 5);
  ASSERT_EQ(optimised.positions.tables.size(), 2u);
  EXPECT_EQ(optimised.positions.kind, GetParam() ? LearnedPositions::Kind::kRope : LearnedPositions::Kind::kSinCos);

  TempDir dir;
  save_learned_positions(dir.file("p.safetensors"), optimised.positions);
  const LearnedPositions loaded = load_learned_positions(dir.file("p.safetensors"));
  const MotionTransferResult reused = transfer_motion(s.m, torch::Tensor(), s.prompts, torch::Tensor(), o, &loaded);
  EXPECT_TRUE(reused.iterations.empty()) << "nothing is optimised";
  EXPECT_LT((reused.sample.latents - optimised.sample.latents).abs().max().item<double>(), 1e-6);

  // The embeddings changed the video: a plain run (no guided steps) differs.
  MotionTransferOptions unguided = o;
  unguided.guidance_steps = 0;
  const MotionTransferResult plain = transfer_motion(s.m, s.reference, s.prompts, s.empty, unguided);
  EXPECT_GT((plain.sample.latents - optimised.sample.latents).abs().max().item<double>(), 1e-4);

  // A new prompt with the same embeddings runs (zero-shot transfer).
  PromptEmbeddings other = s.prompts;
  other.positive = torch::randn_like(s.prompts.positive);
  const MotionTransferResult fresh = transfer_motion(s.m, torch::Tensor(), other, torch::Tensor(), o, &loaded);
  EXPECT_EQ(fresh.sample.latents.sizes(), optimised.sample.latents.sizes());

  // With KV injection (the default) the reuse keeps injecting, as the reference's --inject_embeds
  // run does, so it needs the reference too; with it, it reproduces the optimising run.
  MotionTransferOptions injecting = quick_options(TransferTarget::kPositions);
  const MotionTransferResult optimised_injecting = transfer_motion(s.m, s.reference, s.prompts, s.empty, injecting);
  LearnedPositions tables = optimised_injecting.positions;
  const MotionTransferResult reused_injecting =
      transfer_motion(s.m, s.reference, s.prompts, torch::Tensor(), injecting, &tables);
  EXPECT_LT((reused_injecting.sample.latents - optimised_injecting.sample.latents).abs().max().item<double>(), 1e-6);
  EXPECT_NE(error_of([&] {
              transfer_motion(s.m, torch::Tensor(), s.prompts, torch::Tensor(), injecting, &tables);
            }).find("KV injection needs the reference video"),
            std::string::npos);
}

// DiTFlow's KV injection replayed by hand from the reference procedure (ditflow
// motion_guidance.py, Guidance.run / guidance_step / denoise_step, and
// guidance_utils/custom_modules.py, InjectionProcessor). On each guided step: the reference latents
// noised to the step's t with the generation's initial noise z_T, one forward with the target
// prompt, the injection block's video K/V copied; they replace the generation's in that block only,
// in both CFG branches (separate forwards here, as denoise_step runs them) and in the AMF loss
// forwards; unguided steps run plainly. Each step of the library's run is replayed from the
// latents it started from: predictions to 1e-5 of their magnitude (a batch of two against separate
// forwards), losses to 1e-6 (the same single forward). Distinct random prompts, so that the target
// prompt cannot be confused with the negative or the empty one.
TEST_P(MotionTransferForms, KvInjectionReplaysTheReferenceProcedure) {
  TransferCase s = make_setup(GetParam());
  torch::manual_seed(3);
  s.prompts.positive = torch::randn_like(s.prompts.positive);
  s.prompts.negative = torch::randn_like(s.prompts.negative);
  s.empty = torch::randn_like(s.empty);
  auto& model = s.m.transformer;
  // Weights ten times the tiny recipe's, so that attention is peaked enough for the injected K/V
  // to move the predictions well above the replay's tolerance.
  init_random_weights(*model, 5, 0.2);
  const int64_t text_len = s.prompts.positive.size(1);

  // z_T as the sampler draws it, and the reference's noised latents' K/V at `block` for timestep t.
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(quick_options(TransferTarget::kLatents).sample.seed);
  const torch::Tensor z_t = initial_noise(s.reference.sizes().vec(), torch::kFloat32, gen);
  auto injected = [&](int64_t t, int64_t block) {
    torch::NoGradGuard no_grad;
    const torch::Tensor ts = torch::full({1}, t, torch::kLong);
    const torch::Tensor noisy = s.m.scheduler.add_noise(s.reference, z_t, ts);  // sqrt(a_t) z_ref + sqrt(1 - a_t) z_T
    ProbeOptions capture;
    capture.key_value_layers = {block};
    TransformerForwardOptions o;
    o.probes = &capture;
    const auto out = model->forward(noisy, s.prompts.positive, ts, o);
    ProbeOptions probes;
    probes.video_key_values[block] = {out.captured.key.at(block).slice(2, text_len),
                                      out.captured.value.at(block).slice(2, text_len)};
    return probes;
  };
  auto relative = [](const torch::Tensor& got, const torch::Tensor& want) {
    return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
  };

  // 1. The injection baseline (no optimisation), injecting at block 1 of 2: every step's guided
  //    prediction against the replay.
  MotionTransferOptions o = quick_options(TransferTarget::kLatents);
  o.iterations = 0;
  o.injection_blocks = {1};
  std::vector<torch::Tensor> starts{z_t}, predictions;
  std::vector<double> scales;
  o.sample.on_step = [&](const SampleStep& step) {
    starts.push_back(step.latents->clone());
    predictions.push_back(step.prediction->clone());
    scales.push_back(step.guidance_scale);
  };
  const MotionTransferResult r = transfer_motion(s.m, s.reference, s.prompts, s.empty, o);
  ASSERT_EQ(predictions.size(), 3u);
  ASSERT_EQ(r.guided_timesteps.size(), 2u);
  for (size_t i = 0; i < predictions.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    const int64_t t = r.sample.timesteps[i];
    const bool guided = i < 2;
    const ProbeOptions probes = guided ? injected(t, 1) : ProbeOptions{};
    TransformerForwardOptions forward;
    forward.probes = &probes;
    torch::NoGradGuard no_grad;
    const torch::Tensor ts = torch::full({1}, t, torch::kLong);
    const torch::Tensor uncond = model->forward(starts[i], s.prompts.negative, ts, forward).sample;
    const torch::Tensor cond = model->forward(starts[i], s.prompts.positive, ts, forward).sample;
    const torch::Tensor want = uncond + scales[i] * (cond - uncond);
    EXPECT_LE(relative(predictions[i], want), 1e-5);
    if (guided) {  // the injection mattered, so the replay can tell it apart
      const torch::Tensor plain_uncond = model->forward(starts[i], s.prompts.negative, ts).sample;
      const torch::Tensor plain_cond = model->forward(starts[i], s.prompts.positive, ts).sample;
      const torch::Tensor plain = plain_uncond + scales[i] * (plain_cond - plain_uncond);
      EXPECT_GT(relative(want, plain), 1e-2);  // measured 3-12 %
    }
  }

  // 2. Optimising (injection at block 0, the AMF block is 1): the first loss of each guided step
  //    is the AMF loss of a forward carrying that step's injected K/V.
  o = quick_options(TransferTarget::kLatents);
  ASSERT_EQ(o.injection_blocks, std::vector<int64_t>{0});  // DiTFlow's default
  starts = {z_t};
  o.sample.on_step = [&](const SampleStep& step) { starts.push_back(step.latents->clone()); };
  const MotionTransferResult g = transfer_motion(s.m, s.reference, s.prompts, s.empty, o);
  ASSERT_EQ(g.iterations.size(), 10u);
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE("guided step " + std::to_string(i));
    const int64_t t = g.guided_timesteps[i];
    const ProbeOptions probes = injected(t, 0);
    TransformerForwardOptions forward;
    forward.probes = &probes;
    const double want =
        amf_guidance_loss(model, starts[i], s.prompts.positive, t, g.reference_amf, o.amf, o.threshold, forward)
            .item<double>();
    const double plain =
        amf_guidance_loss(model, starts[i], s.prompts.positive, t, g.reference_amf, o.amf, o.threshold).item<double>();
    const double got = g.iterations[i * 5].loss;
    EXPECT_NEAR(got, want, 1e-6 * std::abs(want));
    // At t = 999 the zero-terminal-SNR schedule has a_t = 0: the noised reference is z_T itself,
    // the generation's own step-0 latents, so with the same prompt the injected K/V are the loss
    // forward's own and change nothing (as in the reference). From step 1 on they do (measured 0.2-0.9 %).
    if (i == 0) {
      EXPECT_EQ(plain, want);
    } else {
      EXPECT_GT(std::abs(plain - want), 1e-3 * std::abs(want)) << "the injection changes the loss";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TinyForms, MotionTransferForms, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Rope" : "SinCos"; });

TEST(MotionTransfer, BadInputsAreErrors) {
  TransferCase s = make_setup(false);
  MotionTransferOptions o = quick_options(TransferTarget::kLatents);
  // A reference of another frame count (5 video frames -> 2 latent frames) than the generation's 9 (3).
  EXPECT_NE(error_of([&] {
              transfer_motion(s.m, s.reference.slice(1, 0, 2), s.prompts, s.empty, o);
            }).find("reference latents must match the generation's latent size [1, 3, 4, 8, 12]"),
            std::string::npos);
  o.blocks = {5};
  EXPECT_NE(error_of([&] {
              transfer_motion(s.m, s.reference, s.prompts, s.empty, o);
            }).find("AMF block 5 is outside the model's transformer blocks [0, 2)"),
            std::string::npos);
  o.blocks = {};
  o.reference_timestep = -1;
  EXPECT_NE(error_of([&] {
              transfer_motion(s.m, s.reference, s.prompts, s.empty, o);
            }).find("reference timestep -1 is outside"),
            std::string::npos);
  o.reference_timestep = 0;
  o.guidance_steps = 4;
  EXPECT_NE(error_of([&] {
              transfer_motion(s.m, s.reference, s.prompts, s.empty, o);
            }).find("guidance_steps = 4 exceeds the 3 denoising steps"),
            std::string::npos);
  o.guidance_steps = 2;
  o.injection_blocks = {2};
  EXPECT_NE(error_of([&] {
              transfer_motion(s.m, s.reference, s.prompts, s.empty, o);
            }).find("KV injection block 2 is outside the model's transformer blocks [0, 2)"),
            std::string::npos);
  o.injection_blocks = {1};  // the tiny model's AMF block
  EXPECT_NE(error_of([&] {
              transfer_motion(s.m, s.reference, s.prompts, s.empty, o);
            }).find("KV injection block 1 is also an AMF block"),
            std::string::npos);
  o.injection_blocks = {0};
  // Reused tables of the other model form, and tables missing a guided timestep.
  LearnedPositions rope;
  rope.kind = LearnedPositions::Kind::kRope;
  rope.tables[999] = torch::zeros({2, 2, 72, 16});
  MotionTransferOptions p = quick_options(TransferTarget::kPositions);
  p.injection_blocks.clear();  // no reference needed
  EXPECT_NE(error_of([&] {
              transfer_motion(s.m, torch::Tensor(), s.prompts, torch::Tensor(), p, &rope);
            }).find("this model needs sin-cos tables"),
            std::string::npos);
  LearnedPositions sincos;
  sincos.kind = LearnedPositions::Kind::kSinCos;
  sincos.tables[999] = torch::zeros({1, 72, 32});
  EXPECT_NE(error_of([&] {
              transfer_motion(s.m, torch::Tensor(), s.prompts, torch::Tensor(), p, &sincos);
            }).find("no table for timestep"),
            std::string::npos);
  TempDir dir;
  save_safetensors(dir.file("x.safetensors"), {{"rope.1", torch::zeros({2})}});
  EXPECT_NE(
      error_of([&] { load_learned_positions(dir.file("x.safetensors")); }).find("is not a positional-embedding file"),
      std::string::npos);
}

}  // namespace
}  // namespace t4g
