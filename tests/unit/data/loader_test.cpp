// Tests of the loader (data/loader.h): the distributed sampler against torch's own
// DistributedSampler (fixture from tests/fixtures/loader/make_distributed_sampler.py), disjoint
// ranks with equal batch counts, determinism whatever the number of workers, resume from a saved
// position (across an epoch boundary), concurrent consumers, augmentation that moves tracks with
// the pixels, and the errors for bad options and mismatched clips.
#include "data/loader.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/error.h"
#include "common/fs.h"
#include "data/shards.h"
#include "tests/testing.h"

namespace t4g::data {
namespace {

using t4g::testing::TempDir;

using t4g::testing::error_of;

// A dataset of `count` videos, F x 12 x 16, with textured frames and 3 + i % 4 tracks each,
// the first frame's pixel (0, 0) holding the video's number.
std::string make_dataset(const TempDir& dir, int64_t count, int64_t F = 4, bool latents = false) {
  const std::string out = dir.file("ds");
  make_dirs(out);
  std::vector<ShardVideo> videos;
  torch::manual_seed(11);
  for (int64_t i = 0; i < count; ++i) {
    ShardVideo v;
    char id[32];
    std::snprintf(id, sizeof(id), "v%03lld", static_cast<long long>(i));
    v.id = id;
    v.frames = torch::randint(0, 256, {F, 12, 16, 3}, torch::kUInt8);
    v.frames[0][0][0][0] = static_cast<uint8_t>(i);
    const int64_t N = 3 + i % 4;
    // Non-integer positions inside the frame, so the pixel containing a point is unambiguous.
    v.tracks = torch::rand({N, F, 2}) * torch::tensor({15.0f, 11.0f}) + 0.25f;
    v.visibility = torch::rand({N, F}) > 0.2;
    v.prompt = "prompt " + v.id;
    v.source = "test";
    if (latents) {
      v.latents = torch::full({2, 4, 3, 4}, static_cast<float>(i));
      v.text_embedding = torch::full({5, 6}, static_cast<float>(i));
    }
    videos.push_back(std::move(v));
    if (videos.size() == 4 || i + 1 == count) {
      write_shard(out + "/s-" + std::to_string(i) + ".h5", videos);
      videos.clear();
    }
  }
  write_shard_index(out);
  return out;
}

bool same_batch(const Batch& a, const Batch& b) {
  auto same = [](const torch::Tensor& x, const torch::Tensor& y) {
    return x.defined() == y.defined() && (!x.defined() || (x.sizes() == y.sizes() && torch::equal(x, y)));
  };
  return a.position == b.position && a.ids == b.ids && a.prompts == b.prompts && same(a.frames, b.frames) &&
         same(a.tracks, b.tracks) && same(a.visibility, b.visibility) && same(a.track_mask, b.track_mask);
}

TEST(DistributedSampler, MatchesTorchDistributedSampler) {
  const auto fixture = nlohmann::json::parse(read_file(t4g::testing::fixture("loader/distributed_sampler.json")));
  int64_t checked = 0;
  for (const auto& c : fixture["cases"]) {
    SamplerOptions o;
    o.rank = c["rank"];
    o.world_size = c["world"];
    o.seed = c["seed"];
    o.shuffle = c["shuffle"];
    o.drop_last = c["drop_last"];
    const auto got = distributed_indices(c["size"], c["epoch"], o);
    EXPECT_EQ(got, c["indices"].get<std::vector<int64_t>>()) << c.dump();
    ++checked;
  }
  EXPECT_GT(checked, 100);
}

TEST(DistributedSampler, RanksAreDisjointAndEqualInLength) {
  for (bool drop_last : {false, true}) {
    SamplerOptions o;
    o.world_size = 4;
    o.seed = 9;
    o.drop_last = drop_last;
    std::multiset<int64_t> all;
    size_t length = 0;
    for (o.rank = 0; o.rank < 4; ++o.rank) {
      const auto idx = distributed_indices(10, 2, o);
      if (o.rank == 0) length = idx.size();
      EXPECT_EQ(idx.size(), length);
      all.insert(idx.begin(), idx.end());
    }
    std::set<int64_t> distinct(all.begin(), all.end());
    // 10 over 4 ranks: padded to 12 (2 repeats) or truncated to 8, never another overlap.
    EXPECT_EQ(all.size(), drop_last ? 8u : 12u);
    EXPECT_EQ(distinct.size(), drop_last ? 8u : 10u);
  }
  SamplerOptions bad;
  bad.world_size = 2;
  bad.rank = 2;
  EXPECT_NE(error_of([&] { distributed_indices(10, 0, bad); }).find("rank must be in [0, 2)"), std::string::npos);
}

TEST(Loader, DeterministicWhateverTheWorkerCount) {
  TempDir dir;
  LoaderOptions o;
  o.dataset = make_dataset(dir, 10);
  o.batch_size = 3;
  o.sampler.seed = 5;
  o.workers = 0;
  std::vector<Batch> reference;
  {
    Loader loader(o);
    EXPECT_EQ(loader.batches_per_epoch(), 4);  // 10 samples: 3 + 3 + 3 + 1
    for (int i = 0; i < 9; ++i) reference.push_back(loader.next());
  }
  EXPECT_EQ(reference[3].ids.size(), 1u);
  EXPECT_EQ(reference[4].position, (LoaderPosition{1, 0}));
  // The epochs are shuffled differently and each covers the dataset once.
  std::set<std::string> epoch0;
  std::vector<std::string> order0, order1;
  for (int i = 0; i < 4; ++i) {
    for (const auto& id : reference[i].ids) epoch0.insert(id), order0.push_back(id);
    for (const auto& id : reference[4 + i].ids) order1.push_back(id);
  }
  EXPECT_EQ(epoch0.size(), 10u);
  EXPECT_NE(order0, order1);
  for (int64_t workers : {1, 3}) {
    o.workers = workers;
    o.prefetch_batches = 2;
    Loader loader(o);
    for (int i = 0; i < 9; ++i) EXPECT_TRUE(same_batch(loader.next(), reference[i])) << "workers " << workers << " batch " << i;
  }
}

TEST(Loader, ResumeFromASavedPositionSeesTheSameBatches) {
  TempDir dir;
  LoaderOptions o;
  o.dataset = make_dataset(dir, 10);
  o.batch_size = 2;
  o.workers = 2;
  o.tracks_per_clip = 3;
  o.augment.crop_height = 8;
  o.augment.crop_width = 10;
  o.augment.flip_probability = 0.5;
  o.augment.clip_frames = 3;
  std::vector<Batch> straight;
  LoaderPosition saved;
  {
    Loader loader(o);
    for (int i = 0; i < 12; ++i) {
      if (i == 3) saved = loader.position();
      straight.push_back(loader.next());
    }
  }
  EXPECT_EQ(saved, (LoaderPosition{0, 3}));
  Loader resumed(o, saved);
  EXPECT_EQ(resumed.position(), saved);
  for (int i = 3; i < 12; ++i) EXPECT_TRUE(same_batch(resumed.next(), straight[static_cast<size_t>(i)])) << i;  // crosses epoch 0 -> 1 -> 2
  EXPECT_NE(error_of([&] { Loader bad(o, LoaderPosition{0, 5}); }).find("outside an epoch of 5 batches"), std::string::npos);
}

TEST(Loader, RanksSeeDisjointSamplesAndTheSameNumberOfBatches) {
  TempDir dir;
  LoaderOptions o;
  o.dataset = make_dataset(dir, 11);
  o.batch_size = 2;
  o.sampler.world_size = 3;
  std::multiset<std::string> seen;
  for (o.sampler.rank = 0; o.sampler.rank < 3; ++o.sampler.rank) {
    Loader loader(o);
    EXPECT_EQ(loader.samples_per_epoch(), 4);
    EXPECT_EQ(loader.batches_per_epoch(), 2);
    for (int i = 0; i < 2; ++i) {
      for (const auto& id : loader.next().ids) seen.insert(id);
    }
  }
  EXPECT_EQ(seen.size(), 12u);                                              // 11 + 1 padding repeat
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 11u);   // all covered
}

TEST(Loader, ConcurrentConsumersGetEachBatchOnce) {
  TempDir dir;
  LoaderOptions o;
  o.dataset = make_dataset(dir, 10);
  o.batch_size = 1;
  o.workers = 3;
  o.prefetch_batches = 3;
  std::vector<Batch> reference;
  {
    LoaderOptions serial = o;
    serial.workers = 0;
    Loader loader(serial);
    for (int i = 0; i < 40; ++i) reference.push_back(loader.next());
  }
  Loader loader(o);
  std::mutex mutex;
  std::vector<Batch> got;
  std::vector<std::thread> consumers;
  for (int c = 0; c < 4; ++c) {
    consumers.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        Batch b = loader.next();
        std::lock_guard<std::mutex> lock(mutex);
        got.push_back(std::move(b));
      }
    });
  }
  for (auto& t : consumers) t.join();
  ASSERT_EQ(got.size(), 40u);
  std::set<int64_t> sequences;
  for (const Batch& b : got) {
    const int64_t s = b.position.epoch * 10 + b.position.batch;
    EXPECT_TRUE(sequences.insert(s).second) << "batch handed out twice: " << s;
    ASSERT_LT(s, 40);
    EXPECT_TRUE(same_batch(b, reference[static_cast<size_t>(s)])) << s;
  }
  EXPECT_EQ(loader.position(), (LoaderPosition{4, 0}));
}

TEST(Loader, AugmentationMovesTracksWithThePixels) {
  TempDir dir;
  LoaderOptions o;
  o.dataset = make_dataset(dir, 6);
  o.batch_size = 1;
  o.workers = 0;
  o.sampler.shuffle = false;
  o.augment.crop_height = 9;
  o.augment.crop_width = 11;
  o.augment.flip_probability = 0.5;
  Loader loader(o);
  const ShardReader reader(o.dataset);
  int64_t compared = 0;
  for (int i = 0; i < 12; ++i) {
    const Batch b = loader.next();
    ASSERT_EQ(b.frames.sizes(), torch::IntArrayRef({1, 4, 9, 11, 3}));
    const ShardVideo v = reader.read(b.ids[0]);
    const int64_t N = v.tracks.size(0);
    ASSERT_EQ(b.tracks.size(1), N);  // no track sampling: same tracks, same order
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t t = 0; t < 4; ++t) {
        const float x = b.tracks[0][n][t][0].item<float>(), y = b.tracks[0][n][t][1].item<float>();
        const bool inside = x >= 0 && x < 11 && y >= 0 && y < 9;
        // Visible after augmentation = visible before and inside the crop.
        EXPECT_EQ(b.visibility[0][n][t].item<bool>(), v.visibility[n][t].item<bool>() && inside);
        if (!inside) continue;
        // The pixel under the moved point is the pixel under the original point.
        const auto ox = static_cast<int64_t>(v.tracks[n][t][0].item<float>());
        const auto oy = static_cast<int64_t>(v.tracks[n][t][1].item<float>());
        EXPECT_TRUE(torch::equal(b.frames[0][t][static_cast<int64_t>(y)][static_cast<int64_t>(x)], v.frames[t][oy][ox]));
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 50);
}

TEST(Loader, TrackSamplingPadsAndMasks) {
  TempDir dir;
  LoaderOptions o;
  o.dataset = make_dataset(dir, 8);
  o.batch_size = 4;
  o.workers = 0;
  o.sampler.shuffle = false;
  Loader all(o);
  const Batch b = all.next();  // videos 0..3 with 3, 4, 5, 6 tracks: padded to 6
  ASSERT_EQ(b.tracks.sizes(), torch::IntArrayRef({4, 6, 4, 2}));
  EXPECT_TRUE(torch::equal(b.track_mask.sum(1).to(torch::kInt64), torch::tensor({3, 4, 5, 6}, torch::kInt64)));
  EXPECT_FALSE(b.visibility.masked_select(b.track_mask.logical_not().unsqueeze(2).expand_as(b.visibility)).any().item<bool>());
  o.tracks_per_clip = 4;
  Loader sampled(o);
  const Batch s = sampled.next();
  ASSERT_EQ(s.tracks.size(1), 4);
  // Only tracks visible somewhere in the clip are chosen.
  const torch::Tensor chosen_visible = s.visibility.any(2);
  EXPECT_TRUE(torch::equal(chosen_visible, s.track_mask));
}

TEST(Loader, PrecomputedLatentsReplaceFrames) {
  TempDir dir;
  LoaderOptions o;
  o.dataset = make_dataset(dir, 4, 4, /*latents=*/true);
  o.batch_size = 2;
  o.workers = 1;
  o.sampler.shuffle = false;
  {
    Loader loader(o);
    EXPECT_TRUE(loader.uses_latents());
    const Batch b = loader.next();
    EXPECT_FALSE(b.frames.defined());
    ASSERT_EQ(b.latents.sizes(), torch::IntArrayRef({2, 2, 4, 3, 4}));
    EXPECT_EQ(b.latents[1].max().item<float>(), 1.0f);  // video v001
    ASSERT_EQ(b.text_embedding.sizes(), torch::IntArrayRef({2, 5, 6}));
    EXPECT_EQ(b.tracks.size(2), 4);  // tracks stay in frames
  }
  o.latents = LatentMode::kNever;
  EXPECT_EQ(Loader(o).next().frames.size(0), 2);
  o.latents = LatentMode::kAuto;
  o.augment.flip_probability = 0.5;
  EXPECT_NE(error_of([&] { Loader l(o); }).find("augmentation (clip_frames, crop, flip) works on frames"), std::string::npos);
}

TEST(Loader, BadOptionsAndMismatchedClips) {
  TempDir dir;
  LoaderOptions o;
  o.dataset = make_dataset(dir, 4);
  o.batch_size = 0;
  EXPECT_NE(error_of([&] { Loader l(o); }).find("batch_size must be positive"), std::string::npos);
  o.batch_size = 1;
  o.latents = LatentMode::kRequire;
  EXPECT_NE(error_of([&] { Loader l(o); }).find("latents required"), std::string::npos);
  o.latents = LatentMode::kAuto;
  o.augment.crop_height = 4;
  EXPECT_NE(error_of([&] { Loader l(o); }).find("both be positive or both 0"), std::string::npos);
  o.augment.crop_height = 0;
  o.augment.clip_frames = 9;
  o.workers = 1;
  Loader loader(o);
  const std::string e = error_of([&] { loader.next(); });  // a worker's error arrives at its batch
  EXPECT_NE(e.find("shorter than the clip length"), std::string::npos) << e;
  EXPECT_NE(e.find("ds"), std::string::npos) << e;
  o.augment.clip_frames = 0;
  o.batch_size = 5;
  o.drop_last_batch = true;
  EXPECT_NE(error_of([&] { Loader l(o); }).find("gives no batch of 5"), std::string::npos);
  EXPECT_NE(error_of([] { parse_latent_mode("sometimes"); }).find("auto, never or require"), std::string::npos);

  // Two videos of different sizes cannot share a batch: the error names the second one.
  const std::string mixed = dir.file("mixed");
  make_dirs(mixed);
  std::vector<ShardVideo> videos(2);
  for (int i = 0; i < 2; ++i) {
    videos[i].id = "m" + std::to_string(i);
    videos[i].frames = torch::zeros({4, 12, 16 + 4 * i, 3}, torch::kUInt8);
    videos[i].tracks = torch::ones({2, 4, 2});
    videos[i].visibility = torch::ones({2, 4}, torch::kBool);
  }
  write_shard(mixed + "/m.h5", videos);
  write_shard_index(mixed);
  LoaderOptions m;
  m.dataset = mixed;
  m.batch_size = 2;
  m.workers = 0;
  m.sampler.shuffle = false;
  const std::string me = error_of([&] { Loader(m).next(); });
  EXPECT_NE(me.find("videos in one batch differ in size"), std::string::npos) << me;
  EXPECT_NE(me.find("m1"), std::string::npos) << me;
}

}  // namespace
}  // namespace t4g::data
