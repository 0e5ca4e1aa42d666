// Tests of the HDF5 wrappers: every dtype round-trips bit-exactly, chunked + gzip datasets,
// attributes, strings, listing, row reads, atomic create/commit, h5py interop, and errors that
// name the file and the HDF5 path.
#include "common/hdf5.h"

#include <gtest/gtest.h>


#include "common/error.h"
#include "common/fs.h"
#include "tests/testing.h"

namespace t4g::h5 {
namespace {

using t4g::testing::TempDir;

// Expects `fn` to throw a t4g::Error whose message contains every string in `parts`.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    FAIL() << "no error thrown";
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const auto& part : parts) EXPECT_NE(what.find(part), std::string::npos) << "'" << part << "' not in: " << what;
  }
}

TEST(Hdf5, EveryDtypeRoundTripsExactly) {
  TempDir dir;
  const std::string path = dir.file("a.h5");
  torch::manual_seed(0);
  std::map<std::string, torch::Tensor> tensors = {
      {"u8", torch::randint(0, 256, {3, 4}, torch::kUInt8)},
      {"i8", torch::randint(-128, 128, {5}, torch::kInt8)},
      {"i16", torch::randint(-30000, 30000, {2, 2}, torch::kInt16)},
      {"i32", torch::randint(-100000, 100000, {2, 3, 4}, torch::kInt32)},
      {"i64", torch::tensor({int64_t{1} << 40, int64_t{-5}}, torch::kInt64)},
      {"f32", torch::randn({4, 5})},
      {"f64", torch::randn({3}, torch::kFloat64)},
      {"bool", torch::rand({3, 7}) > 0.5},
      {"bf16", torch::randn({6, 2}).to(torch::kBFloat16)},
      {"f16", torch::randn({2, 6}).to(torch::kHalf)},
      {"scalar", torch::tensor(3.5)},
      {"empty", torch::zeros({0, 4})},
  };
  {
    File file = File::create(path);
    Group root = file.root();
    for (const auto& [name, t] : tensors) root.write(name, t);
    file.commit();
  }
  File file = File::open(path);
  Group root = file.root();
  for (const auto& [name, t] : tensors) {
    const torch::Tensor back = root.read(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(back, t)) << name;  // bit-exact: tolerance 0
    EXPECT_EQ(root.dataset(name).info().dtype, t.scalar_type()) << name;
  }
}

TEST(Hdf5, ChunkedGzipCompressesAndReadsRows) {
  TempDir dir;
  const std::string plain = dir.file("plain.h5"), packed = dir.file("packed.h5");
  // Highly compressible frames: constant colour per frame.
  torch::Tensor frames = torch::arange(8, torch::kUInt8).view({8, 1, 1, 1}).expand({8, 64, 64, 3}).contiguous();
  for (const auto& [path, options] : {std::pair<std::string, WriteOptions>{plain, {}},
                                      std::pair<std::string, WriteOptions>{packed, {{1, 64, 64, 3}, 6}}}) {
    File file = File::create(path);
    file.root().write("frames", frames, options);
    file.commit();
  }
  EXPECT_LT(file_size(packed) * 4, file_size(plain));
  File file = File::open(packed);
  Dataset ds = file.root().dataset("frames");
  EXPECT_TRUE(torch::equal(ds.read(), frames));
  EXPECT_TRUE(torch::equal(ds.read_rows(3, 5), frames.slice(0, 3, 5)));
  expect_error([&] { ds.read_rows(7, 9); }, {packed, "/frames", "out of range"});
}

TEST(Hdf5, GroupsAttributesStringsAndChildren) {
  TempDir dir;
  const std::string path = dir.file("g.h5");
  {
    File file = File::create(path);
    Group root = file.root();
    root.set_attr("schema_version", int64_t{3});
    root.set_attr("name", "shards");
    Group videos = root.create_group("videos");
    Group v = videos.create_group("clip-b");
    videos.create_group("clip-a");
    v.set_attr("fps", 8.5);
    v.set_attr("stride", 2);
    v.write_string("prompt", "a red ball rolls left, ünïcödé");
    v.write_strings("tags", {"one", "", "three"});
    Dataset d = v.write("tracks", torch::zeros({2, 3, 2}));
    d.set_attr("units", "pixels");
    root.set_attr("name", "replaced");  // attributes can be overwritten
    file.commit();
  }
  File file = File::open(path);
  Group root = file.root();
  EXPECT_EQ(root.attr_int("schema_version"), 3);
  EXPECT_EQ(root.attr_string("name"), "replaced");
  EXPECT_EQ(root.children(), (std::vector<std::string>{"videos"}));
  Group videos = root.group("videos");
  EXPECT_EQ(videos.children(), (std::vector<std::string>{"clip-a", "clip-b"}));
  Group v = videos.group("clip-b");
  EXPECT_DOUBLE_EQ(v.attr_double("fps"), 8.5);
  EXPECT_DOUBLE_EQ(v.attr_double("stride"), 2.0);  // integers read as double
  EXPECT_EQ(v.attr_names(), (std::vector<std::string>{"fps", "stride"}));
  EXPECT_EQ(v.read_string("prompt"), "a red ball rolls left, ünïcödé");
  EXPECT_EQ(v.read_strings("tags"), (std::vector<std::string>{"one", "", "three"}));
  EXPECT_TRUE(v.has_dataset("tracks"));
  EXPECT_FALSE(v.has_group("tracks"));
  EXPECT_FALSE(v.has("latents"));
  EXPECT_EQ(v.dataset("tracks").attr_string("units"), "pixels");
  EXPECT_TRUE(v.dataset("prompt").info().is_string);
  EXPECT_EQ(v.dataset("tracks").info().shape, (std::vector<int64_t>{2, 3, 2}));
}

TEST(Hdf5, ErrorsNameTheFileAndPath) {
  TempDir dir;
  const std::string path = dir.file("e.h5");
  {
    File file = File::create(path);
    Group g = file.root().create_group("videos");
    g.write("tracks", torch::zeros({2}));
    g.set_attr("fps", 8.0);
    expect_error([&] { g.write("tracks", torch::zeros({2})); }, {path, "/videos/tracks", "already exists"});
    expect_error([&] { g.write("bad/name", torch::zeros({2})); }, {path, "invalid HDF5 child name"});
    expect_error([&] { g.write("c", torch::zeros({2}, torch::kComplexFloat)); }, {path, "/videos/c", "cannot store this dtype"});
    file.commit();
  }
  File file = File::open(path);
  Group g = file.root().group("videos");
  expect_error([&] { g.dataset("frames"); }, {path, "/videos/frames", "missing dataset"});
  expect_error([&] { file.root().group("nothing"); }, {path, "/nothing", "missing group"});
  expect_error([&] { g.attr_string("prompt"); }, {path, "/videos@prompt", "missing attribute"});
  expect_error([&] { g.attr_string("fps"); }, {path, "/videos@fps", "not a string"});
  expect_error([&] { g.read_string("tracks"); }, {path, "/videos/tracks", "not a string"});

  const std::string text = dir.file("text.h5");
  t4g::testing::write_file(text, "this is not hdf5");
  expect_error([&] { File::open(text); }, {text, "not an HDF5 file"});
  expect_error([&] { File::open(dir.file("missing.h5")); }, {"missing.h5", "no such file"});
  // A truncated file keeps its signature but loses its body.
  const std::string whole = t4g::testing::read_file(path);
  const std::string cut = dir.file("cut.h5");
  t4g::testing::write_file(cut, whole.substr(0, 200));
  expect_error([&] { File::open(cut).root().group("videos").read("tracks"); }, {cut});
}

TEST(Hdf5, UncommittedCreateLeavesNothingBehind) {
  TempDir dir;
  const std::string path = dir.file("x.h5");
  {
    File file = File::create(path);
    file.root().write("a", torch::ones({4}));
    EXPECT_FALSE(path_exists(path));  // written under a temporary name
  }
  EXPECT_FALSE(path_exists(path));
  EXPECT_TRUE(list_dir(dir.path()).empty());
  // Replacing an existing file: the old one stays intact until commit.
  {
    File file = File::create(path);
    file.root().write("a", torch::ones({4}));
    file.commit();
  }
  {
    File file = File::create(path);
    file.root().write("a", torch::zeros({4}));
  }
  EXPECT_TRUE(torch::equal(File::open(path).root().read("a"), torch::ones({4})));
}

TEST(Hdf5, ReadsWhatH5pyWrote) {
  // Made by tests/fixtures/hdf5/make_fixture.py (h5py); values restated here exactly.
  const std::string path = t4g::testing::fixture("hdf5/h5py_sample.h5");
  File file = File::open(path);
  Group root = file.root();
  EXPECT_EQ(root.attr_string("title"), "made by h5py");
  EXPECT_EQ(root.attr_int("count"), 7);
  EXPECT_DOUBLE_EQ(root.attr_double("scale"), 0.25);
  Group v = root.group("video");
  EXPECT_TRUE(torch::equal(v.read("frames"), torch::arange(72, torch::kInt64).remainder(256).to(torch::kUInt8).view({2, 3, 4, 3})));
  const torch::Tensor visible = v.read("visible");
  EXPECT_EQ(visible.scalar_type(), torch::kBool);
  EXPECT_TRUE(torch::equal(visible, torch::tensor({true, false, true, false, false, true}).view({2, 3})));
  EXPECT_TRUE(torch::equal(v.read("tracks"), (torch::arange(12, torch::kFloat32) * 0.5 - 1.0).view({2, 3, 2})));
  EXPECT_EQ(v.read_string("prompt"), "a red ball");
  EXPECT_EQ(v.read_strings("names"), (std::vector<std::string>{"alpha", "beta"}));
}

TEST(Hdf5, ConcurrentWritersInSeparateFiles) {
  TempDir dir;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      File file = File::create(dir.file("t" + std::to_string(i) + ".h5"));
      for (int k = 0; k < 20; ++k) file.root().write("d" + std::to_string(k), torch::full({16}, i * 100 + k));
      file.commit();
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) {
    File file = File::open(dir.file("t" + std::to_string(i) + ".h5"));
    for (int k = 0; k < 20; ++k) {
      EXPECT_TRUE(torch::equal(file.root().read("d" + std::to_string(k)), torch::full({16}, i * 100 + k)));
    }
  }
}

}  // namespace
}  // namespace t4g::h5
