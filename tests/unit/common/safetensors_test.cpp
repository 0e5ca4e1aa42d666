// safetensors round trips (every dtype bit-exact, non-contiguous, empty, 0-d, metadata), memory
// mapping (aliasing, lifetime, copy-on-write), sharded write/read, and header validation: every
// malformed file must give one t4g::Error naming the file (and the tensor where there is one).
// Tolerance: none anywhere; every comparison is bit-exact (torch::equal on raw bytes).
#include "common/safetensors.h"
#include "common/fs.h"

#include <gtest/gtest.h>


#include "common/error.h"
#include "tests/testing.h"


namespace t4g {
namespace {

using testing::TempDir;

// The raw bytes of a tensor, for bit-exact comparison of any dtype (NaN payloads included).
torch::Tensor raw_bytes(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous();
  return torch::from_blob(c.data_ptr(), {static_cast<int64_t>(c.numel() * c.element_size())}, torch::kUInt8).clone();
}

void expect_bit_equal(const torch::Tensor& a, const torch::Tensor& b, const std::string& name) {
  EXPECT_EQ(a.scalar_type(), b.scalar_type()) << name;
  EXPECT_EQ(a.sizes(), b.sizes()) << name;
  EXPECT_TRUE(torch::equal(raw_bytes(a), raw_bytes(b))) << name;
}

// A file from a header text and data bytes; `length` overrides the 8-byte header length.
std::string file_bytes(const std::string& header, const std::string& data, int64_t length = -1) {
  uint64_t n = length < 0 ? header.size() : static_cast<uint64_t>(length);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// Opens `bytes` as a file and returns the error message, or "" when it opened.
std::string open_error(const TempDir& dir, const std::string& bytes) {
  const std::string path = dir.file("bad.safetensors");
  testing::write_file(path, bytes);
  try {
    SafetensorsFile file(path);
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().file, path);
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    return e.what();
  }
}

std::map<std::string, torch::Tensor> every_dtype() {
  torch::manual_seed(3);
  std::map<std::string, torch::Tensor> t;
  const auto base = torch::randn({3, 5}, torch::kFloat64) * 100;
  t["f64"] = base;
  t["f32"] = base.to(torch::kFloat32);
  t["f16"] = base.to(torch::kFloat16);
  t["bf16"] = base.to(torch::kBFloat16);
  t["i64"] = torch::randint(-(1LL << 40), 1LL << 40, {4, 2}, torch::kInt64);
  t["i32"] = torch::randint(-100000, 100000, {7}, torch::kInt32);
  t["i16"] = torch::randint(-30000, 30000, {7}, torch::kInt16);
  t["i8"] = torch::randint(-128, 127, {9}, torch::kInt8);
  t["u8"] = torch::randint(0, 255, {9}, torch::kUInt8);
  t["bool"] = torch::randint(0, 2, {2, 3}, torch::kInt64).to(torch::kBool);
  t["u16"] = torch::randint(0, 65535, {5}, torch::kInt64).to(torch::kUInt16);
  t["u32"] = torch::randint(0, 1LL << 32, {5}, torch::kInt64).to(torch::kUInt32);
  t["u64"] = torch::randint(0, 1LL << 62, {5}, torch::kInt64).to(torch::kUInt64);
  t["f8_e4m3"] = base.to(torch::kFloat32).clamp(-400, 400).to(torch::kFloat8_e4m3fn);
  t["f8_e5m2"] = base.to(torch::kFloat32).to(torch::kFloat8_e5m2);
  t["f8_e8m0"] = base.abs().to(torch::kFloat32).add(1).to(torch::kFloat8_e8m0fnu);
  t["c64"] = torch::complex(base.to(torch::kFloat32), -base.to(torch::kFloat32));
  return t;
}

TEST(SafetensorsDtype, NamesRoundTrip) {
  for (const char* name : {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "U16", "U32", "U64",
                           "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C64"}) {
    EXPECT_EQ(dtype_to_safetensors(dtype_from_safetensors(name)), name);
  }
  EXPECT_EQ(dtype_from_safetensors("BF16"), torch::kBFloat16);
  EXPECT_EQ(safetensors_dtype_size("BF16"), 2u);
  EXPECT_EQ(safetensors_dtype_size("C64"), 8u);
  EXPECT_THROW(dtype_from_safetensors("f32"), Error);
  EXPECT_THROW(dtype_from_safetensors("F4"), Error);
  EXPECT_THROW(dtype_to_safetensors(torch::kComplexDouble), Error);
}

TEST(Safetensors, EveryDtypeRoundTripsBitExact) {
  TempDir dir;
  const auto tensors = every_dtype();
  save_safetensors(dir.file("all.safetensors"), tensors);
  const auto loaded = load_safetensors(dir.file("all.safetensors"));
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, t] : tensors) expect_bit_equal(loaded.at(name), t, name);
}

TEST(Safetensors, SpecialFloatValuesBitExact) {
  TempDir dir;
  // NaN, infinities, -0 and subnormals must survive unchanged in f16 and bf16.
  const std::vector<uint16_t> patterns = {0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0x0001, 0x03ff, 0x7bff,
                                          0xffff, 0x7f80, 0xff80, 0x7fc0, 0x0080, 0x007f};
  auto bits = torch::tensor(std::vector<int64_t>(patterns.begin(), patterns.end())).to(torch::kInt16);
  std::map<std::string, torch::Tensor> tensors{{"f16", bits.view(torch::kFloat16)}, {"bf16", bits.view(torch::kBFloat16)}};
  save_safetensors(dir.file("special.safetensors"), tensors);
  const auto loaded = load_safetensors(dir.file("special.safetensors"));
  for (const auto& [name, t] : tensors) {
    EXPECT_TRUE(torch::equal(loaded.at(name).view(torch::kInt16), bits)) << name;
  }
}

TEST(Safetensors, NonContiguousEmptyAndScalar) {
  TempDir dir;
  const auto base = torch::arange(24, torch::kFloat32).reshape({2, 3, 4});
  std::map<std::string, torch::Tensor> tensors{
      {"transposed", base.transpose(0, 2)},            // non-contiguous view
      {"strided", base.index({torch::indexing::Slice(), torch::indexing::Slice(), torch::indexing::Slice(0, 4, 2)})},
      {"empty", torch::zeros({0, 5}, torch::kFloat16)},
      {"empty_1d", torch::zeros({0}, torch::kInt64)},
      {"scalar", torch::tensor(2.5, torch::kFloat64)},
      {"scalar_bool", torch::tensor(true)},
  };
  ASSERT_FALSE(tensors["transposed"].is_contiguous());
  save_safetensors(dir.file("shapes.safetensors"), tensors);
  const auto loaded = load_safetensors(dir.file("shapes.safetensors"));
  for (const auto& [name, t] : tensors) expect_bit_equal(loaded.at(name), t.contiguous(), name);
  EXPECT_EQ(loaded.at("scalar").dim(), 0);
  EXPECT_EQ(loaded.at("empty").sizes(), (std::vector<int64_t>{0, 5}));
  SafetensorsFile file(dir.file("shapes.safetensors"));
  EXPECT_EQ(file.info("scalar").numel(), 1);
  EXPECT_EQ(file.info("empty").nbytes(), 0u);
}

TEST(Safetensors, MetadataRoundTrips) {
  TempDir dir;
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"step", "1200"}, {"note", "ünïcode \"q\""}};
  save_safetensors(dir.file("m.safetensors"), {{"x", torch::ones({2})}}, metadata);
  SafetensorsFile file(dir.file("m.safetensors"));
  EXPECT_EQ(file.metadata(), metadata);
  save_safetensors(dir.file("none.safetensors"), {{"x", torch::ones({2})}});
  EXPECT_TRUE(SafetensorsFile(dir.file("none.safetensors")).metadata().empty());
}

TEST(Safetensors, WriterLayoutIsAlignedAndPadded) {
  TempDir dir;
  // A 3-byte tensor sorted first by name would misalign the f64 after it; the reference order
  // (largest element first) keeps every tensor aligned.
  save_safetensors(dir.file("a.safetensors"),
                   {{"a_u8", torch::ones({3}, torch::kUInt8)}, {"b_f64", torch::ones({2}, torch::kFloat64)},
                    {"c_f16", torch::ones({1}, torch::kFloat16)}});
  const std::string bytes = testing::read_file(dir.file("a.safetensors"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.substr(8, n).find("{\"b_f64\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"), 0u);
  const std::string header = bytes.substr(8, n);
  const size_t close = header.rfind('}');
  EXPECT_LT(n - 1 - close, 8u);
  EXPECT_EQ(header.substr(close + 1), std::string(n - 1 - close, ' ')) << "padding is spaces";
  SafetensorsFile file(dir.file("a.safetensors"));
  EXPECT_EQ(file.names(), (std::vector<std::string>{"b_f64", "c_f16", "a_u8"}));
}

TEST(Safetensors, MmapAliasesAndOutlivesTheFile) {
  TempDir dir;
  save_safetensors(dir.file("w.safetensors"), {{"w", torch::arange(1000, torch::kFloat32)}});
  torch::Tensor a, b;
  {
    SafetensorsFile file(dir.file("w.safetensors"));
    a = file.tensor("w");
    b = file.tensor("w");
    EXPECT_EQ(a.data_ptr(), b.data_ptr()) << "zero copy: both alias the one mapping";
  }
  // The file object is gone; the mapping lives on through the tensors' deleters.
  EXPECT_EQ(a[999].item<float>(), 999.0f);
  // Private mapping: writing changes this process's pages, never the file.
  a.mul_(2);
  EXPECT_EQ(b[10].item<float>(), 20.0f) << "b aliases a";
  EXPECT_EQ(load_safetensors(dir.file("w.safetensors")).at("w")[10].item<float>(), 10.0f);
}

TEST(Safetensors, MisalignedTensorIsCopied) {
  TempDir dir;
  // Hand-made: a 1-byte tensor first, so the f32 starts at an odd data offset.
  const std::string header =
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  std::string data(9, '\0');
  const float values[2] = {1.5f, -2.0f};
  std::memcpy(&data[1], values, 8);
  data[0] = 7;
  testing::write_file(dir.file("m.safetensors"), file_bytes(header, data));
  SafetensorsFile file(dir.file("m.safetensors"));
  const auto b = file.tensor("b");
  EXPECT_EQ(b[0].item<float>(), 1.5f);
  EXPECT_EQ(b[1].item<float>(), -2.0f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data_ptr()) % 4, 0u);
  EXPECT_EQ(file.tensor("a")[0].item<uint8_t>(), 7);
}

TEST(Safetensors, AtomicWriteLeavesNoTemporaryOnError) {
  TempDir dir;
  std::map<std::string, torch::Tensor> bad{{"ok", torch::ones({2})}, {"bad", torch::ones({2}, torch::kComplexDouble)}};
  EXPECT_THROW(save_safetensors(dir.file("x.safetensors"), bad), Error);
  EXPECT_TRUE(list_dir(dir.path()).empty());
  EXPECT_THROW(save_safetensors(dir.file("y.safetensors"), {{"__metadata__", torch::ones({1})}}), Error);
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

TEST(Safetensors, UnknownTensorNameNamesFileAndTensor) {
  TempDir dir;
  save_safetensors(dir.file("w.safetensors"), {{"w", torch::ones({1})}});
  SafetensorsFile file(dir.file("w.safetensors"));
  try {
    file.tensor("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("w.safetensors"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
}

// ---- header validation ----------------------------------------------------------------------

TEST(SafetensorsValidation, TruncatedAndTinyFiles) {
  TempDir dir;
  EXPECT_NE(open_error(dir, "").find("file too small"), std::string::npos);
  EXPECT_NE(open_error(dir, "\x10\0\0").find("file too small"), std::string::npos);
  save_safetensors(dir.file("good.safetensors"), {{"w", torch::ones({16})}});
  const std::string good = testing::read_file(dir.file("good.safetensors"));
  EXPECT_EQ(open_error(dir, good), "");
  // Cut inside the data: the last tensor's end is past the end of the file.
  std::string msg = open_error(dir, good.substr(0, good.size() - 3));
  EXPECT_NE(msg.find("past the end of the file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor w"), std::string::npos) << msg;
  // Cut inside the header.
  msg = open_error(dir, good.substr(0, 20));
  EXPECT_NE(msg.find("header length larger than the file"), std::string::npos) << msg;
}

TEST(SafetensorsValidation, HugeHeaderLength) {
  TempDir dir;
  for (int64_t length : {int64_t{1} << 62, int64_t{100000001}, INT64_MAX}) {
    const std::string msg = open_error(dir, file_bytes("{}", "", length));
    EXPECT_NE(msg.find("header length too large"), std::string::npos) << msg;
  }
  // 2^63 and 2^64-1 do not fit int64; write the bytes directly.
  std::string bytes(8, '\xff');
  EXPECT_NE(open_error(dir, bytes + "{}").find("header length too large"), std::string::npos);
  bytes = std::string(7, '\0') + "\x80";
  EXPECT_NE(open_error(dir, bytes + "{}").find("header length too large"), std::string::npos);
}

TEST(SafetensorsValidation, OffsetsOverlapGapsAndTrailingBytes) {
  TempDir dir;
  std::string msg = open_error(dir, file_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                               R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                                               "abc"));
  EXPECT_NE(msg.find("overlap tensor 'a'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor b"), std::string::npos) << msg;
  // Two tensors claiming the same bytes.
  msg = open_error(dir, file_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                   R"("b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                                   "ab"));
  EXPECT_NE(msg.find("overlap"), std::string::npos) << msg;
  msg = open_error(dir, file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", "ab"));
  EXPECT_NE(msg.find("belong to no tensor"), std::string::npos) << msg;
  msg = open_error(dir, file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "ab"));
  EXPECT_NE(msg.find("belong to no tensor"), std::string::npos) << msg;
  msg = open_error(dir, file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[2,1]}})", "ab"));
  EXPECT_NE(msg.find("begin <= end"), std::string::npos) << msg;
  msg = open_error(dir, file_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "ab"));
  EXPECT_NE(msg.find("past the end of the file"), std::string::npos) << msg;
  msg = open_error(dir, file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551615]}})", "a"));
  EXPECT_NE(msg.find("past the end of the file"), std::string::npos) << msg;
  // Zero-size tensors may share an offset.
  EXPECT_EQ(open_error(dir, file_bytes(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
                                       R"("b":{"dtype":"F32","shape":[0,2],"data_offsets":[0,0]}})",
                                       "")),
            "");
}

TEST(SafetensorsValidation, SizeMustMatchShapeAndDtype) {
  TempDir dir;
  std::string msg = open_error(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})",
                                               std::string(8, '\0')));
  EXPECT_NE(msg.find("do not match shape and dtype"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 16 bytes for F32 [2,2]"), std::string::npos) << msg;
  // Element count overflow: 2^32 * 2^32.
  msg = open_error(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""));
  EXPECT_NE(msg.find("overflows"), std::string::npos) << msg;
  // Byte count overflow: 2^62 elements of 8 bytes.
  msg = open_error(dir, file_bytes(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""));
  EXPECT_NE(msg.find("overflows"), std::string::npos) << msg;
}

TEST(SafetensorsValidation, BadEntries) {
  TempDir dir;
  const auto err = [&](const std::string& header) { return open_error(dir, file_bytes(header, std::string(4, '\0'))); };
  std::string msg = err(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})");
  EXPECT_NE(msg.find("unknown dtype"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'F33'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor w"), std::string::npos) << msg;
  msg = err(R"({"w":{"dtype":"F4","shape":[8],"data_offsets":[0,4]}})");
  EXPECT_NE(msg.find("sub-byte"), std::string::npos) << msg;
  EXPECT_NE(err(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})").find("invalid shape"), std::string::npos);
  EXPECT_NE(err(R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})").find("invalid shape"), std::string::npos);
  EXPECT_NE(err(R"({"w":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})").find("no shape"), std::string::npos);
  EXPECT_NE(err(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})").find("no shape"), std::string::npos);
  EXPECT_NE(err(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,4]}})").find("invalid data_offsets"),
            std::string::npos);
  EXPECT_NE(err(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})").find("invalid data_offsets"),
            std::string::npos);
  EXPECT_NE(err(R"({"w":{"shape":[1],"data_offsets":[0,4]}})").find("no dtype"), std::string::npos);
  EXPECT_NE(err(R"({"w":5})").find("not an object"), std::string::npos);
  EXPECT_NE(err(R"({"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})")
                .find("metadata values must be strings"),
            std::string::npos);
  // Accepted like the reference: extra fields in an entry, null metadata, trailing spaces.
  EXPECT_EQ(err(R"({"__metadata__":null,"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}   )"), "");
}

TEST(SafetensorsValidation, MalformedJsonAndDuplicateKeys) {
  TempDir dir;
  std::string msg = open_error(dir, file_bytes(R"({"w":{"dtype":"F32",)", ""));
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  msg = open_error(dir, file_bytes("[1,2]", ""));
  EXPECT_NE(msg.find("not a JSON object"), std::string::npos) << msg;
  msg = open_error(dir, file_bytes(std::string("{}\0\0", 4), ""));
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  msg = open_error(dir, file_bytes("{\"\xff\xfe\":1}", ""));
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  // Stricter than the reference: a repeated name is an error, not "the last one wins".
  msg = open_error(dir, file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                   R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                                   "x"));
  EXPECT_NE(msg.find("appears twice"), std::string::npos) << msg;
  EXPECT_EQ(open_error(dir, file_bytes("{}", "")), "") << "an empty file of tensors is valid";
}

// ---- folders and shards ---------------------------------------------------------------------

std::map<std::string, torch::Tensor> model_like() {
  std::map<std::string, torch::Tensor> t;
  for (int i = 0; i < 4; ++i) {
    t["blocks." + std::to_string(i) + ".weight"] = torch::full({8, 8}, static_cast<float>(i));  // 256 bytes
    t["blocks." + std::to_string(i) + ".bias"] = torch::full({8}, static_cast<float>(-i));      // 32 bytes
  }
  t["big"] = torch::arange(200, torch::kFloat32);  // 800 bytes: larger than the limit below
  return t;
}

TEST(SafetensorsShards, WriteAndReadBack) {
  TempDir dir;
  const auto tensors = model_like();
  save_sharded_safetensors(dir.path(), "diffusion_pytorch_model", tensors, 600);
  const std::string index = dir.file("diffusion_pytorch_model.safetensors.index.json");
  ASSERT_TRUE(path_exists(index));
  SafetensorsCheckpoint ckpt(dir.path());
  EXPECT_EQ(ckpt.index_path(), index);
  EXPECT_GT(ckpt.files().size(), 2u);
  // "big" (800 > 600 bytes) sorts first and gets a shard of its own.
  EXPECT_EQ(file_name(ckpt.file_of("big")), "diffusion_pytorch_model-00001-of-0000" +
                                                          std::to_string(ckpt.files().size()) + ".safetensors");
  ASSERT_EQ(ckpt.names().size(), tensors.size());
  for (const auto& [name, t] : tensors) expect_bit_equal(ckpt.tensor(name), t, name);
  for (const auto& file : ckpt.files()) {
    EXPECT_EQ(SafetensorsFile(file).metadata().at("format"), "pt");
  }
  // The same through the index path itself.
  EXPECT_EQ(SafetensorsCheckpoint(index).names(), ckpt.names());
}

TEST(SafetensorsShards, RewriteRemovesStaleFiles) {
  TempDir dir;
  save_sharded_safetensors(dir.path(), "model", model_like(), 600);
  const size_t shards = SafetensorsCheckpoint(dir.path()).files().size();
  ASSERT_GT(shards, 2u);
  save_sharded_safetensors(dir.path(), "model", {{"only", torch::ones({3})}}, 600);
  std::vector<std::string> names;
  for (const auto& name : list_dir(dir.path())) names.push_back(name);
  EXPECT_EQ(names, std::vector<std::string>{"model.safetensors"});
  save_sharded_safetensors(dir.path(), "model", model_like(), 600);
  EXPECT_FALSE(path_exists(dir.file("model.safetensors")));
  EXPECT_EQ(SafetensorsCheckpoint(dir.path()).files().size(), shards);
}

TEST(SafetensorsShards, IndexProblemsNameTheIndexAndTensor) {
  TempDir dir;
  save_sharded_safetensors(dir.path(), "model", model_like(), 600);
  const std::string index = dir.file("model.safetensors.index.json");
  const std::string original = testing::read_file(index);
  const auto expect_error = [&](const std::string& text, const std::string& needle) {
    testing::write_file(index, text);
    try {
      SafetensorsCheckpoint ckpt(dir.path());
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("model.safetensors.index.json"), std::string::npos) << e.what();
    }
  };
  // A shard that does not exist.
  std::string text = original;
  text.replace(text.find("model-00002-of"), 14, "model-00009-of");
  expect_error(text, "does not exist");
  // A tensor listed in the wrong shard.
  text = original;
  const auto pos = text.find("\"blocks.0.bias\": \"") + 18;
  const std::string file = text.substr(pos, text.find('"', pos) - pos);
  const auto big = text.find("\"big\": \"") + 8;
  const std::string other = text.substr(big, text.find('"', big) - big);  // the shard holding only "big"
  ASSERT_NE(file, other);
  text.replace(pos, file.size(), other);
  expect_error(text, "does not hold it");
  // A tensor a shard holds but the index omits.
  text = original;
  const auto line = text.find("    \"blocks.1.bias\"");
  text.erase(line, text.find('\n', line) + 1 - line);
  expect_error(text, "does not list it");
  expect_error("{\"weight_map\": 3}", "weight_map");
  expect_error("{\"weight_map\": {\"a\": \"../x.safetensors\"}}", "plain name");
  expect_error("{not json", "not valid JSON");
}

TEST(SafetensorsShards, FolderResolution) {
  TempDir dir;
  EXPECT_EQ(find_safetensors_in_folder(dir.path()), "");
  EXPECT_THROW(SafetensorsCheckpoint{dir.path()}, Error);
  save_safetensors(dir.file("refiner.safetensors"), {{"r", torch::ones({1})}});
  EXPECT_EQ(find_safetensors_in_folder(dir.path()), dir.file("refiner.safetensors"));
  // The backbone's standard name wins over our file beside it.
  save_safetensors(dir.file("diffusion_pytorch_model.safetensors"), {{"w", torch::ones({1})}});
  EXPECT_EQ(find_safetensors_in_folder(dir.path()), dir.file("diffusion_pytorch_model.safetensors"));
  TempDir two;
  save_safetensors(two.file("a.safetensors"), {{"r", torch::ones({1})}});
  save_safetensors(two.file("b.safetensors"), {{"r", torch::ones({1})}});
  EXPECT_THROW(find_safetensors_in_folder(two.path()), Error);
}

}  // namespace
}  // namespace t4g
