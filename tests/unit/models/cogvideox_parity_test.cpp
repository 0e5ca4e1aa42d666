// Parity with diffusers itself: tiny random CogVideoX transformers of the 2B (sin-cos; sample grid
// and another grid), 5B (RoPE; two grids, one with another aspect ratio), 5B-I2V and 1.5-I2V forms,
// made, saved and run by diffusers (tests/fixtures/cogvideox/make_fixtures.py). Batch 2 with two
// timesteps. fp32 on CPU: sample and the Q/K fed to SDPA within 1e-4 max abs (the bar)
// and 1e-5 relative to the tensor's range. Weights are stored fp16 (2B), bf16 (5B), fp32 (I2V).
#include <gtest/gtest.h>

#include "common/error.h"
#include "common/safetensors.h"
#include "models/cogvideox_io.h"
#include "models/diffusers_layout.h"
#include "tests/testing.h"

namespace t4g {
namespace {

constexpr int64_t kProbeLayer = 1;

struct Case {
  std::string name;
  std::string grid;
};

std::string case_path(const Case& c, const std::string& file) {
  return testing::fixture("cogvideox/" + c.name + "/" + file);
}

void expect_close(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double err = (got.to(torch::kFloat64) - want.to(torch::kFloat64)).abs().max().item<double>();
  const double range = want.abs().max().item<double>();
  EXPECT_LE(err, 1e-4) << what;
  EXPECT_LE(err, 1e-5 * std::max(range, 1.0)) << what << " (range " << range << ")";
}

class CogVideoXParity : public ::testing::TestWithParam<Case> {};

TEST_P(CogVideoXParity, SampleAndProbesMatchDiffusers) {
  const Case c = GetParam();
  auto model = load_cogvideox_transformer(case_path(c, "transformer"));
  const auto in = load_safetensors(case_path(c, "inputs_" + c.grid + ".safetensors"));
  const auto want = load_safetensors(case_path(c, "outputs_" + c.grid + ".safetensors"));
  TransformerForwardOptions options;
  if (in.count("ofs") != 0) options.ofs = in.at("ofs");
  ProbeOptions probes;
  probes.query_key_layers = {kProbeLayer};
  options.probes = &probes;
  torch::NoGradGuard no_grad;
  const auto out = model(in.at("hidden_states"), in.at("encoder_hidden_states"), in.at("timestep"), options);
  expect_close(out.sample, want.at("sample"), "sample");
  expect_close(out.captured.query.at(kProbeLayer), want.at("query_L1"), "query_L1");
  expect_close(out.captured.key.at(kProbeLayer), want.at("key_L1"), "key_L1");

  const auto& config = model->config();
  if (config.use_rotary_positional_embeddings) {
    const auto x = in.at("hidden_states");
    const auto rope = cogvideox_rotary_embedding(config, x.size(1), x.size(3), x.size(4));
    // fp32 tables from the same ops: 1e-6.
    EXPECT_TRUE(torch::allclose(rope.cos, want.at("rope_cos"), 0, 1e-6));
    EXPECT_TRUE(torch::allclose(rope.sin, want.at("rope_sin"), 0, 1e-6));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CogVideoXParity,
                         ::testing::Values(Case{"2b_sincos", "sample"}, Case{"2b_sincos", "other"},
                                           Case{"5b_rope", "sample"}, Case{"5b_rope", "other"}, Case{"i2v", "sample"},
                                           Case{"v15_i2v", "sample"}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name + "_" + info.param.grid;
                         });

TEST(CogVideoXParityExtra, Bf16IsCloseToTheFp32Reference) {
  TransformerLoadOptions load;
  load.dtype = torch::kBFloat16;
  auto model = load_cogvideox_transformer(testing::fixture("cogvideox/5b_rope/transformer"), load);
  const auto in = load_safetensors(testing::fixture("cogvideox/5b_rope/inputs_sample.safetensors"));
  const auto want = load_safetensors(testing::fixture("cogvideox/5b_rope/outputs_sample.safetensors"));
  torch::NoGradGuard no_grad;
  const auto got = model(in.at("hidden_states"), in.at("encoder_hidden_states"), in.at("timestep")).sample;
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  const auto ref = want.at("sample");
  // bf16 (8 mantissa bits) through 2 blocks: within 5% of the output range.
  EXPECT_LT(((got.to(torch::kFloat32) - ref).abs().max() / ref.abs().max()).item<double>(), 5e-2);
}

TEST(CogVideoXParityExtra, EmbeddingsMatchDiffusers) {
  const auto want = load_safetensors(testing::fixture("cogvideox/embeddings.safetensors"));
  // get_3d_sincos_pos_embed(64, (w=6, h=4), 3, 1.875, 1.0): float64 from the same positions.
  const auto table = sincos_pos_embed_3d(64, 4, 6, 3, 1.875, 1.0);
  EXPECT_TRUE(torch::allclose(table, want.at("sincos_64_w6_h4_t3").to(torch::kFloat64), 0, 1e-12));
  const auto sinus = timestep_sinusoid(torch::tensor({0, 19, 500, 999}, torch::kLong), 64, true, 0.0);
  // float32 sin/cos of arguments up to 999 (ulp 6e-5): CPUs with other vector units (AVX-512 on the
  // GPU machines, AVX2 here) round differently, so compare to 2 ulps of the largest argument.
  EXPECT_TRUE(torch::allclose(sinus, want.at("timestep_64"), 0, 1.2e-4));
}

TEST(CogVideoXParityExtra, StrictLoadingListsMismatches) {
  // A 3-layer model cannot take the 2-layer checkpoint: the error names the missing block.
  testing::TempDir dir;
  auto config = load_cogvideox_transformer_config(testing::fixture("cogvideox/2b_sincos/transformer"));
  config.num_layers = 3;
  CogVideoXTransformer3DModel model(config);
  try {
    load_module_weights(*model, testing::fixture("cogvideox/2b_sincos/transformer"));
    FAIL() << "a 3-layer model loaded a 2-layer checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("transformer_blocks.2."), std::string::npos) << e.what();
  }
  // A folder without weights is one clear error.
  testing::write_file(dir.file("config.json"),
                      testing::read_file(testing::fixture("cogvideox/2b_sincos/transformer/config.json")));
  EXPECT_THROW(load_cogvideox_transformer(dir.path()), Error);
}

}  // namespace
}  // namespace t4g
