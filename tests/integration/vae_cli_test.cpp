// `t4g vae encode|decode` end to end on the diffusers-made tiny VAE fixture
// (tests/fixtures/vae/make_fixtures.py): outputs equal diffusers' within 2e-5 (fp32 CPU), and bad
// inputs end with exit code 1 and one stderr line naming the file and the tensor.
#include <gtest/gtest.h>

#include <map>

#include "common/safetensors.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::CommandResult;
using testing::fixture;
using testing::program;
using testing::run_command;
using testing::TempDir;

constexpr double kTolerance = 2e-5;

CommandResult vae(const std::string& args) {
  // The fixtures are fp32 on the CPU; pin both where a test does not choose (auto is CUDA and bf16 on a GPU).
  std::string pin;
  if (args.find("--device") == std::string::npos) pin += " --device cpu";
  if (args.find("--dtype") == std::string::npos) pin += " --dtype fp32";
  return run_command(program("t4g") + " vae " + args + pin + " --model " + fixture("vae/tiny"));
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  return (a - b).abs().max().item<double>();
}

void expect_one_line_error(const CommandResult& r, const std::vector<std::string>& needles) {
  SCOPED_TRACE(r.err);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.find("t4g: error: "), 0u);
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "exactly one line";
  for (const auto& needle : needles) EXPECT_NE(r.err.find(needle), std::string::npos) << needle;
}

TEST(VaeCli, EncodeAndDecodeMatchDiffusers) {
  TempDir dir;
  const std::string expected = fixture("vae/expected.safetensors");
  const auto ref = load_safetensors(expected);
  CommandResult r = vae("encode --input " + expected + " --tensor video --output " + dir.file("lat.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto out = load_safetensors(dir.file("lat.safetensors"));
  EXPECT_LE(max_abs_diff(out.at("latents"), ref.at("latents")), kTolerance);
  EXPECT_LE(max_abs_diff(out.at("mean"), ref.at("mean")), kTolerance);
  EXPECT_LE(max_abs_diff(out.at("logvar"), ref.at("logvar")), kTolerance);

  r = vae("encode --input " + expected + " --tensor video --sample --seed 1234 --output " + dir.file("s.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(max_abs_diff(load_safetensors(dir.file("s.safetensors")).at("latents"), ref.at("sample") * 0.7),
            kTolerance);

  // The latents file written above has several tensors; "latents" is the default for decode.
  r = vae("decode --input " + dir.file("lat.safetensors") + " --output " + dir.file("video.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(max_abs_diff(load_safetensors(dir.file("video.safetensors")).at("video"), ref.at("decoded")), kTolerance);

  r = vae("decode --tiled --unscaled --input " + expected + " --tensor tiled_z --output " + dir.file("t.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Default tiles (32 x 32 pixels, 4 x 4 latents) with the reference's default overlaps 1/6, 1/5:
  // latent strides int(4 * 5/6) = 3 and int(4 * 4/5) = 3, pixel blends 5 and 6, kept 27 and 26, so
  // 5 latents give 27 + 16 = 43 rows and 26 + 16 = 42 columns, as diffusers' tiled_decode does for
  // sizes its tiles were not tuned for. (The fixture's tiling options are checked in unit_models.)
  const torch::Tensor tiled = load_safetensors(dir.file("t.safetensors")).at("video");
  EXPECT_EQ(tiled.sizes(), (std::vector<int64_t>{1, 3, 17, 43, 42}));
  EXPECT_TRUE(torch::isfinite(tiled).all().item<bool>());
}

TEST(VaeCli, BadInputsAreOneLine) {
  TempDir dir;
  save_safetensors(dir.file("eight.safetensors"), {{"video", torch::zeros({1, 3, 8, 16, 16})}});
  expect_one_line_error(
      vae("encode --input " + dir.file("eight.safetensors") + " --output " + dir.file("o.safetensors")),
      {"eight.safetensors", "tensor video", "4k+1 frames", "got 8 frames"});
  EXPECT_FALSE(testing::read_file(dir.file("eight.safetensors")).empty());
  save_safetensors(dir.file("two.safetensors"), {{"a", torch::zeros({1})}, {"b", torch::zeros({1})}});
  expect_one_line_error(vae("decode --input " + dir.file("two.safetensors") + " --output " + dir.file("o.safetensors")),
                        {"two.safetensors", "tensor latents", "input tensor not found", "a, b"});
  save_safetensors(dir.file("btchw.safetensors"), {{"latents", torch::zeros({1, 3, 4, 2, 2})}});
  expect_one_line_error(
      vae("decode --input " + dir.file("btchw.safetensors") + " --output " + dir.file("o.safetensors")),
      {"btchw.safetensors", "tensor latents", "transformer_to_vae_layout"});
  expect_one_line_error(
      vae("decode --dtype fp64 --input " + dir.file("btchw.safetensors") + " --output " + dir.file("o.safetensors")),
      {"unknown compute dtype", "fp64"});
  // Nothing half-written on failure.
  EXPECT_NE(run_command("test -e " + dir.file("o.safetensors")).exit_code, 0);
}

}  // namespace
}  // namespace t4g
