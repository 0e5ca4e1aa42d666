// models/cogvideox_vae against diffusers' AutoencoderKLCogVideoX on a tiny random VAE saved by
// diffusers itself (tests/fixtures/vae/make_fixtures.py): posterior, seeded sample, scaled latents,
// decode through the scaled path, tiled encode and decode; frame chunking with more than one chunk
// in both directions. Tolerances: fp32 on CPU, max |ours - reference| <= 2e-5 (values are O(1);
// the same ATen kernels run, so only thread-dependent summation order could differ; observed: 0);
// bf16 against diffusers in bf16 within one bf16 step (4e-3; observed: 0), and against fp32
// within 0.05 absolute (bf16 keeps 8 bits of mantissa through ~25 layers; observed ~0.015).
// Also: config validation, strict loading, input errors naming the tensor, the 49 <-> 13 mapping,
// the tiling blend against a literal transcription of the reference loop.
#include "models/cogvideox_vae.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "common/error.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "models/diffusers_layout.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using testing::fixture;
using testing::TempDir;

constexpr double kFp32Tolerance = 2e-5;
constexpr double kBf16Tolerance = 4e-3;        // one bf16 step at |x| < 1
constexpr double kBf16VsFp32Tolerance = 0.05;  // bf16 through ~25 layers vs fp32

const std::map<std::string, torch::Tensor>& expected() {
  static const std::map<std::string, torch::Tensor> tensors = load_safetensors(fixture("vae/expected.safetensors"));
  return tensors;
}

const torch::Tensor& ref(const std::string& name) { return expected().at(name); }

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

AutoencoderKLCogVideoX tiny_vae(torch::Dtype dtype = torch::kFloat32) {
  VaeLoadOptions options;
  options.dtype = dtype;
  return load_cogvideox_vae(fixture("vae/tiny"), options);
}

// The tiny config as code (the fixture's), for models with random weights.
CogVideoXVaeConfig tiny_config() {
  CogVideoXVaeConfig c;
  c.block_out_channels = {8, 8, 16, 16};
  c.latent_channels = 4;
  c.layers_per_block = 1;
  c.norm_num_groups = 4;
  c.sample_height = 64;
  c.sample_width = 64;
  c.scaling_factor = 0.7;
  return c;
}

using t4g::testing::error_of;

TEST(CogVideoXVaeConfig, ReadsTheDiffusersConfig) {
  const CogVideoXVaeConfig c = read_vae_config(fixture("vae/tiny/config.json"));
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{8, 8, 16, 16}));
  EXPECT_EQ(c.latent_channels, 4);
  EXPECT_EQ(c.layers_per_block, 1);
  EXPECT_EQ(c.norm_num_groups, 4);
  EXPECT_EQ(c.temporal_compression_ratio, 4);
  EXPECT_DOUBLE_EQ(c.scaling_factor, 0.7);
  EXPECT_EQ(c.sample_height, 64);
  EXPECT_EQ(c.spatial_compression(), 8);
  EXPECT_EQ(c.temporal_compress_levels(), 2);
  // The released VAEs' values are the defaults.
  const CogVideoXVaeConfig d;
  EXPECT_EQ(d.spatial_compression(), 8);
  EXPECT_EQ(d.block_out_channels, (std::vector<int64_t>{128, 256, 256, 512}));
}

TEST(CogVideoXVaeConfig, BadConfigsNameFileAndKey) {
  TempDir dir;
  const std::string base = testing::read_file(fixture("vae/tiny/config.json"));
  auto with = [&](const std::string& key, const std::string& value) {
    Json j = parse_json(base, "config");
    j[key] = parse_json(value, "value");
    const std::string path = dir.file(key + ".json");
    write_json(path, j);
    return error_of([&] { read_vae_config(path); });
  };
  std::string e = with("_class_name", "\"AutoencoderKL\"");
  EXPECT_NE(e.find("_class_name.json: _class_name: not a CogVideoX VAE"), std::string::npos) << e;
  e = with("down_block_types",
           "[\"CogVideoXDownBlock3D\", \"DownEncoderBlock2D\", \"CogVideoXDownBlock3D\", \"CogVideoXDownBlock3D\"]");
  EXPECT_NE(e.find("down_block_types: unsupported block type"), std::string::npos) << e;
  e = with("up_block_types", "[\"CogVideoXUpBlock3D\"]");
  EXPECT_NE(e.find("up_block_types: one block type per entry"), std::string::npos) << e;
  e = with("block_out_channels", "[8, 8, 16, 18]");
  EXPECT_NE(e.find("block_out_channels: every block's channels must be a positive multiple of norm_num_groups"),
            std::string::npos)
      << e;
  e = with("temporal_compression_ratio", "3");
  EXPECT_NE(e.find("temporal_compression_ratio: out of range"), std::string::npos) << e;
  e = with("use_quant_conv", "true");
  EXPECT_NE(e.find("use_quant_conv: unsupported"), std::string::npos) << e;
  e = with("latent_channels", "\"4\"");
  EXPECT_NE(e.find("latent_channels: wrong type"), std::string::npos) << e;
  e = with("act_fn", "\"gelu\"");
  EXPECT_NE(e.find("act_fn: unsupported activation"), std::string::npos) << e;
  // 4.0 (a float) is what diffusers may write for the ratio.
  Json j = parse_json(base, "config");
  j["temporal_compression_ratio"] = 4.0;
  write_json(dir.file("float_ratio.json"), j);
  EXPECT_EQ(read_vae_config(dir.file("float_ratio.json")).temporal_compression_ratio, 4);
}

TEST(CogVideoXVae, ParameterNamesAreDiffusersStateDictNames) {
  AutoencoderKLCogVideoX vae(tiny_config());
  SafetensorsCheckpoint checkpoint(fixture("vae/tiny/diffusion_pytorch_model.safetensors"));
  std::vector<std::string> ours;
  for (const auto& p : vae->named_parameters()) ours.push_back(p.key());
  std::sort(ours.begin(), ours.end());
  EXPECT_EQ(ours, checkpoint.names());
  EXPECT_EQ(ours.size(), 240u);
  for (const char* name :
       {"encoder.conv_in.conv.weight", "encoder.down_blocks.0.resnets.0.norm1.weight",
        "encoder.down_blocks.2.resnets.0.conv_shortcut.weight", "encoder.down_blocks.2.downsamplers.0.conv.weight",
        "encoder.mid_block.resnets.1.conv2.conv.bias", "encoder.norm_out.weight", "encoder.conv_out.conv.weight",
        "decoder.up_blocks.0.resnets.1.norm2.conv_y.conv.weight", "decoder.up_blocks.2.resnets.0.conv_shortcut.bias",
        "decoder.up_blocks.2.upsamplers.0.conv.weight", "decoder.norm_out.norm_layer.weight",
        "decoder.norm_out.conv_b.conv.bias"}) {
    EXPECT_TRUE(checkpoint.contains(name)) << name;
  }
}

TEST(CogVideoXVae, LoadIsStrict) {
  TempDir dir;
  // A config with more latent channels than the weights: every mis-shaped tensor is one error.
  Json j = read_json(fixture("vae/tiny/config.json"));
  j["latent_channels"] = 8;
  const std::string folder = dir.file("vae");
  make_dirs(folder);
  write_json(path_join(folder, "config.json"), j);
  testing::write_file(path_join(folder, "diffusion_pytorch_model.safetensors"),
                      testing::read_file(fixture("vae/tiny/diffusion_pytorch_model.safetensors")));
  const std::string e = error_of([&] { load_cogvideox_vae(folder); });
  EXPECT_NE(e.find("45 mis-shaped"), std::string::npos) << e;
  EXPECT_NE(e.find("decoder.conv_in.conv.weight: module [16,8,3,3,3] F32, checkpoint [16,4,3,3,3] F16"),
            std::string::npos)
      << e;
  // A folder without weights.
  const std::string empty = dir.file("empty");
  make_dirs(empty);
  write_json(path_join(empty, "config.json"), read_json(fixture("vae/tiny/config.json")));
  EXPECT_NE(error_of([&] { load_cogvideox_vae(empty); }).find("no safetensors weights"), std::string::npos);
}

// The same weights stored as fp32 or bf16 load into fp32 parameters (converted exactly).
TEST(CogVideoXVae, LoadsWeightsStoredInAnyFloatDtype) {
  const auto stored = load_safetensors(fixture("vae/tiny/diffusion_pytorch_model.safetensors"));  // fp16
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    TempDir dir;
    std::map<std::string, torch::Tensor> converted;
    for (const auto& [name, t] : stored) converted[name] = t.to(dtype);
    write_json(dir.file("config.json"), read_json(fixture("vae/tiny/config.json")));
    save_safetensors(dir.file("diffusion_pytorch_model.safetensors"), converted);
    AutoencoderKLCogVideoX vae = load_cogvideox_vae(dir.path());
    int checked = 0;
    for (const auto& p : vae->named_parameters()) {
      EXPECT_EQ(p.value().scalar_type(), torch::kFloat32);
      EXPECT_TRUE(torch::equal(p.value(), converted.at(p.key()).to(torch::kFloat32))) << p.key();
      ++checked;
    }
    EXPECT_EQ(checked, 240);
  }
}

TEST(CogVideoXVae, EncodeMatchesDiffusers) {
  torch::NoGradGuard no_grad;
  AutoencoderKLCogVideoX vae = tiny_vae();
  // 17 frames: chunks of 9 and 8 frames, the second padded from the first's conv caches.
  const VaePosterior posterior = vae->encode(ref("video"));
  EXPECT_LE(max_abs_diff(posterior.mean, ref("mean")), kFp32Tolerance);
  EXPECT_LE(max_abs_diff(posterior.logvar, ref("logvar")), kFp32Tolerance);
  // Same seed, same CPU generator stream as torch.Generator().manual_seed(1234).
  auto generator = at::make_generator<at::CPUGeneratorImpl>(1234);
  EXPECT_LE(max_abs_diff(posterior.sample(generator), ref("sample")), kFp32Tolerance);
  const torch::Tensor latents = vae->encode_latents(ref("video"));
  EXPECT_LE(max_abs_diff(latents, ref("latents")), kFp32Tolerance);
  auto generator2 = at::make_generator<at::CPUGeneratorImpl>(1234);
  EXPECT_LE(max_abs_diff(vae->encode_latents(ref("video"), LatentSampling::kSample, generator2), ref("sample") * 0.7),
            kFp32Tolerance);
  EXPECT_THROW(vae->encode_latents(ref("video"), LatentSampling::kSample), Error);
}

TEST(CogVideoXVae, DecodeMatchesDiffusers) {
  torch::NoGradGuard no_grad;
  AutoencoderKLCogVideoX vae = tiny_vae();
  // 5 latents: chunks of 3 and 2; decode_latents divides by scaling_factor as the pipeline does.
  const torch::Tensor video = vae->decode_latents(ref("latents"));
  EXPECT_EQ(video.sizes(), ref("decoded").sizes());
  EXPECT_LE(max_abs_diff(video, ref("decoded")), kFp32Tolerance);
}

TEST(CogVideoXVae, TiledEncodeAndDecodeMatchDiffusers) {
  torch::NoGradGuard no_grad;
  AutoencoderKLCogVideoX vae = tiny_vae();
  VaeOptions options;
  options.tiling.enabled = true;  // default tile: sample_height / 2 = 32 pixels
  options.tiling.overlap_factor_height = 0.5;
  options.tiling.overlap_factor_width = 0.25;
  vae->set_options(options);
  const VaePosterior posterior = vae->encode(ref("tiled_video"));
  EXPECT_LE(max_abs_diff(posterior.mean, ref("tiled_mean")), kFp32Tolerance);
  EXPECT_LE(max_abs_diff(posterior.logvar, ref("tiled_logvar")), kFp32Tolerance);
  EXPECT_LE(max_abs_diff(vae->decode(ref("tiled_z")), ref("tiled_decoded")), kFp32Tolerance);
  // Tiling must have been used: the untiled result differs at the seams.
  vae->set_options(VaeOptions{});
  EXPECT_GT(max_abs_diff(vae->decode(ref("tiled_z")), ref("tiled_decoded")), 1e-3);
}

TEST(CogVideoXVae, Bf16IsCloseToFp32AndMatchesDiffusersBf16) {
  torch::NoGradGuard no_grad;
  AutoencoderKLCogVideoX vae = tiny_vae(torch::kBFloat16);
  const std::map<std::string, torch::Tensor> bf16 = load_safetensors(fixture("vae/expected_bf16.safetensors"));
  const VaePosterior posterior = vae->encode(ref("video"));
  EXPECT_EQ(posterior.mean.scalar_type(), torch::kBFloat16);
  const double mean_err = max_abs_diff(posterior.mean.to(torch::kFloat32), ref("mean"));
  EXPECT_LE(mean_err, kBf16VsFp32Tolerance);
  EXPECT_GT(mean_err, 0.0) << "bf16 compute should not be bit-identical to fp32";
  const torch::Tensor video = vae->decode_latents(ref("latents"));
  EXPECT_EQ(video.scalar_type(), torch::kBFloat16);
  EXPECT_LE(max_abs_diff(video.to(torch::kFloat32), ref("decoded")), kBf16VsFp32Tolerance);
  // Against diffusers run in bf16: the same roundings, to one bf16 step (2^-8 relative) at most.
  EXPECT_LE(max_abs_diff(posterior.mean, bf16.at("mean")), kBf16Tolerance);
  EXPECT_LE(max_abs_diff(posterior.logvar, bf16.at("logvar")), kBf16Tolerance);
  EXPECT_LE(max_abs_diff(video, bf16.at("decoded")), kBf16Tolerance);
}

TEST(CogVideoXVae, BatchItemsAreIndependent) {
  torch::NoGradGuard no_grad;
  AutoencoderKLCogVideoX vae = tiny_vae();
  const torch::Tensor a = ref("video");
  const torch::Tensor batch = torch::cat({a.flip(4), a}, 0);
  const VaePosterior posterior = vae->encode(batch);
  EXPECT_LE(max_abs_diff(posterior.mean.slice(0, 1, 2), ref("mean")), kFp32Tolerance);
  const torch::Tensor decoded = vae->decode(torch::cat({posterior.mean.slice(0, 1, 2), ref("mean")}, 0));
  EXPECT_LE(max_abs_diff(decoded.slice(0, 0, 1), decoded.slice(0, 1, 2)), kFp32Tolerance);
}

// 49 frames -> 13 latents -> 49 frames (chunks 9 + 5 x 8 frames and 3 + 5 x 2 latents).
TEST(CogVideoXVae, TemporalMapping49To13) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  AutoencoderKLCogVideoX vae(tiny_config());
  const torch::Tensor video = torch::rand({1, 3, 49, 8, 16}) * 2 - 1;
  const torch::Tensor latents = vae->encode_latents(video);
  EXPECT_EQ(latents.sizes(), (std::vector<int64_t>{1, 4, 13, 1, 2}));
  const torch::Tensor decoded = vae->decode_latents(latents);
  EXPECT_EQ(decoded.sizes(), (std::vector<int64_t>{1, 3, 49, 8, 16}));
  EXPECT_TRUE(torch::isfinite(decoded).all().item<bool>());
  // Frame arithmetic for other counts (the reference's chunking).
  for (auto [frames, lat] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 2}, {9, 3}, {13, 4}, {17, 5}, {49, 13}, {81, 21}}) {
    EXPECT_EQ(vae->latent_frames(frames), lat) << frames;
  }
  for (auto [lat, frames] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {2, 8}, {3, 9}, {4, 16}, {5, 17}, {13, 49}, {21, 81}}) {
    EXPECT_EQ(vae->decoded_frames(lat), frames) << lat;
  }
  // The same without a model, at the released VAE's size.
  EXPECT_EQ(vae_latent_frames(49, CogVideoXVaeConfig{}), 13);
  EXPECT_EQ(vae_decoded_frames(13, CogVideoXVaeConfig{}), 49);
  EXPECT_THROW(vae_latent_frames(48, CogVideoXVaeConfig{}), Error);
  // A single image is one latent frame and back.
  EXPECT_EQ(vae->encode_latents(video.slice(2, 0, 1)).size(2), 1);
}

TEST(CogVideoXVae, BadInputsNameTheTensor) {
  torch::NoGradGuard no_grad;
  AutoencoderKLCogVideoX vae = tiny_vae();
  const torch::Tensor video = torch::zeros({1, 3, 9, 16, 16});
  std::string e = error_of([&] { vae->encode(video.slice(2, 0, 8)); });
  EXPECT_NE(e.find("tensor video"), std::string::npos) << e;
  EXPECT_NE(e.find("takes 4k+1 frames (1, 5, 9, ..., 49)"), std::string::npos) << e;
  EXPECT_NE(e.find("got 8 frames"), std::string::npos) << e;
  e = error_of([&] { vae->encode(video.squeeze(0)); });
  EXPECT_NE(e.find("[B, C, F, H, W] (tensor video; expected [B, 3, F, H, W]"), std::string::npos) << e;
  e = error_of([&] { vae->encode(video.permute({0, 2, 1, 3, 4})); });
  EXPECT_NE(e.find("looks like [B, F, C, H, W]"), std::string::npos) << e;
  e = error_of([&] { vae->encode(video.slice(3, 0, 12)); });
  EXPECT_NE(e.find("multiples of the spatial compression 8"), std::string::npos) << e;
  e = error_of([&] { vae->encode(video.to(torch::kUInt8)); });
  EXPECT_NE(e.find("tensor video"), std::string::npos) << e;
  e = error_of([&] { vae->encode(torch::Tensor()); });
  EXPECT_NE(e.find("tensor video"), std::string::npos) << e;

  const torch::Tensor z = torch::zeros({1, 4, 3, 2, 2});
  e = error_of([&] { vae->decode(vae_to_transformer_layout(z)); });
  EXPECT_NE(e.find("tensor latents"), std::string::npos) << e;
  EXPECT_NE(e.find("transformer_to_vae_layout"), std::string::npos) << e;
  e = error_of([&] { vae->decode(torch::zeros({1, 5, 3, 2, 2})); });
  EXPECT_NE(e.find("wrong number of latent channels (tensor latents; expected [B, 4, f, h, w]"), std::string::npos)
      << e;
  e = error_of([&] { vae->decode(torch::zeros({1, 4, 0, 2, 2})); });
  EXPECT_NE(e.find("tensor latents"), std::string::npos) << e;

  VaeOptions bad;
  bad.sample_frames_per_chunk = 6;
  EXPECT_NE(error_of([&] { vae->set_options(bad); }).find("sample_frames_per_chunk"), std::string::npos);
  bad = VaeOptions{};
  bad.tiling.overlap_factor_width = 1.0;
  EXPECT_NE(error_of([&] { vae->set_options(bad); }).find("overlap_factor"), std::string::npos);
  bad = VaeOptions{};
  bad.tiling.enabled = true;
  bad.tiling.tile_sample_min_height = 4;  // less than one latent
  EXPECT_NE(error_of([&] { vae->set_options(bad); }).find("tiling"), std::string::npos);
}

TEST(CogVideoXVae, LayoutHelpersRoundTrip) {
  const torch::Tensor z = torch::randn({2, 4, 3, 5, 6});
  const torch::Tensor t = vae_to_transformer_layout(z);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2, 3, 4, 5, 6}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_TRUE(torch::equal(t[1][2][3], z[1][3][2]));
  EXPECT_TRUE(torch::equal(transformer_to_vae_layout(t), z));
}

// A literal transcription of diffusers' blend_v loop: b[:, :, :, y] = a[:, :, :, -e + y] * (1 - y / e)
// + b[:, :, :, y] * (y / e), one row at a time with Python-float coefficients.
torch::Tensor reference_blend_v(const torch::Tensor& a, torch::Tensor b, int64_t extent) {
  extent = std::min({a.size(3), b.size(3), extent});
  for (int64_t y = 0; y < extent; ++y) {
    const double f = static_cast<double>(y) / static_cast<double>(extent);
    b.select(3, y).copy_(a.select(3, a.size(3) - extent + y) * (1 - f) + b.select(3, y) * f);
  }
  return b;
}

TEST(VaeTiling, BlendIsTheReferenceLoopBitForBit) {
  torch::manual_seed(3);
  for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
    const torch::Tensor a = torch::randn({1, 2, 3, 7, 5}).to(dtype);
    const torch::Tensor b = torch::randn({1, 2, 3, 6, 5}).to(dtype);
    for (int64_t extent : {1, 3, 6, 9}) {
      const torch::Tensor want = reference_blend_v(a, b.clone(), extent);
      const torch::Tensor got = b.clone();
      blend_rows(a, got, extent);
      EXPECT_TRUE(torch::equal(got, want)) << c10::toString(dtype) << " extent " << extent;
      // Columns: the same on transposed tensors.
      const torch::Tensor got_h = b.transpose(3, 4).contiguous();
      blend_columns(a.transpose(3, 4).contiguous(), got_h, extent);
      EXPECT_TRUE(torch::equal(got_h.transpose(3, 4), want)) << c10::toString(dtype) << " extent " << extent;
    }
  }
}

TEST(VaeTiling, IdentityTilesReassembleTheInput) {
  // With an identity function and no blending, tiles cropped to the stride rebuild the input.
  const torch::Tensor x = torch::randn({1, 2, 3, 10, 13});
  TileGrid grid;
  grid.tile_height = grid.tile_width = 4;
  grid.stride_height = grid.stride_width = 3;
  grid.keep_height = grid.keep_width = 3;
  int calls = 0;
  const torch::Tensor y = run_tiled(x, grid, [&](const torch::Tensor& t) {
    ++calls;
    return t.clone();
  });
  EXPECT_EQ(calls, 4 * 5);
  EXPECT_TRUE(torch::equal(y, x));
}

// A one-frame input runs as a Conv2d with the temporal taps summed: equal to the padded Conv3d
// (1e-5: float32 summation order), and it fills the cache as the padded pass would.
TEST(CausalConv3d, OneFrameEqualsThePaddedConv3d) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(4);
  CausalConv3d conv(3, 4, 3);
  const torch::Tensor x = torch::randn({2, 3, 1, 6, 7});
  const torch::Tensor padded = torch::cat({x, x, x}, 2);
  const torch::Tensor expected = conv->conv->forward(padded);
  ConvCache cache;
  const torch::Tensor got = conv->forward(x, &cache);
  ASSERT_EQ(got.sizes(), expected.sizes());
  EXPECT_LE(max_abs_diff(got, expected), 1e-5);
  // The next chunk continues from the cached copies of the frame.
  cache.rewind();
  const torch::Tensor next = torch::randn({2, 3, 2, 6, 7});
  const torch::Tensor whole = conv->conv->forward(torch::cat({x, x, x, next}, 2));
  EXPECT_LE(max_abs_diff(conv->forward(next, &cache), whole.slice(2, 1)), 1e-5);
}

TEST(ConvCache, CarriesFramesBetweenChunks) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  CausalConv3d conv(2, 3, 3);
  const torch::Tensor x = torch::randn({1, 2, 7, 5, 5});
  const torch::Tensor whole = conv->forward(x);
  ConvCache cache;
  const torch::Tensor first = conv->forward(x.slice(2, 0, 3), &cache);
  cache.rewind();
  const torch::Tensor second = conv->forward(x.slice(2, 3, 7), &cache);
  EXPECT_EQ(cache.size(), 1u);
  // A conv alone (no per-chunk norm) is exactly one causal pass when chunked with its cache.
  EXPECT_LE(max_abs_diff(torch::cat({first, second}, 2), whole), 1e-6);
  // Causality: output frame t depends on frames <= t only.
  const torch::Tensor changed = x.clone();
  changed.slice(2, 5, 7).fill_(3.0);
  EXPECT_TRUE(torch::equal(conv->forward(changed).slice(2, 0, 5), whole.slice(2, 0, 5)));
  // The reference's time split of oversized inputs (lowered limit) gives the same result.
  EXPECT_LE(max_abs_diff(safe_conv3d(*conv->conv, torch::cat({x.slice(2, 0, 1), x.slice(2, 0, 1), x}, 2), 200), whole),
            1e-6);
  CausalConv3d point(2, 3, 1);
  EXPECT_LE(max_abs_diff(safe_conv3d(*point->conv, x, 100), point->forward(x)), 1e-6);
  // A chunk that uses more cached convolutions than the first is a bug, reported.
  cache.rewind();
  conv->forward(x.slice(2, 0, 1), &cache);
  EXPECT_THROW(conv->forward(x.slice(2, 0, 1), &cache), Error);
}

}  // namespace
}  // namespace t4g
