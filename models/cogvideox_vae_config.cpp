// Reading and validating vae/config.json (see cogvideox_vae_config.h).
#include "models/cogvideox_vae_config.h"

#include <cmath>

#include "common/error.h"

namespace t4g {
namespace {

[[noreturn]] void bad_value(const std::string& file, const std::string& key, const std::string& message,
                            const std::string& expected, const std::string& got) {
  ErrorContext ctx;
  ctx.file = file;
  ctx.key = key;
  ctx.expected = expected;
  ctx.got = got;
  throw Error(message, ctx);
}

// A list of strings, each equal to `required`, with `count` entries.
void check_block_types(const JsonObject& json, const std::string& key, const std::string& required, size_t count) {
  if (!json.has(key)) return;
  const Json& v = json.json().at(key);
  if (!v.is_array()) bad_value(json.file(), json.key_path(key), "wrong type", "a list of strings", v.dump());
  if (v.size() != count) {
    bad_value(json.file(), json.key_path(key), "one block type per entry of block_out_channels",
              std::to_string(count) + " entries", std::to_string(v.size()));
  }
  for (const Json& item : v) {
    if (!item.is_string() || item.get<std::string>() != required) {
      bad_value(json.file(), json.key_path(key), "unsupported block type", required, item.dump());
    }
  }
}

std::string list_string(const std::vector<int64_t>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
  return out + "]";
}

}  // namespace

int64_t CogVideoXVaeConfig::spatial_compression() const {
  return int64_t{1} << (static_cast<int64_t>(block_out_channels.size()) - 1);
}

int64_t CogVideoXVaeConfig::temporal_compress_levels() const {
  int64_t levels = 0;
  while ((int64_t{1} << levels) < temporal_compression_ratio) ++levels;
  return levels;
}

void validate_vae_config(const CogVideoXVaeConfig& c, const std::string& source) {
  auto positive = [&](const char* key, int64_t value) {
    if (value < 1) bad_value(source, key, "out of range", "a positive integer", std::to_string(value));
  };
  positive("in_channels", c.in_channels);
  positive("out_channels", c.out_channels);
  positive("latent_channels", c.latent_channels);
  positive("layers_per_block", c.layers_per_block);
  positive("norm_num_groups", c.norm_num_groups);
  positive("sample_height", c.sample_height);
  positive("sample_width", c.sample_width);
  if (c.block_out_channels.empty() || c.block_out_channels.size() > 8) {
    bad_value(source, "block_out_channels", "out of range", "1 to 8 blocks", list_string(c.block_out_channels));
  }
  for (int64_t ch : c.block_out_channels) {
    if (ch < 1 || ch % c.norm_num_groups != 0) {
      bad_value(source, "block_out_channels", "every block's channels must be a positive multiple of norm_num_groups",
                "multiples of " + std::to_string(c.norm_num_groups), list_string(c.block_out_channels));
    }
  }
  const int64_t r = c.temporal_compression_ratio;
  // Frame chunks of 8 must compress to whole latents: ratios 1, 2, 4, 8.
  if (r != 1 && r != 2 && r != 4 && r != 8) {
    bad_value(source, "temporal_compression_ratio", "out of range", "1, 2, 4 or 8", std::to_string(r));
  }
  if (c.temporal_compress_levels() > static_cast<int64_t>(c.block_out_channels.size()) - 1) {
    bad_value(source, "temporal_compression_ratio", "needs one down block with a downsampler per x2 stage",
              "at most 2^" + std::to_string(c.block_out_channels.size() - 1), std::to_string(r));
  }
  if (!(c.norm_eps > 0) || !std::isfinite(c.norm_eps)) {
    bad_value(source, "norm_eps", "out of range", "a positive number", std::to_string(c.norm_eps));
  }
  if (!(c.scaling_factor > 0) || !std::isfinite(c.scaling_factor)) {
    bad_value(source, "scaling_factor", "out of range", "a positive number", std::to_string(c.scaling_factor));
  }
}

CogVideoXVaeConfig parse_vae_config(const JsonObject& json) {
  CogVideoXVaeConfig c;
  const std::string& file = json.file();
  if (json.has("_class_name")) {
    const std::string cls = json.get_string("_class_name");
    if (cls != "AutoencoderKLCogVideoX") {
      bad_value(file, json.key_path("_class_name"), "not a CogVideoX VAE", "AutoencoderKLCogVideoX", cls);
    }
  }
  c.in_channels = json.get_int("in_channels", c.in_channels);
  c.out_channels = json.get_int("out_channels", c.out_channels);
  c.block_out_channels = json.get_int_list("block_out_channels", c.block_out_channels);
  c.latent_channels = json.get_int("latent_channels", c.latent_channels);
  c.layers_per_block = json.get_int("layers_per_block", c.layers_per_block);
  c.norm_eps = json.get_double("norm_eps", c.norm_eps);
  c.norm_num_groups = json.get_int("norm_num_groups", c.norm_num_groups);
  // diffusers types it as a float; 4 and 4.0 both occur.
  if (json.has("temporal_compression_ratio")) {
    const double r = json.get_double("temporal_compression_ratio");
    if (std::floor(r) != r || r < 1 || r > 64) {
      bad_value(file, json.key_path("temporal_compression_ratio"), "out of range", "1, 2, 4 or 8",
                json.json()["temporal_compression_ratio"].dump());
    }
    c.temporal_compression_ratio = static_cast<int64_t>(r);
  }
  c.sample_height = json.get_int("sample_height", c.sample_height);
  c.sample_width = json.get_int("sample_width", c.sample_width);
  c.scaling_factor = json.get_double("scaling_factor", c.scaling_factor);
  c.invert_scale_latents = json.get_bool("invert_scale_latents", c.invert_scale_latents);
  const std::string act = json.get_string("act_fn", "silu");
  if (act != "silu" && act != "swish") bad_value(file, json.key_path("act_fn"), "unsupported activation", "silu", act);
  for (const char* key : {"use_quant_conv", "use_post_quant_conv"}) {
    if (json.get_bool(key, false)) {
      bad_value(file, json.key_path(key), "unsupported: CogVideoX VAEs have no quant convolutions", "false", "true");
    }
  }
  check_block_types(json, "down_block_types", "CogVideoXDownBlock3D", c.block_out_channels.size());
  check_block_types(json, "up_block_types", "CogVideoXUpBlock3D", c.block_out_channels.size());
  validate_vae_config(c, file);
  return c;
}

Json vae_config_to_json(const CogVideoXVaeConfig& c) {
  const size_t blocks = c.block_out_channels.size();
  // Every key of diffusers' AutoencoderKLCogVideoX __init__ (0.42.1), as save_pretrained writes them.
  return Json{{"_class_name", "AutoencoderKLCogVideoX"},
              {"_diffusers_version", "0.42.1"},
              {"act_fn", "silu"},
              {"block_out_channels", c.block_out_channels},
              {"down_block_types", std::vector<std::string>(blocks, "CogVideoXDownBlock3D")},
              {"force_upcast", true},
              {"in_channels", c.in_channels},
              {"invert_scale_latents", c.invert_scale_latents},
              {"latent_channels", c.latent_channels},
              {"latents_mean", nullptr},
              {"latents_std", nullptr},
              {"layers_per_block", c.layers_per_block},
              {"norm_eps", c.norm_eps},
              {"norm_num_groups", c.norm_num_groups},
              {"out_channels", c.out_channels},
              {"sample_height", c.sample_height},
              {"sample_width", c.sample_width},
              {"scaling_factor", c.scaling_factor},
              {"shift_factor", nullptr},
              {"temporal_compression_ratio", c.temporal_compression_ratio},
              {"up_block_types", std::vector<std::string>(blocks, "CogVideoXUpBlock3D")},
              {"use_post_quant_conv", false},
              {"use_quant_conv", false}};
}

CogVideoXVaeConfig read_vae_config(const std::string& path) { return parse_vae_config(JsonObject::from_file(path)); }

}  // namespace t4g
