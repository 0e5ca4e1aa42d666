// Parsing and validation of the CogVideoX transformer config.json (diffusers key names).
// Every key is read through one typed helper so that a wrong type names the key and the file.
#include "models/cogvideox_config.h"

#include <functional>
#include <map>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"

namespace t4g {
namespace {

ErrorContext ctx(const std::string& file, const std::string& key, const std::string& expected = "",
                 const std::string& got = "") {
  ErrorContext c;
  c.file = file;
  c.key = key;
  c.expected = expected;
  c.got = got;
  return c;
}

std::string type_name(const nlohmann::json& v) { return v.type_name(); }

int64_t as_int(const nlohmann::json& v, const std::string& file, const std::string& key) {
  // JSON writers (Python's json) emit integral floats as "2.0" rarely; accept them when exact.
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  throw Error("wrong type", ctx(file, key, "an integer", v.dump()));
}

double as_double(const nlohmann::json& v, const std::string& file, const std::string& key) {
  if (v.is_number()) return v.get<double>();
  throw Error("wrong type", ctx(file, key, "a number", type_name(v) + " " + v.dump()));
}

bool as_bool(const nlohmann::json& v, const std::string& file, const std::string& key) {
  if (v.is_boolean()) return v.get<bool>();
  throw Error("wrong type", ctx(file, key, "true or false", v.dump()));
}

std::string as_string(const nlohmann::json& v, const std::string& file, const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  throw Error("wrong type", ctx(file, key, "a string", v.dump()));
}

std::optional<int64_t> as_optional_int(const nlohmann::json& v, const std::string& file, const std::string& key) {
  if (v.is_null()) return std::nullopt;
  return as_int(v, file, key);
}

void check_positive(int64_t value, const std::string& file, const std::string& key) {
  T4G_CHECK_CTX(value > 0, ctx(file, key, "a positive integer", std::to_string(value)), "out of range");
}

}  // namespace

void CogVideoXTransformerConfig::validate(const std::string& file) const {
  check_positive(num_attention_heads, file, "num_attention_heads");
  check_positive(attention_head_dim, file, "attention_head_dim");
  check_positive(in_channels, file, "in_channels");
  check_positive(out_channels, file, "out_channels");
  check_positive(time_embed_dim, file, "time_embed_dim");
  check_positive(text_embed_dim, file, "text_embed_dim");
  check_positive(num_layers, file, "num_layers");
  check_positive(sample_width, file, "sample_width");
  check_positive(sample_height, file, "sample_height");
  check_positive(sample_frames, file, "sample_frames");
  check_positive(patch_size, file, "patch_size");
  check_positive(temporal_compression_ratio, file, "temporal_compression_ratio");
  check_positive(max_text_seq_length, file, "max_text_seq_length");
  if (ofs_embed_dim) check_positive(*ofs_embed_dim, file, "ofs_embed_dim");
  if (patch_size_t) check_positive(*patch_size_t, file, "patch_size_t");
  T4G_CHECK_CTX(dropout >= 0.0 && dropout < 1.0, ctx(file, "dropout", "0 <= p < 1", std::to_string(dropout)),
                "out of range");
  T4G_CHECK_CTX(norm_eps > 0.0, ctx(file, "norm_eps", "a positive number", std::to_string(norm_eps)), "out of range");
  T4G_CHECK_CTX(spatial_interpolation_scale > 0.0 && temporal_interpolation_scale > 0.0,
                ctx(file, "spatial_interpolation_scale", "positive scales"), "out of range");
  T4G_CHECK_CTX(activation_fn == "gelu-approximate" || activation_fn == "gelu",
                ctx(file, "activation_fn", "gelu-approximate or gelu", activation_fn), "unsupported value");
  T4G_CHECK_CTX(timestep_activation_fn == "silu" || timestep_activation_fn == "swish",
                ctx(file, "timestep_activation_fn", "silu", timestep_activation_fn), "unsupported value");
  // diffusers raises the same for this combination (no such checkpoint exists).
  T4G_CHECK_CTX(
      use_rotary_positional_embeddings || !use_learned_positional_embeddings,
      ctx(file, "use_learned_positional_embeddings", "false when use_rotary_positional_embeddings is false", "true"),
      "unsupported combination");
  if (use_rotary_positional_embeddings) {
    // RoPE splits head_dim into t | h | w = head_dim/4, 3*head_dim/8, 3*head_dim/8, each an even width.
    T4G_CHECK_CTX(
        attention_head_dim % 16 == 0,
        ctx(file, "attention_head_dim", "a multiple of 16 (3D RoPE split)", std::to_string(attention_head_dim)),
        "invalid value");
  }
  if (uses_sincos_positions() || use_learned_positional_embeddings) {
    // The sin-cos table splits D into t | x | y = D/4, 3D/8, 3D/8, each with sin and cos halves.
    T4G_CHECK_CTX(inner_dim() % 16 == 0,
                  ctx(file, "num_attention_heads", "heads * head_dim a multiple of 16 (sin-cos table)",
                      std::to_string(inner_dim())),
                  "invalid value");
    T4G_CHECK_CTX(
        !patch_size_t,
        ctx(file, "patch_size_t", "absent with absolute positional embeddings", std::to_string(*patch_size_t)),
        "unsupported combination");
    T4G_CHECK_CTX(sample_height % patch_size == 0 && sample_width % patch_size == 0,
                  ctx(file, "sample_height", "sample_height and sample_width divisible by patch_size"),
                  "invalid value");
  }
}

CogVideoXTransformerConfig parse_cogvideox_transformer_config(const nlohmann::json& json, const std::string& file) {
  T4G_CHECK_CTX(json.is_object(), ctx(file, "", "a JSON object", json.type_name()), "not a transformer config");
  CogVideoXTransformerConfig c;
  using Setter = std::function<void(const nlohmann::json&, const std::string&)>;
  const std::map<std::string, Setter> setters = {
      {"num_attention_heads", [&](auto& v, auto& k) { c.num_attention_heads = as_int(v, file, k); }},
      {"attention_head_dim", [&](auto& v, auto& k) { c.attention_head_dim = as_int(v, file, k); }},
      {"in_channels", [&](auto& v, auto& k) { c.in_channels = as_int(v, file, k); }},
      {"out_channels", [&](auto& v, auto& k) { c.out_channels = as_int(v, file, k); }},
      {"flip_sin_to_cos", [&](auto& v, auto& k) { c.flip_sin_to_cos = as_bool(v, file, k); }},
      {"freq_shift", [&](auto& v, auto& k) { c.freq_shift = as_double(v, file, k); }},
      {"time_embed_dim", [&](auto& v, auto& k) { c.time_embed_dim = as_int(v, file, k); }},
      {"ofs_embed_dim", [&](auto& v, auto& k) { c.ofs_embed_dim = as_optional_int(v, file, k); }},
      {"text_embed_dim", [&](auto& v, auto& k) { c.text_embed_dim = as_int(v, file, k); }},
      {"num_layers", [&](auto& v, auto& k) { c.num_layers = as_int(v, file, k); }},
      {"dropout", [&](auto& v, auto& k) { c.dropout = as_double(v, file, k); }},
      {"attention_bias", [&](auto& v, auto& k) { c.attention_bias = as_bool(v, file, k); }},
      {"sample_width", [&](auto& v, auto& k) { c.sample_width = as_int(v, file, k); }},
      {"sample_height", [&](auto& v, auto& k) { c.sample_height = as_int(v, file, k); }},
      {"sample_frames", [&](auto& v, auto& k) { c.sample_frames = as_int(v, file, k); }},
      {"patch_size", [&](auto& v, auto& k) { c.patch_size = as_int(v, file, k); }},
      {"patch_size_t", [&](auto& v, auto& k) { c.patch_size_t = as_optional_int(v, file, k); }},
      {"temporal_compression_ratio", [&](auto& v, auto& k) { c.temporal_compression_ratio = as_int(v, file, k); }},
      {"max_text_seq_length", [&](auto& v, auto& k) { c.max_text_seq_length = as_int(v, file, k); }},
      {"activation_fn", [&](auto& v, auto& k) { c.activation_fn = as_string(v, file, k); }},
      {"timestep_activation_fn", [&](auto& v, auto& k) { c.timestep_activation_fn = as_string(v, file, k); }},
      {"norm_elementwise_affine", [&](auto& v, auto& k) { c.norm_elementwise_affine = as_bool(v, file, k); }},
      {"norm_eps", [&](auto& v, auto& k) { c.norm_eps = as_double(v, file, k); }},
      {"spatial_interpolation_scale", [&](auto& v, auto& k) { c.spatial_interpolation_scale = as_double(v, file, k); }},
      {"temporal_interpolation_scale",
       [&](auto& v, auto& k) { c.temporal_interpolation_scale = as_double(v, file, k); }},
      {"use_rotary_positional_embeddings",
       [&](auto& v, auto& k) { c.use_rotary_positional_embeddings = as_bool(v, file, k); }},
      {"use_learned_positional_embeddings",
       [&](auto& v, auto& k) { c.use_learned_positional_embeddings = as_bool(v, file, k); }},
      {"patch_bias", [&](auto& v, auto& k) { c.patch_bias = as_bool(v, file, k); }},
  };
  for (const auto& [key, value] : json.items()) {
    if (!key.empty() && key[0] == '_') continue;  // _class_name, _diffusers_version, _name_or_path
    const auto it = setters.find(key);
    if (it == setters.end()) {
      T4G_WARN(file, ": ignoring unknown transformer config key '", key, "'");
      continue;
    }
    it->second(value, key);
  }
  if (json.contains("_class_name")) {
    const std::string cls = as_string(json["_class_name"], file, "_class_name");
    T4G_CHECK_CTX(cls == "CogVideoXTransformer3DModel", ctx(file, "_class_name", "CogVideoXTransformer3DModel", cls),
                  "not a CogVideoX transformer config");
  }
  c.validate(file);
  return c;
}

CogVideoXTransformerConfig load_cogvideox_transformer_config(const std::string& path) {
  std::string file = path;
  if (is_directory(path)) file = path_join(path, "config.json");
  const Json json = read_json(file);
  return parse_cogvideox_transformer_config(json, file);
}

nlohmann::json cogvideox_transformer_config_to_json(const CogVideoXTransformerConfig& c) {
  nlohmann::json j;
  j["_class_name"] = "CogVideoXTransformer3DModel";
  j["num_attention_heads"] = c.num_attention_heads;
  j["attention_head_dim"] = c.attention_head_dim;
  j["in_channels"] = c.in_channels;
  j["out_channels"] = c.out_channels;
  j["flip_sin_to_cos"] = c.flip_sin_to_cos;
  j["freq_shift"] = c.freq_shift;
  j["time_embed_dim"] = c.time_embed_dim;
  j["ofs_embed_dim"] = c.ofs_embed_dim ? nlohmann::json(*c.ofs_embed_dim) : nlohmann::json(nullptr);
  j["text_embed_dim"] = c.text_embed_dim;
  j["num_layers"] = c.num_layers;
  j["dropout"] = c.dropout;
  j["attention_bias"] = c.attention_bias;
  j["sample_width"] = c.sample_width;
  j["sample_height"] = c.sample_height;
  j["sample_frames"] = c.sample_frames;
  j["patch_size"] = c.patch_size;
  j["patch_size_t"] = c.patch_size_t ? nlohmann::json(*c.patch_size_t) : nlohmann::json(nullptr);
  j["temporal_compression_ratio"] = c.temporal_compression_ratio;
  j["max_text_seq_length"] = c.max_text_seq_length;
  j["activation_fn"] = c.activation_fn;
  j["timestep_activation_fn"] = c.timestep_activation_fn;
  j["norm_elementwise_affine"] = c.norm_elementwise_affine;
  j["norm_eps"] = c.norm_eps;
  j["spatial_interpolation_scale"] = c.spatial_interpolation_scale;
  j["temporal_interpolation_scale"] = c.temporal_interpolation_scale;
  j["use_rotary_positional_embeddings"] = c.use_rotary_positional_embeddings;
  j["use_learned_positional_embeddings"] = c.use_learned_positional_embeddings;
  j["patch_bias"] = c.patch_bias;
  return j;
}

CogVideoXTransformerConfig cogvideox_preset(const std::string& name) {
  CogVideoXTransformerConfig c;  // the struct's defaults are CogVideoX-2b's
  if (name == "2b") return c;
  if (name == "5b") {
    c.num_attention_heads = 48;
    c.num_layers = 42;
    c.use_rotary_positional_embeddings = true;
    return c;
  }
  ErrorContext ctx;
  ctx.key = "preset";
  ctx.expected = "2b | 5b";
  ctx.got = name;
  throw Error("unknown CogVideoX preset", ctx);
}

}  // namespace t4g
