// `t4g prepare` (see prepare.h). A source is a list of videos made on demand by index; the
// engine assigns them to shards, skips complete shards, runs workers over the remaining videos
// and lets the worker that finishes a shard's last video write it.
#include "data/prepare.h"

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "data/shards.h"
#include "data/tapvid.h"

namespace t4g::data {
namespace {


// Videos of one source, made on demand.
struct Source {
  std::string prefix;  // shard file prefix ("synthetic" -> synthetic-00000.h5)
  std::string recipe;  // JSON stored in every shard; a shard with another recipe is not reused
  int64_t count = 0;
  std::function<std::string(int64_t)> id_of;
  std::function<ShardVideo(int64_t)> make;
};

std::string shard_name(const std::string& prefix, int64_t shard) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "-%05lld.h5", static_cast<long long>(shard));
  return prefix + buf;
}

// True when the shard exists with this recipe and exactly these ids. A shard from another
// recipe is an error (the user pointed two different runs at one folder); an unreadable shard
// is rewritten.
bool shard_complete(const std::string& path, const Source& source, int64_t begin, int64_t end) {
  if (!path_exists(path)) return false;
  ShardHeader header;
  try {
    header = read_shard_header(path);
  } catch (const Error& e) {
    T4G_WARN("rewriting unreadable shard: ", e.what());
    return false;
  }
  ErrorContext ctx;
  ctx.file = path;
  ctx.key = "/@recipe";
  ctx.expected = source.recipe;
  ctx.got = header.recipe;
  T4G_CHECK_CTX(header.recipe == source.recipe, ctx,
                "existing shard was made with another recipe; use a new --out folder or delete it");
  std::vector<std::string> want, have;
  for (int64_t i = begin; i < end; ++i) want.push_back(source.id_of(i));
  for (const auto& e : header.videos) have.push_back(e.id);
  std::sort(want.begin(), want.end());
  std::sort(have.begin(), have.end());
  return want == have;
}

// Runs one source; adds to the report.
void run_source(const Source& source, const PrepareOptions& options, PrepareReport& report) {
  const int64_t per_shard = options.videos_per_shard;
  const int64_t shards = (source.count + per_shard - 1) / per_shard;
  struct Pending {
    int64_t shard, begin, end;
    std::vector<std::optional<ShardVideo>> videos;
    std::atomic<int64_t> done{0};
  };
  std::vector<std::unique_ptr<Pending>> pending;
  int64_t skipped = 0;
  for (int64_t s = 0; s < shards; ++s) {
    const int64_t begin = s * per_shard, end = std::min(source.count, begin + per_shard);
    if (shard_complete(options.out + "/" + shard_name(source.prefix, s), source, begin, end)) {
      ++skipped;
      continue;
    }
    auto p = std::make_unique<Pending>();
    p->shard = s;
    p->begin = begin;
    p->end = end;
    p->videos.resize(static_cast<size_t>(end - begin));
    pending.push_back(std::move(p));
  }
  report.shards_skipped += skipped;
  if (skipped > 0) T4G_INFO(source.prefix, ": ", skipped, " of ", shards, " shards already complete, skipped");
  // Work items: (pending shard, video index) in order, so shards complete roughly in order.
  std::vector<std::pair<Pending*, int64_t>> work;
  for (auto& p : pending) {
    for (int64_t i = p->begin; i < p->end; ++i) work.emplace_back(p.get(), i);
  }
  if (work.empty()) return;

  const int64_t jobs = std::max<int64_t>(
      1, std::min<int64_t>(options.jobs > 0 ? options.jobs : std::thread::hardware_concurrency(), static_cast<int64_t>(work.size())));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex mutex;  // guards error, report and the log of finished shards
  int64_t shards_done = 0;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&]() {
    try {
      while (!failed) {
        const size_t k = next++;
        if (k >= work.size()) break;
        auto [p, index] = work[k];
        p->videos[static_cast<size_t>(index - p->begin)] = source.make(index);
        if (++p->done == p->end - p->begin) {
          std::vector<ShardVideo> videos;
          for (auto& v : p->videos) videos.push_back(std::move(*v));
          p->videos.clear();
          ShardWriteOptions wo;
          wo.gzip_level = options.gzip_level;
          wo.recipe = source.recipe;
          const std::string path = options.out + "/" + shard_name(source.prefix, p->shard);
          write_shard(path, videos, wo);
          std::lock_guard<std::mutex> lock(mutex);
          ++shards_done;
          report.shards_written += 1;
          report.videos_written += static_cast<int64_t>(videos.size());
          const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          T4G_INFO(source.prefix, ": shard ", shards_done, "/", pending.size(), " written (", file_name(path),
                   ", ", videos.size(), " videos), ", report.videos_written, " videos in ", static_cast<int64_t>(secs), " s (",
                   secs > 0 ? static_cast<double>(report.videos_written) / secs : 0.0, " videos/s)");
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> threads;
  for (int64_t j = 0; j < jobs; ++j) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

Source synthetic_source(const PrepareOptions& o) {
  const SyntheticVideoOptions& s = o.synthetic_options;
  Source src;
  src.prefix = "synthetic";
  src.count = o.synthetic;
  src.recipe = nlohmann::json{{"source", "synthetic"},
                              {"seed", o.seed},
                              {"frames", s.frames},
                              {"height", s.height},
                              {"width", s.width},
                              {"sprites", s.sprites},
                              {"grid_step", s.grid_step},
                              {"min_sprite_size", s.min_sprite_size},
                              {"max_sprite_size", s.max_sprite_size},
                              {"max_speed", s.max_speed},
                              {"max_rotation", s.max_rotation},
                              {"max_scale_rate", s.max_scale_rate},
                              {"background_speed", s.background_speed},
                              {"background_rotation", s.background_rotation},
                              {"videos_per_shard", o.videos_per_shard}}
                   .dump();
  src.id_of = [](int64_t i) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "synthetic-%06lld", static_cast<long long>(i));
    return std::string(buf);
  };
  src.make = [o, id_of = src.id_of](int64_t i) {
    const uint64_t seed = synthetic_video_seed(o.seed, i);
    SyntheticVideo sv = generate_synthetic_video(o.synthetic_options, seed);
    ShardVideo v;
    v.id = id_of(i);
    v.frames = sv.frames;
    v.tracks = sv.tracks;
    v.visibility = sv.visibility;
    v.prompt = sv.prompt;
    v.source = str("synthetic:seed=", o.seed, ":index=", i);
    v.fps = 8.0;  // the motion ranges are per frame; 8 fps is CogVideoX's training rate
    v.stride = 1;
    return v;
  };
  return src;
}

Source tapvid_source(const PrepareOptions& o, std::shared_ptr<const std::vector<TapVidVideo>> videos) {
  Source src;
  const std::string stem = file_stem(o.tapvid);
  src.prefix = "tapvid-" + stem;
  src.count = static_cast<int64_t>(videos->size());
  src.recipe = nlohmann::json{{"source", "tapvid"}, {"file", file_name(o.tapvid)},
                              {"videos_per_shard", o.videos_per_shard}}
                   .dump();
  src.id_of = [videos, stem](int64_t i) { return tapvid_video_id(stem, (*videos)[static_cast<size_t>(i)], i); };
  src.make = [videos, stem, file = o.tapvid](int64_t i) {
    const TapVidVideo& tv = (*videos)[static_cast<size_t>(i)];
    ShardVideo v;
    v.id = tapvid_video_id(stem, tv, i);
    v.frames = decode_tapvid_frames(tv);
    const TapVidTracks tracks = tapvid_to_pixels(tv, v.frames.size(1), v.frames.size(2));
    v.tracks = tracks.tracks;
    v.visibility = tracks.visibility;
    v.source = "tapvid:" + file + "#" + (tv.name.empty() ? std::to_string(i) : tv.name);
    v.fps = 0;  // unknown (Kinetics clips are 25 fps, DAVIS 24, RGB-Stacking unspecified)
    return v;
  };
  return src;
}

}  // namespace

uint64_t synthetic_video_seed(uint64_t seed, int64_t index) {
  SplitMix64 rng(seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(index + 1)));
  return rng.next();
}

PrepareReport prepare_dataset(const PrepareOptions& options) {
  T4G_CHECK(!options.out.empty(), "prepare: --out is required");
  T4G_CHECK(options.synthetic >= 0, "prepare: --synthetic must be >= 0, got ", options.synthetic);
  T4G_CHECK(options.videos_per_shard > 0, "prepare: --videos-per-shard must be positive, got ", options.videos_per_shard);
  T4G_CHECK(options.synthetic > 0 || !options.tapvid.empty(), "prepare: nothing to do (give --synthetic N or --tapvid FILE)");
  const auto start = std::chrono::steady_clock::now();
  make_dirs(options.out);
  PrepareReport report;
  if (options.synthetic > 0) {
    report.videos += options.synthetic;
    run_source(synthetic_source(options), options, report);
  }
  if (!options.tapvid.empty()) {
    auto videos = std::make_shared<const std::vector<TapVidVideo>>(read_tapvid_pickle(options.tapvid));
    report.videos += static_cast<int64_t>(videos->size());
    run_source(tapvid_source(options, videos), options, report);
  }
  report.dataset_videos = static_cast<int64_t>(write_shard_index(options.out).size());
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace t4g::data
