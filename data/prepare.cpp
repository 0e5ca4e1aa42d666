// `t4g prepare` (see prepare.h). A source is a list of videos made on demand by index; the
// engine assigns them to shards, skips complete shards, runs workers over the remaining videos
// and lets the worker that finishes a shard's last video write it. A source may decline a video
// (an unreadable file with skip_bad_videos): its shard is written without it and, since it then
// lacks an expected id, is retried on the next run.
#include "data/prepare.h"

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <cctype>
#include <map>
#include <optional>
#include <sstream>
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
  std::function<std::optional<ShardVideo>(int64_t)> make;  // nullopt = skipped
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
          for (auto& v : p->videos) {
            if (v) videos.push_back(std::move(*v));
          }
          const int64_t declined = static_cast<int64_t>(p->videos.size() - videos.size());
          p->videos.clear();
          if (videos.empty()) {  // every video of this shard was skipped: nothing to write
            std::lock_guard<std::mutex> lock(mutex);
            report.videos_skipped += declined;
            continue;
          }
          ShardWriteOptions wo;
          wo.gzip_level = options.gzip_level;
          wo.recipe = source.recipe;
          const std::string path = options.out + "/" + shard_name(source.prefix, p->shard);
          write_shard(path, videos, wo);
          std::lock_guard<std::mutex> lock(mutex);
          ++shards_done;
          report.videos_skipped += declined;
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

// The flow-track options as stored in recipes (a change means different tracks).
nlohmann::json flow_recipe(const FlowTrackOptions& f) {
  return {{"method", flow_method_name(f.flow.method)},
          {"dis_preset", dis_preset_name(f.flow.dis_preset)},
          {"dis_finest_scale", f.flow.dis_finest_scale},
          {"dis_refinement_iterations", f.flow.dis_refinement_iterations},
          {"tvl1_warps", f.flow.tvl1_warps},
          {"tvl1_scales", f.flow.tvl1_scales},
          {"grid_step", f.grid_step},
          {"reseed_every", f.reseed_every},
          {"max_tracks", f.max_tracks},
          {"fb_alpha", f.fb_alpha},
          {"fb_beta", f.fb_beta},
          {"subpixel", f.subpixel}};
}

Source synthetic_source(const PrepareOptions& o) {
  const SyntheticVideoOptions& s = o.synthetic_options;
  Source src;
  src.prefix = "synthetic";
  src.count = o.synthetic;
  nlohmann::json recipe = nlohmann::json{{"source", "synthetic"},
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
                              {"videos_per_shard", o.videos_per_shard}};
  // Only flow-track sets carry these keys, so exact-track sets keep their recipe (and resume).
  if (o.synthetic_flow_tracks) {
    recipe["tracks"] = "flow";
    recipe["flow"] = flow_recipe(o.flow);
  }
  src.recipe = recipe.dump();
  src.id_of = [](int64_t i) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "synthetic-%06lld", static_cast<long long>(i));
    return std::string(buf);
  };
  src.make = [o, id_of = src.id_of](int64_t i) -> std::optional<ShardVideo> {
    const uint64_t seed = synthetic_video_seed(o.seed, i);
    SyntheticVideo sv = generate_synthetic_video(o.synthetic_options, seed);
    ShardVideo v;
    v.id = id_of(i);
    v.frames = sv.frames;
    v.tracks = sv.tracks;
    v.visibility = sv.visibility;
    if (o.synthetic_flow_tracks) {
      const FlowTracks ft = flow_tracks(sv.frames, o.flow);
      v.tracks = ft.tracks;
      v.visibility = ft.visibility;
    }
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
  src.make = [videos, stem, file = o.tapvid](int64_t i) -> std::optional<ShardVideo> {
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

// The caption of a real video: a sidecar text file "<path without extension>.txt" (for a
// frame folder "<folder>.txt"), trimmed; "" when there is none.
std::string sidecar_prompt(const std::string& path) {
  std::string base = path;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  if (!is_directory(base)) {
    const std::string name = file_name(base);
    const size_t dot = name.rfind('.');
    if (dot != std::string::npos && dot > 0) base = base.substr(0, base.size() - (name.size() - dot));
  }
  const std::string txt = base + ".txt";
  if (!is_regular_file(txt)) return "";
  std::string text = read_file(txt);
  const size_t b = text.find_first_not_of(" \t\r\n"), e = text.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : text.substr(b, e - b + 1);
}

Source video_source(const PrepareOptions& o, std::shared_ptr<std::atomic<int64_t>> skipped) {
  auto paths = std::make_shared<const std::vector<std::string>>(list_video_inputs(o.input));
  auto ids = std::make_shared<std::vector<std::string>>();
  std::map<std::string, std::string> seen;
  for (const auto& p : *paths) {
    const std::string id = video_input_id(p);
    ErrorContext ctx;
    ctx.file = o.input;
    ctx.key = id;
    T4G_CHECK_CTX(seen.emplace(id, p).second, ctx, "two inputs map to one video id: ", seen[id], " and ", p,
                  " (rename one)");
    ids->push_back(id);
  }
  Source src;
  src.prefix = "video-" + file_stem(o.input);
  src.count = static_cast<int64_t>(paths->size());
  const VideoReadOptions& r = o.video;
  src.recipe = nlohmann::json{{"source", "videos"},
                              {"input", file_name(o.input)},
                              {"frames", r.frames},
                              {"height", r.height},
                              {"width", r.width},
                              {"stride", r.stride},
                              {"start", r.start},
                              {"allow_short", r.allow_short},
                              {"flow", flow_recipe(o.flow)},
                              {"videos_per_shard", o.videos_per_shard}}
                   .dump();
  src.id_of = [ids](int64_t i) { return (*ids)[static_cast<size_t>(i)]; };
  src.make = [o, paths, ids, skipped](int64_t i) -> std::optional<ShardVideo> {
    const std::string& path = (*paths)[static_cast<size_t>(i)];
    try {
      const DecodedVideo decoded = read_video(path, o.video);
      ErrorContext ctx;
      ctx.file = path;
      ctx.expected = ">= 2 frames";
      ctx.got = t4g::str(decoded.frames.size(0));
      T4G_CHECK_CTX(decoded.frames.size(0) >= 2, ctx, "a video needs at least 2 frames for optical-flow tracks");
      const FlowTracks ft = flow_tracks(decoded.frames, o.flow);
      ShardVideo v;
      v.id = (*ids)[static_cast<size_t>(i)];
      v.frames = decoded.frames;
      v.tracks = ft.tracks;
      v.visibility = ft.visibility;
      v.prompt = sidecar_prompt(path);
      v.source = "file:" + path;
      v.fps = decoded.fps;
      v.stride = o.video.stride;
      return v;
    } catch (const Error& e) {
      if (!o.skip_bad_videos) throw;
      T4G_WARN("skipping video: ", e.what());
      ++*skipped;
      return std::nullopt;
    }
  };
  return src;
}

}  // namespace

std::vector<std::string> list_video_inputs(const std::string& input) {
  ErrorContext ctx;
  ctx.file = input;
  std::vector<std::string> out;
  if (is_directory(input)) {
    for (const auto& name : list_dir(input)) {
      const std::string p = path_join(input, name);
      if (is_video_source(p)) out.push_back(p);
    }
    T4G_CHECK_CTX(!out.empty(), ctx, "folder holds no videos (video files ",
                  "such as .mp4/.avi/.webm, or folders of frame images)");
    return out;
  }
  T4G_CHECK_CTX(is_regular_file(input), ctx, "no such file or folder");
  if (is_video_source(input)) return {input};  // one video file
  const std::string base = parent_path(input);
  std::istringstream lines(read_file(input));
  std::string line;
  while (std::getline(lines, line)) {
    const size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    line = line.substr(b, e - b + 1);
    out.push_back(line[0] == '/' ? line : path_join(base, line));
  }
  T4G_CHECK_CTX(!out.empty(), ctx, "video list is empty (one path per line expected)");
  return out;
}

std::string video_input_id(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  std::string stem = is_directory(p) ? file_name(p) : file_stem(p);
  for (char& c : stem) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  }
  return "video-" + stem;
}

uint64_t synthetic_video_seed(uint64_t seed, int64_t index) {
  SplitMix64 rng(seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(index + 1)));
  return rng.next();
}

PrepareReport prepare_dataset(const PrepareOptions& options) {
  T4G_CHECK(!options.out.empty(), "prepare: --out is required");
  T4G_CHECK(options.synthetic >= 0, "prepare: --synthetic must be >= 0, got ", options.synthetic);
  T4G_CHECK(options.videos_per_shard > 0, "prepare: --videos-per-shard must be positive, got ", options.videos_per_shard);
  T4G_CHECK(options.synthetic > 0 || !options.tapvid.empty() || !options.input.empty(),
            "prepare: nothing to do (give --synthetic N, --tapvid FILE or --input DIR|LIST)");
  const bool needs_flow = !options.input.empty() || (options.synthetic > 0 && options.synthetic_flow_tracks);
  if (needs_flow) {
    T4G_CHECK(have_opencv(), "prepare: --input and flow tracks need OpenCV, and this t4g was built without it");
    validate_flow_track_options(options.flow);
    // One video per worker thread; OpenCV's own threads would only oversubscribe the cores.
    if (options.jobs != 1) set_opencv_threads(1);
  }
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
  if (!options.input.empty()) {
    auto skipped = std::make_shared<std::atomic<int64_t>>(0);
    Source src = video_source(options, skipped);
    report.videos += src.count;
    run_source(src, options, report);
    if (*skipped > 0) T4G_WARN("prepare: ", skipped->load(), " unreadable videos skipped; rerun to retry them");
  }
  report.dataset_videos = static_cast<int64_t>(write_shard_index(options.out).size());
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace t4g::data
