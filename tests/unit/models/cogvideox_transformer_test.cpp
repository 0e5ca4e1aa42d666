// CogVideoXTransformer3DModel with weights made in C++: diffusers state-dict names, shapes of all
// forms, gradient checkpointing equal to the plain path, probes and hooks, bf16 close to fp32.
// Numerical parity with diffusers itself is in cogvideox_parity_test.cpp.
#include <gtest/gtest.h>

#include <set>

#include "common/error.h"
#include "models/cogvideox_transformer.h"
#include "models/embeddings.h"

namespace t4g {
namespace {

CogVideoXTransformerConfig tiny(bool rope) {
  CogVideoXTransformerConfig c;
  c.num_attention_heads = 2;
  c.attention_head_dim = 16;
  c.in_channels = 4;
  c.out_channels = 4;
  c.time_embed_dim = 16;
  c.text_embed_dim = 24;
  c.num_layers = 3;
  c.sample_height = 8;
  c.sample_width = 12;
  c.sample_frames = 9;
  c.max_text_seq_length = 5;
  c.use_rotary_positional_embeddings = rope;
  return c;
}

struct Inputs {
  torch::Tensor x, text, t;
};

Inputs make_inputs(const CogVideoXTransformerConfig& c, int64_t frames = 3, int64_t h = 8, int64_t w = 12,
                   int64_t batch = 2) {
  torch::manual_seed(7);
  return {torch::randn({batch, frames, c.in_channels, h, w}),
          torch::randn({batch, c.max_text_seq_length, c.text_embed_dim}),
          torch::tensor({19, 999}, torch::kLong).slice(0, 0, batch)};
}

CogVideoXTransformer3DModel make_model(const CogVideoXTransformerConfig& c, uint64_t seed = 1) {
  CogVideoXTransformer3DModel model(c);
  init_random_weights(*model, seed, 0.2);
  model->eval();
  return model;
}

// Whether the autograd graph behind `t` contains a node whose name contains `needle`.
bool graph_has_node(const torch::Tensor& t, const std::string& needle) {
  std::vector<std::shared_ptr<torch::autograd::Node>> stack{t.grad_fn()};
  std::set<torch::autograd::Node*> seen;
  while (!stack.empty()) {
    auto node = stack.back();
    stack.pop_back();
    if (!node || !seen.insert(node.get()).second) continue;
    if (node->name().find(needle) != std::string::npos) return true;
    for (const auto& edge : node->next_edges()) stack.push_back(edge.function);
  }
  return false;
}

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a.to(torch::kFloat32) - b.to(torch::kFloat32)).abs().max() / b.to(torch::kFloat32).abs().max())
      .item<double>();
}

TEST(CogVideoXTransformer, ParameterNamesAreDiffusersStateDictNames) {
  auto c = tiny(false);
  CogVideoXTransformer3DModel model(c);
  std::set<std::string> names;
  for (const auto& p : model->named_parameters()) names.insert(p.key());
  for (const auto& b : model->named_buffers()) names.insert(b.key());
  for (const char* name : {"patch_embed.proj.weight",
                           "patch_embed.proj.bias",
                           "patch_embed.text_proj.weight",
                           "time_embedding.linear_1.weight",
                           "time_embedding.linear_2.bias",
                           "transformer_blocks.0.norm1.linear.weight",
                           "transformer_blocks.0.norm1.norm.weight",
                           "transformer_blocks.0.attn1.to_q.weight",
                           "transformer_blocks.0.attn1.to_k.bias",
                           "transformer_blocks.0.attn1.to_v.weight",
                           "transformer_blocks.0.attn1.norm_q.weight",
                           "transformer_blocks.0.attn1.norm_k.bias",
                           "transformer_blocks.0.attn1.to_out.0.weight",
                           "transformer_blocks.2.norm2.linear.bias",
                           "transformer_blocks.2.ff.net.0.proj.weight",
                           "transformer_blocks.2.ff.net.2.weight",
                           "norm_final.weight",
                           "norm_out.linear.weight",
                           "norm_out.norm.bias",
                           "proj_out.weight",
                           "proj_out.bias"}) {
    EXPECT_EQ(names.count(name), 1u) << name;
  }
  // 24 tensors per block + 16 outside (research/cogvideox.md 2.2: 2B has 736 = 30 * 24 + 16).
  EXPECT_EQ(names.size(), static_cast<size_t>(24 * c.num_layers + 16));
  const auto params = model->named_parameters();
  EXPECT_EQ(params["patch_embed.proj.weight"].sizes(), (std::vector<int64_t>{32, 4, 2, 2}));
  EXPECT_EQ(params["transformer_blocks.0.norm1.linear.weight"].sizes(), (std::vector<int64_t>{6 * 32, 16}));
  EXPECT_EQ(params["transformer_blocks.0.ff.net.0.proj.weight"].sizes(), (std::vector<int64_t>{4 * 32, 32}));
  EXPECT_EQ(params["proj_out.weight"].sizes(), (std::vector<int64_t>{4 * 4, 32}));

  // I2V adds the learned table (a buffer, as in diffusers); 1.5 swaps the Conv2d for a Linear and
  // adds ofs_embedding.
  c.use_rotary_positional_embeddings = true;
  c.use_learned_positional_embeddings = true;
  CogVideoXTransformer3DModel i2v(c);
  EXPECT_EQ(i2v->named_buffers()["patch_embed.pos_embedding"].sizes(), (std::vector<int64_t>{1, 5 + 3 * 4 * 6, 32}));
  c.use_learned_positional_embeddings = false;
  c.patch_size_t = 2;
  c.ofs_embed_dim = 16;
  c.patch_bias = false;
  CogVideoXTransformer3DModel v15(c);
  const auto p15 = v15->named_parameters();
  EXPECT_EQ(p15["patch_embed.proj.weight"].sizes(), (std::vector<int64_t>{32, 4 * 8}));
  EXPECT_TRUE(p15.contains("patch_embed.proj.bias"));  // 1.5's Linear always has a bias
  EXPECT_TRUE(p15.contains("ofs_embedding.linear_1.weight"));
  EXPECT_EQ(p15["proj_out.weight"].sizes(), (std::vector<int64_t>{4 * 8, 32}));
}

TEST(CogVideoXTransformer, OutputShapesForAllForms) {
  torch::NoGradGuard no_grad;
  for (const bool rope : {false, true}) {
    auto c = tiny(rope);
    auto model = make_model(c);
    for (const auto& grid : std::vector<std::vector<int64_t>>{{3, 8, 12}, {2, 6, 10}}) {
      const auto in = make_inputs(c, grid[0], grid[1], grid[2]);
      const auto out = model(in.x, in.text, in.t).sample;
      EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, grid[0], 4, grid[1], grid[2]}));
      EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
    }
  }
  auto c = tiny(true);
  c.in_channels = 8;
  c.use_learned_positional_embeddings = true;
  auto i2v = make_model(c);
  const auto in = make_inputs(c);
  EXPECT_EQ(i2v(in.x, in.text, in.t).sample.sizes(), (std::vector<int64_t>{2, 3, 4, 8, 12}));
  // The learned table only fits the sample size (diffusers raises too).
  const auto off = make_inputs(c, 3, 6, 10);
  EXPECT_THROW(i2v(off.x, off.text, off.t), Error);

  c = tiny(true);
  c.patch_size_t = 2;
  c.ofs_embed_dim = 16;
  auto v15 = make_model(c);
  const auto in15 = make_inputs(c, 4);
  TransformerForwardOptions opts;
  opts.ofs = torch::full({2}, 2.0);
  EXPECT_EQ(v15(in15.x, in15.text, in15.t, opts).sample.sizes(), (std::vector<int64_t>{2, 4, 4, 8, 12}));
  EXPECT_THROW(v15(in15.x, in15.text, in15.t), Error);  // ofs missing
}

TEST(CogVideoXTransformer, BadInputsGiveClearErrors) {
  torch::NoGradGuard no_grad;
  auto c = tiny(false);
  auto model = make_model(c);
  const auto in = make_inputs(c);
  auto message = [&](const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message([&] { model(in.x.slice(2, 0, 3), in.text, in.t); }).find("in_channels"), std::string::npos);
  EXPECT_NE(message([&] { model(in.x[0], in.text, in.t); }).find("[B, F, C, H, W]"), std::string::npos);
  EXPECT_NE(message([&] { model(in.x, in.text.slice(2, 0, 8), in.t); }).find("encoder_hidden_states"),
            std::string::npos);
  ProbeOptions probes;
  probes.query_key_layers = {3};
  TransformerForwardOptions opts;
  opts.probes = &probes;
  EXPECT_NE(message([&] { model(in.x, in.text, in.t, opts); }).find("layer 3"), std::string::npos);
}

TEST(CogVideoXTransformer, ScalarTimestepBroadcastsOverTheBatch) {
  torch::NoGradGuard no_grad;
  auto c = tiny(true);
  auto model = make_model(c);
  const auto in = make_inputs(c);
  const auto a = model(in.x, in.text, torch::tensor(19, torch::kLong)).sample;
  const auto b = model(in.x, in.text, torch::tensor({19, 19}, torch::kLong)).sample;
  EXPECT_TRUE(torch::equal(a, b));
}

// Gradient checkpointing must give the same loss and the same gradients (parameters and input).
TEST(CogVideoXTransformer, GradientCheckpointingMatchesThePlainPath) {
  for (const bool rope : {false, true}) {
    auto c = tiny(rope);
    auto model = make_model(c);
    model->train();
    const auto in = make_inputs(c);
    auto run = [&](bool checkpoint, bool keep_attention = false) {
      model->set_gradient_checkpointing(checkpoint, keep_attention);
      model->zero_grad();
      auto x = in.x.clone().requires_grad_(true);
      const auto out = model(x, in.text, in.t).sample;
      const auto loss = (out * out).mean();
      loss.backward();
      std::map<std::string, torch::Tensor> grads;
      for (const auto& p : model->named_parameters()) grads[p.key()] = p.value().grad().clone();
      grads["<input>"] = x.grad().clone();
      return std::make_pair(loss.item<double>(), grads);
    };
    const auto plain = run(false);
    // Plain recompute, and the recompute that takes the kept attention output and runs the fused
    // kernel's backward (models/kept_attention.h).
    for (const bool keep : {false, true}) {
      const auto ckpt = run(true, keep);
      // Same fp32 ops in the same order: agreement to 1e-6 relative (SDPA may reassociate).
      EXPECT_NEAR(plain.first, ckpt.first, 1e-6 * std::abs(plain.first)) << "keep " << keep;
      for (const auto& [name, g] : plain.second) {
        ASSERT_TRUE(ckpt.second.at(name).defined()) << name;
        EXPECT_LT(max_rel(ckpt.second.at(name), g), 1e-5) << name << " keep " << keep;
      }
    }
    // autograd::grad (not only backward()) reaches the parameters through the checkpoint node.
    model->set_gradient_checkpointing(true);
    const auto out = model(in.x, in.text, in.t).sample;
    EXPECT_TRUE(graph_has_node(out, "CheckpointedBlock"));  // the recompute path really ran
    model->set_gradient_checkpointing(false);
    EXPECT_FALSE(graph_has_node(model(in.x, in.text, in.t).sample, "CheckpointedBlock"));
    const auto w = model->named_parameters()["transformer_blocks.1.attn1.to_q.weight"];
    const auto gw = torch::autograd::grad({out.square().mean()}, {w})[0];
    EXPECT_LT(max_rel(gw, plain.second.at("transformer_blocks.1.attn1.to_q.weight")), 1e-5);
  }
}

TEST(CogVideoXTransformer, ProbesCaptureQueryKeyAndHidden) {
  auto c = tiny(true);
  auto model = make_model(c);
  const auto in = make_inputs(c);
  ProbeOptions probes;
  probes.query_key_layers = {1};
  probes.hidden_layers = {0, 2};
  TransformerForwardOptions opts;
  opts.probes = &probes;
  torch::NoGradGuard no_grad;
  const auto out = model(in.x, in.text, in.t, opts);
  ASSERT_EQ(out.captured.query.count(1), 1u);
  EXPECT_EQ(out.captured.query.at(1).sizes(), (std::vector<int64_t>{2, 2, 5 + 3 * 4 * 6, 16}));
  EXPECT_EQ(out.captured.key.at(1).sizes(), (std::vector<int64_t>{2, 2, 5 + 3 * 4 * 6, 16}));
  EXPECT_EQ(out.captured.hidden.at(2).sizes(), (std::vector<int64_t>{2, 3 * 4 * 6, 32}));
  EXPECT_EQ(out.captured.hidden.count(1), 0u);
  // Probes do not change the output.
  EXPECT_TRUE(torch::equal(out.sample, model(in.x, in.text, in.t).sample));
  // Order is text then video: at layer 0 nothing has mixed yet, so the first S rows of Q depend
  // on the text only and the rest on the video.
  probes.query_key_layers = {0};
  const auto a = model(in.x, in.text, in.t, opts).captured.query.at(0);
  const auto b = model(in.x + 1.0, in.text, in.t, opts).captured.query.at(0);
  EXPECT_TRUE(torch::equal(a.slice(2, 0, 5), b.slice(2, 0, 5)));
  EXPECT_FALSE(torch::allclose(a.slice(2, 5), b.slice(2, 5)));
}

TEST(CogVideoXTransformer, CapturedQueryKeepsGradUnderCheckpointing) {
  auto c = tiny(true);
  auto model = make_model(c);
  model->set_gradient_checkpointing(true);
  const auto in = make_inputs(c);
  ProbeOptions probes;
  probes.query_key_layers = {1};
  TransformerForwardOptions opts;
  opts.probes = &probes;
  const auto out = model(in.x.clone().requires_grad_(true), in.text, in.t, opts);
  EXPECT_TRUE(out.captured.query.at(1).requires_grad());
  EXPECT_TRUE(out.sample.requires_grad());
}

TEST(CogVideoXTransformer, ResidualHookAddsAfterTheBlock) {
  torch::NoGradGuard no_grad;
  auto c = tiny(false);
  auto model = make_model(c);
  const auto in = make_inputs(c);
  const auto plain = model(in.x, in.text, in.t).sample;

  ProbeOptions probes;
  probes.hidden_layers = {1};
  TokenGrid seen;
  probes.residual_hooks[1] = [&](const torch::Tensor& h, const TokenGrid& grid) {
    seen = grid;
    return torch::zeros_like(h);
  };
  TransformerForwardOptions opts;
  opts.probes = &probes;
  auto out = model(in.x, in.text, in.t, opts);
  EXPECT_TRUE(torch::equal(out.sample, plain));
  EXPECT_EQ(seen.frames, 3);
  EXPECT_EQ(seen.height, 4);
  EXPECT_EQ(seen.width, 6);

  // Adding h itself after block 1 equals doubling block 1's output; the capture is pre-hook.
  probes.residual_hooks[1] = [](const torch::Tensor& h, const TokenGrid&) { return h; };
  probes.hidden_layers = {1, 2};
  out = model(in.x, in.text, in.t, opts);
  EXPECT_FALSE(torch::allclose(out.sample, plain));
  ProbeOptions plain_probes;
  plain_probes.hidden_layers = {1};
  TransformerForwardOptions plain_opts;
  plain_opts.probes = &plain_probes;
  const auto reference = model(in.x, in.text, in.t, plain_opts);
  EXPECT_TRUE(torch::equal(out.captured.hidden.at(1), reference.captured.hidden.at(1)));

  probes.residual_hooks[1] = [](const torch::Tensor& h, const TokenGrid&) { return h.slice(1, 1); };
  EXPECT_THROW(model(in.x, in.text, in.t, opts), Error);
}

TEST(CogVideoXTransformer, CagChangesOnlyTheChosenLayersAndBatchElements) {
  torch::NoGradGuard no_grad;
  auto c = tiny(true);
  auto model = make_model(c);
  const auto in = make_inputs(c);
  const auto plain = model(in.x, in.text, in.t).sample;
  for (const auto mode : {CagMode::kRenormalized, CagMode::kDropWithoutRenorm}) {
    ProbeOptions probes;
    probes.cag_layers = {1};
    probes.cag_mode = mode;
    probes.cag_batch_indices = {1};
    TransformerForwardOptions opts;
    opts.probes = &probes;
    const auto out = model(in.x, in.text, in.t, opts).sample;
    EXPECT_TRUE(torch::allclose(out[0], plain[0], 1e-6, 1e-6));  // unperturbed batch element
    EXPECT_GT((out[1] - plain[1]).abs().max().item<double>(), 1e-4);
  }
}

// DiTFlow's KV injection through the probes (ditflow guidance_utils/custom_modules.py,
// InjectionProcessor): a block's own video K/V written back leave the output as it was (the
// replacement itself changes nothing: 1e-6, the same float32 ops on re-laid-out tensors); another
// video's K/V change it, from the chosen block on and not before; one batch element's K/V reach
// every element of the forward (both CFG branches), as separate forwards of one element each; the
// captured K/V are those SDPA saw; under gradient checkpointing the replaced block keeps the
// replacement in backward (gradients as the plain path).
TEST(CogVideoXTransformer, VideoKeyValueReplacement) {
  for (const bool rope : {false, true}) {
    SCOPED_TRACE(rope ? "rope" : "sincos");
    const auto c = tiny(rope);
    auto model = make_model(c);
    const auto in = make_inputs(c);
    const int64_t text_len = c.max_text_seq_length;
    auto forward = [&](const torch::Tensor& x, const ProbeOptions& probes, int64_t first = 0, int64_t count = 2) {
      TransformerForwardOptions o;
      o.probes = &probes;
      return model(x, in.text.narrow(0, first, count), in.t.narrow(0, first, count), o);
    };
    auto video_kv = [&](const TransformerOutput& out, int64_t layer) {
      return VideoKeyValue{out.captured.key.at(layer).slice(2, text_len),
                           out.captured.value.at(layer).slice(2, text_len)};
    };
    torch::NoGradGuard no_grad;
    ProbeOptions capture;
    capture.key_value_layers = {1};
    capture.hidden_layers = {0, 1};
    const auto own = forward(in.x, capture);
    ASSERT_EQ(own.captured.value.count(1), 1u);
    EXPECT_EQ(own.captured.value.at(1).sizes(), (std::vector<int64_t>{2, 2, 5 + 3 * 4 * 6, 16}));
    const double scale = own.sample.abs().max().item<double>();

    ProbeOptions same = capture;
    same.video_key_values[1] = video_kv(own, 1);
    const auto written_back = forward(in.x, same);
    EXPECT_LE((written_back.sample - own.sample).abs().max().item<double>(), 1e-6 * scale);

    const torch::Tensor other_x = torch::randn_like(in.x);
    const auto other = forward(other_x, capture);
    ProbeOptions injected = capture;
    injected.video_key_values[1] = video_kv(other, 1);
    const auto out = forward(in.x, injected);
    EXPECT_GT((out.sample - own.sample).abs().max().item<double>(), 1e-3 * scale);
    EXPECT_TRUE(torch::equal(out.captured.hidden.at(0), own.captured.hidden.at(0))) << "block 0 is untouched";
    EXPECT_GT((out.captured.hidden.at(1) - own.captured.hidden.at(1)).abs().max().item<double>(), 1e-3);
    // What SDPA saw: the text rows of this forward, the video rows given.
    EXPECT_TRUE(
        torch::equal(out.captured.key.at(1).slice(2, 0, text_len), own.captured.key.at(1).slice(2, 0, text_len)));
    EXPECT_TRUE(
        torch::equal(out.captured.value.at(1).slice(2, text_len), other.captured.value.at(1).slice(2, text_len)));

    // One element's K/V into a batch of two == each element alone with them.
    ProbeOptions one = capture;
    one.video_key_values[1] = {video_kv(other, 1).key.narrow(0, 1, 1), video_kv(other, 1).value.narrow(0, 1, 1)};
    const auto both = forward(in.x, one).sample;
    for (int64_t b = 0; b < 2; ++b) {
      const auto alone = forward(in.x.narrow(0, b, 1), one, b, 1).sample;
      EXPECT_LE((both.narrow(0, b, 1) - alone).abs().max().item<double>(), 1e-5 * scale) << "element " << b;
    }

    ProbeOptions bad = capture;
    bad.video_key_values[1] = {video_kv(other, 1).key.slice(2, 1), video_kv(other, 1).value};
    EXPECT_THROW(forward(in.x, bad), Error);
    bad.video_key_values = {{3, video_kv(other, 1)}};
    EXPECT_THROW(forward(in.x, bad), Error);

    // Gradient checkpointing: the replaced block must not be recomputed without its replacement.
    torch::AutoGradMode grad(true);
    ProbeOptions inject_only;
    inject_only.video_key_values[1] = video_kv(other, 1);
    auto input_grad = [&](bool checkpoint) {
      model->set_gradient_checkpointing(checkpoint);
      const auto x = in.x.clone().requires_grad_(true);
      forward(x, inject_only).sample.square().mean().backward();
      return x.grad().clone();
    };
    const auto plain_grad = input_grad(false);
    EXPECT_LT(max_rel(input_grad(true), plain_grad), 1e-5);
    model->set_gradient_checkpointing(false);
  }
}

// Positional replacements (DiTFlow optimises them): the model's own tables passed in give the
// same output (1e-6, float32 reruns of the same ops); other tables change it; a forward stopped
// after block L captures what the full forward captures there. RoPE tables whose gradient is
// wanted get it under gradient checkpointing too.
TEST(CogVideoXTransformer, PositionalReplacementsAndEarlyStop) {
  torch::NoGradGuard no_grad;
  {
    const auto c = tiny(false);
    auto model = make_model(c);
    const auto in = make_inputs(c);
    const auto plain = model->forward(in.x, in.text, in.t).sample;
    TransformerForwardOptions o;
    o.video_pos_embedding = cogvideox_sincos_video_table(c, 3, 8, 12).to(torch::kFloat32).unsqueeze(0);
    EXPECT_LT((model->forward(in.x, in.text, in.t, o).sample - plain).abs().max().item<double>(), 1e-6);
    o.video_pos_embedding = torch::zeros_like(o.video_pos_embedding);
    EXPECT_GT((model->forward(in.x, in.text, in.t, o).sample - plain).abs().max().item<double>(), 1e-3);
    TransformerForwardOptions k;
    k.key_rope = cogvideox_rotary_embedding(tiny(true), 3, 8, 12);
    EXPECT_THROW(model->forward(in.x, in.text, in.t, k), Error);  // no RoPE in this form
  }
  const auto c = tiny(true);
  auto model = make_model(c);
  const auto in = make_inputs(c);
  const RotaryEmbedding rope = cogvideox_rotary_embedding(c, 3, 8, 12);
  ProbeOptions probes;
  probes.query_key_layers = {0, 1};
  TransformerForwardOptions o;
  o.probes = &probes;
  const auto full = model->forward(in.x, in.text, in.t, o);
  o.key_rope = rope;  // the same tables for K: no change
  EXPECT_LT((model->forward(in.x, in.text, in.t, o).sample - full.sample).abs().max().item<double>(), 1e-6);
  o.key_rope = {rope.cos.roll(1, 0), rope.sin.roll(1, 0)};
  const auto other = model->forward(in.x, in.text, in.t, o);
  // Block 0 (the first to see the new tables): Q keeps its tables, K takes the new ones.
  EXPECT_LT((other.captured.query.at(0) - full.captured.query.at(0)).abs().max().item<double>(), 1e-6);
  EXPECT_GT((other.captured.key.at(0) - full.captured.key.at(0)).abs().max().item<double>(), 1e-3);
  o.key_rope = {};
  o.last_block = 1;
  const auto early = model->forward(in.x, in.text, in.t, o);
  EXPECT_FALSE(early.sample.defined());
  EXPECT_LT((early.captured.query.at(1) - full.captured.query.at(1)).abs().max().item<double>(), 1e-6);
  o.last_block = 3;
  EXPECT_THROW(model->forward(in.x, in.text, in.t, o), Error);
  TransformerForwardOptions table;
  table.video_pos_embedding = torch::zeros({1, 72, 32});
  EXPECT_THROW(model->forward(in.x, in.text, in.t, table), Error);  // RoPE form: no sin-cos table

  // Gradients of trainable RoPE tables reach them with and without checkpointing (1e-5 relative).
  torch::AutoGradMode grad(true);
  auto rope_grad = [&](bool checkpointing) {
    model->set_gradient_checkpointing(checkpointing);
    TransformerForwardOptions t;
    t.rope = {rope.cos.clone().requires_grad_(true), rope.sin.clone().requires_grad_(true)};
    model->forward(in.x, in.text, in.t, t).sample.square().sum().backward();
    return t.rope.cos.grad().clone();
  };
  const torch::Tensor g0 = rope_grad(false);
  const torch::Tensor g1 = rope_grad(true);
  model->set_gradient_checkpointing(false);
  EXPECT_GT(g0.abs().max().item<double>(), 0.0);
  EXPECT_LT((g1 - g0).abs().max().item<double>(), 1e-5 * g0.abs().max().item<double>());
}

TEST(CogVideoXTransformer, Bf16ForwardIsCloseToFp32) {
  torch::NoGradGuard no_grad;
  for (const bool rope : {false, true}) {
    auto c = tiny(rope);
    auto model = make_model(c);
    const auto in = make_inputs(c);
    const auto fp32 = model(in.x, in.text, in.t).sample;
    model->to(torch::kBFloat16);
    const auto bf16 = model(in.x, in.text, in.t).sample;
    EXPECT_EQ(bf16.scalar_type(), torch::kBFloat16);
    // bf16 keeps 8 mantissa bits; through 3 blocks the error stays within a few percent of the range.
    EXPECT_LT(max_rel(bf16, fp32), 5e-2) << "rope=" << rope;
  }
}

}  // namespace
}  // namespace t4g
