// A safe, minimal pickle reader for numpy-array pickles (TAP-Vid files). It interprets pickle
// protocols 2 to 5 without ever calling code: the only globals it accepts are the handful that a
// numpy array pickle names (numpy.{core,_core}.multiarray._reconstruct, numpy.ndarray,
// numpy.dtype, numpy.{core,_core}.numeric._frombuffer, and _codecs.encode for protocol-2 bytes),
// and it "calls" them by building plain values. Any other global or opcode is refused with an
// error that names it; lengths and memo keys are checked against the stream before use.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace t4g::data::pickle {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

// A numpy array as described by a pickle: dtype, shape, order and raw little/big-endian bytes.
struct NdArray {
  char kind = 0;              // numpy kind: 'u', 'i', 'f', 'b' or 'S'
  int64_t itemsize = 0;       // bytes per element
  char byteorder = '|';       // '<', '>', '|' or '='
  std::vector<int64_t> shape;
  bool fortran = false;       // column-major data
  std::shared_ptr<const std::string> data;  // prod(shape) * itemsize bytes

  std::string typestr() const { return std::string(1, kind) + std::to_string(itemsize); }
  // Numeric arrays as a contiguous C-order CPU tensor of the matching dtype (byte-swapped if
  // big-endian). Throws for 'S' arrays.
  torch::Tensor to_tensor() const;
  // 'S' arrays of rank 1 as byte strings with numpy's trailing-NUL stripping.
  std::vector<std::string> to_bytes_list() const;
};

// A pickled value. Only the kinds a numpy pickle produces exist.
struct Value {
  enum class Kind { kNone, kBool, kInt, kFloat, kString, kBytes, kTuple, kList, kDict, kGlobal, kArray, kDtype };
  Kind kind = Kind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  std::string text;                                  // kString (UTF-8), kGlobal ("module.name")
  std::shared_ptr<const std::string> bytes;          // kBytes
  std::vector<ValuePtr> items;                       // kTuple, kList
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // kDict, in insertion order
  std::shared_ptr<NdArray> array;                    // kArray; kDtype uses kind/itemsize/byteorder of it

  // Human-readable kind for error messages ("dict", "numpy array u1[3,4]", ...).
  std::string describe() const;
  // Dict lookup by string key; nullptr when absent.
  ValuePtr get(const std::string& key) const;
};

// Parses a pickle held in memory; `name` (the file) appears in every error message.
ValuePtr load(const std::string& bytes, const std::string& name);
// Reads and parses a pickle file.
ValuePtr load_file(const std::string& path);

}  // namespace t4g::data::pickle
