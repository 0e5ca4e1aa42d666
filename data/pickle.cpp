// The safe pickle VM (see pickle.h). Opcode semantics follow CPython's Lib/pickle.py; only the
// subset a numpy-array pickle uses at protocols 2-5 is implemented, everything else is refused.
#include "data/pickle.h"

#include <cstring>
#include <unordered_map>

#include "common/error.h"
#include "common/fs.h"

namespace t4g::data::pickle {
namespace {

using Kind = Value::Kind;

// The callables a numpy pickle may name, and nothing else.
enum class Callable { kReconstruct, kNdarrayType, kDtype, kEncode, kFromBuffer };

bool lookup_global(const std::string& module, const std::string& name, Callable* out) {
  const std::string full = module + "." + name;
  if (full == "numpy.core.multiarray._reconstruct" || full == "numpy._core.multiarray._reconstruct") {
    *out = Callable::kReconstruct;
  } else if (full == "numpy.ndarray") {
    *out = Callable::kNdarrayType;
  } else if (full == "numpy.dtype") {
    *out = Callable::kDtype;
  } else if (full == "_codecs.encode" || full == "codecs.encode") {
    *out = Callable::kEncode;
  } else if (full == "numpy.core.numeric._frombuffer" || full == "numpy._core.numeric._frombuffer") {
    *out = Callable::kFromBuffer;
  } else {
    return false;
  }
  return true;
}

ValuePtr make(Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

class Machine {
 public:
  Machine(const std::string& data, std::string name) : data_(data), name_(std::move(name)) {}

  ValuePtr run() {
    while (true) {
      op_pos_ = pos_;
      const uint8_t op = read_u8();
      switch (op) {
        case 0x80: {  // PROTO
          const uint8_t proto = read_u8();
          if (proto < 2 || proto > 5) fail(str("unsupported pickle protocol ", int(proto), " (supported: 2 to 5)"));
          break;
        }
        case 0x95: {  // FRAME: a length hint; frames only group opcodes, so just check the length
          const uint64_t n = read_u64();
          if (n > remaining()) fail(str("frame of ", n, " bytes exceeds the ", remaining(), " bytes left"));
          break;
        }
        case '.': {  // STOP
          if (stack_.size() != 1 || !marks_.empty()) fail("stack not balanced at STOP");
          return stack_.back();
        }
        case '(': marks_.push_back(stack_.size()); break;                           // MARK
        case '}': stack_.push_back(make(Kind::kDict)); break;                        // EMPTY_DICT
        case ']': stack_.push_back(make(Kind::kList)); break;                        // EMPTY_LIST
        case ')': stack_.push_back(make(Kind::kTuple)); break;                       // EMPTY_TUPLE
        case 't': {                                                                  // TUPLE
          auto t = make(Kind::kTuple);
          t->items = pop_to_mark();
          stack_.push_back(t);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t n = static_cast<size_t>(op - 0x84);
          need(n);
          auto t = make(Kind::kTuple);
          t->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          stack_.push_back(t);
          break;
        }
        case 's': {  // SETITEM
          need(3);
          ValuePtr value = pop(), key = pop();
          expect_kind(top(), Kind::kDict, "SETITEM target")->entries.emplace_back(key, value);
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<ValuePtr> items = pop_to_mark();
          if (items.size() % 2 != 0) fail("SETITEMS with an odd number of items");
          need(1);
          ValuePtr dict = expect_kind(top(), Kind::kDict, "SETITEMS target");
          for (size_t i = 0; i < items.size(); i += 2) dict->entries.emplace_back(items[i], items[i + 1]);
          break;
        }
        case 'a': {  // APPEND
          need(2);
          ValuePtr value = pop();
          expect_kind(top(), Kind::kList, "APPEND target")->items.push_back(value);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<ValuePtr> items = pop_to_mark();
          need(1);
          ValuePtr list = expect_kind(top(), Kind::kList, "APPENDS target");
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 'q': memo_put(read_u8()); break;     // BINPUT
        case 'r': memo_put(read_u32()); break;    // LONG_BINPUT
        case 0x94: memo_put(memo_.size()); break;  // MEMOIZE
        case 'h': memo_get(read_u8()); break;     // BINGET
        case 'j': memo_get(read_u32()); break;    // LONG_BINGET
        case '0': need(1); stack_.pop_back(); break;  // POP
        case '1': pop_to_mark(); break;              // POP_MARK
        case '2': need(1); stack_.push_back(top()); break;  // DUP
        case 'K': push_int(read_u8()); break;                                            // BININT1
        case 'M': push_int(read_u16()); break;                                           // BININT2
        case 'J': push_int(static_cast<int32_t>(read_u32())); break;                     // BININT
        case 0x8a: {                                                                     // LONG1
          const uint8_t n = read_u8();
          if (n > 8) fail(str("integer of ", int(n), " bytes is too large"));
          const std::string b = read_bytes(n);
          uint64_t u = 0;
          for (size_t i = 0; i < n; ++i) u |= static_cast<uint64_t>(static_cast<uint8_t>(b[i])) << (8 * i);
          if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
          push_int(static_cast<int64_t>(u));
          break;
        }
        case 'G': {  // BINFLOAT (big-endian double)
          uint64_t u = 0;
          for (int i = 0; i < 8; ++i) u = (u << 8) | read_u8();
          double d;
          std::memcpy(&d, &u, 8);
          auto v = make(Kind::kFloat);
          v->number = d;
          stack_.push_back(v);
          break;
        }
        case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
          auto v = make(Kind::kBool);
          v->boolean = op == 0x88;
          stack_.push_back(v);
          break;
        }
        case 'N': stack_.push_back(make(Kind::kNone)); break;                // NONE
        case 0x8c: push_string(read_bytes(read_u8())); break;                 // SHORT_BINUNICODE
        case 'X': push_string(read_bytes(read_u32())); break;                 // BINUNICODE
        case 0x8d: push_string(read_bytes(read_u64())); break;                // BINUNICODE8
        case 'C': push_bytes(read_bytes(read_u8())); break;                   // SHORT_BINBYTES
        case 'B': push_bytes(read_bytes(read_u32())); break;                  // BINBYTES
        case 0x8e: case 0x96: push_bytes(read_bytes(read_u64())); break;      // BINBYTES8, BYTEARRAY8
        case 'c': {  // GLOBAL "module\nname\n"
          const std::string module = read_line(), name = read_line();
          push_global(module, name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          need(2);
          ValuePtr name = pop(), module = pop();
          if (module->kind != Kind::kString || name->kind != Kind::kString) fail("STACK_GLOBAL needs two strings");
          push_global(module->text, name->text);
          break;
        }
        case 'R': {  // REDUCE
          need(2);
          ValuePtr args = pop(), callable = pop();
          stack_.push_back(reduce(callable, args));
          break;
        }
        case 'b': {  // BUILD
          need(2);
          ValuePtr state = pop();
          build(top(), state);
          break;
        }
        default:
          fail(str("refusing pickle opcode 0x", hex(op), " ('", printable(op),
                   "'): not one a numpy array pickle uses (protocols 2-5)"));
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    ErrorContext ctx;
    ctx.file = name_;
    ctx.key = str("byte ", op_pos_);
    throw Error("unsafe or malformed pickle: " + message, ctx);
  }
  static std::string hex(uint8_t op) {
    const char* digits = "0123456789abcdef";
    return std::string{digits[op >> 4], digits[op & 15]};
  }
  static std::string printable(uint8_t op) { return op >= 32 && op < 127 ? std::string(1, static_cast<char>(op)) : "?"; }

  uint64_t remaining() const { return data_.size() - pos_; }
  uint8_t read_u8() {
    if (pos_ >= data_.size()) fail("truncated stream (no STOP opcode)");
    return static_cast<uint8_t>(data_[pos_++]);
  }
  uint64_t read_le(int n) {
    if (remaining() < static_cast<uint64_t>(n)) fail("truncated stream");
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    pos_ += static_cast<size_t>(n);
    return v;
  }
  uint16_t read_u16() { return static_cast<uint16_t>(read_le(2)); }
  uint32_t read_u32() { return static_cast<uint32_t>(read_le(4)); }
  uint64_t read_u64() { return read_le(8); }
  // Checks the length against what is left before allocating anything.
  std::string read_bytes(uint64_t n) {
    if (n > remaining()) fail(str("length ", n, " exceeds the ", remaining(), " bytes left in the stream"));
    std::string out = data_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return out;
  }
  std::string read_line() {
    const size_t end = data_.find('\n', pos_);
    if (end == std::string::npos || end - pos_ > 256) fail("truncated or overlong GLOBAL name");
    std::string out = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }

  void need(size_t n) const {
    const size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() < floor + n) fail("stack underflow");
  }
  ValuePtr pop() {
    need(1);
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  const ValuePtr& top() const { return stack_.back(); }
  std::vector<ValuePtr> pop_to_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  ValuePtr expect_kind(const ValuePtr& v, Kind kind, const char* what) const {
    if (v->kind != kind) fail(str(what, " is a ", v->describe()));
    return v;
  }

  void memo_put(uint64_t key) {
    need(1);
    memo_[key] = top();
  }
  void memo_get(uint64_t key) {
    const auto it = memo_.find(key);
    if (it == memo_.end()) fail(str("memo key ", key, " was never stored"));
    stack_.push_back(it->second);
  }
  void push_int(int64_t i) {
    auto v = make(Kind::kInt);
    v->integer = i;
    stack_.push_back(v);
  }
  void push_string(std::string s) {
    auto v = make(Kind::kString);
    v->text = std::move(s);
    stack_.push_back(v);
  }
  void push_bytes(std::string b) {
    auto v = make(Kind::kBytes);
    v->bytes = std::make_shared<const std::string>(std::move(b));
    stack_.push_back(v);
  }
  void push_global(const std::string& module, const std::string& name) {
    Callable c;
    if (!lookup_global(module, name, &c)) {
      fail(str("refusing global '", module, ".", name, "' (only the numpy array globals are allowed)"));
    }
    auto v = make(Kind::kGlobal);
    v->text = module + "." + name;
    v->integer = static_cast<int64_t>(c);
    stack_.push_back(v);
  }

  int64_t as_int(const ValuePtr& v, const char* what) const {
    if (v->kind == Kind::kInt) return v->integer;
    if (v->kind == Kind::kBool) return v->boolean ? 1 : 0;
    fail(str(what, " must be an integer, got ", v->describe()));
  }
  std::vector<int64_t> as_shape(const ValuePtr& v) const {
    if (v->kind != Kind::kTuple) fail(str("array shape must be a tuple, got ", v->describe()));
    std::vector<int64_t> shape;
    for (const auto& d : v->items) {
      const int64_t n = as_int(d, "array dimension");
      if (n < 0) fail("negative array dimension");
      shape.push_back(n);
    }
    return shape;
  }
  // The number of bytes an array of this dtype and shape needs, with overflow checks.
  uint64_t array_bytes(const NdArray& a) const {
    uint64_t n = static_cast<uint64_t>(a.itemsize);
    for (int64_t d : a.shape) {
      if (d != 0 && n > UINT64_MAX / static_cast<uint64_t>(d)) fail("array size overflows");
      n *= static_cast<uint64_t>(d);
    }
    return n;
  }
  void set_array_data(NdArray& a, const ValuePtr& data) const {
    if (data->kind != Kind::kBytes) fail(str("array data must be bytes, got ", data->describe()));
    if (a.kind == 0) fail("array has no dtype");
    const uint64_t want = array_bytes(a);
    if (data->bytes->size() != want) {
      fail(str("array ", a.typestr(), " of shape with ", want, " bytes has ", data->bytes->size(), " bytes of data"));
    }
    a.data = data->bytes;
  }
  // Copies kind/itemsize/byteorder from a dtype value into an array.
  void apply_dtype(NdArray& a, const ValuePtr& dtype) const {
    if (dtype->kind != Kind::kDtype) fail(str("array dtype must be a numpy dtype, got ", dtype->describe()));
    a.kind = dtype->array->kind;
    a.itemsize = dtype->array->itemsize;
    a.byteorder = dtype->array->byteorder;
  }

  ValuePtr reduce(const ValuePtr& callable, const ValuePtr& args) {
    if (callable->kind != Kind::kGlobal) fail(str("REDUCE of a ", callable->describe()));
    if (args->kind != Kind::kTuple) fail(str("REDUCE arguments must be a tuple, got ", args->describe()));
    const auto& a = args->items;
    switch (static_cast<Callable>(callable->integer)) {
      case Callable::kReconstruct: {  // _reconstruct(ndarray, (0,), b'b'): an empty array, filled by BUILD
        if (a.size() != 3 || a[0]->kind != Kind::kGlobal || static_cast<Callable>(a[0]->integer) != Callable::kNdarrayType) {
          fail("_reconstruct must be called as _reconstruct(numpy.ndarray, shape, dtype_code)");
        }
        auto v = make(Kind::kArray);
        v->array = std::make_shared<NdArray>();
        return v;
      }
      case Callable::kDtype: {  // dtype(typestr, align, copy): kind and size; BUILD sets the byte order
        if (a.empty() || a.size() > 3 || a[0]->kind != Kind::kString) fail("numpy.dtype must be called with a type string");
        const std::string& t = a[0]->text;
        auto v = make(Kind::kDtype);
        v->array = std::make_shared<NdArray>();
        if (t.size() < 2 || std::string("uifbS").find(t[0]) == std::string::npos ||
            t.find_first_not_of("0123456789", 1) != std::string::npos || t.size() > 12) {
          fail(str("unsupported numpy dtype '", t, "' (supported: u, i, f, b and S types)"));
        }
        v->array->kind = t[0];
        v->array->itemsize = std::stoll(t.substr(1));
        return v;
      }
      case Callable::kEncode: {  // _codecs.encode(text, 'latin1'): protocol-2 bytes
        if (a.size() != 2 || a[0]->kind != Kind::kString || a[1]->kind != Kind::kString) {
          fail("_codecs.encode must be called with (str, encoding)");
        }
        if (a[1]->text != "latin1" && a[1]->text != "latin-1") fail(str("unsupported encoding '", a[1]->text, "'"));
        auto v = make(Kind::kBytes);
        v->bytes = std::make_shared<const std::string>(utf8_to_latin1(a[0]->text));
        return v;
      }
      case Callable::kFromBuffer: {  // _frombuffer(buffer, dtype, shape, order): protocol-5 arrays
        if (a.size() != 4) fail("_frombuffer must be called with (buffer, dtype, shape, order)");
        auto v = make(Kind::kArray);
        v->array = std::make_shared<NdArray>();
        apply_dtype(*v->array, a[1]);
        v->array->shape = as_shape(a[2]);
        if (a[3]->kind != Kind::kString || (a[3]->text != "C" && a[3]->text != "F")) fail("_frombuffer order must be 'C' or 'F'");
        v->array->fortran = a[3]->text == "F";
        set_array_data(*v->array, a[0]);
        return v;
      }
      case Callable::kNdarrayType: break;
    }
    fail(str("refusing to call '", callable->text, "'"));
  }

  void build(const ValuePtr& obj, const ValuePtr& state) {
    if (state->kind != Kind::kTuple) fail(str("BUILD state must be a tuple, got ", state->describe()));
    const auto& s = state->items;
    if (obj->kind == Kind::kArray) {
      // (version, shape, dtype, is_fortran, data) or the older (shape, dtype, is_fortran, data).
      if (s.size() != 5 && s.size() != 4) fail("numpy array state must have 4 or 5 items");
      const size_t o = s.size() - 4;
      NdArray& a = *obj->array;
      a.shape = as_shape(s[o]);
      apply_dtype(a, s[o + 1]);
      a.fortran = as_int(s[o + 2], "is_fortran") != 0;
      set_array_data(a, s[o + 3]);
      return;
    }
    if (obj->kind == Kind::kDtype) {
      // (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]).
      if (s.size() < 6 || s[1]->kind != Kind::kString || s[1]->text.size() != 1) fail("unsupported numpy dtype state");
      if (s[2]->kind != Kind::kNone || s[3]->kind != Kind::kNone) fail("structured or sub-array dtypes are not supported");
      obj->array->byteorder = s[1]->text[0];
      if (std::string("<>|=").find(obj->array->byteorder) == std::string::npos) fail("unknown dtype byte order");
      const int64_t elsize = as_int(s[5], "dtype elsize");
      if (obj->array->kind == 'S' && elsize > 0) obj->array->itemsize = elsize;
      return;
    }
    fail(str("BUILD of a ", obj->describe(), " (only numpy arrays and dtypes can be built)"));
  }

  std::string utf8_to_latin1(const std::string& s) const {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<uint8_t>(s[i]);
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
      } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
        const uint32_t cp = ((c & 0x1Fu) << 6) | (static_cast<uint8_t>(s[++i]) & 0x3Fu);
        if (cp > 0xFF) fail("latin-1 text with a code point above 255");
        out.push_back(static_cast<char>(cp));
      } else {
        fail("latin-1 text with a code point above 255");
      }
    }
    return out;
  }

  const std::string& data_;
  std::string name_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
};

}  // namespace

std::string Value::describe() const {
  switch (kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kTuple: return "tuple";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kGlobal: return "global " + text;
    case Kind::kDtype: return "numpy dtype " + array->typestr();
    case Kind::kArray: {
      std::string s = "numpy array " + array->typestr() + " [";
      for (size_t i = 0; i < array->shape.size(); ++i) s += (i ? "," : "") + std::to_string(array->shape[i]);
      return s + "]";
    }
  }
  return "?";
}

ValuePtr Value::get(const std::string& key) const {
  for (const auto& [k, v] : entries) {
    if (k->kind == Kind::kString && k->text == key) return v;
  }
  return nullptr;
}

torch::Tensor NdArray::to_tensor() const {
  torch::ScalarType dtype;
  if (kind == 'u' && itemsize == 1) {
    dtype = torch::kUInt8;
  } else if (kind == 'b' && itemsize == 1) {
    dtype = torch::kBool;
  } else if (kind == 'i' && itemsize == 1) {
    dtype = torch::kInt8;
  } else if (kind == 'i' && itemsize == 2) {
    dtype = torch::kInt16;
  } else if (kind == 'i' && itemsize == 4) {
    dtype = torch::kInt32;
  } else if (kind == 'i' && itemsize == 8) {
    dtype = torch::kInt64;
  } else if (kind == 'f' && itemsize == 2) {
    dtype = torch::kHalf;
  } else if (kind == 'f' && itemsize == 4) {
    dtype = torch::kFloat32;
  } else if (kind == 'f' && itemsize == 8) {
    dtype = torch::kFloat64;
  } else {
    throw Error("numpy dtype " + typestr() + " has no torch equivalent here");
  }
  // Fortran order: the bytes are the C-order array of the reversed shape, transposed.
  std::vector<int64_t> shape = this->shape;
  if (fortran) std::reverse(shape.begin(), shape.end());
  torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  const size_t n = data ? data->size() : 0;
  T4G_CHECK(n == static_cast<size_t>(t.numel()) * static_cast<size_t>(itemsize), "numpy array data size mismatch");
  if (n > 0) std::memcpy(t.data_ptr(), data->data(), n);
  if (byteorder == '>' && itemsize > 1) {  // big-endian: reverse each element's bytes
    auto* p = static_cast<uint8_t*>(t.data_ptr());
    for (size_t i = 0; i < n; i += static_cast<size_t>(itemsize)) std::reverse(p + i, p + i + itemsize);
  }
  if (dtype == torch::kBool) t = t.view(torch::kUInt8).ne(0);  // numpy bools are bytes 0/1
  if (fortran && t.dim() > 1) {
    std::vector<int64_t> perm(static_cast<size_t>(t.dim()));
    for (int64_t i = 0; i < t.dim(); ++i) perm[static_cast<size_t>(i)] = t.dim() - 1 - i;
    t = t.permute(perm).contiguous();
  }
  return t;
}

std::vector<std::string> NdArray::to_bytes_list() const {
  T4G_CHECK(kind == 'S' && shape.size() == 1, "expected a 1-D numpy bytes array, got ", typestr());
  std::vector<std::string> out;
  for (int64_t i = 0; i < shape[0]; ++i) {
    std::string s = data->substr(static_cast<size_t>(i * itemsize), static_cast<size_t>(itemsize));
    s.erase(s.find_last_not_of('\0') + 1);  // numpy strips trailing NULs when reading an element
    out.push_back(std::move(s));
  }
  return out;
}

ValuePtr load(const std::string& bytes, const std::string& name) {
  Machine machine(bytes, name);
  return machine.run();
}

ValuePtr load_file(const std::string& path) { return load(read_file(path), path); }

}  // namespace t4g::data::pickle
