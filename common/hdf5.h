// Small RAII wrappers over the HDF5 C API for what t4g stores in HDF5 (data shards, sampled
// frames): files, groups, tensors as datasets (optionally chunked and gzip-compressed),
// attributes and variable-length strings. HDF5's own error printing is silenced; every failure
// becomes a t4g::Error naming the file and the HDF5 path. All calls into libhdf5 made through
// these wrappers hold one process-wide lock, so they are safe from several threads even with a
// libhdf5 built without thread safety (HDF5 serialises its calls internally anyway).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace t4g::h5 {

// An owned HDF5 identifier (file, group, dataset, attribute, dataspace or datatype), closed
// with the matching H5?close when the last copy goes away.
class Handle {
 public:
  Handle() = default;
  // Takes ownership of id (>= 0); a negative id is an error reported by the caller.
  explicit Handle(int64_t id);
  int64_t id() const;
  bool valid() const { return static_cast<bool>(id_); }

 private:
  std::shared_ptr<int64_t> id_;
};

// How a tensor is laid out on disk.
struct WriteOptions {
  std::vector<int64_t> chunk;  // chunk shape (same rank as the tensor); empty = contiguous unless gzip is set
  int gzip_level = -1;         // deflate level 0..9; -1 = no compression (gzip needs chunks: whole tensor if chunk is empty)
};

// Shape and stored type of a dataset, read without reading its data.
struct DatasetInfo {
  std::vector<int64_t> shape;
  torch::ScalarType dtype = torch::kUInt8;  // the dtype read() returns
  bool is_string = false;                   // a string dataset (read_string / read_strings)
};

// A group or a dataset inside an open file: both carry attributes. Knows its file name and
// its HDF5 path for error messages.
class Node {
 public:
  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }

  bool has_attr(const std::string& name) const;
  void set_attr(const std::string& name, const std::string& value);
  void set_attr(const std::string& name, const char* value) { set_attr(name, std::string(value)); }
  void set_attr(const std::string& name, int64_t value);
  void set_attr(const std::string& name, int value) { set_attr(name, static_cast<int64_t>(value)); }
  void set_attr(const std::string& name, double value);
  // Typed reads: throw t4g::Error naming file, path and attribute when missing or of another kind.
  std::string attr_string(const std::string& name) const;
  int64_t attr_int(const std::string& name) const;
  double attr_double(const std::string& name) const;  // integers are converted
  std::vector<std::string> attr_names() const;

 protected:
  Node() = default;
  Node(Handle handle, std::string file, std::string path);
  std::string child_path(const std::string& name) const;

  Handle handle_;
  std::string file_;
  std::string path_;
};

class Dataset : public Node {
 public:
  DatasetInfo info() const;
  // The whole dataset as a contiguous CPU tensor (dtype as written by Group::write).
  torch::Tensor read() const;
  // Rows [begin, end) of dimension 0, for reading one frame or one video slice.
  torch::Tensor read_rows(int64_t begin, int64_t end) const;

 private:
  friend class Group;
  Dataset(Handle handle, std::string file, std::string path) : Node(std::move(handle), std::move(file), std::move(path)) {}
};

class Group : public Node {
 public:
  // Existence of a direct child (group or dataset); names may not contain '/'.
  bool has(const std::string& name) const;
  bool has_group(const std::string& name) const;
  bool has_dataset(const std::string& name) const;
  // Names of direct children in HDF5's name order.
  std::vector<std::string> children() const;

  Group group(const std::string& name) const;         // opens an existing group
  Group create_group(const std::string& name) const;  // creates a new group
  Dataset dataset(const std::string& name) const;     // opens an existing dataset

  // Writes a CPU or CUDA tensor (copied to CPU, made contiguous) as a new dataset.
  // uint8, int8, int16, int32, int64, float32 and float64 are stored as themselves; bool as
  // uint8, bfloat16 and float16 as uint16, each with a "t4g_dtype" attribute that read() honours.
  Dataset write(const std::string& name, const torch::Tensor& tensor, const WriteOptions& options = {}) const;
  torch::Tensor read(const std::string& name) const { return dataset(name).read(); }

  // Variable-length UTF-8 strings: a scalar dataset or a 1-D one.
  Dataset write_string(const std::string& name, const std::string& value) const;
  Dataset write_strings(const std::string& name, const std::vector<std::string>& values) const;
  std::string read_string(const std::string& name) const;
  std::vector<std::string> read_strings(const std::string& name) const;

 private:
  friend class File;
  Group(Handle handle, std::string file, std::string path) : Node(std::move(handle), std::move(file), std::move(path)) {}
};

enum class OpenMode { kReadOnly, kReadWrite };

// An open HDF5 file. Created files are written under a temporary sibling name and renamed
// over the final name by commit(); a created file that is never committed is removed, so a
// reader never sees a half-written file.
class File {
 public:
  static File open(const std::string& path, OpenMode mode = OpenMode::kReadOnly);
  static File create(const std::string& path);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  const std::string& path() const { return path_; }
  Group root() const;
  // Flushes, closes and (for created files) renames the temporary into place. The File is
  // unusable afterwards. For opened files it just closes.
  void commit();

 private:
  File() = default;
  Handle handle_;
  std::string path_;       // final name
  std::string temp_path_;  // where a created file is being written; empty when opened
};

// True when path starts with the 8-byte HDF5 signature (cheap check before opening).
bool is_hdf5_file(const std::string& path);

}  // namespace t4g::h5
