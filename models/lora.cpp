// LoRA adapters as children of torch::nn::Linear, their forward, merge, and the two on-disk
// layouts (PEFT's adapter folder, diffusers' pytorch_lora_weights file). The configuration
// written beside the weights is the subset of PEFT's LoraConfig fields that describes what we
// support; PEFT and diffusers fill every other field with its default when they read it.
#include "models/lora.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/safetensors.h"
#include "common/shape_string.h"

namespace t4g {
namespace {

constexpr const char* kPeftPrefix = "base_model.model.";
constexpr const char* kDiffusersPrefix = "transformer.";
constexpr const char* kDiffusersMetadataKey = "lora_adapter_metadata";  // diffusers' LORA_ADAPTER_METADATA_KEY

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// The adapters of a Linear, or nulls.
struct Adapter {
  std::shared_ptr<LoraDownImpl> down;
  std::shared_ptr<torch::nn::LinearImpl> up;
  explicit operator bool() const { return down != nullptr; }
};

Adapter adapter_of(const torch::nn::Module& linear) {
  const auto children = linear.named_children();
  if (children.is_empty()) return {};
  const auto* a = children.find("lora_A");
  const auto* b = children.find("lora_B");
  if (a == nullptr && b == nullptr) return {};
  Adapter adapter;
  if (a != nullptr) adapter.down = std::dynamic_pointer_cast<LoraDownImpl>(*a);
  if (b != nullptr) adapter.up = std::dynamic_pointer_cast<torch::nn::LinearImpl>(*b);
  T4G_CHECK(adapter.down && adapter.up, "a Linear has an incomplete LoRA adapter (lora_A and lora_B must both exist)");
  return adapter;
}

bool is_adapter_parameter(const std::string& name) {
  return ends_with(name, ".lora_A.weight") || ends_with(name, ".lora_B.weight");
}

// Adapter parameters by name, in module order.
std::vector<std::pair<std::string, torch::Tensor>> adapter_parameters(torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : module.named_parameters()) {
    if (is_adapter_parameter(item.key())) out.emplace_back(item.key(), item.value());
  }
  return out;
}

// Integral values as JSON integers (PEFT writes `"lora_alpha": 64`), others as floats.
Json number(double v) {
  if (std::floor(v) == v && std::fabs(v) < 1e15) return Json(static_cast<int64_t>(v));
  return Json(v);
}

// The LoraConfig fields we write (both layouts). inference_mode is what each writer records:
// PeftModel.save_pretrained writes true, diffusers' training scripts save the live config (false).
Json lora_config_json(const LoraConfig& config, bool inference_mode) {
  std::vector<std::string> targets = config.target_modules;
  std::sort(targets.begin(), targets.end());
  return Json{{"peft_type", "LORA"},
              {"r", config.rank},
              {"lora_alpha", number(config.alpha)},
              {"lora_dropout", config.dropout},
              {"target_modules", targets},
              {"bias", "none"},
              {"fan_in_fan_out", false},
              {"init_lora_weights", true},
              {"use_rslora", false},
              {"use_dora", false},
              {"modules_to_save", nullptr},
              {"layers_to_transform", nullptr},
              {"layers_pattern", nullptr},
              {"rank_pattern", Json::object()},
              {"alpha_pattern", Json::object()},
              {"task_type", nullptr},
              {"inference_mode", inference_mode},
              {"base_model_name_or_path", nullptr},
              {"revision", nullptr}};
}

// A LoraConfig from PEFT's fields; anything we cannot reproduce is an error naming the field.
LoraConfig lora_config_from_json(const Json& json, const std::string& source) {
  ErrorContext ctx;
  ctx.file = source;
  auto fail = [&](const std::string& key, const std::string& message) {
    ctx.key = key;
    ctx.got = json.contains(key) ? json.at(key).dump() : "absent";
    throw Error(message, ctx);
  };
  if (json.contains("peft_type") && json.at("peft_type") != "LORA") fail("peft_type", "not a LoRA adapter");
  LoraConfig config;
  config.rank = json_get<int64_t>(json, "r", source);
  config.alpha = json_get<double>(json, "lora_alpha", source);
  config.dropout = json_get_or<double>(json, "lora_dropout", 0.0, source);
  if (!json.contains("target_modules") || !json.at("target_modules").is_array()) {
    fail("target_modules", "target_modules must be a list of module names (a regular expression is not supported)");
  }
  config.target_modules = json.at("target_modules").get<std::vector<std::string>>();
  if (json_get_or<bool>(json, "use_dora", false, source)) fail("use_dora", "DoRA adapters are not supported");
  if (json_get_or<bool>(json, "use_rslora", false, source)) fail("use_rslora", "rsLoRA scaling is not supported");
  if (json_get_or<bool>(json, "fan_in_fan_out", false, source))
    fail("fan_in_fan_out", "fan_in_fan_out is not supported");
  if (json_get_or<std::string>(json, "bias", "none", source) != "none") fail("bias", "LoRA biases are not supported");
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    if (json.contains(key) && !json.at(key).is_null() && !json.at(key).empty()) {
      fail(key, "per-module ranks or alphas are not supported");
    }
  }
  try {
    config.validate();
  } catch (const Error& e) {
    throw Error(e.message(), ctx);
  }
  return config;
}

// Copies `tensors` (keys = module parameter names) into the module's adapters, strictly.
void copy_adapters(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                   const std::string& source) {
  const auto params = adapter_parameters(module);
  std::vector<std::string> missing, unexpected, mismatched;
  std::set<std::string> known;
  for (const auto& [name, p] : params) {
    known.insert(name);
    const auto it = tensors.find(name);
    if (it == tensors.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != p.sizes() || !it->second.is_floating_point()) {
      mismatched.push_back(t4g::str(name, ": module ", shape_string(p.sizes()), ", file ",
                                    shape_string(it->second.sizes()), " ", it->second.scalar_type()));
    }
  }
  for (const auto& [name, t] : tensors) {
    if (known.count(name) == 0) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 4; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > 4) s += t4g::str(", ... (", v.size(), " in all)");
      return s;
    };
    ErrorContext ctx;
    ctx.file = source;
    std::string message = "LoRA adapter does not match the model:";
    if (!missing.empty()) message += t4g::str(" missing ", missing.size(), " [", list(missing), "]");
    if (!unexpected.empty()) message += t4g::str(" unexpected ", unexpected.size(), " [", list(unexpected), "]");
    if (!mismatched.empty()) message += t4g::str(" mis-shaped ", mismatched.size(), " [", list(mismatched), "]");
    throw Error(message, ctx);
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params) p.copy_(tensors.at(name).to(p.device(), p.scalar_type()));
}

// Keys of `file` with `prefix` stripped; a key without it is reported as unexpected by name.
std::map<std::string, torch::Tensor> strip_prefix(const SafetensorsFile& file, const std::string& prefix) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : file.names()) {
    out[starts_with(name, prefix) ? name.substr(prefix.size()) : "<no " + prefix + " prefix> " + name] =
        file.tensor(name);
  }
  return out;
}

LoraConfig config_from_diffusers_file(const SafetensorsFile& file,
                                      const std::map<std::string, torch::Tensor>& tensors) {
  const auto meta = file.metadata().find(kDiffusersMetadataKey);
  if (meta != file.metadata().end()) {
    const Json packed = parse_json(meta->second, file.path() + " " + kDiffusersMetadataKey);
    Json unpacked = Json::object();
    for (const auto& [key, value] : packed.items()) {
      if (starts_with(key, kDiffusersPrefix)) unpacked[key.substr(std::string(kDiffusersPrefix).size())] = value;
    }
    return lora_config_from_json(unpacked, file.path());
  }
  // No metadata: what diffusers infers (rank from the tensors, alpha = rank, the named modules).
  LoraConfig config;
  config.target_modules.clear();
  config.rank = -1;
  for (const auto& [name, t] : tensors) {
    if (!ends_with(name, ".lora_A.weight") || t.dim() != 2) continue;
    config.target_modules.push_back(name.substr(0, name.size() - std::string(".lora_A.weight").size()));
    ErrorContext ctx;
    ctx.file = file.path();
    ctx.tensor = name;
    ctx.expected = t4g::str("rank ", config.rank);
    ctx.got = t4g::str("rank ", t.size(0));
    T4G_CHECK_CTX(config.rank < 0 || config.rank == t.size(0), ctx,
                  "adapters of different ranks need the lora_adapter_metadata entry");
    config.rank = t.size(0);
  }
  ErrorContext ctx;
  ctx.file = file.path();
  T4G_CHECK_CTX(!config.target_modules.empty(), ctx, "no LoRA tensors (*.lora_A.weight) in the file");
  config.alpha = static_cast<double>(config.rank);
  return config;
}

}  // namespace

void LoraConfig::validate() const {
  ErrorContext ctx;
  ctx.key = "lora";
  T4G_CHECK_CTX(rank >= 1, ctx, "LoRA rank must be >= 1, got ", rank);
  T4G_CHECK_CTX(alpha > 0.0, ctx, "LoRA alpha must be > 0, got ", alpha);
  T4G_CHECK_CTX(dropout >= 0.0 && dropout < 1.0, ctx, "LoRA dropout must be in [0, 1), got ", dropout);
  T4G_CHECK_CTX(!target_modules.empty(), ctx, "LoRA needs at least one target module");
}

bool lora_targets(const std::string& name, const std::vector<std::string>& targets) {
  return std::any_of(targets.begin(), targets.end(),
                     [&](const std::string& t) { return name == t || ends_with(name, "." + t); });
}

LoraDownImpl::LoraDownImpl(int64_t in_features, int64_t rank, double scale_, double dropout_)
    : scale(scale_), dropout(dropout_) {
  weight = register_parameter("weight", torch::zeros({rank, in_features}));
}

torch::Tensor LoraDownImpl::forward(const torch::Tensor& x) {
  const auto in = dropout > 0.0 ? torch::dropout(x, dropout, is_training()) : x;
  return torch::nn::functional::linear(in, weight);
}

torch::Tensor linear_forward(const torch::nn::Linear& linear, const torch::Tensor& x) {
  // at::linear, not LinearImpl::forward: the C++ frontend's F::linear fuses the bias into the GEMM
  // only for 2-D inputs, at::linear also for contiguous 3-D ones (as torch.nn.functional.linear).
  auto y = at::linear(x, linear->weight, linear->bias);
  const Adapter adapter = adapter_of(*linear.ptr());
  if (!adapter) return y;
  // PEFT's order: base, then + lora_B(lora_A(dropout(x))) * scaling, x cast to the adapter's dtype.
  const auto h = adapter.down->forward(x.to(adapter.down->weight.scalar_type()));
  return y + (adapter.up->forward(h) * adapter.down->scale).to(y.scalar_type());
}

bool has_lora_adapter(const torch::nn::Linear& linear) { return static_cast<bool>(adapter_of(*linear.ptr())); }

std::vector<std::string> add_lora(torch::nn::Module& module, const LoraConfig& config, uint64_t seed) {
  config.validate();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<std::string> adapted;
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    const std::string& name = item.key();
    if (!lora_targets(name, config.target_modules)) continue;
    auto linear = std::dynamic_pointer_cast<torch::nn::LinearImpl>(item.value());
    ErrorContext ctx;
    ctx.key = name;
    ctx.got = item.value()->name();
    T4G_CHECK_CTX(linear != nullptr, ctx, "LoRA target is not a Linear layer (only Linear layers can be adapted)");
    T4G_CHECK_CTX(!adapter_of(*linear), ctx, "this Linear already has a LoRA adapter");
    const int64_t in = linear->weight.size(1), out = linear->weight.size(0);
    auto down = std::make_shared<LoraDownImpl>(in, config.rank, config.scale(), config.dropout);
    auto up = torch::nn::Linear(torch::nn::LinearOptions(config.rank, out).bias(false));
    {
      torch::NoGradGuard no_grad;
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));  // kaiming_uniform_(a = sqrt(5))
      down->weight.uniform_(-bound, bound, generator);
      up->weight.zero_();
    }
    down->train(linear->is_training());  // new modules start in training mode; follow the model
    up->train(linear->is_training());
    down->to(linear->weight.device(), linear->weight.scalar_type());
    up->to(linear->weight.device(), linear->weight.scalar_type());
    linear->register_module("lora_A", down);
    linear->register_module("lora_B", up);
    adapted.push_back(name);
  }
  ErrorContext ctx;
  ctx.key = "lora.target_modules";
  for (const auto& t : config.target_modules) ctx.got += (ctx.got.empty() ? "" : ", ") + t;
  T4G_CHECK_CTX(!adapted.empty(), ctx, "no module of the model matches the LoRA target modules");
  return adapted;
}

std::vector<std::string> lora_module_names(torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    if (std::dynamic_pointer_cast<torch::nn::LinearImpl>(item.value()) && adapter_of(*item.value())) {
      names.push_back(item.key());
    }
  }
  return names;
}

int64_t merge_lora(torch::nn::Module& module) {
  int64_t merged = 0;
  torch::NoGradGuard no_grad;
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    auto linear = std::dynamic_pointer_cast<torch::nn::LinearImpl>(item.value());
    if (!linear) continue;
    const Adapter adapter = adapter_of(*linear);
    if (!adapter) continue;
    const auto delta = torch::matmul(adapter.up->weight.to(torch::kFloat32), adapter.down->weight.to(torch::kFloat32)) *
                       adapter.down->scale;
    linear->weight.copy_(
        (linear->weight.to(torch::kFloat32) + delta.to(linear->weight.device())).to(linear->weight.scalar_type()));
    linear->unregister_module("lora_A");
    linear->unregister_module("lora_B");
    ++merged;
  }
  return merged;
}

void save_lora_peft(const std::string& folder, torch::nn::Module& module, const LoraConfig& config) {
  config.validate();
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [name, p] : adapter_parameters(module)) tensors[kPeftPrefix + name] = p.detach();
  T4G_CHECK(!tensors.empty(), "the model has no LoRA adapters to save");
  make_dirs(folder);
  save_safetensors(path_join(folder, kPeftAdapterWeights), tensors, {{"format", "pt"}});
  Json json = lora_config_json(config, /*inference_mode=*/true);
  json["auto_mapping"] = {{"base_model_class", "CogVideoXTransformer3DModel"},
                          {"parent_library", "diffusers.models.transformers.cogvideox_transformer_3d"}};
  write_json(path_join(folder, kPeftAdapterConfig), json);
}

void save_lora_diffusers(const std::string& folder, torch::nn::Module& module, const LoraConfig& config) {
  config.validate();
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [name, p] : adapter_parameters(module)) tensors[kDiffusersPrefix + name] = p.detach();
  T4G_CHECK(!tensors.empty(), "the model has no LoRA adapters to save");
  Json packed = Json::object();
  const Json fields =
      lora_config_json(config, /*inference_mode=*/false);  // a named object: items() does not own what it iterates
  for (const auto& [key, value] : fields.items()) packed[kDiffusersPrefix + key] = value;
  make_dirs(folder);
  // diffusers: json.dumps(metadata, indent=2, sort_keys=True); nlohmann keeps keys sorted.
  save_safetensors(path_join(folder, kDiffusersLoraWeights), tensors,
                   {{"format", "pt"}, {kDiffusersMetadataKey, packed.dump(2)}});
}

LoraConfig load_lora(torch::nn::Module& module, const std::string& path) {
  {
    ErrorContext ctx;
    ctx.file = path;
    T4G_CHECK_CTX(lora_module_names(module).empty(), ctx, "the model already has LoRA adapters");
    T4G_CHECK_CTX(path_exists(path), ctx, "no such LoRA adapter file or folder");
  }
  LoraConfig config;
  std::map<std::string, torch::Tensor> tensors;
  std::string weights_path;
  const bool peft = is_directory(path) && path_exists(path_join(path, kPeftAdapterConfig));
  if (peft) {
    const std::string config_path = path_join(path, kPeftAdapterConfig);
    config = lora_config_from_json(read_json(config_path), config_path);
    weights_path = path_join(path, kPeftAdapterWeights);
    const SafetensorsFile file(weights_path);
    tensors = strip_prefix(file, kPeftPrefix);
  } else {
    weights_path = is_directory(path) ? path_join(path, kDiffusersLoraWeights) : path;
    ErrorContext ctx;
    ctx.file = path;
    T4G_CHECK_CTX(path_exists(weights_path), ctx, "neither a PEFT adapter folder (", kPeftAdapterConfig, ") nor ",
                  kDiffusersLoraWeights);
    const SafetensorsFile file(weights_path);
    tensors = strip_prefix(file, kDiffusersPrefix);
    config = config_from_diffusers_file(file, tensors);
  }
  add_lora(module, config, /*seed=*/0);
  try {
    copy_adapters(module, tensors, weights_path);
  } catch (...) {
    // Leave the model as it was: without adapters.
    for (const auto& name : lora_module_names(module)) {
      auto child = module.named_modules("", false)[name];
      child->unregister_module("lora_A");
      child->unregister_module("lora_B");
    }
    throw;
  }
  return config;
}

}  // namespace t4g
