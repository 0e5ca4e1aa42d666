// diffusers folder resolution and the strict name-to-name module loader (see diffusers_layout.h).
// The loader checks everything before copying anything, so a mismatched checkpoint never leaves
// a half-loaded model behind, and it reports all problems in one error instead of the first one.
#include "models/diffusers_layout.h"
#include "common/fs.h"
#include "common/shape_string.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "common/error.h"
#include "common/log.h"


namespace t4g {
namespace {

constexpr size_t kNamesShown = 5;  // names per list in the one-line error

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

std::string config_in(const std::string& folder) {
  for (const char* name : {"config.json", "scheduler_config.json"}) {
    if (is_regular_file(path_join(folder, name))) return path_join(folder, name);
  }
  return "";
}

// The class a lone component's config names: diffusers' "_class_name" or transformers' first
// "architectures" entry.
std::string class_from_config(const std::string& config_path, std::string* library) {
  if (config_path.empty()) return "";
  const JsonObject config = JsonObject::from_file(config_path);
  if (config.has("_class_name") && config.json()["_class_name"].is_string()) {
    *library = "diffusers";
    return config.get_string("_class_name");
  }
  const auto& arch = config.json().find("architectures");
  if (arch != config.json().end() && arch->is_array() && !arch->empty() && (*arch)[0].is_string()) {
    *library = "transformers";
    return (*arch)[0].get<std::string>();
  }
  return "";
}

// Float, complex, integer or bool: a checkpoint tensor converts into a parameter of the same kind.
int dtype_kind(torch::ScalarType t) {
  if (t == torch::kBool) return 0;
  if (c10::isComplexType(t)) return 1;
  if (c10::isFloatingType(t)) return 2;
  return 3;
}

// The safetensors spelling where there is one, so both sides of a mismatch read alike.
std::string dtype_name(torch::ScalarType t) {
  try {
    return dtype_to_safetensors(t);
  } catch (const Error&) {
    return c10::toString(t);
  }
}

std::string first_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < kNamesShown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > kNamesShown) out += ", ... " + std::to_string(names.size() - kNamesShown) + " more";
  return out;
}

}  // namespace

const DiffusersComponent& DiffusersLayout::component(const std::string& name) const {
  std::string have;
  for (const auto& c : components) {
    if (c.name == name) return c;
    have += (have.empty() ? "" : ", ") + c.name;
  }
  ErrorContext ctx;
  ctx.file = root;
  ctx.expected = "one of: " + (have.empty() ? std::string("(none)") : have);
  ctx.got = "'" + name + "'";
  throw Error("no such component", ctx);
}

DiffusersLayout resolve_diffusers_layout(const std::string& path) {
  DiffusersLayout layout;
  layout.root = path;
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(path_exists(path), ctx, "no such file or folder");

  if (is_regular_file(path)) {
    const std::string name = file_name(path);
    T4G_CHECK_CTX(name.size() > 12 && (name.rfind(".safetensors") == name.size() - 12 ||
                                       name.rfind(".safetensors.index.json") == name.size() - 23),
                  ctx, "not a .safetensors file, a .safetensors.index.json index or a folder");
    layout.kind = DiffusersLayoutKind::kWeightsFile;
    DiffusersComponent c;
    c.folder = parent_path(path);
    c.weights_path = path;
    layout.components.push_back(c);
    return layout;
  }
  T4G_CHECK_CTX(is_directory(path), ctx, "neither a file nor a folder");

  const std::string& root = path;
  if (is_regular_file(path_join(root, "model_index.json"))) {
    layout.kind = DiffusersLayoutKind::kPipeline;
    const std::string index_path = path_join(root, "model_index.json");
    const JsonObject index = JsonObject::from_file(index_path);
    layout.pipeline_class = index.get_string("_class_name", "");
    for (const std::string& key : index.keys()) {
      const nlohmann::json& value = index.json()[key];
      // Entries are [library, class]; others ("_class_name", "requires_safety_checker") are flags.
      if (starts_with(key, "_") || !value.is_array()) continue;
      ErrorContext entry_ctx;
      entry_ctx.file = index_path;
      entry_ctx.key = key;
      T4G_CHECK_CTX(value.size() == 2, entry_ctx, "a component entry must be [library, class], got ", value.dump());
      if (value[0].is_null() && value[1].is_null()) continue;  // saved without this component
      T4G_CHECK_CTX(value[0].is_string() && value[1].is_string(), entry_ctx,
                    "a component entry must be [library, class], got ", value.dump());
      DiffusersComponent c;
      c.name = key;
      c.folder = path_join(root, key);
      c.library = value[0].get<std::string>();
      c.class_name = value[1].get<std::string>();
      T4G_CHECK_CTX(is_directory(c.folder), entry_ctx, "component folder ", c.folder, " does not exist");
      c.config_path = config_in(c.folder);
      c.weights_path = find_safetensors_in_folder(c.folder);
      layout.components.push_back(std::move(c));
    }
    std::sort(layout.components.begin(), layout.components.end(),
              [](const DiffusersComponent& a, const DiffusersComponent& b) { return a.name < b.name; });
    return layout;
  }

  DiffusersComponent c;
  c.name = file_name(root);
  c.folder = path;
  c.config_path = config_in(root);
  c.weights_path = find_safetensors_in_folder(path);
  T4G_CHECK_CTX(!c.config_path.empty() || !c.weights_path.empty(), ctx,
                "not a diffusers pipeline (no model_index.json) nor a component folder (no config.json, no "
                ".safetensors weights)");
  c.class_name = class_from_config(c.config_path, &c.library);
  layout.kind = DiffusersLayoutKind::kComponent;
  layout.components.push_back(std::move(c));
  return layout;
}

JsonObject read_component_config(const DiffusersComponent& component) {
  ErrorContext ctx;
  ctx.file = component.folder;
  T4G_CHECK_CTX(!component.config_path.empty(), ctx, "component has no config.json");
  return JsonObject::from_file(component.config_path);
}

std::string ModuleLoadReport::summary() const {
  std::string out;
  const auto add = [&](const std::vector<std::string>& names, const char* what) {
    if (names.empty()) return;
    if (!out.empty()) out += "; ";
    out += std::to_string(names.size()) + " " + what + " (" + first_names(names) + ")";
  };
  add(missing, "missing");
  add(unexpected, "unexpected");
  add(mismatched, "mis-shaped or wrong kind");
  if (out.empty()) out = std::to_string(loaded.size()) + " tensors loaded, all matched";
  return out;
}

ModuleLoadReport load_module_weights(torch::nn::Module& module, const SafetensorsCheckpoint& checkpoint,
                                     const ModuleLoadOptions& options) {
  // Module side: key (prefix stripped) -> tensor; skip lists apply to the full module name.
  std::map<std::string, torch::Tensor> targets;
  const auto skipped = [&](const std::string& name) {
    for (const auto& s : options.skip) {
      if (name == s || (starts_with(name, s) && name.size() > s.size() && name[s.size()] == '.')) return true;
    }
    return false;
  };
  const auto collect = [&](const torch::OrderedDict<std::string, torch::Tensor>& items) {
    for (const auto& item : items) {
      const std::string& name = item.key();
      if (!starts_with(name, options.module_prefix) || skipped(name)) continue;
      targets[name.substr(options.module_prefix.size())] = item.value();
    }
  };
  collect(module.named_parameters(/*recurse=*/true));
  if (options.buffers) collect(module.named_buffers(/*recurse=*/true));

  std::set<std::string> sources;
  for (const auto& name : checkpoint.names()) {
    if (starts_with(name, options.checkpoint_prefix)) sources.insert(name.substr(options.checkpoint_prefix.size()));
  }

  ModuleLoadReport report;
  std::vector<std::string> absent;
  for (const auto& [key, target] : targets) {
    if (sources.count(key) == 0) {
      absent.push_back(key);
      continue;
    }
    const TensorInfo& info = checkpoint.info(options.checkpoint_prefix + key);
    const torch::ScalarType source_type = dtype_from_safetensors(info.dtype);
    if (c10::IntArrayRef(info.shape) != target.sizes() || dtype_kind(source_type) != dtype_kind(target.scalar_type())) {
      report.mismatched.push_back(key + ": module " + shape_string(target.sizes(), ",") + " " +
                                  dtype_name(target.scalar_type()) + ", checkpoint " + shape_string(info.shape, ",") +
                                  " " + info.dtype);
      continue;
    }
    report.loaded.push_back(key);
  }
  // Tied weights: a name absent from the file is fine when another name of the same tensor loads.
  std::unordered_map<const void*, bool> tensor_loaded;
  for (const auto& key : report.loaded) tensor_loaded[targets.at(key).unsafeGetTensorImpl()] = true;
  for (const auto& key : absent) {
    if (tensor_loaded.count(targets.at(key).unsafeGetTensorImpl()) == 0) report.missing.push_back(key);
  }
  for (const auto& key : sources) {
    if (targets.count(key) == 0) report.unexpected.push_back(key);
  }

  if (!report.ok()) {
    for (const auto& n : report.missing) T4G_DEBUG(checkpoint.path(), ": missing: ", n);
    for (const auto& n : report.unexpected) T4G_DEBUG(checkpoint.path(), ": unexpected: ", n);
    for (const auto& n : report.mismatched) T4G_DEBUG(checkpoint.path(), ": mismatched: ", n);
    if (options.strict) {
      ErrorContext ctx;
      ctx.file = checkpoint.path();
      throw Error("checkpoint does not match the module: " + report.summary() +
                      " (T4G_LOG_LEVEL=debug lists every name)",
                  ctx);
    }
  }

  torch::NoGradGuard no_grad;
  for (const auto& key : report.loaded) {
    // copy_ converts dtype and moves to the parameter's device; the source aliases the mapping.
    targets.at(key).copy_(checkpoint.tensor(options.checkpoint_prefix + key));
  }
  return report;
}

ModuleLoadReport load_module_weights(torch::nn::Module& module, const std::string& path,
                                     const ModuleLoadOptions& options) {
  const SafetensorsCheckpoint checkpoint(path);
  return load_module_weights(module, checkpoint, options);
}

}  // namespace t4g
