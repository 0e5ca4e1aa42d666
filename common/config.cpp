#include "common/config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"

namespace t4g {
namespace {

// Bounds for numeric fields; NaN means unbounded on that side.
struct Range {
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
};
Range at_least(double min) { return Range{min, std::numeric_limits<double>::quiet_NaN()}; }
Range between(double min, double max) { return Range{min, max}; }

template <typename E>
using Choices = std::vector<std::pair<const char*, E>>;

const Choices<DType> kDTypes = {{"fp32", DType::kFloat32}, {"bf16", DType::kBFloat16}};
const Choices<DeviceKind> kDevices = {{"cpu", DeviceKind::kCpu}, {"cuda", DeviceKind::kCuda},
                                      {"auto", DeviceKind::kAuto}};
const Choices<std::string> kLogLevels = {
    {"debug", "debug"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}};

// ---- The field table: every recipe key, declared once. -------------------------------------
// A visitor V provides field(name, ref, doc[, range]), choice(name, ref, choices, doc),
// required(name, ref, doc) and section(name, ref, visit_fn).

template <typename V>
void visit_fields(V& v, RunConfig& c) {
  v.required("name", c.name, "run name, shown in logs and metrics");
  v.required("out_dir", c.out_dir, "folder for checkpoints, logs and metrics");
  v.field("seed", c.seed, "base seed; per-rank and per-step random streams derive from it", at_least(0));
  v.choice("log_level", c.log_level, kLogLevels, "console log level");
}

template <typename V>
void visit_fields(V& v, TinyModelConfig& c) {
  v.field("num_layers", c.num_layers, "transformer blocks", between(1, 64));
  v.field("num_attention_heads", c.num_attention_heads, "attention heads per block", between(1, 128));
  v.field("attention_head_dim", c.attention_head_dim, "channels per head", between(2, 512));
  v.field("text_embed_dim", c.text_embed_dim, "width of the text encoder output", between(1, 8192));
  v.field("in_channels", c.in_channels, "latent channels", between(1, 64));
  v.field("time_embed_dim", c.time_embed_dim, "timestep embedding width", between(2, 4096));
  v.field("use_rotary_positional_embeddings", c.use_rotary_positional_embeddings,
          "3D RoPE (the 5B form) instead of sincos positional embeddings (the 2B form)");
  v.field("text_tokens", c.text_tokens, "text sequence length (226 in the real models); the tiny model's prompts are empty",
          between(1, 512));
  v.field("vae_channels", c.vae_channels, "channels of the tiny VAE's first block (blocks c, c, 2c, 2c; a multiple of 4)",
          between(4, 512));
}

template <typename V>
void visit_fields(V& v, ModelConfig& c) {
  v.field("path", c.path, "diffusers pipeline or transformer folder; empty = random model.tiny");
  v.choice("dtype", c.dtype, kDTypes, "compute dtype");
  v.choice("device", c.device, kDevices, "where to run; auto = cuda when available");
  v.field("gradient_checkpointing", c.gradient_checkpointing, "recompute each block in backward to save memory");
  v.section("tiny", c.tiny);
}

template <typename V>
void visit_fields(V& v, SyntheticDataConfig& c) {
  v.field("videos", c.videos, "number of synthetic videos", between(1, 1000000));
  v.field("sprites", c.sprites, "moving textured sprites per video", between(0, 64));
  v.field("grid_step", c.grid_step, "spacing in pixels of the tracked point grid", between(1, 1024));
}

template <typename V>
void visit_fields(V& v, DataConfig& c) {
  v.field("shards", c.shards, "folder of HDF5 shards with index.json; empty = data.synthetic");
  v.field("frames", c.frames, "frames per clip (4k+1 for CogVideoX's VAE, e.g. 49)", between(1, 1024));
  v.field("height", c.height, "frame height in pixels, a multiple of 16", between(16, 8192));
  v.field("width", c.width, "frame width in pixels, a multiple of 16", between(16, 8192));
  v.field("batch_size", c.batch_size, "clips per step per rank", between(1, 4096));
  v.field("loader_threads", c.loader_threads, "data loader prefetch threads", between(0, 256));
  v.section("synthetic", c.synthetic);
}

template <typename V>
void visit_fields(V& v, Config& c) {
  v.section("run", c.run);
  v.section("model", c.model);
  v.section("data", c.data);
}

// ---- Type names and conversions -------------------------------------------------------------

template <typename T>
const char* type_name();
template <> const char* type_name<bool>() { return "a bool"; }
template <> const char* type_name<int64_t>() { return "an integer"; }
template <> [[maybe_unused]] const char* type_name<double>() { return "a number"; }
template <> const char* type_name<std::string>() { return "a string"; }

template <typename T>
std::string value_text(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
template <> std::string value_text<bool>(const bool& v) { return v ? "true" : "false"; }
template <> std::string value_text<std::string>(const std::string& v) { return v.empty() ? "\"\"" : v; }

// "integer" from "an integer": the type column of `t4g config doc`.
template <typename T>
std::string bare_type() {
  const std::string t = type_name<T>();
  return t.substr(t.find(' ') + 1);
}

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string range_text(const Range& r) {
  const bool lo = !std::isnan(r.min), hi = !std::isnan(r.max);
  if (lo && hi) return "[" + value_text(r.min) + ", " + value_text(r.max) + "]";
  if (lo) return ">= " + value_text(r.min);
  if (hi) return "<= " + value_text(r.max);
  return "";
}

// ---- Reader: YAML -> struct ---------------------------------------------------------------

class Reader {
 public:
  Reader(YAML::Node node, std::string source, std::string prefix, const std::set<std::string>* overridden)
      : node_(std::move(node)), source_(std::move(source)), prefix_(std::move(prefix)), overridden_(overridden) {}

  template <typename T>
  void field(const char* name, T& ref, const char* doc, Range range = {}) {
    read(name, ref, range, false);
  }
  template <typename T>
  void required(const char* name, T& ref, const char* doc) {
    read(name, ref, Range{}, true);
  }

  template <typename E>
  void choice(const char* name, E& ref, const Choices<E>& choices, const char* doc) {
    seen_.insert(name);
    const YAML::Node n = child(name);
    if (!n) return;
    std::string text;
    read_scalar(name, n, text);
    std::string allowed;
    for (const auto& [label, value] : choices) {
      if (text == label) {
        ref = value;
        return;
      }
      allowed += (allowed.empty() ? "" : "|") + std::string(label);
    }
    fail(name, n, "not an allowed value", "one of " + allowed, text);
  }

  template <typename S>
  void section(const char* name, S& ref) {
    seen_.insert(name);
    const YAML::Node found = child(name);
    // An absent section is read as an empty one, so its required keys are still reported.
    const YAML::Node n = (found && !found.IsNull()) ? found : YAML::Node(YAML::NodeType::Map);
    if (!n.IsMap()) fail(name, n, "wrong type", "a mapping of keys", describe(n));
    Reader sub(n, source_, join(prefix_, name), overridden_);
    visit_fields(sub, ref);
    sub.reject_unknown();
  }

  void reject_unknown() const {
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      const std::string key = it->first.as<std::string>();
      if (seen_.count(key) == 0) {
        ErrorContext ctx;
        ctx.file = where(it->first);
        ctx.key = join(prefix_, key);
        throw Error("unknown key (`t4g config doc` lists every key)", ctx);
      }
    }
  }

 private:
  YAML::Node child(const char* name) const {
    // const lookup: never inserts a key into the document.
    const YAML::Node& self = node_;
    return self[name];
  }

  std::string where(const YAML::Node& n) const {
    if (overridden_ != nullptr && overridden_->count(current_key_)) return "--set " + current_key_;
    const YAML::Mark mark = n.Mark();
    return mark.is_null() ? source_ : source_ + ":" + std::to_string(mark.line + 1);
  }

  static std::string describe(const YAML::Node& n) {
    if (n.IsMap()) return "a mapping";
    if (n.IsSequence()) return "a list";
    if (n.IsNull()) return "nothing";
    return "'" + n.Scalar() + "'";
  }

  [[noreturn]] void fail(const char* name, const YAML::Node& n, const std::string& message,
                         const std::string& expected, const std::string& got) {
    current_key_ = join(prefix_, name);
    ErrorContext ctx;
    ctx.file = where(n);
    ctx.key = current_key_;
    ctx.expected = expected;
    ctx.got = got;
    throw Error(message, ctx);
  }

  template <typename T>
  void read_scalar(const char* name, const YAML::Node& n, T& out) {
    current_key_ = join(prefix_, name);
    if (!n.IsScalar()) fail(name, n, "wrong type", type_name<T>(), describe(n));
    try {
      out = n.as<T>();
    } catch (const YAML::Exception&) {
      fail(name, n, "wrong type", type_name<T>(), describe(n));
    }
  }

  template <typename T>
  void read(const char* name, T& ref, const Range& range, bool is_required) {
    seen_.insert(name);
    const YAML::Node n = child(name);
    current_key_ = join(prefix_, name);
    if (!n) {
      if (is_required) {
        ErrorContext ctx;
        ctx.file = source_;
        ctx.key = current_key_;
        throw Error("missing required key", ctx);
      }
      return;
    }
    T value{};
    read_scalar(name, n, value);
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      const double d = static_cast<double>(value);
      if (!std::isfinite(d) || (!std::isnan(range.min) && d < range.min) ||
          (!std::isnan(range.max) && d > range.max)) {
        fail(name, n, "out of range", range_text(range).empty() ? "a finite number" : range_text(range),
             value_text(value));
      }
    }
    ref = value;
  }

  YAML::Node node_;
  std::string source_;
  std::string prefix_;
  const std::set<std::string>* overridden_;
  std::set<std::string> seen_;
  std::string current_key_;
};

// ---- Key collector: every leaf key path (for --set checks) ---------------------------------

class KeyCollector {
 public:
  explicit KeyCollector(std::string prefix = "") : prefix_(std::move(prefix)) {}
  template <typename T>
  void field(const char* name, T&, const char*, Range = {}) { keys.insert(join(prefix_, name)); }
  template <typename T>
  void required(const char* name, T&, const char*) { keys.insert(join(prefix_, name)); }
  template <typename E>
  void choice(const char* name, E&, const Choices<E>&, const char*) { keys.insert(join(prefix_, name)); }
  template <typename S>
  void section(const char* name, S& ref) {
    KeyCollector sub(join(prefix_, name));
    visit_fields(sub, ref);
    keys.insert(sub.keys.begin(), sub.keys.end());
  }
  std::set<std::string> keys;

 private:
  std::string prefix_;
};

// ---- Emitter: struct -> YAML with the docs as comments ---------------------------------------

class Emitter {
 public:
  explicit Emitter(YAML::Emitter& out) : out_(out) {}
  template <typename T>
  void field(const char* name, T& ref, const char* doc, Range = {}) {
    out_ << YAML::Key << name << YAML::Value << ref << YAML::Comment(doc);
  }
  template <typename T>
  void required(const char* name, T& ref, const char* doc) { field(name, ref, doc); }
  template <typename E>
  void choice(const char* name, E& ref, const Choices<E>& choices, const char* doc) {
    for (const auto& [label, value] : choices) {
      if (value == ref) out_ << YAML::Key << name << YAML::Value << label << YAML::Comment(doc);
    }
  }
  template <typename S>
  void section(const char* name, S& ref) {
    out_ << YAML::Key << name << YAML::Value << YAML::BeginMap;
    visit_fields(*this, ref);
    out_ << YAML::EndMap;
  }

 private:
  YAML::Emitter& out_;
};

// ---- Documenter: one Markdown row per key ---------------------------------------------------

class Documenter {
 public:
  explicit Documenter(std::string prefix = "") : prefix_(std::move(prefix)) {}
  template <typename T>
  void field(const char* name, T& ref, const char* doc, Range range = {}) {
    row(name, bare_type<T>(), value_text(ref), range_text(range), doc);
  }
  template <typename T>
  void required(const char* name, T& ref, const char* doc) {
    row(name, bare_type<T>(), "(required)", "", doc);
  }
  template <typename E>
  void choice(const char* name, E& ref, const Choices<E>& choices, const char* doc) {
    std::string allowed, current;
    for (const auto& [label, value] : choices) {
      allowed += (allowed.empty() ? "" : " \\| ") + std::string(label);
      if (value == ref) current = label;
    }
    row(name, "choice", current, allowed, doc);
  }
  template <typename S>
  void section(const char* name, S& ref) {
    Documenter sub(join(prefix_, name));
    visit_fields(sub, ref);
    rows += sub.rows;
  }
  std::string rows;

 private:
  void row(const char* name, const std::string& type, const std::string& def, const std::string& allowed,
           const char* doc) {
    rows += "| `" + join(prefix_, name) + "` | " + type + " | `" + def + "` | " + allowed + " | " + doc + " |\n";
  }
  std::string prefix_;
};

}  // namespace

ConfigOverride parse_override(const std::string& text) {
  const auto eq = text.find('=');
  ErrorContext ctx;
  ctx.key = "--set " + text;
  ctx.expected = "key.path=value";
  T4G_CHECK_CTX(eq != std::string::npos && eq > 0, ctx, "malformed override");
  return ConfigOverride{text.substr(0, eq), text.substr(eq + 1)};
}

Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<ConfigOverride>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    ErrorContext ctx;
    ctx.file = source + ":" + std::to_string(e.mark.line + 1);
    throw Error("invalid YAML: " + e.msg, ctx);
  }
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    ErrorContext ctx;
    ctx.file = source;
    ctx.expected = "a mapping of sections (run, model, data, ...)";
    throw Error("a recipe must be a YAML mapping", ctx);
  }

  Config config;
  KeyCollector known;
  visit_fields(known, config);
  std::set<std::string> overridden;
  for (const ConfigOverride& o : overrides) {
    ErrorContext ctx;
    ctx.key = "--set " + o.key;
    T4G_CHECK_CTX(known.keys.count(o.key), ctx, "unknown key (`t4g config doc` lists every key)");
    YAML::Node value;
    try {
      value = YAML::Load(o.value);
    } catch (const YAML::ParserException& e) {
      throw Error("invalid YAML value '" + o.value + "': " + e.msg, ctx);
    }
    // Walk (creating maps as needed) to the parent of the leaf, then set the leaf.
    YAML::Node cur = root;
    std::string rest = o.key;
    for (auto dot = rest.find('.'); dot != std::string::npos; dot = rest.find('.')) {
      const std::string part = rest.substr(0, dot);
      rest = rest.substr(dot + 1);
      if (!cur[part] || !cur[part].IsMap()) cur[part] = YAML::Node(YAML::NodeType::Map);
      YAML::Node next = cur[part];
      cur.reset(next);
    }
    cur[rest] = value;
    overridden.insert(o.key);
  }

  Reader reader(root, source, "", &overridden);
  visit_fields(reader, config);
  reader.reject_unknown();
  validate(config, source);
  return config;
}

Config load_config(const std::string& path, const std::vector<ConfigOverride>& overrides) {
  return parse_config(read_file(path), path, overrides);
}

void validate(const Config& c, const std::string& source) {
  auto fail = [&](const std::string& key, const std::string& message, const std::string& expected,
                  const std::string& got) {
    ErrorContext ctx;
    ctx.file = source;
    ctx.key = key;
    ctx.expected = expected;
    ctx.got = got;
    throw Error(message, ctx);
  };
  if (c.data.height % 16 != 0) fail("data.height", "not a multiple of 16 (VAE 8 x patch 2)", "a multiple of 16", std::to_string(c.data.height));
  if (c.data.width % 16 != 0) fail("data.width", "not a multiple of 16 (VAE 8 x patch 2)", "a multiple of 16", std::to_string(c.data.width));
  if ((c.data.frames - 1) % 4 != 0) {
    fail("data.frames", "CogVideoX's causal VAE needs 4k+1 frames", "4k+1 (1, 5, 9, ..., 49)", std::to_string(c.data.frames));
  }
  if (c.run.name.empty()) fail("run.name", "must not be empty", "a name", "\"\"");
  if (c.run.out_dir.empty()) fail("run.out_dir", "must not be empty", "a folder", "\"\"");
  const TinyModelConfig& t = c.model.tiny;
  if (t.use_rotary_positional_embeddings && t.attention_head_dim % 8 != 0) {
    // 3D RoPE splits each head into time:height:width = 2:3:3 eighths (cogvideox.md 2.6).
    fail("model.tiny.attention_head_dim", "3D RoPE needs a head dim divisible by 8", "a multiple of 8",
         std::to_string(t.attention_head_dim));
  }
  if (t.vae_channels % 4 != 0) {
    // The tiny VAE uses GroupNorm with 4 groups.
    fail("model.tiny.vae_channels", "must be divisible by the tiny VAE's 4 norm groups", "a multiple of 4",
         std::to_string(t.vae_channels));
  }
}

std::string to_yaml(const Config& config) {
  Config copy = config;
  YAML::Emitter out;
  out << YAML::BeginMap;
  Emitter emitter(out);
  visit_fields(emitter, copy);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::string config_reference() {
  Config defaults;
  Documenter doc;
  visit_fields(doc, defaults);
  return "| key | type | default | allowed | description |\n| --- | --- | --- | --- | --- |\n" + doc.rows;
}

std::string to_string(DType dtype) { return dtype == DType::kBFloat16 ? "bf16" : "fp32"; }
std::string to_string(DeviceKind device) {
  switch (device) {
    case DeviceKind::kCpu: return "cpu";
    case DeviceKind::kCuda: return "cuda";
    case DeviceKind::kAuto: return "auto";
  }
  return "?";
}

}  // namespace t4g
