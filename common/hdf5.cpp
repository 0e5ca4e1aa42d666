// HDF5 wrappers (see hdf5.h). Each public call takes the process-wide lock, turns HDF5's
// automatic error printing off for the calling thread, and converts a negative return into a
// t4g::Error whose message carries the innermost HDF5 error description.
#include "common/hdf5.h"

#include <hdf5.h>

#include <cstring>
#include <fstream>
#include <mutex>

#include "common/error.h"
#include "common/fs.h"

namespace t4g::h5 {
namespace {

std::recursive_mutex& hdf5_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

// Locks the library and silences HDF5's stderr printing for this thread (the setting is
// per thread in thread-safe builds).
class Guard {
 public:
  Guard() : lock_(hdf5_mutex()) {
    thread_local bool silenced = false;
    if (!silenced) {
      H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
      silenced = true;
    }
  }

 private:
  std::lock_guard<std::recursive_mutex> lock_;
};

// The innermost (first pushed) message of the current HDF5 error stack, or "".
std::string hdf5_error_text() {
  std::string text;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* err, void* data) -> herr_t {
        auto* out = static_cast<std::string*>(data);
        if (n == 0 && err->desc != nullptr) *out = err->desc;
        return 0;
      },
      &text);
  H5Eclear2(H5E_DEFAULT);
  return text;
}

[[noreturn]] void fail(const std::string& file, const std::string& path, const std::string& what) {
  const std::string detail = hdf5_error_text();
  ErrorContext ctx;
  ctx.file = file;
  ctx.key = path;
  throw Error(detail.empty() ? what : what + " (HDF5: " + detail + ")", ctx);
}

ErrorContext context(const std::string& file, const std::string& path) {
  ErrorContext ctx;
  ctx.file = file;
  ctx.key = path;
  return ctx;
}

int64_t check_id(int64_t id, const std::string& file, const std::string& path, const std::string& what) {
  if (id < 0) fail(file, path, what);
  return id;
}

void check_status(herr_t status, const std::string& file, const std::string& path, const std::string& what) {
  if (status < 0) fail(file, path, what);
}

constexpr const char* kDtypeAttr = "t4g_dtype";

// Stored HDF5 type, in-memory HDF5 type and the "t4g_dtype" tag for a torch dtype.
struct TypeMapping {
  hid_t file_type;
  hid_t mem_type;
  const char* tag;  // nullptr when the dtype is stored as itself
};

TypeMapping mapping_for(torch::ScalarType dtype, const std::string& file, const std::string& path) {
  switch (dtype) {
    case torch::kUInt8: return {H5T_STD_U8LE, H5T_NATIVE_UINT8, nullptr};
    case torch::kInt8: return {H5T_STD_I8LE, H5T_NATIVE_INT8, nullptr};
    case torch::kInt16: return {H5T_STD_I16LE, H5T_NATIVE_INT16, nullptr};
    case torch::kInt32: return {H5T_STD_I32LE, H5T_NATIVE_INT32, nullptr};
    case torch::kInt64: return {H5T_STD_I64LE, H5T_NATIVE_INT64, nullptr};
    case torch::kFloat32: return {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nullptr};
    case torch::kFloat64: return {H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, nullptr};
    case torch::kBool: return {H5T_STD_U8LE, H5T_NATIVE_UINT8, "bool"};
    case torch::kBFloat16: return {H5T_STD_U16LE, H5T_NATIVE_UINT16, "bfloat16"};
    case torch::kHalf: return {H5T_STD_U16LE, H5T_NATIVE_UINT16, "float16"};
    default: break;
  }
  ErrorContext ctx = context(file, path);
  ctx.expected = "uint8, int8, int16, int32, int64, float32, float64, bool, bfloat16 or float16";
  ctx.got = std::string(c10::toString(dtype));
  throw Error("cannot store this dtype in HDF5", ctx);
}

// torch dtype that a stored HDF5 type reads as (before the t4g_dtype tag is applied).
torch::ScalarType dtype_for_stored(hid_t type, const std::string& file, const std::string& path) {
  H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_ENUM && size == 1) return torch::kBool;  // h5py writes numpy bool as an int8 enum
  if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    if (size == 1) return is_signed ? torch::kInt8 : torch::kUInt8;
    if (size == 2) return is_signed ? torch::kInt16 : torch::kUInt16;
    if (size == 4 && is_signed) return torch::kInt32;
    if (size == 8 && is_signed) return torch::kInt64;
    if (size == 4) return torch::kInt64;  // uint32 widens losslessly
  }
  if (cls == H5T_FLOAT) {
    if (size == 4) return torch::kFloat32;
    if (size == 8) return torch::kFloat64;
  }
  ErrorContext ctx = context(file, path);
  ctx.expected = "an integer or float dataset of a supported width";
  ctx.got = str("HDF5 type class ", static_cast<int>(cls), " of ", size, " bytes");
  throw Error("unsupported stored type", ctx);
}

hid_t mem_type_for(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kUInt8: return H5T_NATIVE_UINT8;
    case torch::kInt8: return H5T_NATIVE_INT8;
    case torch::kInt16: return H5T_NATIVE_INT16;
    case torch::kUInt16: return H5T_NATIVE_UINT16;
    case torch::kInt32: return H5T_NATIVE_INT32;
    case torch::kInt64: return H5T_NATIVE_INT64;
    case torch::kFloat32: return H5T_NATIVE_FLOAT;
    case torch::kFloat64: return H5T_NATIVE_DOUBLE;
    default: return H5T_NATIVE_UINT8;  // bool (enum or tagged uint8) reads as bytes
  }
}

// A variable-length UTF-8 string type (what h5py writes for str).
Handle vlen_string_type() {
  Handle type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.id(), H5T_VARIABLE);
  H5Tset_cset(type.id(), H5T_CSET_UTF8);
  return type;
}

std::vector<int64_t> dataspace_shape(hid_t space) {
  const int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

void validate_child_name(const std::string& name, const std::string& file, const std::string& path) {
  T4G_CHECK_CTX(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
                context(file, path), "invalid HDF5 child name '", name, "' (empty, '.', '..' or contains '/')");
}

// Reads a string attribute or dataset element stored either as variable- or fixed-length.
std::string read_string_value(hid_t obj, bool is_attr, const std::string& file, const std::string& path) {
  Handle type(is_attr ? H5Aget_type(obj) : H5Dget_type(obj));
  check_id(type.id(), file, path, "cannot read the string type");
  T4G_CHECK_CTX(H5Tget_class(type.id()) == H5T_STRING, context(file, path), "not a string");
  if (H5Tis_variable_str(type.id()) > 0) {
    Handle mem = vlen_string_type();
    char* value = nullptr;
    const herr_t status = is_attr ? H5Aread(obj, mem.id(), &value) : H5Dread(obj, mem.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &value);
    check_status(status, file, path, "cannot read string");
    std::string out = value != nullptr ? value : "";
    if (value != nullptr) H5free_memory(value);
    return out;
  }
  const size_t size = H5Tget_size(type.id());
  std::string buffer(size, '\0');
  Handle mem(H5Tcopy(type.id()));
  const herr_t status = is_attr ? H5Aread(obj, mem.id(), buffer.data()) : H5Dread(obj, mem.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data());
  check_status(status, file, path, "cannot read string");
  const auto end = buffer.find('\0');
  return end == std::string::npos ? buffer : buffer.substr(0, end);
}

}  // namespace

// ---- Handle -----------------------------------------------------------------------------

Handle::Handle(int64_t id) {
  if (id < 0) return;
  id_ = std::shared_ptr<int64_t>(new int64_t(id), [](int64_t* p) {
    Guard guard;
    const hid_t h = static_cast<hid_t>(*p);
    switch (H5Iget_type(h)) {
      case H5I_FILE: H5Fclose(h); break;
      case H5I_GROUP: H5Gclose(h); break;
      case H5I_DATASET: H5Dclose(h); break;
      case H5I_ATTR: H5Aclose(h); break;
      case H5I_DATASPACE: H5Sclose(h); break;
      case H5I_DATATYPE: H5Tclose(h); break;
      case H5I_GENPROP_LST: H5Pclose(h); break;
      default: break;  // already closed (a file closed with H5F_CLOSE_STRONG closes its objects)
    }
    H5Eclear2(H5E_DEFAULT);
    delete p;
  });
}

int64_t Handle::id() const { return id_ ? *id_ : -1; }

// ---- Node -------------------------------------------------------------------------------

Node::Node(Handle handle, std::string file, std::string path)
    : handle_(std::move(handle)), file_(std::move(file)), path_(std::move(path)) {}

std::string Node::child_path(const std::string& name) const {
  return path_ == "/" ? "/" + name : path_ + "/" + name;
}

bool Node::has_attr(const std::string& name) const {
  Guard guard;
  const htri_t exists = H5Aexists(handle_.id(), name.c_str());
  check_status(exists < 0 ? -1 : 0, file_, path_ + "@" + name, "cannot query attribute");
  return exists > 0;
}

namespace {
// Replaces an existing attribute of the same name, then writes a scalar of `type`.
void write_scalar_attr(const Handle& owner, const std::string& name, hid_t file_type, hid_t mem_type, const void* value,
                       const std::string& file, const std::string& where) {
  if (H5Aexists(owner.id(), name.c_str()) > 0) check_status(H5Adelete(owner.id(), name.c_str()), file, where, "cannot replace attribute");
  Handle space(H5Screate(H5S_SCALAR));
  Handle attr(check_id(H5Acreate2(owner.id(), name.c_str(), file_type, space.id(), H5P_DEFAULT, H5P_DEFAULT), file, where,
                       "cannot create attribute"));
  check_status(H5Awrite(attr.id(), mem_type, value), file, where, "cannot write attribute");
}

Handle open_attr(const Handle& owner, const std::string& name, const std::string& file, const std::string& where) {
  const htri_t exists = H5Aexists(owner.id(), name.c_str());
  T4G_CHECK_CTX(exists > 0, context(file, where), "missing attribute");
  return Handle(check_id(H5Aopen(owner.id(), name.c_str(), H5P_DEFAULT), file, where, "cannot open attribute"));
}

H5T_class_t attr_class(const Handle& attr) {
  Handle type(H5Aget_type(attr.id()));
  return H5Tget_class(type.id());
}
}  // namespace

void Node::set_attr(const std::string& name, const std::string& value) {
  Guard guard;
  Handle type = vlen_string_type();
  const char* data = value.c_str();
  write_scalar_attr(handle_, name, type.id(), type.id(), &data, file_, path_ + "@" + name);
}

void Node::set_attr(const std::string& name, int64_t value) {
  Guard guard;
  write_scalar_attr(handle_, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, file_, path_ + "@" + name);
}

void Node::set_attr(const std::string& name, double value) {
  Guard guard;
  write_scalar_attr(handle_, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, file_, path_ + "@" + name);
}

std::string Node::attr_string(const std::string& name) const {
  Guard guard;
  const std::string where = path_ + "@" + name;
  Handle attr = open_attr(handle_, name, file_, where);
  T4G_CHECK_CTX(attr_class(attr) == H5T_STRING, context(file_, where), "attribute is not a string");
  return read_string_value(attr.id(), true, file_, where);
}

int64_t Node::attr_int(const std::string& name) const {
  Guard guard;
  const std::string where = path_ + "@" + name;
  Handle attr = open_attr(handle_, name, file_, where);
  T4G_CHECK_CTX(attr_class(attr) == H5T_INTEGER, context(file_, where), "attribute is not an integer");
  Handle space(H5Aget_space(attr.id()));
  T4G_CHECK_CTX(H5Sget_simple_extent_npoints(space.id()) == 1, context(file_, where), "attribute is not a scalar");
  int64_t value = 0;
  check_status(H5Aread(attr.id(), H5T_NATIVE_INT64, &value), file_, where, "cannot read attribute");
  return value;
}

double Node::attr_double(const std::string& name) const {
  Guard guard;
  const std::string where = path_ + "@" + name;
  Handle attr = open_attr(handle_, name, file_, where);
  const H5T_class_t cls = attr_class(attr);
  T4G_CHECK_CTX(cls == H5T_FLOAT || cls == H5T_INTEGER, context(file_, where), "attribute is not a number");
  Handle space(H5Aget_space(attr.id()));
  T4G_CHECK_CTX(H5Sget_simple_extent_npoints(space.id()) == 1, context(file_, where), "attribute is not a scalar");
  double value = 0;
  check_status(H5Aread(attr.id(), H5T_NATIVE_DOUBLE, &value), file_, where, "cannot read attribute");
  return value;
}

std::vector<std::string> Node::attr_names() const {
  Guard guard;
  std::vector<std::string> names;
  hsize_t index = 0;
  check_status(H5Aiterate2(
                   handle_.id(), H5_INDEX_NAME, H5_ITER_INC, &index,
                   [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
                     static_cast<std::vector<std::string>*>(data)->emplace_back(name);
                     return 0;
                   },
                   &names),
               file_, path_, "cannot list attributes");
  return names;
}

// ---- Dataset ----------------------------------------------------------------------------

DatasetInfo Dataset::info() const {
  Guard guard;
  DatasetInfo info;
  Handle space(check_id(H5Dget_space(handle_.id()), file_, path_, "cannot read dataspace"));
  info.shape = dataspace_shape(space.id());
  Handle type(check_id(H5Dget_type(handle_.id()), file_, path_, "cannot read datatype"));
  if (H5Tget_class(type.id()) == H5T_STRING) {
    info.is_string = true;
    return info;
  }
  info.dtype = dtype_for_stored(type.id(), file_, path_);
  if (H5Aexists(handle_.id(), kDtypeAttr) > 0) {
    const std::string tag = attr_string(kDtypeAttr);
    if (tag == "bool") {
      info.dtype = torch::kBool;
    } else if (tag == "bfloat16") {
      info.dtype = torch::kBFloat16;
    } else if (tag == "float16") {
      info.dtype = torch::kHalf;
    } else {
      ErrorContext ctx = context(file_, path_ + "@" + kDtypeAttr);
      ctx.expected = "bool, bfloat16 or float16";
      ctx.got = tag;
      throw Error("unknown dtype tag", ctx);
    }
  }
  return info;
}

namespace {
// Reads `count` rows starting at `begin` of dimension 0 (or everything when count < 0).
torch::Tensor read_dataset(hid_t dataset, const DatasetInfo& info, int64_t begin, int64_t count, const std::string& file,
                           const std::string& path) {
  T4G_CHECK_CTX(!info.is_string, context(file, path), "is a string dataset; read it with read_string(s)");
  std::vector<int64_t> shape = info.shape;
  Handle file_space(check_id(H5Dget_space(dataset), file, path, "cannot read dataspace"));
  Handle mem_space;
  if (count >= 0) {
    T4G_CHECK_CTX(!shape.empty(), context(file, path), "cannot read rows of a scalar dataset");
    T4G_CHECK_CTX(begin >= 0 && count >= 0 && begin + count <= shape[0], context(file, path), "rows [", begin, ", ",
                  begin + count, ") out of range for ", shape[0], " rows");
    shape[0] = count;
    std::vector<hsize_t> start(shape.size(), 0), dims(shape.begin(), shape.end());
    start[0] = static_cast<hsize_t>(begin);
    check_status(H5Sselect_hyperslab(file_space.id(), H5S_SELECT_SET, start.data(), nullptr, dims.data(), nullptr), file,
                 path, "cannot select rows");
    mem_space = Handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  }
  // Bool (tagged uint8 or h5py enum), bf16 and f16 (tagged uint16) are read as their storage type.
  torch::ScalarType storage = info.dtype;
  if (storage == torch::kBool) storage = torch::kUInt8;
  if (storage == torch::kBFloat16 || storage == torch::kHalf) storage = torch::kUInt16;
  torch::Tensor out = torch::empty(shape, torch::TensorOptions().dtype(storage));
  if (out.numel() > 0) {
    hid_t mem_type = mem_type_for(storage);
    Handle enum_type;
    if (info.dtype == torch::kBool) {
      // An h5py enum must be read through its own type; bytes 0/1 come out unchanged.
      Handle stored(H5Dget_type(dataset));
      if (H5Tget_class(stored.id()) == H5T_ENUM) {
        enum_type = Handle(H5Tget_native_type(stored.id(), H5T_DIR_ASCEND));
        mem_type = enum_type.id();
      }
    }
    check_status(H5Dread(dataset, mem_type, count >= 0 ? mem_space.id() : H5S_ALL, count >= 0 ? file_space.id() : H5S_ALL,
                         H5P_DEFAULT, out.data_ptr()),
                 file, path, "cannot read dataset");
  }
  if (info.dtype == torch::kBool) return out.ne(0);
  if (info.dtype == torch::kBFloat16 || info.dtype == torch::kHalf) return out.view(info.dtype);
  return out;
}
}  // namespace

torch::Tensor Dataset::read() const {
  Guard guard;
  return read_dataset(handle_.id(), info(), 0, -1, file_, path_);
}

torch::Tensor Dataset::read_rows(int64_t begin, int64_t end) const {
  Guard guard;
  return read_dataset(handle_.id(), info(), begin, end - begin, file_, path_);
}

// ---- Group ------------------------------------------------------------------------------

bool Group::has(const std::string& name) const {
  Guard guard;
  validate_child_name(name, file_, path_);
  const htri_t exists = H5Lexists(handle_.id(), name.c_str(), H5P_DEFAULT);
  check_status(exists < 0 ? -1 : 0, file_, child_path(name), "cannot query link");
  return exists > 0;
}

namespace {
H5O_type_t child_type(hid_t group, const std::string& name) {
  H5O_info_t info;
  if (H5Oget_info_by_name(group, name.c_str(), &info, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return H5O_TYPE_UNKNOWN;
  }
  return info.type;
}
}  // namespace

bool Group::has_group(const std::string& name) const {
  Guard guard;
  return has(name) && child_type(handle_.id(), name) == H5O_TYPE_GROUP;
}

bool Group::has_dataset(const std::string& name) const {
  Guard guard;
  return has(name) && child_type(handle_.id(), name) == H5O_TYPE_DATASET;
}

std::vector<std::string> Group::children() const {
  Guard guard;
  std::vector<std::string> names;
  hsize_t index = 0;
  check_status(H5Literate(
                   handle_.id(), H5_INDEX_NAME, H5_ITER_INC, &index,
                   [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
                     static_cast<std::vector<std::string>*>(data)->emplace_back(name);
                     return 0;
                   },
                   &names),
               file_, path_, "cannot list children");
  return names;
}

Group Group::group(const std::string& name) const {
  Guard guard;
  const std::string where = child_path(name);
  T4G_CHECK_CTX(has_group(name), context(file_, where), "missing group");
  return Group(Handle(check_id(H5Gopen2(handle_.id(), name.c_str(), H5P_DEFAULT), file_, where, "cannot open group")), file_,
               where);
}

Group Group::create_group(const std::string& name) const {
  Guard guard;
  const std::string where = child_path(name);
  validate_child_name(name, file_, path_);
  T4G_CHECK_CTX(!has(name), context(file_, where), "already exists");
  return Group(Handle(check_id(H5Gcreate2(handle_.id(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), file_, where,
                               "cannot create group")),
               file_, where);
}

Dataset Group::dataset(const std::string& name) const {
  Guard guard;
  const std::string where = child_path(name);
  T4G_CHECK_CTX(has_dataset(name), context(file_, where), "missing dataset");
  return Dataset(Handle(check_id(H5Dopen2(handle_.id(), name.c_str(), H5P_DEFAULT), file_, where, "cannot open dataset")),
                 file_, where);
}

Dataset Group::write(const std::string& name, const torch::Tensor& tensor, const WriteOptions& options) const {
  Guard guard;
  const std::string where = child_path(name);
  validate_child_name(name, file_, path_);
  T4G_CHECK_CTX(!has(name), context(file_, where), "already exists");
  T4G_CHECK_CTX(tensor.defined(), context(file_, where), "cannot write an undefined tensor");
  const TypeMapping mapping = mapping_for(tensor.scalar_type(), file_, where);
  torch::Tensor data = tensor.to(torch::kCPU).contiguous();
  if (data.scalar_type() == torch::kBool) data = data.to(torch::kUInt8);
  if (data.scalar_type() == torch::kBFloat16 || data.scalar_type() == torch::kHalf) data = data.view(torch::kUInt16);

  const std::vector<hsize_t> dims(data.sizes().begin(), data.sizes().end());
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  check_id(space.id(), file_, where, "cannot create dataspace");
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  const bool compress = options.gzip_level >= 0;
  T4G_CHECK_CTX(options.gzip_level <= 9, context(file_, where), "gzip level must be 0..9, got ", options.gzip_level);
  if ((!options.chunk.empty() || compress) && !dims.empty() && data.numel() > 0) {
    std::vector<hsize_t> chunk;
    if (options.chunk.empty()) {
      chunk = dims;
    } else {
      T4G_CHECK_CTX(options.chunk.size() == dims.size(), context(file_, where), "chunk rank ", options.chunk.size(),
                    " differs from tensor rank ", dims.size());
      for (size_t i = 0; i < dims.size(); ++i) {
        T4G_CHECK_CTX(options.chunk[i] > 0, context(file_, where), "chunk sizes must be positive");
        chunk.push_back(std::min<hsize_t>(static_cast<hsize_t>(options.chunk[i]), dims[i]));
      }
    }
    check_status(H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data()), file_, where, "cannot set chunks");
    if (compress) {
      check_status(H5Pset_shuffle(dcpl.id()), file_, where, "cannot set shuffle filter");
      check_status(H5Pset_deflate(dcpl.id(), static_cast<unsigned>(options.gzip_level)), file_, where, "cannot set gzip");
    }
  }
  Handle dataset(check_id(H5Dcreate2(handle_.id(), name.c_str(), mapping.file_type, space.id(), H5P_DEFAULT, dcpl.id(),
                                     H5P_DEFAULT),
                          file_, where, "cannot create dataset"));
  if (data.numel() > 0) {
    check_status(H5Dwrite(dataset.id(), mapping.mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data_ptr()), file_, where,
                 "cannot write dataset");
  }
  Dataset out(dataset, file_, where);
  if (mapping.tag != nullptr) out.set_attr(kDtypeAttr, std::string(mapping.tag));
  return out;
}

Dataset Group::write_string(const std::string& name, const std::string& value) const {
  Guard guard;
  const std::string where = child_path(name);
  validate_child_name(name, file_, path_);
  T4G_CHECK_CTX(!has(name), context(file_, where), "already exists");
  Handle type = vlen_string_type();
  Handle space(H5Screate(H5S_SCALAR));
  Handle dataset(check_id(H5Dcreate2(handle_.id(), name.c_str(), type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                          file_, where, "cannot create string dataset"));
  const char* data = value.c_str();
  check_status(H5Dwrite(dataset.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &data), file_, where, "cannot write string");
  return Dataset(dataset, file_, where);
}

Dataset Group::write_strings(const std::string& name, const std::vector<std::string>& values) const {
  Guard guard;
  const std::string where = child_path(name);
  validate_child_name(name, file_, path_);
  T4G_CHECK_CTX(!has(name), context(file_, where), "already exists");
  Handle type = vlen_string_type();
  const hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr));
  Handle dataset(check_id(H5Dcreate2(handle_.id(), name.c_str(), type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                          file_, where, "cannot create string dataset"));
  std::vector<const char*> data;
  for (const auto& v : values) data.push_back(v.c_str());
  if (!data.empty()) {
    check_status(H5Dwrite(dataset.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), file_, where,
                 "cannot write strings");
  }
  return Dataset(dataset, file_, where);
}

std::string Group::read_string(const std::string& name) const {
  Guard guard;
  Dataset ds = dataset(name);
  T4G_CHECK_CTX(ds.info().is_string, context(file_, ds.path()), "not a string dataset");
  Handle space(H5Dget_space(ds.handle_.id()));
  T4G_CHECK_CTX(H5Sget_simple_extent_npoints(space.id()) == 1, context(file_, ds.path()), "expected one string");
  return read_string_value(ds.handle_.id(), false, file_, ds.path());
}

std::vector<std::string> Group::read_strings(const std::string& name) const {
  Guard guard;
  Dataset ds = dataset(name);
  const std::string& where = ds.path();
  Handle type(H5Dget_type(ds.handle_.id()));
  T4G_CHECK_CTX(H5Tget_class(type.id()) == H5T_STRING, context(file_, where), "not a string dataset");
  Handle space(H5Dget_space(ds.handle_.id()));
  const std::vector<int64_t> shape = dataspace_shape(space.id());
  T4G_CHECK_CTX(shape.size() == 1, context(file_, where), "expected a 1-D string dataset, got rank ", shape.size());
  const size_t n = static_cast<size_t>(shape[0]);
  std::vector<std::string> out;
  if (n == 0) return out;
  if (H5Tis_variable_str(type.id()) > 0) {
    Handle mem = vlen_string_type();
    std::vector<char*> data(n, nullptr);
    check_status(H5Dread(ds.handle_.id(), mem.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), file_, where,
                 "cannot read strings");
    for (char* s : data) out.emplace_back(s != nullptr ? s : "");
    H5Dvlen_reclaim(mem.id(), space.id(), H5P_DEFAULT, data.data());
  } else {
    const size_t size = H5Tget_size(type.id());
    std::string buffer(n * size, '\0');
    Handle mem(H5Tcopy(type.id()));
    check_status(H5Dread(ds.handle_.id(), mem.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data()), file_, where,
                 "cannot read strings");
    for (size_t i = 0; i < n; ++i) {
      std::string s = buffer.substr(i * size, size);
      out.push_back(s.substr(0, s.find('\0')));
    }
  }
  return out;
}

// ---- File -------------------------------------------------------------------------------

File File::open(const std::string& path, OpenMode mode) {
  Guard guard;
  T4G_CHECK_CTX(is_regular_file(path), context(path, "/"), "no such file");
  T4G_CHECK_CTX(is_hdf5_file(path), context(path, "/"), "not an HDF5 file (bad signature)");
  File file;
  file.path_ = path;
  file.handle_ = Handle(check_id(H5Fopen(path.c_str(), mode == OpenMode::kReadOnly ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT),
                                 path, "/", "cannot open HDF5 file (truncated or corrupt?)"));
  return file;
}

File File::create(const std::string& path) {
  Guard guard;
  File file;
  file.path_ = path;
  file.temp_path_ = temp_path_for(path);
  // Strong close: commit() must know that every object is closed before renaming.
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS));
  H5Pset_fclose_degree(fapl.id(), H5F_CLOSE_STRONG);
  // Latest format: compact groups and faster attribute access; libhdf5 >= 1.10 reads it.
  H5Pset_libver_bounds(fapl.id(), H5F_LIBVER_V18, H5F_LIBVER_LATEST);
  file.handle_ = Handle(check_id(H5Fcreate(file.temp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id()), path, "/",
                                 "cannot create HDF5 file"));
  return file;
}

File::File(File&& other) noexcept { *this = std::move(other); }

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    handle_ = std::move(other.handle_);
    path_ = std::move(other.path_);
    temp_path_ = std::move(other.temp_path_);
    other.temp_path_.clear();
    other.handle_ = Handle();
  }
  return *this;
}

File::~File() {
  if (!temp_path_.empty()) {  // created and never committed: leave nothing behind
    {
      Guard guard;
      if (handle_.valid()) H5Fclose(static_cast<hid_t>(handle_.id()));
      H5Eclear2(H5E_DEFAULT);
    }
    remove_all(temp_path_);
  }
}

Group File::root() const {
  Guard guard;
  T4G_CHECK_CTX(handle_.valid(), context(path_, "/"), "file is closed");
  return Group(Handle(check_id(H5Gopen2(handle_.id(), "/", H5P_DEFAULT), path_, "/", "cannot open root group")), path_, "/");
}

void File::commit() {
  Guard guard;
  T4G_CHECK_CTX(handle_.valid(), context(path_, "/"), "file is already closed");
  check_status(H5Fflush(handle_.id(), H5F_SCOPE_GLOBAL), path_, "/", "cannot flush");
  // Close explicitly to see the status; the Handle's deleter then finds the id invalid.
  const herr_t closed = H5Fclose(static_cast<hid_t>(handle_.id()));
  handle_ = Handle();
  check_status(closed, path_, "/", "cannot close");
  if (!temp_path_.empty()) {
    const std::string tmp = temp_path_;
    temp_path_.clear();
    try {
      rename_path(tmp, path_);
    } catch (...) {
      remove_all(tmp);
      throw;
    }
  }
}

bool is_hdf5_file(const std::string& path) {
  static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::ifstream in(path, std::ios::binary);
  char head[8] = {};
  in.read(head, 8);
  return in.gcount() == 8 && std::memcmp(head, kSignature, 8) == 0;
}

}  // namespace t4g::h5
