#include "train/demo.h"

#include "common/fs.h"
#include "common/log.h"
#include "data/prepare.h"
#include "data/shards.h"
#include "eval/tapvid_metrics.h"

namespace t4g {
namespace {

// TAP-Vid scores tracks in 256x256 raster pixels (research/benchmarks.md 1.3).
torch::Tensor to_tapvid_raster(const torch::Tensor& tracks, int64_t height, int64_t width) {
  return tracks * torch::tensor({256.0f / static_cast<float>(width), 256.0f / static_cast<float>(height)});
}

// The zero-motion baseline every TAP-Vid paper reports: each query point stays where it was
// queried and is predicted visible. Returns per-video and mean metrics under 'first' queries.
Json score_zero_motion_baseline(const data::ShardReader& reader) {
  std::vector<std::map<std::string, double>> per_video;
  Json videos = Json::object();
  for (size_t i = 0; i < reader.size(); ++i) {
    const data::ShardVideo v = reader.read(i);
    const torch::Tensor tracks = to_tapvid_raster(v.tracks, v.frames.size(1), v.frames.size(2));
    const TapVidQueries q = sample_queries(tracks, ~v.visibility, QueryMode::kFirst);
    // query_points are (t, y, x); the prediction holds (x, y) at every frame.
    const torch::Tensor xy = q.query_points.index({torch::indexing::Slice(), torch::tensor({2, 1})});
    const torch::Tensor pred = xy.unsqueeze(1).expand_as(q.target_points).contiguous();
    const auto m = compute_tapvid_metrics(q.query_points, q.occluded, q.target_points,
                                          torch::zeros_like(q.occluded), pred, QueryMode::kFirst);
    per_video.push_back(m);
    videos[v.id] = m;
  }
  return Json{{"per_video", videos}, {"mean", mean_over_videos(per_video)}};
}

}  // namespace

Json run_demo(const Config& config, const std::string& out_dir) {
  make_dirs(out_dir);
  write_file_atomically(path_join(out_dir, "config.yaml"), to_yaml(config));
  Json report = {{"recipe", config.run.name}, {"out_dir", out_dir}};

  // 1. Data: synthetic videos with exact tracks -> HDF5 shards (resumable: a rerun skips them).
  data::PrepareOptions prep;
  prep.out = path_join(out_dir, "shards");
  prep.synthetic = config.data.synthetic.videos;
  prep.seed = static_cast<uint64_t>(config.run.seed);
  prep.synthetic_options.frames = config.data.frames;
  prep.synthetic_options.height = config.data.height;
  prep.synthetic_options.width = config.data.width;
  prep.synthetic_options.sprites = config.data.synthetic.sprites;
  prep.synthetic_options.grid_step = config.data.synthetic.grid_step;
  prep.videos_per_shard = 2;
  T4G_INFO("demo 1/2: preparing ", prep.synthetic, " synthetic videos in ", prep.out);
  const data::PrepareReport prepared = data::prepare_dataset(prep);
  const data::ShardSummary summary = data::summarize_shards(prep.out);
  T4G_INFO("demo 1/2: ", data::format_shard_summary(prep.out, summary));
  report["data"] = {{"videos", summary.videos},         {"shards", summary.shards},
                    {"tracks", summary.tracks},         {"visible_fraction", summary.visible_fraction},
                    {"written", prepared.videos_written}, {"seconds", prepared.seconds}};

  // 2. Evaluation: TAP-Vid metrics of the zero-motion baseline, the floor a tracker must beat.
  const data::ShardReader reader(prep.out);
  const Json baseline = score_zero_motion_baseline(reader);
  write_json(path_join(out_dir, "baseline_metrics.json"), baseline);
  const Json& mean = baseline["mean"];
  T4G_INFO("demo 2/2: zero-motion baseline on ", reader.size(), " videos: AJ ", mean["average_jaccard"].get<double>(),
           ", <delta_avg ", mean["average_pts_within_thresh"].get<double>(), ", OA ",
           mean["occlusion_accuracy"].get<double>());
  report["baseline"] = mean;

  write_json(path_join(out_dir, "report.json"), report);
  T4G_INFO("demo: done; report in ", path_join(out_dir, "report.json"));
  return report;
}

}  // namespace t4g
