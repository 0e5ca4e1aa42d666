// Parity of eval/dino_vit with DINO's vision_transformer.py on a tiny random ViT (fixtures:
// tests/fixtures/vbench/make_fixtures.py builds it with DINO's own class), plus loading errors.
#include "eval/dino_vit.h"

#include <gtest/gtest.h>

#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

// fp32 CLS features of O(1) size through 2 blocks: agreement to 1e-5 absolute.
constexpr double kTolerance = 1e-5;

std::string tiny_weights() { return testing::fixture("vbench/dino_tiny.safetensors"); }

TEST(DinoVit, ConfigFromFile) {
  const DinoVitConfig c = dino_vit_config_from_file(tiny_weights());
  EXPECT_EQ(c.dim, 32);
  EXPECT_EQ(c.depth, 2);
  EXPECT_EQ(c.heads, 2);  // from the metadata
  EXPECT_EQ(c.patch_size, 16);
  EXPECT_EQ(c.image_size, 64);
  EXPECT_EQ(c.mlp_hidden, 128);
  EXPECT_TRUE(c.qkv_bias);
}

TEST(DinoVit, ClsMatchesReferenceIncludingPosEmbeddingInterpolation) {
  DinoVit model = load_dino_vit(tiny_weights());
  const auto io = load_safetensors(testing::fixture("vbench/dino_io.safetensors"));
  // 64x64 (trained grid), 80x48, 100x72 (remainder pixels), 32x128 (16 patches, not square), 32x32.
  for (int i = 0; i < 5; ++i) {
    const torch::Tensor x = io.at("input_" + std::to_string(i));
    SCOPED_TRACE("input_" + std::to_string(i) + " " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)));
    torch::NoGradGuard no_grad;
    const torch::Tensor y = model->forward(x);
    const torch::Tensor ref = io.at("cls_" + std::to_string(i));
    ASSERT_EQ(y.sizes(), ref.sizes());
    EXPECT_LE((y - ref).abs().max().item<double>(), kTolerance);
  }
}

TEST(DinoVit, PosEncodingIsInterpolatedUnlessSquareAtTheTrainedCount) {
  DinoVit model = load_dino_vit(tiny_weights());
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(model->interpolate_pos_encoding(64, 64).is_same(model->pos_embed));
  // 4x4 patches but H != W in pixels: DINO's test is on pixels, so it resizes 4x4 -> 4x4 with
  // scale 4.1/4, which is not the identity.
  const torch::Tensor same_count = model->interpolate_pos_encoding(79, 70);
  EXPECT_FALSE(same_count.is_same(model->pos_embed));
  EXPECT_EQ(same_count.sizes(), model->pos_embed.sizes());
  EXPECT_FALSE(torch::allclose(same_count, model->pos_embed));
  // Same patch count, not square in pixels: DINO still resizes (4x4 -> 2x8).
  const torch::Tensor wide = model->interpolate_pos_encoding(32, 128);
  EXPECT_EQ(wide.sizes(), torch::IntArrayRef({1, 17, 32}));
  EXPECT_TRUE(torch::equal(wide.slice(1, 0, 1), model->pos_embed.slice(1, 0, 1)));
  EXPECT_EQ(model->interpolate_pos_encoding(100, 72).sizes(), torch::IntArrayRef({1, 1 + 6 * 4, 32}));
}

TEST(DinoVit, HeadCountDefaultsToDimOver64) {
  testing::TempDir dir;
  DinoVitConfig config;
  config.dim = 128;
  config.depth = 1;
  config.heads = 2;
  config.mlp_hidden = 64;
  config.image_size = 32;
  DinoVit model(config);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& p : model->named_parameters()) tensors[p.key()] = p.value();
  save_safetensors(dir.file("vit.safetensors"), tensors);
  const DinoVitConfig read = dino_vit_config_from_file(dir.file("vit.safetensors"));
  EXPECT_EQ(read.heads, 2);
  EXPECT_EQ(read.mlp_hidden, 64);
  EXPECT_EQ(read.image_size, 32);
  EXPECT_EQ(read.depth, 1);
}

TEST(DinoVit, LoadErrorsNameTheFileAndTensor) {
  testing::TempDir dir;
  const std::string missing_file = dir.file("absent.safetensors");
  const std::string absent = testing::error_of([&] { load_dino_vit(missing_file); });
  EXPECT_NE(absent.find("DINO weights file not found"), std::string::npos) << absent;
  EXPECT_NE(absent.find(missing_file), std::string::npos) << absent;

  auto tensors = load_safetensors(tiny_weights());
  tensors.erase("blocks.1.mlp.fc2.bias");
  save_safetensors(dir.file("partial.safetensors"), tensors, {{"num_heads", "2"}});
  const std::string partial = testing::error_of([&] { load_dino_vit(dir.file("partial.safetensors")); });
  EXPECT_NE(partial.find("partial.safetensors"), std::string::npos) << partial;
  EXPECT_NE(partial.find("blocks.1.mlp.fc2.bias"), std::string::npos) << partial;

  tensors = load_safetensors(tiny_weights());
  tensors.erase("cls_token");
  save_safetensors(dir.file("nocls.safetensors"), tensors, {{"num_heads", "2"}});
  const std::string nocls = testing::error_of([&] { load_dino_vit(dir.file("nocls.safetensors")); });
  EXPECT_NE(nocls.find("cls_token"), std::string::npos) << nocls;

  // dim 32 and no num_heads metadata: the head count cannot be inferred.
  save_safetensors(dir.file("noheads.safetensors"), load_safetensors(tiny_weights()));
  const std::string noheads = testing::error_of([&] { load_dino_vit(dir.file("noheads.safetensors")); });
  EXPECT_NE(noheads.find("head count"), std::string::npos) << noheads;

  DinoVit model = load_dino_vit(tiny_weights());
  const std::string small = testing::error_of([&] { model->forward(torch::zeros({1, 3, 8, 8})); });
  EXPECT_NE(small.find("images"), std::string::npos) << small;
}

}  // namespace
}  // namespace t4g
