#include "common/config.h"

#include <yaml-cpp/yaml.h>
#include <algorithm>

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

const Choices<DType> kDTypes = {{"fp32", DType::kFloat32}, {"bf16", DType::kBFloat16}, {"auto", DType::kAuto}};
const Choices<std::string> kWeightChoices = {{"auto", "auto"}, {"ema", "ema"}, {"raw", "raw"}};
const Choices<DeviceKind> kDevices = {
    {"cpu", DeviceKind::kCpu}, {"cuda", DeviceKind::kCuda}, {"auto", DeviceKind::kAuto}};
const Choices<std::string> kPresets = {{"", ""}, {"2b", "2b"}, {"5b", "5b"}};
const Choices<std::string> kDataFits = {{"refuse", "refuse"}, {"crop", "crop"}};
const Choices<std::string> kLatentModes = {{"auto", "auto"}, {"never", "never"}, {"require", "require"}};
const Choices<std::string> kLrSchedules = {{"constant", "constant"}, {"cosine", "cosine"}, {"linear", "linear"}};
const Choices<std::string> kTrainables = {
    {"refiner", "refiner"}, {"full", "full"}, {"blocks", "blocks"}, {"lora", "lora"}};
const Choices<std::string> kCommBackends = {{"auto", "auto"}, {"store", "store"}, {"nccl", "nccl"}};
const Choices<std::string> kCorrLosses = {{"huber", "huber"}, {"l1", "l1"}, {"l2", "l2"}};
const Choices<std::string> kQueryFrames = {{"first", "first"}, {"random", "random"}};
const Choices<std::string> kRefinerConvs = {{"2d", "2d"}, {"3d", "3d"}};
const Choices<std::string> kLogLevels = {{"debug", "debug"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}};

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
  v.field("text_tokens", c.text_tokens,
          "text sequence length (226 in the real models); the tiny model's prompts are empty", between(1, 512));
  v.field("vae_channels", c.vae_channels,
          "channels of the tiny VAE's first block (blocks c, c, 2c, 2c; a multiple of 4)", between(4, 512));
}

template <typename V>
void visit_fields(V& v, ModelConfig& c) {
  v.field("path", c.path,
          "diffusers pipeline or transformer folder, or a t4g run's export/ or checkpoints/step_N folder (backbone, "
          "adapters and refiner together); empty = model.preset or random model.tiny");
  v.choice("preset", c.preset, kPresets, "with no path: random weights at a released size (2b, 5b), else model.tiny");
  v.choice("dtype", c.dtype, kDTypes,
           "compute dtype; auto = bf16 on CUDA (a trained model: the dtype it trained in), fp32 on the CPU");
  v.choice("weights", c.weights, kWeightChoices,
           "which weights of a trained model (model.path an export or checkpoint): auto = EMA when the run kept "
           "them, ema, raw");
  v.choice("device", c.device, kDevices, "where to run; auto = cuda when available");
  v.field("gradient_checkpointing", c.gradient_checkpointing, "recompute each block in backward to save memory");
  v.field("checkpoint_keep_attention", c.checkpoint_keep_attention,
          "with gradient_checkpointing: keep each block's attention output so that backward need not recompute "
          "it (one more activation per block, a faster step)");
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
  v.field("tracks_per_clip", c.tracks_per_clip, "trajectories sampled per clip among the visible ones (0 = all)",
          between(0, 1000000));
  v.choice("latents", c.latents, kLatentModes, "use the shards' precomputed VAE latents: auto | never | require");
  v.field("flip_probability", c.flip_probability, "horizontal flip augmentation; tracks move with the pixels",
          between(0, 1));
  v.choice("fit", c.fit, kDataFits,
           "shard videos larger than height x width: refuse (an error naming the sizes: prepare the data at the "
           "recipe's size) | crop (a random height x width crop per clip); longer videos always give a random "
           "window of `frames`, smaller or shorter ones are an error");
  v.section("synthetic", c.synthetic);
}

template <typename V>
void visit_fields(V& v, TrainConfig& c) {
  v.field("steps", c.steps, "optimizer steps of the run", between(1, 1e9));
  v.field("lr", c.lr, "peak learning rate", between(0, 1));
  v.choice("lr_schedule", c.lr_schedule, kLrSchedules, "decay after warmup (diffusers get_scheduler formulas)");
  v.field("warmup_steps", c.warmup_steps, "linear warmup from 0 over this many steps", at_least(0));
  v.field("min_lr_ratio", c.min_lr_ratio, "floor of the cosine/linear decay as a fraction of lr", between(0, 1));
  v.field("weight_decay", c.weight_decay, "AdamW decoupled weight decay", between(0, 1));
  v.field("beta1", c.beta1, "AdamW first-moment decay", between(0, 0.999999));
  v.field("beta2", c.beta2, "AdamW second-moment decay", between(0, 0.999999));
  v.field("eps", c.eps, "AdamW epsilon", between(0, 1));
  v.field("grad_clip", c.grad_clip, "clip the global gradient norm to this (0 = off)", at_least(0));
  v.field("grad_accumulation", c.grad_accumulation, "micro-batches per optimizer step", between(1, 4096));
  v.field("ema_decay", c.ema_decay, "EMA of the trainable weights (0 = off), with diffusers' warmup ramp",
          between(0, 1));
  v.field("max_nan_steps", c.max_nan_steps, "stop after this many consecutive non-finite steps (each is skipped)",
          between(1, 1000000));
  v.choice("trainable", c.trainable, kTrainables,
           "what trains besides the refiner: refiner (nothing else) | full | blocks | lora");
  v.field("trainable_blocks", c.trainable_blocks, "with trainable = blocks: the transformer blocks that train");
  v.field("checkpoint_every", c.checkpoint_every, "steps between checkpoints; the last step always saves", at_least(1));
  v.field("keep_checkpoints", c.keep_checkpoints, "newest checkpoints kept (0 = all)", at_least(0));
  v.field("log_every", c.log_every, "steps between console lines and metric records", at_least(1));
  v.field("tensorboard", c.tensorboard, "write TensorBoard event files under <out_dir>/tb");
  v.choice("comm_backend", c.comm_backend, kCommBackends, "collectives: nccl on GPUs, store on CPU, auto picks");
  v.field("bucket_mb", c.bucket_mb, "gradient all-reduce bucket size in MiB", between(1, 4096));
  v.field("zero_stage", c.zero_stage, "0 replicated optimizer, 1 sharded optimizer state, 2 also sharded gradients",
          between(0, 2));
}

template <typename V>
void visit_fields(V& v, LossConfig& c) {
  v.field("corr_weight", c.corr_weight, "lambda: total = diffusion + lambda * correspondence (0 = plain fine-tuning)",
          at_least(0));
  v.choice("corr_loss", c.corr_loss, kCorrLosses, "robust distance of the soft-argmax error, in feature cells");
  v.field("huber_delta", c.huber_delta, "Huber delta in feature cells", between(1e-6, 1e6));
  v.field("temperature", c.temperature, "softmax temperature over cosine similarities", between(1e-6, 100));
  v.field("query_points", c.query_points, "query points per clip", between(1, 1000000));
  v.choice("query_frame", c.query_frame, kQueryFrames, "latent frame queries come from: first | random visible");
  v.field("target_frames", c.target_frames, "latent frames compared per query (0 = all others)", at_least(0));
}

template <typename V>
void visit_fields(V& v, RefinerRecipe& c) {
  v.field("enabled", c.enabled, "attach the refiner (false: no refiner and no correspondence loss)");
  v.field("block", c.block,
          "0-based transformer block whose video tokens are refined (-1 = 17, or the last block of a smaller model)",
          at_least(-1));
  v.field("layers", c.layers, "convolution layers of the refiner", between(1, 64));
  v.choice("conv", c.conv, kRefinerConvs, "2d per frame or 3d across frames");
  v.field("kernel", c.kernel, "odd convolution kernel size", between(1, 15));
}

template <typename V>
void visit_fields(V& v, LoraRecipe& c) {
  v.field("rank", c.rank, "adapter rank r", between(1, 4096));
  v.field("alpha", c.alpha, "adapter scale alpha / r", between(1e-6, 1e6));
  v.field("dropout", c.dropout, "dropout on the adapter input", between(0, 1));
  v.field("target_modules", c.target_modules, "module names (PEFT suffix match) that get adapters");
}

template <typename V>
void visit_fields(V& v, EvalConfig& c) {
  v.field("every", c.every, "steps between tracking evaluations (0 = only before and after training)", at_least(0));
  v.field("data", c.data, "held-out shards folder or TAP-Vid pickle; empty = synthetic videos from another seed");
  v.field("videos", c.videos, "held-out videos evaluated", between(1, 100000));
  v.field("layer", c.layer, "query-key probe layer for zero-shot tracking (-1 = the refiner's block)", at_least(-1));
  v.field("timestep_index", c.timestep_index, "index into the 50 inference timesteps (49 = t 19, DiffTrack's)",
          between(0, 49));
  v.field(
      "vbench_videos", c.vbench_videos,
      "videos sampled at each evaluation (empty prompt, the backbone as diffusers loads it) and scored with VBench's "
      "temporal flickering (0 = off)",
      between(0, 10000));
  v.field("sample_steps", c.sample_steps, "denoising steps of the VBench samples", between(1, 1000));
  v.field("dino", c.dino,
          "DINO ViT-B/16 safetensors: also score VBench's subject consistency (\"\" = flickering only)");
}

template <typename V>
void visit_fields(V& v, Config& c) {
  v.section("run", c.run);
  v.section("model", c.model);
  v.section("data", c.data);
  v.section("train", c.train);
  v.section("loss", c.loss);
  v.section("refiner", c.refiner);
  v.section("lora", c.lora);
  v.section("eval", c.eval);
}

// ---- Type names and conversions -------------------------------------------------------------

template <typename T>
const char* type_name();
template <>
const char* type_name<bool>() {
  return "a bool";
}
template <>
const char* type_name<int64_t>() {
  return "an integer";
}
template <>
[[maybe_unused]] const char* type_name<double>() {
  return "a number";
}
template <>
const char* type_name<std::string>() {
  return "a string";
}
template <>
const char* type_name<std::vector<int64_t>>() {
  return "a list of integers";
}
template <>
const char* type_name<std::vector<std::string>>() {
  return "a list of strings";
}

template <typename T>
std::string value_text(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
template <>
std::string value_text<bool>(const bool& v) {
  return v ? "true" : "false";
}
template <>
std::string value_text<std::string>(const std::string& v) {
  return v.empty() ? "\"\"" : v;
}
template <typename T>
std::string list_text(const std::vector<T>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + value_text(v[i]);
  return s + "]";
}
template <>
std::string value_text<std::vector<int64_t>>(const std::vector<int64_t>& v) {
  return list_text(v);
}
template <>
std::string value_text<std::vector<std::string>>(const std::vector<std::string>& v) {
  return list_text(v);
}

template <typename T>
struct is_vector : std::false_type {};
template <typename T>
struct is_vector<std::vector<T>> : std::true_type {};

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

  [[noreturn]] void fail(const char* name, const YAML::Node& n, const std::string& message, const std::string& expected,
                         const std::string& got) {
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
    if constexpr (is_vector<T>::value) {
      // A list of scalars, block or flow style ([13, 17]); a lone scalar is not a list.
      if (!n.IsSequence()) fail(name, n, "wrong type", type_name<T>(), describe(n));
      T list;
      for (const YAML::Node& item : n) {
        typename T::value_type v{};
        if (!item.IsScalar()) fail(name, item, "wrong type", type_name<T>(), describe(item));
        try {
          v = item.as<typename T::value_type>();
        } catch (const YAML::Exception&) {
          fail(name, item, "wrong type", type_name<T>(), describe(item));
        }
        list.push_back(v);
      }
      out = list;
      return;
    }
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
      if (!std::isfinite(d) || (!std::isnan(range.min) && d < range.min) || (!std::isnan(range.max) && d > range.max)) {
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
  void field(const char* name, T&, const char*, Range = {}) {
    keys.insert(join(prefix_, name));
  }
  template <typename T>
  void required(const char* name, T&, const char*) {
    keys.insert(join(prefix_, name));
  }
  template <typename E>
  void choice(const char* name, E&, const Choices<E>&, const char*) {
    keys.insert(join(prefix_, name));
  }
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

// The shortest decimal text that reads back as exactly `v` (0.1, not 0.10000000000000001), kept
// recognisable as a float by YAML readers ("1.0", not "1").
std::string shortest(double v) {
  char buf[40];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

class Emitter {
 public:
  explicit Emitter(YAML::Emitter& out) : out_(out) {}
  template <typename T>
  void field(const char* name, T& ref, const char* doc, Range = {}) {
    out_ << YAML::Key << name << YAML::Value;
    if constexpr (is_vector<T>::value) out_ << YAML::Flow;
    if constexpr (std::is_same_v<T, double>) {
      out_ << shortest(ref) << YAML::Comment(doc);
    } else {
      out_ << ref << YAML::Comment(doc);
    }
  }
  template <typename T>
  void required(const char* name, T& ref, const char* doc) {
    field(name, ref, doc);
  }
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

int64_t default_refiner_block(int64_t num_layers) { return std::min<int64_t>(17, num_layers - 1); }

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
  // The tiny model is made for the clips it trains on: its sample size (what sampling, tracking
  // and analysis default to) is data.* rather than keys of its own that could disagree.
  config.model.tiny.sample_frames = config.data.frames;
  config.model.tiny.sample_height = config.data.height;
  config.model.tiny.sample_width = config.data.width;
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
  if (c.data.height % 16 != 0)
    fail("data.height", "not a multiple of 16 (VAE 8 x patch 2)", "a multiple of 16", std::to_string(c.data.height));
  if (c.data.width % 16 != 0)
    fail("data.width", "not a multiple of 16 (VAE 8 x patch 2)", "a multiple of 16", std::to_string(c.data.width));
  if ((c.data.frames - 1) % 4 != 0) {
    fail("data.frames", "CogVideoX's causal VAE needs 4k+1 frames", "4k+1 (1, 5, 9, ..., 49)",
         std::to_string(c.data.frames));
  }
  if (c.run.name.empty()) fail("run.name", "must not be empty", "a name", "\"\"");
  if (c.run.out_dir.empty()) fail("run.out_dir", "must not be empty", "a folder", "\"\"");
  const TinyModelConfig& t = c.model.tiny;
  if (t.use_rotary_positional_embeddings && t.attention_head_dim % 8 != 0) {
    // 3D RoPE splits each head into time:height:width = 2:3:3 eighths (cogvideox.md 2.6).
    fail("model.tiny.attention_head_dim", "3D RoPE needs a head dim divisible by 8", "a multiple of 8",
         std::to_string(t.attention_head_dim));
  }
  if (!c.model.path.empty() && !c.model.preset.empty()) {
    fail("model.preset", "cannot be combined with model.path", "one of model.path, model.preset", c.model.preset);
  }
  if (c.model.checkpoint_keep_attention && !c.model.gradient_checkpointing) {
    fail("model.checkpoint_keep_attention", "only applies with gradient checkpointing",
         "model.gradient_checkpointing: true, or false here", "true");
  }
  const int64_t layers =
      c.model.path.empty() && c.model.preset.empty() ? t.num_layers : -1;  // others: checked when loaded
  if (layers > 0 && c.refiner.enabled && c.refiner.block >= layers) {
    fail("refiner.block", "is not a block of the tiny model", "0.." + std::to_string(layers - 1),
         std::to_string(c.refiner.block));
  }
  if (layers > 0 && c.eval.layer >= layers) {
    fail("eval.layer", "is not a block of the tiny model", "-1.." + std::to_string(layers - 1),
         std::to_string(c.eval.layer));
  }
  if (c.refiner.kernel % 2 == 0)
    fail("refiner.kernel", "must be odd (same padding)", "1, 3, 5, ...", std::to_string(c.refiner.kernel));
  if (c.train.trainable == "blocks" && c.train.trainable_blocks.empty()) {
    fail("train.trainable_blocks", "is empty but train.trainable is blocks", "at least one block index", "[]");
  }
  for (int64_t b : c.train.trainable_blocks) {
    if (b < 0 || (layers > 0 && b >= layers)) {
      fail("train.trainable_blocks", "lists a block the model does not have",
           layers > 0 ? "0.." + std::to_string(layers - 1) : ">= 0", std::to_string(b));
    }
  }
  if (c.train.trainable == "refiner" && !c.refiner.enabled) {
    fail("train.trainable", "is refiner but the refiner is disabled: nothing would train", "full | blocks | lora",
         "refiner");
  }
  if (c.lora.target_modules.empty()) fail("lora.target_modules", "must not be empty", "module names", "[]");
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

std::string to_string(DType dtype) {
  return dtype == DType::kBFloat16 ? "bf16" : dtype == DType::kAuto ? "auto" : "fp32";
}
std::string to_string(DeviceKind device) {
  switch (device) {
    case DeviceKind::kCpu:
      return "cpu";
    case DeviceKind::kCuda:
      return "cuda";
    case DeviceKind::kAuto:
      return "auto";
  }
  return "?";
}

}  // namespace t4g
