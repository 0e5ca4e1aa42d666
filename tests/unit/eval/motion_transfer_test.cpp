// DiTFlow's guided sampling on the tiny model (2B sin-cos form and 5B RoPE form): the AMF loss falls
// over each guided step's iterations for both targets; gradient checkpointing does not change the
// losses; the saved positional embeddings, reused without optimising, give the optimising run's
// latents for the same seed and prompt; save/load of the tables; bad inputs. Tolerances: losses
// with and without checkpointing 1e-5 relative (the same float32 kernels, recomputed); reuse
// latents 1e-6 absolute (the same tables and the same float32 denoising, only the optimisation skipped).
#include "eval/motion_transfer.h"

#include <gtest/gtest.h>

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
  const MotionTransferOptions o = quick_options(TransferTarget::kPositions);
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
  // Reused tables of the other model form, and tables missing a guided timestep.
  LearnedPositions rope;
  rope.kind = LearnedPositions::Kind::kRope;
  rope.tables[999] = torch::zeros({2, 2, 72, 16});
  MotionTransferOptions p = quick_options(TransferTarget::kPositions);
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
