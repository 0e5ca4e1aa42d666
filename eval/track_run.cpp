// `t4g track` (see track_run.h).
#include "eval/track_run.h"

#include <cmath>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/png.h"
#include "data/shards.h"
#include "data/video_io.h"

namespace t4g {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Json metrics_json(const std::map<std::string, double>& metrics) {
  Json j = Json::object();
  for (const auto& [name, value] : metrics) j[name] = std::isfinite(value) ? Json(value) : Json(nullptr);
  return j;
}

// File-name-safe version of a video name.
std::string safe_name(const std::string& name) {
  std::string out = name;
  for (char& ch : out) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) ch = '_';
  }
  return out;
}

void write_strip(const TrackRunOptions& o, const std::string& name, const torch::Tensor& frames,
                 const torch::Tensor& tracks, const torch::Tensor& occluded) {
  if (!o.strips) return;
  const std::string dir = path_join(o.out, "strips");
  make_dirs(dir);
  write_png(path_join(dir, safe_name(name) + ".png"), draw_track_strip(frames, tracks, occluded, o.strip));
}

// A single video without ground truth: grid queries at frame 0.
Json track_plain_video(ModelComponents& components, const TrackRunOptions& o) {
  data::VideoReadOptions read;
  read.height = 0;
  read.width = 0;
  read.frames = o.video_frames;
  read.allow_short = true;
  const data::DecodedVideo video = data::read_video(o.data, read);
  const int64_t height = video.frames.size(1), width = video.frames.size(2);
  const auto xy = grid_queries(o.grid, height, width);
  const auto queries = torch::cat({torch::zeros({xy.size(0), 1}), xy.select(1, 1).unsqueeze(1), xy.select(1, 0).unsqueeze(1)}, 1);
  const auto start = std::chrono::steady_clock::now();
  const PointTracks pred = track_video(components, video.frames, queries, o.eval.tracker);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string name = safe_name(file_stem(o.data));
  TapVidPrediction p;
  p.name = name;
  p.tracks = pred.tracks * torch::tensor({static_cast<double>(kTapVidResolution) / static_cast<double>(width),
                                          static_cast<double>(kTapVidResolution) / static_cast<double>(height)})
                               .to(torch::kFloat32);
  p.occluded = pred.occluded;
  write_tapvid_predictions(path_join(o.out, "PRED.h5"), {p});
  write_strip(o, name, video.frames, pred.tracks, pred.occluded);
  Json per_video = Json::object();
  per_video[name] = Json{{"seconds", seconds}, {"queries", xy.size(0)}};
  T4G_INFO("tracking: ", o.data, ": ", xy.size(0), " grid queries over ", video.frames.size(0), " frames in ", seconds,
           " s, ", 100.0 * (1.0 - pred.occluded.to(torch::kFloat32).mean().item<double>()),
           " % of the points visible; tracks in ", path_join(o.out, "PRED.h5"),
           o.strips ? ", strip in " + path_join(path_join(o.out, "strips"), name + ".png") : std::string());
  return Json{{"videos", 1}, {"per_video", per_video}, {"mean", Json::object()}};
}

}  // namespace

TrackInputKind detect_track_input(const std::string& path) {
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(path_exists(path), ctx, "--data does not exist");
  if (ends_with(path, ".pkl")) return TrackInputKind::kTapVid;
  if (is_directory(path) && path_exists(path_join(path, data::kShardIndexName))) return TrackInputKind::kShards;
  ctx.expected = "a TAP-Vid .pkl, a shard folder with index.json, or a video file / frame folder";
  T4G_CHECK_CTX(data::is_video_source(path), ctx, "--data is not something t4g track reads");
  return TrackInputKind::kVideo;
}

torch::Tensor grid_queries(int64_t size, int64_t height, int64_t width) {
  T4G_CHECK(size >= 1, "query grid size must be positive, got ", size);
  if (size == 1) return torch::tensor({{static_cast<float>(width) / 2.0F, static_cast<float>(height) / 2.0F}});
  const double margin = static_cast<double>(width) / 64.0;
  const auto ys = torch::linspace(margin, static_cast<double>(height) - margin, size, torch::kFloat32);
  const auto xs = torch::linspace(margin, static_cast<double>(width) - margin, size, torch::kFloat32);
  const auto grids = torch::meshgrid({ys, xs}, "ij");
  return torch::stack({grids[1].flatten(), grids[0].flatten()}, 1);
}

Json run_tracking(ModelComponents& components, const TrackRunOptions& o) {
  T4G_CHECK(!o.out.empty(), "--out is required");
  const TrackInputKind kind = detect_track_input(o.data);
  make_dirs(o.out);
  Json doc{{"data", o.data},
           {"model", components.source},
           {"refiner", components.refiner ? Json(components.refiner->config().block) : Json(nullptr)},
           {"model_input", {{"height", o.eval.tracker.height}, {"width", o.eval.tracker.width}}},
           {"layers", o.eval.tracker.layers},
           {"device", components.device.str()},
           {"dtype", std::string(c10::toString(components.dtype))},
           {"query_mode", o.eval.query_mode == QueryMode::kFirst ? "first" : "strided"},
           {"frame0_queries_only", o.eval.frame0_queries_only}};
  if (kind == TrackInputKind::kVideo) {
    doc.update(track_plain_video(components, o));
    write_json(path_join(o.out, "METRICS.json"), doc);
    return doc;
  }
  const TrackingVideoSource source = kind == TrackInputKind::kTapVid ? tracking_videos_from_tapvid(o.data, o.max_videos)
                                                                      : tracking_videos_from_shards(o.data, o.max_videos);
  T4G_INFO("tracking ", source.count, " videos from ", o.data);
  const TrackingEvaluation e = evaluate_tracking(components, source, o.eval, nullptr,
                                                 [&](const TrackingVideo& video, const TrackingVideoResult& r) {
                                                   // Back from 256x256 to the stored frames' pixels.
                                                   const auto scale = torch::tensor(
                                                       {static_cast<double>(video.frames.size(2)) / kTapVidResolution,
                                                        static_cast<double>(video.frames.size(1)) / kTapVidResolution});
                                                   write_strip(o, r.name, video.frames,
                                                               r.prediction.tracks * scale.to(torch::kFloat32),
                                                               r.prediction.occluded);
                                                 });
  std::vector<TapVidPrediction> predictions;
  Json per_video = Json::object();
  for (const TrackingVideoResult& r : e.videos) {
    predictions.push_back(r.prediction);
    Json m = metrics_json(r.metrics);
    m["seconds"] = r.seconds;
    m["queries"] = r.queries.query_points.size(0);
    per_video[r.name] = m;
  }
  write_tapvid_predictions(path_join(o.out, "PRED.h5"), predictions);
  doc["videos"] = e.videos.size();
  doc["per_video"] = per_video;
  doc["mean"] = metrics_json(e.mean);
  write_json(path_join(o.out, "METRICS.json"), doc);
  if (e.mean.count("average_pts_within_thresh") != 0) {
    T4G_INFO("tracking: ", e.videos.size(), " videos, <delta_avg ", e.mean.at("average_pts_within_thresh"), ", AJ ",
             e.mean.at("average_jaccard"), ", OA ", e.mean.at("occlusion_accuracy"));
  }
  return doc;
}

}  // namespace t4g
