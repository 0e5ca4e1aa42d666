// `t4g forward transformer` on a diffusers folder made by diffusers: the written sample and Q/K
// probes equal diffusers' (fp32, 1e-4 max abs), and bad input is one error line.
#include <gtest/gtest.h>

#include <algorithm>

#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

std::string forward_command(const std::string& model, const std::string& inputs, const std::string& output,
                            const std::string& extra = "") {
  return testing::program("t4g") + " forward transformer --model " + model + " --inputs " + inputs + " --output " +
         output + " " + extra;
}

TEST(ForwardTransformer, WritesSampleAndProbesMatchingDiffusers) {
  testing::TempDir dir;
  for (const std::string name : {"5b_rope", "2b_sincos"}) {
    const auto fixture = testing::fixture("cogvideox/" + name);
    const auto out = dir.file(name + ".safetensors");
    const auto r =
        testing::run_command(forward_command(fixture + "/transformer", fixture + "/inputs_sample.safetensors", out,
                                             "--probe-layer 1 --dtype fp32 --device cpu"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto got = load_safetensors(out);
    const auto want = load_safetensors(fixture + "/outputs_sample.safetensors");
    for (const char* key : {"sample", "query_L1", "key_L1"}) {
      ASSERT_EQ(got.count(key), 1u) << key;
      EXPECT_EQ(got.at(key).sizes(), want.at(key).sizes()) << key;
      EXPECT_LE((got.at(key) - want.at(key)).abs().max().item<double>(), 1e-4) << name << " " << key;
    }
    // [B, heads, S + video tokens, head_dim]: 2 x 2 x (5 + 3*4*6) x 16.
    EXPECT_EQ(got.at("query_L1").sizes(), (std::vector<int64_t>{2, 2, 77, 16}));
  }
}

TEST(ForwardTransformer, BadInputIsOneErrorLine) {
  testing::TempDir dir;
  const auto fixture = testing::fixture("cogvideox/5b_rope");
  save_safetensors(dir.file("in.safetensors"), {{"hidden_states", torch::zeros({1, 3, 4, 8, 12})}});
  auto r = testing::run_command(
      forward_command(fixture + "/transformer", dir.file("in.safetensors"), dir.file("out.safetensors")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("encoder_hidden_states"), std::string::npos) << r.err;
  EXPECT_FALSE(testing::run_command("test -e " + dir.file("out.safetensors")).exit_code == 0);

  r = testing::run_command(forward_command(fixture + "/transformer", fixture + "/inputs_sample.safetensors",
                                           dir.file("out.safetensors"), "--probe-layer 7"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("layer 7"), std::string::npos) << r.err;

  r = testing::run_command(
      forward_command(dir.path(), fixture + "/inputs_sample.safetensors", dir.file("out.safetensors")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace t4g
