// Attention Motion Flow: exact displacements of Q/K with a known shift; the soft read-out against
// a direct (head-by-head, unchunked) computation of the reference formula and against the argmax
// at a high temperature; the loss's threshold; the reference extraction on the tiny model with a
// synthetic video translating by a known amount; bad inputs.
// Tolerances: float32 sums over <= 64 channels and <= 288 tokens, 1e-5 absolute on patch units;
// soft vs argmax at temperature 1e4, 1e-3 patches (the softmax is then one-hot within float32).
#include "eval/attention_motion_flow.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "data/synthetic_video.h"
#include "models/model_components.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::error_of;

// Q = K for frames of a canvas translating by `shift` patches per frame in x: token (x, y) of
// frame f carries the canvas features at (x - shift * f, y). Random Gaussian features of 2 heads
// x 32 channels, so a token's own features score ~64 against ~8 for any other.
std::pair<torch::Tensor, torch::Tensor> shifted_query_key(const TokenGrid& grid, int64_t text_len, int64_t shift) {
  torch::manual_seed(3);
  const int64_t pad = shift * grid.frames;
  const torch::Tensor canvas = torch::randn({grid.height, grid.width + pad, 64});
  std::vector<torch::Tensor> frames;
  for (int64_t f = 0; f < grid.frames; ++f) {
    frames.push_back(canvas.slice(1, pad - shift * f, pad - shift * f + grid.width).reshape({-1, 64}));
  }
  const torch::Tensor video = torch::cat(frames, 0);                                  // [N, 64]
  const torch::Tensor tokens = torch::cat({torch::randn({text_len, 64}), video}, 0);  // text first
  const torch::Tensor qk = tokens.view({1, -1, 2, 32}).transpose(1, 2).contiguous();  // [1, 2, S, 32]
  return {qk, qk.clone()};
}

TEST(AttentionMotionFlow, ArgmaxOfAKnownShiftIsExact) {
  const TokenGrid grid{3, 5, 8};
  const auto [q, k] = shifted_query_key(grid, 4, 1);
  const torch::Tensor amf = attention_motion_flow(q, k, 4, grid, AmfReadout::kArgmax);
  ASSERT_EQ(amf.sizes(), (std::vector<int64_t>{9, 40, 2}));
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 3; ++j) {
      for (int64_t n = 0; n < 40; ++n) {
        const int64_t x = n % 8;
        if (x + (j - i) < 0 || x + (j - i) >= 8) continue;  // content outside frame j
        EXPECT_EQ(amf[i * 3 + j][n][0].item<float>(), static_cast<float>(j - i)) << i << j << n;
        EXPECT_EQ(amf[i * 3 + j][n][1].item<float>(), 0.0f) << i << j << n;
      }
    }
  }
}

// The reference's formula written out directly: per-head logits / sqrt(d), mean over heads, the
// whole [N, N] matrix, softmax per target frame, relative-position sums.
torch::Tensor direct_soft_amf(const torch::Tensor& q, const torch::Tensor& k, int64_t text_len, const TokenGrid& g,
                              double temperature) {
  const torch::Tensor qv = q[0].slice(1, text_len);
  const torch::Tensor kv = k[0].slice(1, text_len);
  const torch::Tensor a =
      (torch::matmul(qv, kv.transpose(-1, -2)) / std::sqrt(static_cast<double>(q.size(-1)))).mean(0);
  const int64_t n = g.tokens_per_frame();
  const torch::Tensor idx = torch::arange(n);
  const torch::Tensor x = idx.remainder(g.width).to(torch::kFloat32);
  const torch::Tensor y = idx.div(g.width, "floor").to(torch::kFloat32);
  const torch::Tensor rel_x = x.unsqueeze(0) - x.unsqueeze(1);  // [source, target]
  const torch::Tensor rel_y = y.unsqueeze(0) - y.unsqueeze(1);
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < g.frames; ++i) {
    for (int64_t j = 0; j < g.frames; ++j) {
      const torch::Tensor p =
          torch::softmax(a.slice(0, i * n, (i + 1) * n).slice(1, j * n, (j + 1) * n) * temperature, -1);
      out.push_back(torch::stack({(rel_x * p).sum(1), (rel_y * p).sum(1)}, -1));
    }
  }
  return torch::stack(out, 0);
}

TEST(AttentionMotionFlow, SoftMatchesTheDirectFormulaInAnyChunking) {
  const TokenGrid grid{3, 4, 6};
  torch::manual_seed(5);
  const torch::Tensor q = torch::randn({2, 3, 5 + grid.video_tokens(), 16});
  const torch::Tensor k = torch::randn({2, 3, 5 + grid.video_tokens(), 16});
  AmfOptions options;
  const torch::Tensor want = direct_soft_amf(q.slice(0, 1), k.slice(0, 1), 5, grid, options.temperature);
  for (const int64_t chunk : {0, 5, 24, 100}) {
    options.query_chunk = chunk;
    const torch::Tensor got = attention_motion_flow(q, k, 5, grid, AmfReadout::kSoft, options);  // last element
    EXPECT_LT((got - want).abs().max().item<double>(), 1e-5) << "chunk " << chunk;
  }
  options.query_chunk = 0;
  options.batch_index = 0;
  const torch::Tensor first = attention_motion_flow(q, k, 5, grid, AmfReadout::kSoft, options);
  EXPECT_GT((first - want).abs().max().item<double>(), 0.1) << "batch_index picks another element";
}

TEST(AttentionMotionFlow, SoftTendsToArgmaxAtHighTemperature) {
  // Every frame holds frame 0's token features in a random order, so each token has one exact
  // match (score ~64 against ~8) in every frame and the argmax displacements are all over the grid.
  const TokenGrid grid{3, 4, 6};
  torch::manual_seed(8);
  const torch::Tensor base = torch::randn({grid.tokens_per_frame(), 64});
  std::vector<torch::Tensor> frames = {base};
  for (int64_t f = 1; f < grid.frames; ++f) frames.push_back(base.index_select(0, torch::randperm(base.size(0))));
  const torch::Tensor qk = torch::cat(frames, 0).view({1, -1, 2, 32}).transpose(1, 2).contiguous();
  AmfOptions options;
  options.temperature = 1e4;
  const torch::Tensor hard = attention_motion_flow(qk, qk, 0, grid, AmfReadout::kArgmax, options);
  const torch::Tensor soft = attention_motion_flow(qk, qk, 0, grid, AmfReadout::kSoft, options);
  EXPECT_LT((hard - soft).abs().max().item<double>(), 1e-3);
  EXPECT_GT(hard.abs().max().item<double>(), 2.0) << "displacements far from zero";
}

TEST(AttentionMotionFlow, SoftReadoutCarriesGradients) {
  const TokenGrid grid{2, 3, 4};
  torch::manual_seed(6);
  const torch::Tensor q = torch::randn({1, 2, grid.video_tokens(), 8}, torch::requires_grad());
  const torch::Tensor k = torch::randn({1, 2, grid.video_tokens(), 8});
  const torch::Tensor amf = attention_motion_flow(q, k, 0, grid, AmfReadout::kSoft);
  amf.square().sum().backward();
  ASSERT_TRUE(q.grad().defined());
  EXPECT_GT(q.grad().abs().sum().item<double>(), 0.0);
}

TEST(AttentionMotionFlow, LossThresholdKeepsMovingReferenceEntries) {
  const torch::Tensor ref = torch::tensor({1.0f, 0.0f, 0.0f, 0.0f}).view({1, 2, 2});
  const torch::Tensor gen = torch::tensor({0.0f, 0.0f, 5.0f, 5.0f}).view({1, 2, 2});
  // Only entry 0 moves: ((1 - 0)^2 + 0^2) / 2 components.
  EXPECT_NEAR(amf_loss(ref, gen, true).item<double>(), 0.5, 1e-6);
  EXPECT_NEAR(amf_loss(ref, gen, false).item<double>(), (1.0 + 25.0 + 25.0) / 4.0, 1e-6);
  EXPECT_NE(error_of([&] {
              amf_loss(torch::zeros({1, 2, 2}), gen, true);
            }).find("no non-zero displacement"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              amf_loss(ref, torch::zeros({4, 2, 2}), true);
            }).find("reference's shape"),
            std::string::npos);
}

TEST(AttentionMotionFlow, DefaultBlocksFollowTheReference) {
  CogVideoXTransformerConfig c;  // 2B: 30 blocks
  EXPECT_EQ(default_amf_block(c), 15);
  c.num_layers = 42;
  c.num_attention_heads = 48;
  c.use_rotary_positional_embeddings = true;
  EXPECT_EQ(default_amf_block(c), 20);
}

// The tiny model made to attend by content at the AMF block (to_k = to_q, norm_k = norm_q: a token
// scores highest against tokens whose features match its own, the property a trained model's
// attention has and a random one lacks), RoPE positions (no additive table to pull matches to
// displacement 0). A synthetic background translating 4 px per frame = 1 patch (16 px) per latent
// frame: for every pair (i, j) of latent frames the median displacement is (j - i, 0) patches and
// the mean points the same way.
TEST(AttentionMotionFlow, SyntheticTranslationPointsTheRightWay) {
  ModelConfig model;
  model.device = DeviceKind::kCpu;
  model.tiny.use_rotary_positional_embeddings = true;
  model.tiny.attention_head_dim = 32;
  ComponentRequest request;
  request.vae = false;
  ModelComponents m = load_model_components(model, 0, request);
  {
    torch::NoGradGuard no_grad;
    // Tokens carry content only: no patch-embedding bias (the same vector for every token), and
    // the RoPE form adds no positional table.
    m.transformer->patch_embed->proj_conv->bias.zero_();
    auto& attn = m.transformer->transformer_blocks[0]->as<CogVideoXBlock>()->attn1;
    attn->to_k->weight.copy_(attn->to_q->weight);
    attn->to_k->bias.copy_(attn->to_q->bias);
    attn->norm_k->weight.copy_(attn->norm_q->weight);
    attn->norm_k->bias.copy_(attn->norm_q->bias);
  }
  data::SyntheticVideoOptions video;
  video.frames = 9;
  video.height = 128;
  video.width = 192;
  video.sprites = 0;
  data::SyntheticScene scene = data::make_synthetic_scene(video, 11);
  scene.layers[0].motion.vx = 4.0;
  scene.layers[0].motion.vy = 0.0;
  scene.layers[0].motion.omega = 0.0;
  scene.layers[0].texture.texel_size = 16.0;  // texels of one patch: structure that survives 8 x 8 pooling
  const torch::Tensor frames = data::render_synthetic_video(scene, video).frames;
  // Latents: frames 0, 4, 8 pooled 8 x 8, RGB plus their mean as the 4 channels. (The tiny random
  // VAE does not keep motion: its latent frames 1 and 2 of this video match best unshifted.)
  const torch::Tensor rgb = frames.index_select(0, torch::tensor({0, 4, 8})).permute({0, 3, 1, 2}).to(torch::kFloat32);
  const torch::Tensor pooled = torch::avg_pool2d(rgb / 127.5 - 1.0, 8);                      // [3, 3, 16, 24]
  const torch::Tensor latents = torch::cat({pooled, pooled.mean(1, true)}, 1).unsqueeze(0);  // [1, 3, 4, 16, 24]
  ReferenceAmfOptions options;
  options.blocks = {0};
  const auto amf = extract_reference_amf(m.transformer, latents, tiny_text_embeddings(m, 1), options);
  const torch::Tensor flow = amf.at(0);  // [9, 96, 2]
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 3; ++j) {
      const torch::Tensor pair = flow[i * 3 + j];
      const double dx = pair.select(1, 0).median().item<double>();
      const double dy = pair.select(1, 1).median().item<double>();
      EXPECT_EQ(dx, static_cast<double>(j - i)) << "pair " << i << j << ": one patch per latent frame along +x";
      EXPECT_EQ(dy, 0.0) << "pair " << i << j;
      if (i != j) {
        EXPECT_GT(pair.select(1, 0).mean().item<double>() * static_cast<double>(j - i), 0.4) << i << j;
      }
    }
  }
}

TEST(AttentionMotionFlow, BadBlocksTimestepsAndLatentsAreErrors) {
  ModelConfig model;
  model.device = DeviceKind::kCpu;
  ComponentRequest request;
  request.vae = false;
  ModelComponents m = load_model_components(model, 0, request);
  const torch::Tensor latents = torch::randn({1, 3, 4, 8, 12});
  const torch::Tensor text = tiny_text_embeddings(m, 1);
  ReferenceAmfOptions options;
  options.blocks = {2};
  EXPECT_NE(error_of([&] {
              extract_reference_amf(m.transformer, latents, text, options);
            }).find("AMF block 2 is outside the model's transformer blocks [0, 2)"),
            std::string::npos);
  options.blocks = {1};
  options.timestep = 1000;
  EXPECT_NE(error_of([&] {
              extract_reference_amf(m.transformer, latents, text, options);
            }).find("reference timestep 1000 is outside"),
            std::string::npos);
  options.timestep = 0;
  EXPECT_NE(error_of([&] {
              extract_reference_amf(m.transformer, torch::randn({1, 3, 5, 8, 12}), text, options);
            }).find("reference latents must be [1, F, 4, h, w]"),
            std::string::npos);
  const torch::Tensor q = torch::randn({1, 2, 10, 8});
  EXPECT_NE(error_of([&] {
              attention_motion_flow(q, q, 0, TokenGrid{2, 2, 3}, AmfReadout::kSoft);
            }).find("AMF query must be [B, heads, 12, head_dim]"),
            std::string::npos);
}

}  // namespace
}  // namespace t4g
