// safetensors read and write (https://github.com/huggingface/safetensors format):
//   [u64 little-endian header length N][N bytes of JSON header][tensor data]
// The header maps names to {dtype, shape, data_offsets:[begin,end]} relative to the data
// section, plus an optional "__metadata__" string map. Everything in the header is validated
// (length, JSON, dtypes, shapes, offsets inside the file, no overlaps, sizes = numel*itemsize)
// before any tensor is allocated, so a corrupt or hostile file gives one clear t4g::Error.
// Reads are memory-mapped: a loaded tensor aliases the mapping, which stays alive while any
// tensor uses it. Sharded folders (`*.safetensors.index.json` with a weight_map) are supported.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace t4g {

// One entry of a safetensors header.
struct TensorInfo {
  std::string name;
  std::string dtype;             // safetensors spelling: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;            // byte offsets into the data section
  uint64_t end = 0;
};

// torch dtype <-> safetensors dtype string. Throws t4g::Error for types safetensors or torch lack.
torch::ScalarType dtype_from_safetensors(const std::string& dtype);
std::string dtype_to_safetensors(torch::ScalarType dtype);

// An open, memory-mapped safetensors file. Header validated on open.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensor names in header order.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The tensor, aliasing the mapping (zero copy) when its offset is aligned for its dtype,
  // a copy otherwise. Read-only: clone before writing into it.
  torch::Tensor tensor(const std::string& name) const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  std::vector<TensorInfo> infos_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Every tensor of a file, by name.
std::map<std::string, torch::Tensor> load_safetensors(const std::string& path);

// Writes tensors (any device; moved to CPU, made contiguous) to `path` atomically: a temporary
// file in the same folder, then a rename. Names are written sorted.
void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// A checkpoint that is either one .safetensors file or a folder of shards with an index
// (`<stem>.safetensors.index.json` holding {"metadata": {"total_size": N}, "weight_map": {name: file}}).
// For a folder, the index is used when present, else the single .safetensors file inside it.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::string& path);
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  torch::Tensor tensor(const std::string& name) const;
  // The files the checkpoint is made of.
  std::vector<std::string> files() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> owner_;  // tensor name -> index into files_
};

// Writes `tensors` as shards of at most `max_shard_bytes` named
// `<stem>-0000i-of-0000n.safetensors` plus `<stem>.safetensors.index.json` in `folder`
// (diffusers/transformers naming), or a single `<stem>.safetensors` when it all fits.
void save_sharded_safetensors(const std::string& folder, const std::string& stem,
                              const std::map<std::string, torch::Tensor>& tensors,
                              uint64_t max_shard_bytes);

}  // namespace t4g
