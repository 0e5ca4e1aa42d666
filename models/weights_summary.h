// What a weights path holds, for `t4g inspect weights`: every tensor (name, dtype, shape) and
// the parameter count, total and per top-level module, of a .safetensors file, a sharded index,
// a component folder or every component of a diffusers pipeline. Formatting lives here too so
// the command line stays a thin wrapper.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/diffusers_layout.h"

namespace t4g {

struct TensorSummary {
  std::string name;
  std::string dtype;             // safetensors spelling (F16, BF16, F32, ...)
  std::vector<int64_t> shape;
  int64_t numel = 0;
  uint64_t nbytes = 0;
  std::string file;              // the file (shard) holding it, without folder
};

struct ComponentWeights {
  DiffusersComponent component;
  std::vector<std::string> files;             // weight files (shards), full paths
  std::vector<TensorSummary> tensors;         // sorted by name
  int64_t parameters = 0;                     // sum of numel over all tensors
  uint64_t bytes = 0;                         // sum of tensor bytes as stored
  std::map<std::string, int64_t> by_prefix;   // numel per top-level name ("transformer_blocks")
  std::map<std::string, int64_t> by_dtype;    // numel per stored dtype
};

struct WeightsSummary {
  DiffusersLayout layout;
  std::vector<ComponentWeights> components;   // the layout's components, in its order
  int64_t parameters = 0;
  uint64_t bytes = 0;
};

// Opens (and so validates) every weights file under `path`; throws t4g::Error on bad input.
WeightsSummary summarize_weights(const std::string& path);

// Human-readable listing: one line per tensor, then the counts.
std::string format_weights_summary(const WeightsSummary& summary);
// The same as JSON (one document, 2-space indent).
std::string weights_summary_json(const WeightsSummary& summary);

// 1693783872 -> "1.69 B"; 9544 -> "9.54 K"; 12 -> "12".
std::string human_count(int64_t n);
// 3387567744 -> "3.39 GB" (decimal units, as the Hugging Face hub shows sizes).
std::string human_bytes(uint64_t n);
// 1693783872 -> "1,693,783,872".
std::string grouped_count(int64_t n);

}  // namespace t4g
