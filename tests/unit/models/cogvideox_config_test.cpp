// The transformer config.json parser: the released configs' keys, defaults for absent keys, and
// one clear error naming file and key for each kind of bad input.
#include <gtest/gtest.h>

#include "common/error.h"
#include "models/cogvideox_config.h"
#include "tests/testing.h"

namespace t4g {
namespace {

using nlohmann::json;

// The CogVideoX-2b file as first published (no RoPE key, no patch_size_t).
json config_2b() {
  return json::parse(R"({
    "_class_name": "CogVideoXTransformer3DModel", "_diffusers_version": "0.30.0.dev0",
    "activation_fn": "gelu-approximate", "attention_bias": true, "attention_head_dim": 64, "dropout": 0.0,
    "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 16, "max_text_seq_length": 226,
    "norm_elementwise_affine": true, "norm_eps": 1e-05, "num_attention_heads": 30, "num_layers": 30,
    "out_channels": 16, "patch_size": 2, "sample_frames": 49, "sample_height": 60, "sample_width": 90,
    "spatial_interpolation_scale": 1.875, "temporal_compression_ratio": 4, "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096, "time_embed_dim": 512, "timestep_activation_fn": "silu"})");
}

std::string error_of(const json& j, const std::string& file = "cfg/config.json") {
  try {
    parse_cogvideox_transformer_config(j, file);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CogVideoXConfig, Parses2BWithDefaultsForAbsentKeys) {
  const auto c = parse_cogvideox_transformer_config(config_2b(), "2b.json");
  EXPECT_EQ(c.inner_dim(), 1920);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_FALSE(c.use_rotary_positional_embeddings);
  EXPECT_FALSE(c.use_learned_positional_embeddings);
  EXPECT_FALSE(c.patch_size_t.has_value());
  EXPECT_FALSE(c.ofs_embed_dim.has_value());
  EXPECT_TRUE(c.patch_bias);
  EXPECT_TRUE(c.uses_sincos_positions());
  EXPECT_EQ(c.sample_latent_frames(), 13);
  EXPECT_DOUBLE_EQ(c.spatial_interpolation_scale, 1.875);
}

TEST(CogVideoXConfig, Parses5BI2VAnd15Forms) {
  auto j5 = config_2b();
  j5["num_attention_heads"] = 48;
  j5["num_layers"] = 42;
  j5["use_rotary_positional_embeddings"] = true;
  j5["ofs_embed_dim"] = nullptr;
  j5["patch_size_t"] = nullptr;
  const auto c5 = parse_cogvideox_transformer_config(j5);
  EXPECT_EQ(c5.inner_dim(), 3072);
  EXPECT_TRUE(c5.use_rotary_positional_embeddings);
  EXPECT_FALSE(c5.uses_sincos_positions());

  auto ji2v = j5;
  ji2v["in_channels"] = 32;
  ji2v["use_learned_positional_embeddings"] = true;
  const auto ci2v = parse_cogvideox_transformer_config(ji2v);
  EXPECT_EQ(ci2v.in_channels, 32);
  EXPECT_TRUE(ci2v.use_learned_positional_embeddings);

  auto j15 = j5;
  j15["patch_size_t"] = 2;
  j15["patch_bias"] = false;
  j15["ofs_embed_dim"] = 512;
  j15["sample_height"] = 300;
  j15["sample_width"] = 300;
  j15["sample_frames"] = 81;
  const auto c15 = parse_cogvideox_transformer_config(j15);
  EXPECT_EQ(c15.patch_size_t.value_or(0), 2);
  EXPECT_EQ(c15.ofs_embed_dim.value_or(0), 512);
  EXPECT_FALSE(c15.patch_bias);
}

TEST(CogVideoXConfig, RoundTripsThroughJson) {
  auto j = config_2b();
  j["use_rotary_positional_embeddings"] = true;
  j["patch_size_t"] = 2;
  const auto c = parse_cogvideox_transformer_config(j);
  const auto back = parse_cogvideox_transformer_config(cogvideox_transformer_config_to_json(c));
  EXPECT_EQ(back.patch_size_t, c.patch_size_t);
  EXPECT_EQ(back.num_layers, c.num_layers);
  EXPECT_EQ(back.use_rotary_positional_embeddings, c.use_rotary_positional_embeddings);
}

TEST(CogVideoXConfig, WrongTypeNamesFileAndKey) {
  auto j = config_2b();
  j["num_layers"] = "30";
  const auto err = error_of(j);
  EXPECT_NE(err.find("cfg/config.json"), std::string::npos) << err;
  EXPECT_NE(err.find("num_layers"), std::string::npos) << err;
  EXPECT_NE(err.find("an integer"), std::string::npos) << err;
  j = config_2b();
  j["attention_bias"] = 1;
  EXPECT_NE(error_of(j).find("attention_bias"), std::string::npos);
  j = config_2b();
  j["norm_eps"] = "small";
  EXPECT_NE(error_of(j).find("norm_eps"), std::string::npos);
}

TEST(CogVideoXConfig, OutOfRangeAndUnsupportedValues) {
  auto j = config_2b();
  j["num_attention_heads"] = 0;
  EXPECT_NE(error_of(j).find("num_attention_heads"), std::string::npos);
  j = config_2b();
  j["dropout"] = 1.5;
  EXPECT_NE(error_of(j).find("dropout"), std::string::npos);
  j = config_2b();
  j["activation_fn"] = "geglu";
  EXPECT_NE(error_of(j).find("activation_fn"), std::string::npos);
  // diffusers rejects learned PE without RoPE; so do we.
  j = config_2b();
  j["use_learned_positional_embeddings"] = true;
  EXPECT_NE(error_of(j).find("use_learned_positional_embeddings"), std::string::npos);
  // RoPE needs head_dim divisible by 16.
  j = config_2b();
  j["use_rotary_positional_embeddings"] = true;
  j["attention_head_dim"] = 24;
  EXPECT_NE(error_of(j).find("attention_head_dim"), std::string::npos);
  j = config_2b();
  j["_class_name"] = "AutoencoderKLCogVideoX";
  EXPECT_NE(error_of(j).find("_class_name"), std::string::npos);
  EXPECT_NE(error_of(json::array()).find("not a transformer config"), std::string::npos);
}

TEST(CogVideoXConfig, UnknownKeysAreIgnored) {
  auto j = config_2b();
  j["some_future_key"] = 3;
  EXPECT_EQ(parse_cogvideox_transformer_config(j).num_layers, 30);
}

TEST(CogVideoXConfig, LoadsFileOrFolderAndReportsBadFiles) {
  const auto from_folder = load_cogvideox_transformer_config(testing::fixture("cogvideox/5b_rope/transformer"));
  EXPECT_TRUE(from_folder.use_rotary_positional_embeddings);
  EXPECT_EQ(from_folder.num_layers, 2);
  const auto from_file =
      load_cogvideox_transformer_config(testing::fixture("cogvideox/v15_i2v/transformer/config.json"));
  EXPECT_EQ(from_file.patch_size_t.value_or(0), 2);

  testing::TempDir dir;
  testing::write_file(dir.file("config.json"), "{\"num_layers\": 3,");
  try {
    load_cogvideox_transformer_config(dir.path());
    FAIL() << "invalid JSON accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("config.json")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_cogvideox_transformer_config(dir.file("missing.json")), Error);
}

}  // namespace
}  // namespace t4g
