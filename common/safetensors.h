// safetensors read and write (https://github.com/huggingface/safetensors format):
//   [u64 little-endian header length N][N bytes of JSON header][tensor data]
// The header maps names to {dtype, shape, data_offsets:[begin,end]} relative to the data
// section, plus an optional "__metadata__" string map. Everything in the header is validated
// (length, JSON, dtypes, shapes, offsets inside the file, no overlaps, sizes = numel*itemsize)
// before any tensor is allocated, so a corrupt or hostile file gives one clear t4g::Error.
// Reads are memory-mapped: a loaded tensor aliases the mapping, which stays alive while any
// tensor uses it. Sharded folders (`*.safetensors.index.json` with a weight_map) are supported.
// Validation matches the reference Rust crate (safetensors 0.8): header length <= 1e8 and inside
// the file, UTF-8 JSON object, known dtype, non-negative shape, exactly two offsets, begin <= end,
// end - begin == numel * itemsize (overflow-checked), and the tensors tiling the data section with
// no overlap, gap or trailing byte. Differences: a name given twice in a header is an error (the
// reference silently keeps the last one); the sub-byte F4/F6_* dtypes are refused with a clear
// message (torch has no element type for them; safetensors.torch cannot load them either).
// Extra fields inside an entry are ignored, as the reference does.
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

  // Number of elements (product of shape; 1 for a 0-d scalar).
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// Largest header accepted, in bytes: the reference's limit (100,000,000), so that a corrupt
// length field cannot make us allocate gigabytes before anything else is checked.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100000000;

// torch dtype <-> safetensors dtype string. Throws t4g::Error for types safetensors or torch lack.
// Supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL U16 U32 U64 C64 and the 8-bit floats
// F8_E4M3 F8_E5M2 F8_E8M0 F8_E4M3FNUZ F8_E5M2FNUZ (the set safetensors.torch maps). The sub-byte
// F4/F6_* types have no torch element type and are rejected with a message saying so.
torch::ScalarType dtype_from_safetensors(const std::string& dtype);
std::string dtype_to_safetensors(torch::ScalarType dtype);
// Bytes per element of a safetensors dtype; throws t4g::Error for an unknown or unsupported one.
size_t safetensors_dtype_size(const std::string& dtype);

// An open, memory-mapped safetensors file. Header validated on open.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  // Tensor names in header order.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The tensor on CPU, aliasing the mapping (zero copy) when its offset is aligned for its
  // dtype, a copy otherwise. The mapping is private copy-on-write: writing into the tensor is
  // allowed and never changes the file (the written pages become private memory).
  // Throws t4g::Error naming the file and tensor when the name is not in the file.
  torch::Tensor tensor(const std::string& name) const;

 private:
  struct Mapping;
  std::string path_;
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;  // 8 + header length
  std::shared_ptr<Mapping> mapping_;
  std::vector<TensorInfo> infos_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Every tensor of a file, by name.
std::map<std::string, torch::Tensor> load_safetensors(const std::string& path);

// Writes tensors (any device; moved to CPU, made contiguous) to `path` atomically: a temporary
// file in the same folder, then a rename. Layout as the reference writer: `__metadata__` first
// (omitted when empty), tensors ordered by descending dtype alignment then name, so every tensor
// is aligned for zero-copy reads; the header is padded with spaces to a multiple of 8 bytes.
// For a single metadata entry the file is byte-identical to safetensors.torch.save_file's.
void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// A checkpoint that is either one .safetensors file or a folder of shards with an index
// (`<stem>.safetensors.index.json` holding {"metadata": {"total_size": N}, "weight_map": {name: file}}).
// For a folder, see find_safetensors_in_folder. Opening an index checks that every listed shard
// exists, holds the tensors the weight_map assigns to it and nothing else.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::string& path);
  // The path given to the constructor.
  const std::string& path() const { return path_; }
  // The index JSON when the checkpoint is sharded, else "".
  const std::string& index_path() const { return index_path_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  torch::Tensor tensor(const std::string& name) const;
  // The files the checkpoint is made of.
  std::vector<std::string> files() const;
  // Path of the file (shard) that holds `name`.
  const std::string& file_of(const std::string& name) const;

 private:
  const SafetensorsFile& owner(const std::string& name) const;
  void open_index(const std::string& index_path);

  std::string path_;
  std::string index_path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> owner_;  // tensor name -> index into files_
};

// The weights file of a folder, or "" when it has none. In order of preference:
// `diffusion_pytorch_model.safetensors.index.json`, `diffusion_pytorch_model.safetensors`,
// `model.safetensors.index.json`, `model.safetensors` (diffusers prefers an index over a single
// file beside it; so do we), else the only `*.safetensors.index.json`, else the only
// `*.safetensors`. Throws t4g::Error when the folder holds several candidates and none of the
// standard names (the choice would be a guess).
std::string find_safetensors_in_folder(const std::string& folder);

// Writes `tensors` as shards of at most `max_shard_bytes` named
// `<stem>-0000i-of-0000n.safetensors` plus `<stem>.safetensors.index.json` in `folder`
// (diffusers/transformers naming), or a single `<stem>.safetensors` when it all fits. Shards are
// filled in name order with huggingface_hub's rule (split_torch_state_dict_into_shards: a tensor
// larger than the limit gets a shard of its own), metadata {"format": "pt"}, and the index is
// written last as diffusers does (indent 2, sorted keys); stale shards, index or single file
// of the same stem are removed so that the folder holds exactly one checkpoint.
void save_sharded_safetensors(const std::string& folder, const std::string& stem,
                              const std::map<std::string, torch::Tensor>& tensors,
                              uint64_t max_shard_bytes);

}  // namespace t4g
