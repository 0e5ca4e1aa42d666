// The Track4Gen refiner: exactly the identity at init (2D and 3D, bit-exact on CPU), gradients to
// every parameter from step 0, the detach between refiner and projection, the residual hook on a
// tiny transformer (bit-identical output at step 0, one refiner evaluation feeding both the loss
// and the residual), its own safetensors file, and the error paths.
#include <gtest/gtest.h>

#include "common/error.h"
#include "common/safetensors.h"
#include "models/cogvideox_transformer.h"
#include "models/refiner.h"
#include "tests/testing.h"

namespace t4g {
namespace {

constexpr int64_t kChannels = 32;

RefinerConfig config_of(RefinerConv conv, int64_t layers = 3, int64_t block = 1) {
  RefinerConfig c;
  c.block = block;
  c.layers = layers;
  c.conv = conv;
  return c;
}

// Video tokens [B, F*h*w, C] laid out as the transformer emits them.
torch::Tensor tokens(const TokenGrid& grid, int64_t batch = 2, uint64_t seed = 3) {
  torch::manual_seed(seed);
  return torch::randn({batch, grid.video_tokens(), kChannels});
}

// The same tokens as the [B*F, C, h, w] map the refiner returns.
torch::Tensor as_map(const torch::Tensor& t, const TokenGrid& grid) {
  return t.view({t.size(0), grid.frames, grid.height, grid.width, t.size(2)})
      .permute({0, 1, 4, 2, 3})
      .reshape({-1, t.size(2), grid.height, grid.width});
}

CogVideoXTransformerConfig tiny_transformer() {
  CogVideoXTransformerConfig c;
  c.num_attention_heads = 2;
  c.attention_head_dim = 16;  // inner dim 32 = kChannels
  c.in_channels = 4;
  c.out_channels = 4;
  c.time_embed_dim = 16;
  c.text_embed_dim = 24;
  c.num_layers = 3;
  c.sample_height = 8;
  c.sample_width = 12;
  c.sample_frames = 9;
  c.max_text_seq_length = 5;
  return c;
}

class RefinerIdentity : public ::testing::TestWithParam<RefinerConv> {};

TEST_P(RefinerIdentity, IsExactlyTheIdentityAtInit) {
  const TokenGrid grid{3, 4, 6};
  Refiner refiner(config_of(GetParam(), 8), kChannels);
  const auto x = tokens(grid);
  torch::NoGradGuard no_grad;
  const auto map = refiner->forward(x, grid);
  ASSERT_EQ(map.sizes(), (std::vector<int64_t>{2 * 3, kChannels, 4, 6}));
  EXPECT_TRUE(torch::equal(map, as_map(x, grid)));  // bit-exact, no tolerance
  // The projection is exactly zero.
  EXPECT_TRUE(torch::equal(refiner->project(map, 2, grid), torch::zeros({2, grid.video_tokens(), kChannels})));
}

TEST_P(RefinerIdentity, EveryParameterGetsAGradientAtStepZero) {
  const TokenGrid grid{3, 4, 6};
  Refiner refiner(config_of(GetParam(), 4), kChannels);
  const auto x = tokens(grid).requires_grad_(true);
  const auto map = refiner->forward(x, grid);
  // A loss on the refined map (the correspondence loss's role).
  torch::manual_seed(11);
  (map * torch::randn(map.sizes())).sum().backward();
  for (const auto& item : refiner->named_parameters()) {
    if (item.key().rfind("proj.", 0) == 0) {
      // The projection is not on the loss's path.
      EXPECT_FALSE(item.value().grad().defined() && item.value().grad().abs().sum().item<double>() > 0) << item.key();
    } else {
      ASSERT_TRUE(item.value().grad().defined()) << item.key();
      EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
    }
  }
  // The backbone's features get the correspondence loss's gradient through the refiner.
  EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);

  // One SGD step moves the stack away from the identity.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : refiner->parameters()) {
      if (p.grad().defined()) p.sub_(0.01 * p.grad());
    }
    EXPECT_FALSE(torch::allclose(refiner->forward(x, grid), as_map(x, grid)));
  }
}

INSTANTIATE_TEST_SUITE_P(Convs, RefinerIdentity, ::testing::Values(RefinerConv::k2d, RefinerConv::k3d),
                         [](const ::testing::TestParamInfo<RefinerConv>& info) {
                           return "conv" + refiner_conv_name(info.param);
                         });

TEST(Refiner, ResidualPathTrainsOnlyTheProjection) {
  const TokenGrid grid{2, 4, 6};
  Refiner refiner(config_of(RefinerConv::k2d), kChannels);
  const auto x = tokens(grid).requires_grad_(true);
  const auto map = refiner->forward(x, grid);
  const auto residual = refiner->project(map, 2, grid);
  torch::manual_seed(12);
  (residual * torch::randn(residual.sizes())).sum().backward();
  for (const auto& item : refiner->named_parameters()) {
    const bool is_proj = item.key().rfind("proj.", 0) == 0;
    const bool has_grad = item.value().grad().defined() && item.value().grad().abs().sum().item<double>() > 0;
    // The diffusion loss (through the residual) reaches the projection only: the map is detached.
    EXPECT_EQ(has_grad, is_proj) << item.key();
  }
  // Nor does anything reach the backbone's features through the refiner (the map is detached).
  EXPECT_FALSE(x.grad().defined() && x.grad().abs().sum().item<double>() > 0);
}

TEST(Refiner, HookLeavesTheTransformerOutputBitIdenticalAndFeedsTheLossFromOneEvaluation) {
  const auto tc = tiny_transformer();
  CogVideoXTransformer3DModel model(tc);
  init_random_weights(*model, 5, 0.2);
  model->eval();
  torch::manual_seed(9);
  const auto latents = torch::randn({2, 3, 4, 8, 12});
  const auto text = torch::randn({2, 5, 24});
  const auto t = torch::tensor({19, 999}, torch::kLong);

  Refiner refiner(config_of(RefinerConv::k2d, 8, /*block=*/1), tc.inner_dim());
  auto refined = std::make_shared<RefinedFeatures>();
  ProbeOptions probes;
  probes.hidden_layers = {1};
  refiner->install(probes, refined);
  TransformerForwardOptions options;
  options.probes = &probes;

  const auto plain = model(latents, text, t).sample;
  int64_t calls = 0;
  // Count refiner evaluations: one per transformer forward.
  auto counting = refiner->residual_hook(refined);
  probes.residual_hooks[1] = [&](const torch::Tensor& h, const TokenGrid& g) {
    ++calls;
    return counting(h, g);
  };
  const auto out = model(latents, text, t, options);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(torch::equal(out.sample, plain));  // bit-identical at step 0
  ASSERT_TRUE(refined->defined());
  EXPECT_EQ(refined->batch, 2);
  EXPECT_EQ(refined->grid.frames, 3);
  EXPECT_EQ(refined->video().sizes(), (std::vector<int64_t>{2, 3, kChannels, 4, 6}));
  // The refined map is the tapped block's output (identity refiner) and carries its history.
  EXPECT_TRUE(torch::equal(refined->map, as_map(out.captured.hidden.at(1), refined->grid)));
  ASSERT_TRUE(refined->map.requires_grad());

  // A loss on the refined map trains blocks 0..1 of the backbone and not block 2.
  model->zero_grad();
  refined->map.square().mean().backward();
  auto grad_sum = [&](const std::string& prefix) {
    double s = 0.0;
    for (const auto& item : model->named_parameters()) {
      if (item.key().rfind(prefix, 0) == 0 && item.value().grad().defined()) {
        s += item.value().grad().abs().sum().item<double>();
      }
    }
    return s;
  };
  EXPECT_GT(grad_sum("transformer_blocks.1."), 0.0);
  EXPECT_GT(grad_sum("transformer_blocks.0."), 0.0);
  EXPECT_EQ(grad_sum("transformer_blocks.2."), 0.0);

  // Once the projection is non-zero, the residual changes the output.
  {
    torch::NoGradGuard no_grad;
    refiner->proj->weight.normal_(0.0, 0.1);
    const auto changed = model(latents, text, t, options).sample;
    EXPECT_FALSE(torch::allclose(changed, plain));
  }
}

TEST(Refiner, SavesAndLoadsItsOwnFile) {
  testing::TempDir dir;
  Refiner refiner(config_of(RefinerConv::k3d, 3, 7), kChannels);
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(4);
    for (auto& p : refiner->parameters()) p.normal_();
  }
  const auto path = dir.file("refiner.safetensors");
  save_refiner(path, refiner);

  SafetensorsFile file(path);
  std::vector<std::string> want_names;
  for (const auto& item : refiner->named_parameters()) want_names.push_back(item.key());
  std::sort(want_names.begin(), want_names.end());
  auto names = file.names();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, want_names);
  EXPECT_TRUE(file.contains("convs.0.weight"));
  EXPECT_TRUE(file.contains("activations.1.weight"));
  EXPECT_TRUE(file.contains("proj.bias"));

  Refiner loaded = load_refiner(path);
  EXPECT_EQ(loaded->config().block, 7);
  EXPECT_EQ(loaded->config().layers, 3);
  EXPECT_EQ(loaded->config().conv, RefinerConv::k3d);
  EXPECT_EQ(loaded->channels(), kChannels);
  const auto a = refiner->named_parameters();
  const auto b = loaded->named_parameters();
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();

  Refiner same_shape(config_of(RefinerConv::k3d, 3, 7), kChannels);
  load_refiner_weights(same_shape, path);
  EXPECT_TRUE(torch::equal(same_shape->proj->weight, refiner->proj->weight));

  Refiner other(config_of(RefinerConv::k2d, 3, 7), kChannels);
  const auto message = testing::error_of([&] { load_refiner_weights(other, path); });
  EXPECT_NE(message.find("refiner.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("conv"), std::string::npos) << message;
}

TEST(Refiner, LoadingIsStrict) {
  testing::TempDir dir;
  Refiner refiner(config_of(RefinerConv::k2d, 2), kChannels);
  const auto path = dir.file("refiner.safetensors");
  save_refiner(path, refiner);
  // Drop a tensor, keep the metadata.
  SafetensorsFile file(path);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& name : file.names()) {
    if (name != "convs.1.bias") tensors[name] = file.tensor(name).clone();
  }
  const auto broken = dir.file("broken.safetensors");
  save_safetensors(broken, tensors, file.metadata());
  const auto message = testing::error_of([&] { load_refiner(broken); });
  EXPECT_NE(message.find("convs.1.bias"), std::string::npos) << message;
  EXPECT_NE(message.find("broken.safetensors"), std::string::npos) << message;

  // A safetensors file without the refiner's metadata.
  const auto plain = dir.file("plain.safetensors");
  save_safetensors(plain, tensors);
  const auto no_meta = testing::error_of([&] { load_refiner(plain); });
  EXPECT_NE(no_meta.find("not a refiner file"), std::string::npos) << no_meta;
  EXPECT_NE(no_meta.find("plain.safetensors"), std::string::npos) << no_meta;
}

TEST(Refiner, RejectsBadConfigurationsAndInputs) {
  RefinerConfig even = config_of(RefinerConv::k2d);
  even.kernel = 4;
  EXPECT_NE(testing::error_of([&] { Refiner r(even, kChannels); }).find("kernel"), std::string::npos);
  RefinerConfig none = config_of(RefinerConv::k2d);
  none.layers = 0;
  EXPECT_NE(testing::error_of([&] { Refiner r(none, kChannels); }).find("layers"), std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_refiner_conv("4d"); }).find("4d"), std::string::npos);

  Refiner refiner(config_of(RefinerConv::k2d), kChannels);
  const TokenGrid grid{3, 4, 6};
  const auto message = testing::error_of([&] { refiner->forward(torch::zeros({2, 70, kChannels}), grid); });
  EXPECT_NE(message.find("video_hidden"), std::string::npos) << message;
  EXPECT_NE(message.find("72"), std::string::npos) << message;
}

}  // namespace
}  // namespace t4g
