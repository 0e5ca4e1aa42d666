// Weights listing for `t4g inspect weights` (see weights_summary.h). Only headers are read:
// SafetensorsCheckpoint validates every file and index, but no tensor data is touched, so a
// multi-gigabyte pipeline is listed in milliseconds.
#include "models/weights_summary.h"

#include "models/lora.h"
#include "models/trained_model.h"
#include "common/fs.h"
#include "common/shape_string.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <sstream>


namespace t4g {
namespace {

std::string top_level(const std::string& name) {
  const auto dot = name.find('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

std::string pad(const std::string& s, size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

std::string component_title(const ComponentWeights& c, DiffusersLayoutKind kind) {
  std::string title = kind == DiffusersLayoutKind::kPipeline ? "[" + c.component.name + "]" : c.component.name;
  std::string what = c.component.library;
  if (!c.component.class_name.empty()) what += (what.empty() ? "" : " ") + c.component.class_name;
  if (!what.empty()) title += (title.empty() ? "" : " ") + what;
  return title.empty() ? c.component.weights_path : title;
}

// "9.54 K (9,544)", or just "32" when the short form is exact.
std::string count_text(int64_t n) {
  const std::string exact = grouped_count(n);
  const std::string short_form = human_count(n);
  return short_form == std::to_string(n) ? short_form : short_form + " (" + exact + ")";
}

}  // namespace

std::string human_count(int64_t n) {
  const char* units[] = {"K", "M", "B", "T"};
  if (n < 1000 && n > -1000) return std::to_string(n);
  double v = static_cast<double>(n);
  int u = -1;
  while ((v >= 1000.0 || v <= -1000.0) && u < 3) {
    v /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f %s", v, units[u]);
  return buf;
}

std::string human_bytes(uint64_t n) {
  const char* units[] = {"KB", "MB", "GB", "TB", "PB"};
  if (n < 1000) return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  int u = -1;
  while (v >= 1000.0 && u < 4) {
    v /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f %s", v, units[u]);
  return buf;
}

std::string grouped_count(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

namespace {

// A t4g export (models/trained_model.h) as one layout: its backbone (or whole pipeline), LoRA
// adapters (PEFT file) and refiner, each a component named after its place in the folder.
DiffusersLayout trained_export_layout(const std::string& path) {
  DiffusersLayout layout;
  layout.root = path;
  layout.kind = DiffusersLayoutKind::kPipeline;
  layout.pipeline_class = "t4g trained model";
  const std::vector<std::pair<std::string, std::string>> parts = {
      {"transformer", "transformer"},
      {"vae", "vae"},
      {"lora", path_join("lora", kPeftAdapterWeights)},
      {"refiner", kRefinerFile}};
  for (const auto& [name, relative] : parts) {
    const std::string where = path_join(path, relative);
    if (!path_exists(where)) continue;
    for (DiffusersComponent c : resolve_diffusers_layout(where).components) {
      c.name = name;
      layout.components.push_back(std::move(c));
    }
  }
  return layout;
}

}  // namespace

WeightsSummary summarize_weights(const std::string& path) {
  WeightsSummary summary;
  summary.layout = trained_folder_kind(path) == TrainedFolderKind::kExport ? trained_export_layout(path)
                                                                           : resolve_diffusers_layout(path);
  for (const auto& component : summary.layout.components) {
    ComponentWeights c;
    c.component = component;
    if (!component.weights_path.empty()) {
      const SafetensorsCheckpoint checkpoint(component.weights_path);
      c.files = checkpoint.files();
      for (const auto& name : checkpoint.names()) {
        const TensorInfo& info = checkpoint.info(name);
        TensorSummary t;
        t.name = name;
        t.dtype = info.dtype;
        t.shape = info.shape;
        t.numel = info.numel();
        t.nbytes = info.nbytes();
        t.file = file_name(checkpoint.file_of(name));
        c.parameters += t.numel;
        c.bytes += t.nbytes;
        c.by_prefix[top_level(name)] += t.numel;
        c.by_dtype[t.dtype] += t.numel;
        c.tensors.push_back(std::move(t));
      }
    }
    summary.parameters += c.parameters;
    summary.bytes += c.bytes;
    summary.components.push_back(std::move(c));
  }
  return summary;
}

std::string format_weights_summary(const WeightsSummary& summary) {
  std::ostringstream os;
  const DiffusersLayout& layout = summary.layout;
  if (layout.kind == DiffusersLayoutKind::kPipeline) {
    os << "diffusers pipeline" << (layout.pipeline_class.empty() ? "" : " " + layout.pipeline_class) << " at "
       << layout.root << ", " << summary.components.size() << " components\n";
  }
  for (const auto& c : summary.components) {
    os << "\n" << component_title(c, layout.kind);
    if (c.component.weights_path.empty()) {
      os << ": no weights\n";
      continue;
    }
    os << ": " << c.tensors.size() << " tensors in " << c.files.size() << (c.files.size() == 1 ? " file" : " files")
       << " (" << c.component.weights_path << ")\n";
    size_t name_width = 4, dtype_width = 5;
    for (const auto& t : c.tensors) {
      name_width = std::max(name_width, t.name.size());
      dtype_width = std::max(dtype_width, t.dtype.size());
    }
    os << "  " << pad("name", name_width) << "  " << pad("dtype", dtype_width) << "  shape\n";
    for (const auto& t : c.tensors) {
      os << "  " << pad(t.name, name_width) << "  " << pad(t.dtype, dtype_width) << "  " << shape_string(t.shape)
         << "\n";
    }
    os << "  parameters: " << count_text(c.parameters) << ", stored in "
       << human_bytes(c.bytes) << " as";
    for (const auto& [dtype, n] : c.by_dtype) os << " " << dtype << " " << human_count(n);
    os << "\n";
    size_t prefix_width = 0;
    for (const auto& entry : c.by_prefix) prefix_width = std::max(prefix_width, entry.first.size());
    for (const auto& [prefix, n] : c.by_prefix) {
      os << "    " << pad(prefix, prefix_width) << "  " << count_text(n) << "\n";
    }
  }
  if (layout.kind == DiffusersLayoutKind::kPipeline) {
    os << "\ntotal: " << count_text(summary.parameters) << " parameters, " << human_bytes(summary.bytes) << "\n";
    size_t name_width = 0;
    for (const auto& c : summary.components) name_width = std::max(name_width, c.component.name.size());
    for (const auto& c : summary.components) {
      if (c.component.weights_path.empty()) continue;
      os << "  " << pad(c.component.name, name_width) << "  " << count_text(c.parameters) << "\n";
    }
  }
  return os.str();
}

std::string weights_summary_json(const WeightsSummary& summary) {
  nlohmann::ordered_json out;
  out["path"] = summary.layout.root;
  switch (summary.layout.kind) {
    case DiffusersLayoutKind::kPipeline:
      out["kind"] = "pipeline";
      break;
    case DiffusersLayoutKind::kComponent:
      out["kind"] = "component";
      break;
    case DiffusersLayoutKind::kWeightsFile:
      out["kind"] = "file";
      break;
  }
  if (!summary.layout.pipeline_class.empty()) out["pipeline_class"] = summary.layout.pipeline_class;
  out["components"] = nlohmann::ordered_json::array();
  for (const auto& c : summary.components) {
    nlohmann::ordered_json j;
    j["name"] = c.component.name;
    j["library"] = c.component.library;
    j["class_name"] = c.component.class_name;
    j["weights"] = c.component.weights_path;
    j["files"] = c.files;
    j["parameters"] = c.parameters;
    j["bytes"] = c.bytes;
    j["parameters_by_prefix"] = c.by_prefix;
    j["parameters_by_dtype"] = c.by_dtype;
    j["tensors"] = nlohmann::ordered_json::array();
    for (const auto& t : c.tensors) {
      j["tensors"].push_back({{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}, {"file", t.file}});
    }
    out["components"].push_back(std::move(j));
  }
  out["parameters"] = summary.parameters;
  out["bytes"] = summary.bytes;
  // Replacement of invalid UTF-8 keeps a strange tensor name from turning a listing into an error.
  return out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace t4g
