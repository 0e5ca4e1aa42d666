// Tests of HDF5 shards and `prepare`: exact round trips (optional tensors included), the index,
// validation errors that name file/group/dataset, resumable parallel preparation, and TAP-Vid
// conversion.
#include "data/shards.h"
#include "common/fs.h"

#include <gtest/gtest.h>


#include "common/error.h"
#include "common/hdf5.h"
#include "data/prepare.h"
#include "data/tapvid.h"
#include "tests/testing.h"

namespace t4g::data {
namespace {

using t4g::testing::TempDir;

using t4g::testing::error_of;

ShardVideo make_video(const std::string& id, int64_t F = 3, int64_t N = 5) {
  ShardVideo v;
  v.id = id;
  v.frames = torch::randint(0, 256, {F, 8, 10, 3}, torch::kUInt8);
  v.tracks = torch::rand({N, F, 2}) * 8;
  v.visibility = torch::rand({N, F}) > 0.3;
  v.prompt = "a " + id;
  v.source = "test:" + id;
  v.fps = 8;
  v.stride = 2;
  return v;
}

void expect_same(const ShardVideo& a, const ShardVideo& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_TRUE(torch::equal(a.frames, b.frames));  // exact
  EXPECT_TRUE(torch::equal(a.tracks, b.tracks));
  EXPECT_TRUE(torch::equal(a.visibility, b.visibility));
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.fps, b.fps);
  EXPECT_EQ(a.stride, b.stride);
  EXPECT_EQ(a.latents.defined(), b.latents.defined());
  if (a.latents.defined()) {
    EXPECT_TRUE(torch::equal(a.latents, b.latents));
  }
  EXPECT_EQ(a.text_embedding.defined(), b.text_embedding.defined());
  if (a.text_embedding.defined()) {
    EXPECT_TRUE(torch::equal(a.text_embedding, b.text_embedding));
  }
}

TEST(Shards, RoundTripWithIndexAndOptionalTensors) {
  TempDir dir;
  torch::manual_seed(3);
  ShardVideo a = make_video("clip-a"), b = make_video("clip-b", 4, 0), c = make_video("clip-c");
  a.latents = torch::randn({1, 16, 2, 2}).to(torch::kBFloat16);
  a.text_embedding = torch::randn({7, 12});
  write_shard(dir.file("s-00000.h5"), {a, b});
  write_shard(dir.file("s-00001.h5"), {c});
  const auto entries = write_shard_index(dir.path());
  ASSERT_EQ(entries.size(), 3u);
  const ShardReader reader(dir.path());
  ASSERT_EQ(reader.size(), 3u);
  EXPECT_EQ(reader.entry("clip-c").shard, "s-00001.h5");
  EXPECT_EQ(reader.entry("clip-b").frames, 4);
  EXPECT_EQ(reader.entry("clip-b").tracks, 0);
  EXPECT_TRUE(reader.entry("clip-a").has_latents);
  EXPECT_FALSE(reader.entry("clip-b").has_text_embedding);
  EXPECT_NEAR(reader.entry("clip-a").visible_fraction, a.visibility.to(torch::kFloat64).mean().item<double>(), 1e-12);
  expect_same(reader.read("clip-a"), a);
  expect_same(reader.read("clip-b"), b);
  expect_same(reader.read(2), c);
  EXPECT_NE(error_of([&] { reader.read("nope"); }).find("no video with this id"), std::string::npos);

  const ShardSummary s = summarize_shards(dir.path());
  EXPECT_EQ(s.shards, 2);
  EXPECT_EQ(s.videos, 3);
  EXPECT_EQ(s.frames, 10);
  EXPECT_EQ(s.tracks, 10);
  EXPECT_EQ(s.with_latents, 1);
  EXPECT_EQ(s.sizes.at("8x10"), 3);
  const std::string text = format_shard_summary(dir.path(), s);
  EXPECT_NE(text.find("videos: 3, frames: 10"), std::string::npos) << text;
}

TEST(Shards, BadVideosAreRefusedBeforeWriting) {
  TempDir dir;
  ShardVideo v = make_video("x");
  v.tracks[0][1][0] = std::numeric_limits<float>::quiet_NaN();
  std::string err = error_of([&] { write_shard(dir.file("a.h5"), {v}); });
  EXPECT_NE(err.find("tracks"), std::string::npos) << err;
  EXPECT_NE(err.find("1 NaN or infinite"), std::string::npos) << err;
  // A visible point outside the 10x8 frame is refused; the same point occluded is fine.
  v = make_video("x");
  v.tracks[1][2][0] = 10.5f;
  v.visibility[1][2] = true;
  err = error_of([&] { write_shard(dir.file("a.h5"), {v}); });
  EXPECT_NE(err.find("1 visible points outside it"), std::string::npos) << err;
  v.visibility[1][2] = false;
  EXPECT_EQ(error_of([&] { write_shard(dir.file("b.h5"), {v}); }), "");
  remove_all(dir.file("b.h5"));
  v = make_video("x");
  v.frames = v.frames.to(torch::kFloat32);
  err = error_of([&] { write_shard(dir.file("a.h5"), {v}); });
  EXPECT_NE(err.find("frames"), std::string::npos) << err;
  EXPECT_NE(err.find("expected uint8"), std::string::npos) << err;
  v = make_video("x");
  v.visibility = v.visibility.slice(1, 0, 2);
  EXPECT_NE(error_of([&] { write_shard(dir.file("a.h5"), {v}); }).find("visibility"), std::string::npos);
  v = make_video("a/b");
  EXPECT_NE(error_of([&] { write_shard(dir.file("a.h5"), {v}); }).find("invalid video id"), std::string::npos);
  EXPECT_NE(error_of([&] { write_shard(dir.file("a.h5"), {make_video("d"), make_video("d")}); }).find("duplicate"),
            std::string::npos);
  EXPECT_TRUE(list_dir(dir.path()).empty()) << "nothing half-written";
}

TEST(Shards, CorruptNewerAndInconsistentShardsAreNamed) {
  TempDir dir;
  write_shard(dir.file("a.h5"), {make_video("one")});
  write_shard(dir.file("b.h5"), {make_video("two")});
  write_shard_index(dir.path());
  // A newer schema version.
  {
    h5::File f = h5::File::open(dir.file("b.h5"), h5::OpenMode::kReadWrite);
    f.root().set_attr("schema_version", int64_t{2});
  }
  const ShardReader reader(dir.path());
  std::string err = error_of([&] { reader.read("two"); });
  EXPECT_NE(err.find("b.h5"), std::string::npos) << err;
  EXPECT_NE(err.find("newer t4g (schema version 2)"), std::string::npos) << err;
  EXPECT_NE(error_of([&] { write_shard_index(dir.path()); }).find("newer t4g"), std::string::npos);
  // A truncated shard.
  const std::string bytes = t4g::testing::read_file(dir.file("a.h5"));
  t4g::testing::write_file(dir.file("a.h5"), bytes.substr(0, bytes.size() / 2));
  err = error_of([&] { reader.read("one"); });
  EXPECT_NE(err.find("a.h5"), std::string::npos) << err;
  // A dataset removed from a video group.
  write_shard(dir.file("c.h5"), {make_video("three")});
  {
    h5::File f = h5::File::create(dir.file("c.h5"));
    h5::Group g = f.root();
    g.set_attr("format", "t4g-shards");
    g.set_attr("schema_version", int64_t{1});
    h5::Group v = g.create_group("videos").create_group("three");
    v.write("frames", torch::zeros({1, 2, 2, 3}, torch::kUInt8));
    f.commit();
  }
  err = error_of([&] { read_shard_header(dir.file("c.h5")); });
  EXPECT_NE(err.find("c.h5: /videos/three/tracks: missing dataset"), std::string::npos) << err;
  // A broken index.
  t4g::testing::write_file(dir.file("index.json"), "{\"format\": \"t4g-shards\", \"schema_version\": 1, \"videos\": [{\"id\": 3}]}");
  err = error_of([&] { ShardReader r(dir.path()); });
  EXPECT_NE(err.find("index.json: videos[0]: malformed index entry"), std::string::npos) << err;
}

PrepareOptions small_prepare(const std::string& out) {
  PrepareOptions o;
  o.out = out;
  o.synthetic = 5;
  o.seed = 9;
  o.jobs = 2;
  o.videos_per_shard = 2;
  o.synthetic_options.frames = 4;
  o.synthetic_options.height = 24;
  o.synthetic_options.width = 32;
  o.synthetic_options.grid_step = 8;
  return o;
}

TEST(Prepare, SyntheticParallelAndResumable) {
  TempDir dir;
  const PrepareOptions o = small_prepare(dir.path());
  PrepareReport r = prepare_dataset(o);
  EXPECT_EQ(r.shards_written, 3);
  EXPECT_EQ(r.videos_written, 5);
  EXPECT_EQ(r.dataset_videos, 5);
  const ShardReader reader(dir.path());
  ASSERT_EQ(reader.size(), 5u);
  // Each stored video is exactly the generator's output for its derived seed.
  for (int64_t i = 0; i < 5; ++i) {
    const ShardVideo v = reader.read(static_cast<size_t>(i));
    const SyntheticVideo g = generate_synthetic_video(o.synthetic_options, synthetic_video_seed(o.seed, i));
    EXPECT_TRUE(torch::equal(v.frames, g.frames));
    EXPECT_TRUE(torch::equal(v.tracks, g.tracks));
    EXPECT_TRUE(torch::equal(v.visibility, g.visibility));
    EXPECT_EQ(v.prompt, g.prompt);
  }
  // Rerun: everything is skipped and nothing is rewritten.
  const auto before = t4g::testing::modification_time_ns(dir.file("synthetic-00001.h5"));
  r = prepare_dataset(o);
  EXPECT_EQ(r.shards_written, 0);
  EXPECT_EQ(r.shards_skipped, 3);
  EXPECT_EQ(t4g::testing::modification_time_ns(dir.file("synthetic-00001.h5")), before);
  // A lost shard is remade, the rest kept; asking for more videos remakes only the partial shard.
  remove_all(dir.file("synthetic-00000.h5"));
  PrepareOptions more = o;
  more.synthetic = 6;
  r = prepare_dataset(more);
  EXPECT_EQ(r.shards_written, 2);  // 00000 (lost) and 00002 (had 1 video, now 2)
  EXPECT_EQ(r.shards_skipped, 1);
  EXPECT_EQ(ShardReader(dir.path()).size(), 6u);
  // A different recipe in the same folder is refused, naming the shard.
  PrepareOptions other = o;
  other.seed = 10;
  const std::string err = error_of([&] { prepare_dataset(other); });
  EXPECT_NE(err.find("synthetic-00000.h5"), std::string::npos) << err;
  EXPECT_NE(err.find("another recipe"), std::string::npos) << err;
  // No temporaries left behind.
  for (const auto& name : list_dir(dir.path())) EXPECT_EQ(name.find(".tmp-"), std::string::npos) << name;
}

TEST(Prepare, ConvertsTapVidToShards) {
  TempDir dir;
  PrepareOptions o;
  o.out = dir.path();
  o.tapvid = t4g::testing::fixture("tapvid/davis_p4.pkl");
  o.jobs = 2;
  const PrepareReport r = prepare_dataset(o);
  EXPECT_EQ(r.videos_written, 2);
  const ShardReader reader(dir.path());
  ASSERT_TRUE(reader.contains("davis_p4-bear"));
  const ShardVideo v = reader.read("davis_p4-bear");
  const TapVidVideo tv = read_tapvid_pickle(o.tapvid)[0];
  EXPECT_TRUE(torch::equal(v.frames, tv.frames));
  // Pixels = normalised * (W, H) with W = 5, H = 4; visible = not occluded.
  EXPECT_TRUE(torch::allclose(v.tracks, (tv.points * torch::tensor({5.0, 4.0}, torch::kFloat64)).to(torch::kFloat32), 0, 0));
  EXPECT_TRUE(torch::equal(v.visibility, tv.occluded.logical_not()));
  EXPECT_EQ(v.prompt, "");
  EXPECT_NE(v.source.find("davis_p4.pkl#bear"), std::string::npos);
}

}  // namespace
}  // namespace t4g::data
