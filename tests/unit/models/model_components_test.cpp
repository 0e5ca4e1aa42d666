// The recipe's model components: tiny stand-ins are deterministic and carry the frames' content
// into the latents; pixel <-> latent conversions have the documented shapes and ranges.
#include "models/model_components.h"

#include <gtest/gtest.h>

#include "common/config.h"
#include "common/error.h"

namespace t4g {
namespace {

ModelConfig tiny_cpu() {
  ModelConfig m;
  m.device = DeviceKind::kCpu;
  return m;
}

torch::Tensor random_frames(int64_t frames, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(0, 256, {1, frames, 64, 96, 3}, gen, torch::kLong).to(torch::kUInt8);
}

TEST(ModelComponents, TinyIsDeterministicPerSeed) {
  const ModelComponents a = load_model_components(tiny_cpu(), 7);
  const ModelComponents b = load_model_components(tiny_cpu(), 7);
  const ModelComponents c = load_model_components(tiny_cpu(), 8);
  EXPECT_TRUE(a.is_tiny());
  auto pa = a.transformer->named_parameters();
  auto pb = b.transformer->named_parameters();
  auto pc = c.transformer->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) {
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
  }
  EXPECT_FALSE(torch::equal(pa["proj_out.weight"], pc["proj_out.weight"]));
  // Asking for the VAE too never changes the transformer.
  ComponentRequest only_transformer;
  only_transformer.vae = false;
  const ModelComponents d = load_model_components(tiny_cpu(), 7, only_transformer);
  EXPECT_FALSE(d.vae);
  EXPECT_TRUE(torch::equal(d.transformer->named_parameters()["proj_out.weight"], pa["proj_out.weight"]));
}

TEST(ModelComponents, TinyVaeLatentsFollowTheFrames) {
  ModelComponents m = load_model_components(tiny_cpu(), 0);
  const torch::Tensor frames = random_frames(9, 1);
  const torch::Tensor z = encode_frames_to_latents(m.vae, frames);
  ASSERT_EQ(z.sizes(), (std::vector<int64_t>{1, 3, 4, 8, 12}));  // [B, F', C, H/8, W/8]
  // Variance-preserving init: the latents neither vanish nor explode.
  const double std = z.std().item<double>();
  EXPECT_GT(std, 0.05);
  EXPECT_LT(std, 20.0);
  // Different frames, different latents; the same frames, the same latents.
  const torch::Tensor other = encode_frames_to_latents(m.vae, random_frames(9, 2));
  EXPECT_GT((z - other).abs().mean().item<double>(), 0.1 * z.abs().mean().item<double>());
  EXPECT_TRUE(torch::equal(z, encode_frames_to_latents(m.vae, frames)));
  // One by one: one latent frame per frame (DiffTrack's tracking input).
  const torch::Tensor single = encode_frames_one_by_one(m.vae, frames.narrow(1, 0, 3));
  EXPECT_EQ(single.sizes(), (std::vector<int64_t>{1, 3, 4, 8, 12}));
  // (Frame 0 alone does NOT encode like frame 0 of the clip: the VAE's GroupNorms pool statistics
  // over every frame of a chunk.)
}

TEST(ModelComponents, PixelConversionsRoundTrip) {
  const torch::Tensor frames = random_frames(2, 3);
  const torch::Tensor video = frames_to_vae_input(frames, torch::kCPU, torch::kFloat32);
  ASSERT_EQ(video.sizes(), (std::vector<int64_t>{1, 3, 2, 64, 96}));
  EXPECT_GE(video.min().item<double>(), -1.0);
  EXPECT_LE(video.max().item<double>(), 1.0);
  EXPECT_TRUE(torch::equal(vae_output_to_frames(video), frames));
  const Error e = [&] {
    try {
      frames_to_vae_input(frames.to(torch::kFloat32), torch::kCPU, torch::kFloat32);
    } catch (const Error& err) {
      return err;
    }
    return Error("no error");
  }();
  EXPECT_NE(std::string(e.what()).find("uint8 [B, F, H, W, 3]"), std::string::npos) << e.what();
}

TEST(ModelComponents, TinyTextEmbeddingsHaveTheModelsShape) {
  ComponentRequest r;
  r.vae = false;
  const ModelComponents m = load_model_components(tiny_cpu(), 0, r);
  const torch::Tensor t = tiny_text_embeddings(m, 2);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2, 16, 32}));
  EXPECT_EQ(m.transformer->config().max_text_seq_length, 16);
}

TEST(ModelComponents, CudaWithoutGpuIsAClearError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is present";
  ModelConfig m = tiny_cpu();
  m.device = DeviceKind::kCuda;
  try {
    load_model_components(m, 0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.device"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace t4g
