// diffusers on-disk layout and strict weight loading. A pipeline root has model_index.json and
// one subfolder per component (transformer/, vae/, text_encoder/, tokenizer/, scheduler/); a
// component folder has config.json plus safetensors weights, single or sharded with an index.
// Weights are copied into a torch::nn::Module by name, strictly: every mismatch is reported.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "common/json.h"
#include "common/safetensors.h"

namespace t4g {

// One component of a diffusers pipeline, or a lone component folder or weights file.
struct DiffusersComponent {
  std::string name;          // subfolder name ("transformer"); a lone folder's own name; "" for a bare file
  std::string folder;        // the component's folder
  std::string library;       // "diffusers" or "transformers" from model_index.json ("" when unknown)
  std::string class_name;    // "CogVideoXTransformer3DModel", from model_index.json or config.json
  std::string config_path;   // config.json or scheduler_config.json in the folder; "" when absent
  std::string weights_path;  // weights file or index (see find_safetensors_in_folder); "" when none
};

// What a path holds: a pipeline, one component folder, or one weights file.
enum class DiffusersLayoutKind { kPipeline, kComponent, kWeightsFile };

struct DiffusersLayout {
  std::string root;                             // the path that was resolved
  DiffusersLayoutKind kind = DiffusersLayoutKind::kComponent;
  std::string pipeline_class;                   // model_index.json "_class_name" ("" otherwise)
  std::vector<DiffusersComponent> components;   // pipeline: sorted by name; otherwise exactly one

  // The named component; throws t4g::Error naming the root and the components it has.
  const DiffusersComponent& component(const std::string& name) const;
};

// Resolves a pipeline root (model_index.json; components listed as [null, null] are skipped, a
// listed component whose folder is missing is an error), a component folder (config.json and/or
// weights) or a single .safetensors / .safetensors.index.json file.
DiffusersLayout resolve_diffusers_layout(const std::string& path);

// The component's configuration; throws t4g::Error naming the folder when it has none.
JsonObject read_component_config(const DiffusersComponent& component);

// Options of load_module_weights. Names are matched after stripping the prefixes:
// module tensor `module_prefix + K` is loaded from checkpoint tensor `checkpoint_prefix + K`.
// Example: a model whose backbone sits at the root and whose refiner sits under "refiner."
// loads the diffusers file with {skip = {"refiner"}} and the refiner file with
// {module_prefix = "refiner."}.
struct ModuleLoadOptions {
  bool strict = true;             // false: load what matches and return the lists instead of throwing
  std::string module_prefix;      // only module tensors whose names start with this (usually ends in '.')
  std::string checkpoint_prefix;  // only checkpoint tensors whose names start with this
  std::vector<std::string> skip;  // module names (or subtrees: "refiner" skips "refiner.*") to leave alone
  bool buffers = true;            // load named_buffers() too, not only named_parameters()
};

// What load_module_weights found. Names are the matched keys (prefixes stripped).
struct ModuleLoadReport {
  std::vector<std::string> loaded;      // copied into the module
  std::vector<std::string> missing;     // in the module, not in the checkpoint
  std::vector<std::string> unexpected;  // in the checkpoint, not in the module
  std::vector<std::string> mismatched;  // "name: module [4,3] F32, checkpoint [3,4] F16"

  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  // One line: counts plus the first few names of each list.
  std::string summary() const;
};

// Copies checkpoint tensors into the module's parameters (and buffers) by name, converting to the
// parameter's dtype and device. A shape mismatch, or a dtype of another kind (a float parameter
// from an integer tensor), is a mismatch. Two module names that share one tensor (tied weights,
// like T5's shared.weight and encoder.embed_tokens.weight) count as present when either is in the
// checkpoint. Strict mode checks everything first and throws ONE t4g::Error naming the checkpoint
// with the counts and first names of missing, unexpected and mis-shaped tensors (every name is
// logged at debug level); the module is then left unchanged.
ModuleLoadReport load_module_weights(torch::nn::Module& module, const SafetensorsCheckpoint& checkpoint,
                                     const ModuleLoadOptions& options = {});
// The same from a file, index or folder path (see SafetensorsCheckpoint).
ModuleLoadReport load_module_weights(torch::nn::Module& module, const std::string& path,
                                     const ModuleLoadOptions& options = {});

}  // namespace t4g
