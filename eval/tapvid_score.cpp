#include "eval/tapvid_score.h"

#include <cmath>
#include <cstdio>

#include "common/error.h"
#include "common/hdf5.h"
#include "common/fs.h"
#include "data/shards.h"
#include "data/tapvid.h"

namespace t4g {
namespace {

Json metrics_json(const std::map<std::string, double>& metrics) {
  Json j = Json::object();
  for (const auto& [name, value] : metrics) j[name] = std::isnan(value) ? Json(nullptr) : Json(value);
  return j;
}

}  // namespace

std::string tapvid_group_name(const std::string& key, int64_t index) {
  if (!key.empty()) return key;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "video_%04lld", static_cast<long long>(index));
  return buf;
}

void write_tapvid_predictions(const std::string& path, const std::vector<TapVidPrediction>& predictions) {
  h5::File file = h5::File::create(path);
  const h5::Group root = file.root();
  for (const TapVidPrediction& p : predictions) {
    T4G_CHECK(p.tracks.dim() == 3 && p.tracks.size(2) == 2, "prediction ", p.name, ": tracks must be [Q, T, 2], got ",
              p.tracks.sizes());
    const h5::Group g = root.create_group(p.name);
    g.write("tracks", p.tracks.to(torch::kFloat32).contiguous());
    g.write("occluded", p.occluded.to(torch::kUInt8).contiguous());
  }
  file.commit();
}

namespace {

// One video's ground truth in 256x256 raster pixels, named as PRED.h5 names it.
struct GroundTruth {
  std::string name;
  torch::Tensor points;    // float32 [N, T, 2]
  torch::Tensor occluded;  // bool [N, T]
};

// The ground truth of a TAP-Vid pickle (tapnet: points * 256, no half-pixel shift) or of a shard
// folder (tracks in pixels of the stored frames, rescaled by 256 / W and 256 / H, as `t4g track`
// scores them), in file order.
std::vector<GroundTruth> read_ground_truth(const std::string& path) {
  std::vector<GroundTruth> out;
  const bool pickle = path.size() > 4 && path.compare(path.size() - 4, 4, ".pkl") == 0;
  if (!pickle && is_directory(path) && is_regular_file(path_join(path, data::kShardIndexName))) {
    const data::ShardReader reader(path);
    for (size_t i = 0; i < reader.size(); ++i) {
      const data::ShardVideo v = reader.read(i);
      const double sx = static_cast<double>(kTapVidResolution) / static_cast<double>(v.frames.size(2));
      const double sy = static_cast<double>(kTapVidResolution) / static_cast<double>(v.frames.size(1));
      out.push_back({v.id, (v.tracks * torch::tensor({sx, sy})).to(torch::kFloat32), v.visibility.logical_not()});
    }
    return out;
  }
  ErrorContext ctx;
  ctx.file = path;
  ctx.key = "--data";
  ctx.expected = "a TAP-Vid .pkl or a shard folder with index.json";
  T4G_CHECK_CTX(pickle, ctx, "not ground truth that `t4g tapvid score` reads");
  const std::vector<data::TapVidVideo> videos = data::read_tapvid_pickle(path);
  for (size_t i = 0; i < videos.size(); ++i) {
    const data::TapVidVideo& v = videos[i];
    out.push_back({tapvid_group_name(v.name, static_cast<int64_t>(i)),
                   (v.points * static_cast<double>(kTapVidResolution)).to(torch::kFloat32), v.occluded});
  }
  return out;
}

}  // namespace

Json score_tapvid(const TapVidScoreOptions& o) {
  const std::vector<GroundTruth> videos = read_ground_truth(o.data);
  const h5::File pred_file = h5::File::open(o.pred);
  const h5::Group root = pred_file.root();
  std::vector<std::map<std::string, double>> per_video;
  Json per_video_json = Json::object();
  for (const GroundTruth& v : videos) {
    const std::string& name = v.name;
    ErrorContext ctx;
    ctx.file = o.pred;
    ctx.key = "/" + name;
    T4G_CHECK_CTX(root.has_group(name), ctx, "no predictions for this video");
    const h5::Group g = root.group(name);
    const torch::Tensor& gt = v.points;
    const TapVidQueries q = sample_queries(gt, v.occluded, o.query_mode, o.query_stride);
    const int64_t num_queries = q.query_points.size(0), frames = gt.size(1);
    auto read_checked = [&](const std::string& dataset, std::vector<int64_t> shape) {
      ErrorContext c = ctx;
      c.key = "/" + name + "/" + dataset;
      T4G_CHECK_CTX(g.has_dataset(dataset), c, "missing dataset");
      const torch::Tensor t = g.read(dataset);
      c.expected = t4g::str(c10::IntArrayRef(shape), " (", num_queries, " queries in ",
                            o.query_mode == QueryMode::kFirst ? "first" : "strided", " mode, ", frames, " frames)");
      c.got = t4g::str(t.sizes());
      T4G_CHECK_CTX(t.sizes() == c10::IntArrayRef(shape), c, "wrong shape");
      return t;
    };
    const torch::Tensor tracks = read_checked("tracks", {num_queries, frames, 2});
    const torch::Tensor occluded = read_checked("occluded", {num_queries, frames}).to(torch::kBool);
    ErrorContext finite = ctx;
    finite.key = "/" + name + "/tracks";
    T4G_CHECK_CTX(torch::isfinite(tracks).all().item<bool>(), finite, "tracks hold NaN or infinity");
    const auto m = compute_tapvid_metrics(q.query_points, q.occluded, q.target_points, occluded,
                                          tracks.to(torch::kFloat32), o.query_mode);
    per_video.push_back(m);
    per_video_json[name] = metrics_json(m);
  }
  return Json{{"query_mode", o.query_mode == QueryMode::kFirst ? "first" : "strided"},
              {"videos", videos.size()},
              {"per_video", per_video_json},
              {"mean", metrics_json(mean_over_videos(per_video))}};
}

}  // namespace t4g
