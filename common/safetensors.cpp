// safetensors reader and writer (see safetensors.h). The reader validates the whole header the
// way the reference Rust crate does (header length cap, JSON, dtypes, shapes, offsets that tile
// the data section exactly) from a small pread of the file before mapping or allocating
// anything sized by the file's claims; tensors then alias a private memory mapping.
#include "common/safetensors.h"
#include "common/shape_string.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>
#include <regex>
#include <set>

#include "common/error.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"


#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors stores little-endian data; t4g reads it in place and needs a little-endian host"
#endif

namespace t4g {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr int kNoTorchType = -1;

// One safetensors dtype. `rank` is the position in the reference crate's Dtype enum (0.8), whose
// writer orders tensors by descending rank; we copy the order so files match byte for byte.
struct DtypeEntry {
  const char* name;
  int torch_type;  // a torch::ScalarType, or kNoTorchType for the sub-byte types
  size_t size;     // bytes per element (0 for sub-byte types)
  int rank;
};

const DtypeEntry kDtypes[] = {
    {"BOOL", static_cast<int>(torch::kBool), 1, 0},
    {"F4", kNoTorchType, 0, 1},
    {"F6_E2M3", kNoTorchType, 0, 2},
    {"F6_E3M2", kNoTorchType, 0, 3},
    {"U8", static_cast<int>(torch::kByte), 1, 4},
    {"I8", static_cast<int>(torch::kChar), 1, 5},
    {"F8_E5M2", static_cast<int>(torch::kFloat8_e5m2), 1, 6},
    {"F8_E4M3", static_cast<int>(torch::kFloat8_e4m3fn), 1, 7},
    {"F8_E8M0", static_cast<int>(torch::kFloat8_e8m0fnu), 1, 8},
    {"F8_E4M3FNUZ", static_cast<int>(torch::kFloat8_e4m3fnuz), 1, 9},
    {"F8_E5M2FNUZ", static_cast<int>(torch::kFloat8_e5m2fnuz), 1, 10},
    {"I16", static_cast<int>(torch::kShort), 2, 11},
    {"U16", static_cast<int>(torch::kUInt16), 2, 12},
    {"F16", static_cast<int>(torch::kHalf), 2, 13},
    {"BF16", static_cast<int>(torch::kBFloat16), 2, 14},
    {"I32", static_cast<int>(torch::kInt), 4, 15},
    {"U32", static_cast<int>(torch::kUInt32), 4, 16},
    {"F32", static_cast<int>(torch::kFloat), 4, 17},
    {"C64", static_cast<int>(torch::kComplexFloat), 8, 18},
    {"F64", static_cast<int>(torch::kDouble), 8, 19},
    {"I64", static_cast<int>(torch::kLong), 8, 20},
    {"U64", static_cast<int>(torch::kUInt64), 8, 21},
};

const DtypeEntry* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const DtypeEntry* find_dtype(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (d.torch_type == static_cast<int>(type)) return &d;
  }
  return nullptr;
}

std::string supported_dtype_list() {
  std::string out;
  for (const auto& d : kDtypes) {
    if (d.torch_type == kNoTorchType) continue;
    if (!out.empty()) out += " ";
    out += d.name;
  }
  return out;
}

// The supported entry for `name`; throws naming file and tensor otherwise.
const DtypeEntry& checked_dtype(const std::string& name, const ErrorContext& where) {
  const DtypeEntry* d = find_dtype(name);
  ErrorContext ctx = where;
  if (d == nullptr) {
    ctx.expected = "one of " + supported_dtype_list();
    ctx.got = "'" + name + "'";
    throw Error("unknown dtype", ctx);
  }
  if (d->torch_type == kNoTorchType) {
    ctx.got = name;
    throw Error("dtype " + name + " (sub-byte floating point) has no torch element type; t4g cannot load it", ctx);
  }
  return *d;
}

// Reads exactly `size` bytes at `offset`; throws naming the file on a short read.
void pread_exact(int fd, void* buffer, size_t size, uint64_t offset, const std::string& path) {
  auto* out = static_cast<char*>(buffer);
  size_t done = 0;
  while (done < size) {
    const ssize_t got = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    ErrorContext ctx;
    ctx.file = path;
    T4G_CHECK_CTX(got > 0, ctx, "read failed: ", got < 0 ? std::strerror(errno) : "unexpected end of file");
    done += static_cast<size_t>(got);
  }
}

// Writes all of `bytes` to fd; throws naming the file (disk full, quota, I/O error).
void write_exact(int fd, const void* bytes, size_t size, const std::string& path) {
  const auto* in = static_cast<const char*>(bytes);
  size_t done = 0;
  while (done < size) {
    // Linux writes at most ~2 GiB per call; chunk so that huge tensors go through.
    const size_t chunk = std::min<size_t>(size - done, size_t{1} << 30);
    const ssize_t put = ::write(fd, in + done, chunk);
    if (put < 0 && errno == EINTR) continue;
    ErrorContext ctx;
    ctx.file = path;
    T4G_CHECK_CTX(put > 0, ctx, "write failed: ", put < 0 ? std::strerror(errno) : "no progress");
    done += static_cast<size_t>(put);
  }
}

// Owns a file descriptor; closes it on scope exit.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

std::string range_string(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// Parses the header JSON, rejecting a key that appears twice in any object: the reference keeps
// the last one silently, which would let two tools see different tensors in one file.
ordered_json parse_header_json(const std::string& text, const std::string& path) {
  std::vector<std::set<std::string>> open_objects;
  auto callback = [&](int, ordered_json::parse_event_t event, ordered_json& parsed) {
    switch (event) {
      case ordered_json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case ordered_json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case ordered_json::parse_event_t::key: {
        const std::string key = parsed.get<std::string>();
        if (!open_objects.empty() && !open_objects.back().insert(key).second) {
          ErrorContext ctx;
          ctx.file = path;
          ctx.key = key;
          throw Error("key appears twice in the safetensors header", ctx);
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return ordered_json::parse(text, callback);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    const auto tag = what.find("] ");
    if (!what.empty() && what[0] == '[' && tag != std::string::npos) what = what.substr(tag + 2);
    // The parser quotes what it last read, which may be arbitrary bytes of a corrupt file.
    for (char& c : what) {
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    }
    ErrorContext ctx;
    ctx.file = path;
    throw Error("safetensors header is not valid JSON: " + what, ctx);
  }
}

// A non-negative integer from the header (shape entry or offset); false when it is not one.
bool as_u64(const ordered_json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;  // negative ints and floats are other number kinds
  *out = v.get<uint64_t>();
  return true;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

torch::ScalarType dtype_from_safetensors(const std::string& dtype) {
  return static_cast<torch::ScalarType>(checked_dtype(dtype, ErrorContext{}).torch_type);
}

std::string dtype_to_safetensors(torch::ScalarType dtype) {
  const DtypeEntry* d = find_dtype(dtype);
  if (d == nullptr) {
    ErrorContext ctx;
    ctx.expected = "a dtype safetensors stores (" + supported_dtype_list() + ")";
    ctx.got = c10::toString(dtype);
    throw Error("dtype cannot be stored in safetensors", ctx);
  }
  return d->name;
}

size_t safetensors_dtype_size(const std::string& dtype) { return checked_dtype(dtype, ErrorContext{}).size; }

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

struct SafetensorsFile::Mapping {
  void* base = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (base != nullptr) ::munmap(base, size);
  }
};

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  ErrorContext file_ctx;
  file_ctx.file = path;

  FileDescriptor file;
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // no hang on a FIFO
  T4G_CHECK_CTX(file.fd >= 0, file_ctx, "cannot open: ", std::strerror(errno));
  struct stat st {};
  T4G_CHECK_CTX(::fstat(file.fd, &st) == 0, file_ctx, "cannot stat: ", std::strerror(errno));
  T4G_CHECK_CTX(S_ISREG(st.st_mode), file_ctx, "not a regular file");
  file_size_ = static_cast<uint64_t>(st.st_size);

  // 1. The header length, checked against the cap and the file size before reading the header.
  if (file_size_ < 8) {
    ErrorContext ctx = file_ctx;
    ctx.expected = "at least 8 bytes";
    ctx.got = std::to_string(file_size_) + " bytes";
    throw Error("file too small to be safetensors (truncated?)", ctx);
  }
  unsigned char length_bytes[8];
  pread_exact(file.fd, length_bytes, 8, 0, path);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | length_bytes[i];
  if (header_length > kMaxSafetensorsHeaderBytes) {
    ErrorContext ctx = file_ctx;
    ctx.expected = "at most " + std::to_string(kMaxSafetensorsHeaderBytes) + " bytes";
    ctx.got = std::to_string(header_length);
    throw Error("header length too large (corrupt or not a safetensors file)", ctx);
  }
  if (header_length > file_size_ - 8) {
    ErrorContext ctx = file_ctx;
    ctx.expected = "at most " + std::to_string(file_size_ - 8) + " bytes (file size " +
                   std::to_string(file_size_) + " minus 8)";
    ctx.got = std::to_string(header_length);
    throw Error("header length larger than the file (truncated file?)", ctx);
  }
  data_start_ = 8 + header_length;
  const uint64_t data_size = file_size_ - data_start_;

  // 2. The header JSON: an object of tensor entries plus an optional __metadata__ string map.
  std::string header_text(header_length, '\0');
  if (header_length > 0) pread_exact(file.fd, &header_text[0], header_length, 8, path);
  // nlohmann stops at a NUL byte as if the input ended there; JSON allows none anywhere (even in
  // strings they must be escaped), and the reference rejects them as trailing characters.
  const size_t nul = header_text.find('\0');
  T4G_CHECK_CTX(nul == std::string::npos, file_ctx,
                "safetensors header is not valid JSON: NUL byte at header offset ", nul);
  const ordered_json header = parse_header_json(header_text, path);
  if (!header.is_object()) {
    ErrorContext ctx = file_ctx;
    ctx.expected = "a JSON object";
    ctx.got = header.is_array() ? "an array" : header.type_name();
    throw Error("safetensors header is not a JSON object", ctx);
  }

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const ordered_json& entry = it.value();
    if (name == "__metadata__") {
      if (entry.is_null()) continue;
      ErrorContext ctx = file_ctx;
      ctx.key = "__metadata__";
      T4G_CHECK_CTX(entry.is_object(), ctx, "must be an object of strings");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        ctx.key = "__metadata__." + m.key();
        T4G_CHECK_CTX(m.value().is_string(), ctx, "metadata values must be strings");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    ErrorContext ctx = file_ctx;
    ctx.tensor = name;
    T4G_CHECK_CTX(entry.is_object(), ctx, "header entry is not an object with dtype, shape and data_offsets");
    T4G_CHECK_CTX(entry.contains("dtype") && entry["dtype"].is_string(), ctx, "header entry has no dtype string");
    T4G_CHECK_CTX(entry.contains("shape") && entry["shape"].is_array(), ctx, "header entry has no shape list");
    T4G_CHECK_CTX(entry.contains("data_offsets") && entry["data_offsets"].is_array(), ctx,
                  "header entry has no data_offsets list");

    TensorInfo info;
    info.name = name;
    info.dtype = entry["dtype"].get<std::string>();
    const DtypeEntry& dtype = checked_dtype(info.dtype, ctx);

    // Element count and byte size in 64-bit unsigned arithmetic with overflow checks; torch
    // needs each dimension and the count to fit int64 as well.
    uint64_t numel = 1;
    for (const auto& dim : entry["shape"]) {
      uint64_t d = 0;
      if (!as_u64(dim, &d)) {
        ErrorContext c = ctx;
        c.expected = "a list of non-negative integers";
        c.got = entry["shape"].dump();
        throw Error("invalid shape", c);
      }
      T4G_CHECK_CTX(d <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(numel, d, &numel) &&
                        numel <= static_cast<uint64_t>(INT64_MAX),
                    ctx, "shape too large: the element count overflows 64 bits");
      info.shape.push_back(static_cast<int64_t>(d));
    }
    uint64_t nbytes = 0;
    T4G_CHECK_CTX(!__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype.size), &nbytes), ctx,
                  "shape too large: the byte size overflows 64 bits");

    const ordered_json& offsets = entry["data_offsets"];
    if (offsets.size() != 2 || !as_u64(offsets[0], &info.begin) || !as_u64(offsets[1], &info.end)) {
      ErrorContext c = ctx;
      c.expected = "data_offsets [begin, end] of two non-negative integers";
      c.got = offsets.dump();
      throw Error("invalid data_offsets", c);
    }
    if (info.begin > info.end) {
      ErrorContext c = ctx;
      c.expected = "begin <= end";
      c.got = offsets.dump();
      throw Error("invalid data_offsets", c);
    }
    if (info.end > data_size) {
      ErrorContext c = ctx;
      c.expected = "end <= " + std::to_string(data_size) + " (the data section's size)";
      c.got = std::to_string(info.end);
      throw Error("data_offsets point past the end of the file (truncated file?)", c);
    }
    if (info.end - info.begin != nbytes) {
      ErrorContext c = ctx;
      c.expected = std::to_string(nbytes) + " bytes for " + info.dtype + " " + shape_string(info.shape, ",");
      c.got = std::to_string(info.end - info.begin) + " bytes";
      throw Error("data_offsets do not match shape and dtype", c);
    }
    index_[name] = infos_.size();
    infos_.push_back(std::move(info));
  }

  // 3. The tensors must tile the data section exactly: sorted by offsets, each starts where the
  // previous ended (no overlap, no gap) and the last ends at the end of the file.
  std::vector<size_t> order(infos_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::make_pair(infos_[a].begin, infos_[a].end) < std::make_pair(infos_[b].begin, infos_[b].end);
  });
  uint64_t position = 0;
  const TensorInfo* previous = nullptr;
  for (size_t i : order) {
    const TensorInfo& info = infos_[i];
    ErrorContext ctx = file_ctx;
    ctx.tensor = info.name;
    if (info.begin < position) {
      throw Error("data_offsets " + range_string(info.begin, info.end) + " overlap tensor '" + previous->name +
                      "' at " + range_string(previous->begin, previous->end),
                  ctx);
    }
    if (info.begin > position) {
      throw Error("data section bytes " + range_string(position, info.begin) +
                      " before this tensor belong to no tensor",
                  ctx);
    }
    position = info.end;
    previous = &info;
  }
  if (position != data_size) {
    ErrorContext ctx = file_ctx;
    ctx.expected = "the last tensor to end at the end of the file";
    ctx.got = std::to_string(data_size - position) + " trailing bytes";
    throw Error("data section bytes " + range_string(position, data_size) + " belong to no tensor", ctx);
  }

  // 4. Map the file. Private and writable: writes into a tensor copy the page, never the file.
  auto mapping = std::make_shared<Mapping>();
  void* base = ::mmap(nullptr, static_cast<size_t>(file_size_), PROT_READ | PROT_WRITE, MAP_PRIVATE, file.fd, 0);
  T4G_CHECK_CTX(base != MAP_FAILED, file_ctx, "cannot memory-map: ", std::strerror(errno));
  mapping->base = base;
  mapping->size = static_cast<size_t>(file_size_);
  mapping_ = std::move(mapping);
}

SafetensorsFile::~SafetensorsFile() = default;

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(infos_.size());
  for (const auto& info : infos_) out.push_back(info.name);
  return out;
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.count(name) != 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) {
    ErrorContext ctx;
    ctx.file = path_;
    ctx.tensor = name;
    throw Error("no such tensor in the file", ctx);
  }
  return infos_[it->second];
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& info = this->info(name);
  const DtypeEntry& dtype = *find_dtype(info.dtype);
  const auto options = torch::TensorOptions().dtype(static_cast<torch::ScalarType>(dtype.torch_type));
  if (info.nbytes() == 0) return torch::empty(info.shape, options);
  char* data = static_cast<char*>(mapping_->base) + data_start_ + info.begin;
  if (reinterpret_cast<uintptr_t>(data) % dtype.size == 0) {
    // The deleter holds the mapping: it is unmapped when the last aliasing tensor dies.
    std::shared_ptr<Mapping> keep = mapping_;
    return torch::from_blob(data, info.shape, [keep](void*) mutable { keep.reset(); }, options);
  }
  // A writer that does not align (ours and the reference's do) leaves this tensor misaligned
  // for its element type; reading it in place would be undefined behaviour, so copy.
  torch::Tensor out = torch::empty(info.shape, options);
  std::memcpy(out.data_ptr(), data, info.nbytes());
  return out;
}

std::map<std::string, torch::Tensor> load_safetensors(const std::string& path) {
  SafetensorsFile file(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : file.names()) out[name] = file.tensor(name);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writer

void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  struct Entry {
    const std::string* name;
    const torch::Tensor* tensor;
    const DtypeEntry* dtype;
    uint64_t nbytes;
  };
  std::vector<Entry> entries;
  entries.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    ErrorContext ctx;
    ctx.file = path;
    ctx.tensor = name;
    T4G_CHECK_CTX(name != "__metadata__", ctx, "'__metadata__' is reserved and cannot name a tensor");
    T4G_CHECK_CTX(tensor.defined(), ctx, "tensor is undefined");
    const DtypeEntry* dtype = find_dtype(tensor.scalar_type());
    if (dtype == nullptr) {
      ctx.expected = "a dtype safetensors stores (" + supported_dtype_list() + ")";
      ctx.got = c10::toString(tensor.scalar_type());
      throw Error("dtype cannot be stored in safetensors", ctx);
    }
    entries.push_back({&name, &tensor, dtype, static_cast<uint64_t>(tensor.numel()) * dtype->size});
  }
  // The reference writer's order: descending dtype rank (so alignment never decreases), then name.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.dtype->rank != b.dtype->rank) return a.dtype->rank > b.dtype->rank;
    return *a.name < *b.name;
  });

  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    ordered_json entry = ordered_json::object();
    entry["dtype"] = e.dtype->name;
    entry["shape"] = e.tensor->sizes().vec();
    entry["data_offsets"] = {offset, offset + e.nbytes};
    header[*e.name] = entry;
    offset += e.nbytes;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    ErrorContext ctx;
    ctx.file = path;
    throw Error("a tensor name or metadata entry is not valid UTF-8", ctx);
  }
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  uint64_t header_length = header_text.size();
  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<unsigned char>(header_length >> (8 * i));

  write_atomically(path, [&](const std::string& tmp) {
    FileDescriptor out;
    out.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ErrorContext ctx;
    ctx.file = path;
    T4G_CHECK_CTX(out.fd >= 0, ctx, "cannot open for writing: ", std::strerror(errno));
    write_exact(out.fd, length_bytes, 8, path);
    write_exact(out.fd, header_text.data(), header_text.size(), path);
    for (const Entry& e : entries) {
      if (e.nbytes == 0) continue;
      // One tensor at a time on CPU, so saving GPU weights needs one tensor of host memory.
      torch::Tensor t = e.tensor->detach().to(torch::kCPU).resolve_conj().resolve_neg().contiguous();
      write_exact(out.fd, t.data_ptr(), e.nbytes, path);
    }
    // Durable before the rename makes it visible: a crash must not leave a renamed empty file.
    T4G_CHECK_CTX(::fsync(out.fd) == 0, ctx, "fsync failed: ", std::strerror(errno));
  });
}

// ---------------------------------------------------------------------------------------------
// Folders and sharded checkpoints

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const char* const kIndexSuffix = ".safetensors.index.json";

std::string shard_name(const std::string& stem, size_t index, size_t count) {
  char suffix[32];
  std::snprintf(suffix, sizeof(suffix), "-%05zu-of-%05zu", index, count);
  return stem + suffix + ".safetensors";
}

}  // namespace

std::string find_safetensors_in_folder(const std::string& folder) {
  std::vector<std::string> indexes, singles;
  for (const std::string& name : list_dir(folder)) {
    if (!is_regular_file(path_join(folder, name))) continue;
    if (ends_with(name, kIndexSuffix)) {
      indexes.push_back(name);
    } else if (ends_with(name, ".safetensors")) {
      singles.push_back(name);
    }
  }
  const auto has = [](const std::vector<std::string>& v, const std::string& n) {
    return std::find(v.begin(), v.end(), n) != v.end();
  };
  for (const std::string stem : {"diffusion_pytorch_model", "model"}) {
    if (has(indexes, stem + kIndexSuffix)) {
      if (has(singles, stem + ".safetensors")) {
        T4G_WARN(folder, ": both ", stem, kIndexSuffix, " and ", stem, ".safetensors exist; using the index");
      }
      return path_join(folder, stem + kIndexSuffix);
    }
    if (has(singles, stem + ".safetensors")) return path_join(folder, stem + ".safetensors");
  }
  if (indexes.size() == 1) return path_join(folder, indexes[0]);
  if (indexes.empty() && singles.size() == 1) return path_join(folder, singles[0]);
  if (indexes.empty() && singles.empty()) return "";
  std::vector<std::string> all = indexes.empty() ? singles : indexes;
  std::sort(all.begin(), all.end());
  std::string list;
  for (size_t i = 0; i < all.size() && i < 5; ++i) list += (i ? ", " : "") + all[i];
  if (all.size() > 5) list += ", ...";
  ErrorContext ctx;
  ctx.file = folder;
  throw Error("several weight files and none with a standard name (" + list + "); pass the file itself", ctx);
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& path) : path_(path) {
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(path_exists(path), ctx, "no such file or folder");
  std::string resolved = path;
  if (is_directory(path)) {
    resolved = find_safetensors_in_folder(path);
    T4G_CHECK_CTX(!resolved.empty(), ctx, "folder holds no .safetensors weights");
  }
  if (ends_with(resolved, ".index.json")) {
    open_index(resolved);
    return;
  }
  files_.push_back(std::make_unique<SafetensorsFile>(resolved));
  for (const auto& name : files_[0]->names()) owner_[name] = 0;
}

void SafetensorsCheckpoint::open_index(const std::string& index_path) {
  index_path_ = index_path;
  const JsonObject index = JsonObject::from_file(index_path);
  const JsonObject weight_map = index.get_object("weight_map");
  const std::string folder = parent_path(index_path);

  // Shard file -> the tensors the index puts there.
  std::map<std::string, std::vector<std::string>> listed;
  for (auto it = weight_map.json().begin(); it != weight_map.json().end(); ++it) {
    ErrorContext ctx;
    ctx.file = index_path;
    ctx.key = "weight_map." + it.key();
    T4G_CHECK_CTX(it.value().is_string(), ctx, "shard file name must be a string");
    const std::string file = it.value().get<std::string>();
    // A plain name: no folders, so nothing outside the index's folder can be named.
    const bool escapes = file.empty() || file.find('/') != std::string::npos || file == "..";
    T4G_CHECK_CTX(!escapes, ctx, "shard file name must be a plain name inside the index's folder, got '", file, "'");
    listed[file].push_back(it.key());
  }

  // Every listed shard must exist before any is opened: a missing file is the likelier mistake.
  for (const auto& [file, names] : listed) {
    ErrorContext ctx;
    ctx.file = index_path;
    ctx.tensor = names.front();
    T4G_CHECK_CTX(is_regular_file(path_join(folder, file)), ctx, "shard file '", file, "' listed for ", names.size(),
                  " tensor(s) does not exist");
  }
  uint64_t total_bytes = 0;
  for (const auto& [file, names] : listed) {
    const std::string shard_path = path_join(folder, file);
    ErrorContext ctx;
    ctx.file = index_path;
    auto shard = std::make_unique<SafetensorsFile>(shard_path);
    const std::set<std::string> expected(names.begin(), names.end());
    for (const auto& name : names) {
      ctx.tensor = name;
      T4G_CHECK_CTX(shard->contains(name), ctx, "the index puts this tensor in '", file, "', which does not hold it");
    }
    for (const auto& name : shard->names()) {
      ctx.tensor = name;
      if (expected.count(name) != 0) continue;
      const auto elsewhere = weight_map.json().find(name);
      if (elsewhere != weight_map.json().end()) {
        throw Error("shard '" + file + "' holds this tensor but the index assigns it to '" +
                        elsewhere->get<std::string>() + "'",
                    ctx);
      }
      throw Error("shard '" + file + "' holds this tensor but the index does not list it", ctx);
    }
    for (const auto& name : names) {
      owner_[name] = files_.size();
      total_bytes += shard->info(name).nbytes();
    }
    files_.push_back(std::move(shard));
  }

  if (index.has("metadata")) {
    const JsonObject meta = index.get_object("metadata");
    if (meta.has("total_size")) {
      const int64_t claimed = meta.get_int("total_size");
      // Some exporters count shared storages differently; the weight_map is what matters.
      if (claimed != static_cast<int64_t>(total_bytes)) {
        T4G_WARN(index_path, ": metadata.total_size is ", claimed, " but the listed tensors hold ", total_bytes,
                 " bytes");
      }
    }
  }
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(owner_.size());
  for (const auto& entry : owner_) out.push_back(entry.first);
  return out;
}

bool SafetensorsCheckpoint::contains(const std::string& name) const { return owner_.count(name) != 0; }

const SafetensorsFile& SafetensorsCheckpoint::owner(const std::string& name) const {
  const auto it = owner_.find(name);
  if (it == owner_.end()) {
    ErrorContext ctx;
    ctx.file = path_;
    ctx.tensor = name;
    throw Error("no such tensor in the checkpoint", ctx);
  }
  return *files_[it->second];
}

const TensorInfo& SafetensorsCheckpoint::info(const std::string& name) const { return owner(name).info(name); }

torch::Tensor SafetensorsCheckpoint::tensor(const std::string& name) const { return owner(name).tensor(name); }

const std::string& SafetensorsCheckpoint::file_of(const std::string& name) const { return owner(name).path(); }

std::vector<std::string> SafetensorsCheckpoint::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

void save_sharded_safetensors(const std::string& folder, const std::string& stem,
                              const std::map<std::string, torch::Tensor>& tensors, uint64_t max_shard_bytes) {
  ErrorContext ctx;
  ctx.file = folder;
  T4G_CHECK_CTX(!stem.empty() && stem.find('/') == std::string::npos, ctx, "invalid file stem '", stem, "'");
  T4G_CHECK_CTX(max_shard_bytes > 0, ctx, "max_shard_bytes must be positive");
  make_dirs(folder);

  // huggingface_hub's split_state_dict_into_shards_factory, in name order: a tensor larger than
  // the limit is appended as its own shard at once; otherwise it joins the current shard unless
  // that would exceed the limit.
  std::vector<std::vector<std::string>> shards;
  std::vector<std::string> current;
  uint64_t current_bytes = 0, total_bytes = 0;
  for (const auto& [name, tensor] : tensors) {
    const DtypeEntry* dtype = find_dtype(tensor.scalar_type());
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * (dtype ? dtype->size : 0);
    total_bytes += bytes;
    if (bytes > max_shard_bytes) {
      shards.push_back({name});
      continue;
    }
    if (current_bytes + bytes > max_shard_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(name);
    current_bytes += bytes;
  }
  if (!current.empty()) shards.push_back(std::move(current));

  const std::map<std::string, std::string> metadata{{"format", "pt"}};
  std::set<std::string> written;
  nlohmann::json weight_map = nlohmann::json::object();
  if (shards.size() <= 1) {
    const std::string file = stem + ".safetensors";
    save_safetensors(path_join(folder, file), tensors, metadata);
    written.insert(file);
  } else {
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string file = shard_name(stem, i + 1, shards.size());
      std::map<std::string, torch::Tensor> part;
      for (const auto& name : shards[i]) {
        part[name] = tensors.at(name);
        weight_map[name] = file;
      }
      save_safetensors(path_join(folder, file), part, metadata);
      written.insert(file);
    }
    nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    // json.dumps(index, indent=2, sort_keys=True) + "\n", as diffusers writes it.
    const std::string index_file = stem + kIndexSuffix;
    write_file_atomically(path_join(folder, index_file), index.dump(2, ' ', true) + "\n");
    written.insert(index_file);
  }

  // Remove what a previous save of this stem left: other shards, a stale index or single file.
  const std::regex shard_pattern(std::regex_replace(stem, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                                 R"(-\d{5}-of-\d{5}\.safetensors)");
  for (const std::string& name : list_dir(folder)) {
    const std::string file = path_join(folder, name);
    if (!is_regular_file(file) || written.count(name) != 0) continue;
    if (std::regex_match(name, shard_pattern) || name == stem + kIndexSuffix || name == stem + ".safetensors") {
      if (std::remove(file.c_str()) != 0) T4G_WARN(file, ": cannot remove stale weights file");
    }
  }
}

}  // namespace t4g
