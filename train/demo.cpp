// The demo: data -> fine-tuning with and without the correspondence loss -> tracking before and
// after -> a report (see demo.h).
#include "train/demo.h"

#include <cstdio>

#include "common/fs.h"
#include "common/log.h"
#include "data/shards.h"
#include "eval/tapvid_metrics.h"
#include "train/datasets.h"
#include "train/trainer.h"

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

double metric(const Json& evaluation, const std::string& key) {
  const Json& m = evaluation["metrics"];
  return m.contains(key) && m[key].is_number() ? m[key].get<double>() : std::nan("");
}

std::string pct(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", 100.0 * v);
  return buf;
}

}  // namespace

Json run_demo(const Config& base, const std::string& out_dir) {
  make_dirs(out_dir);
  write_file_atomically(path_join(out_dir, "config.yaml"), to_yaml(base));
  Json report = {{"recipe", base.run.name}, {"out_dir", out_dir}};

  // Both runs read the same shards, prepared once under out_dir/data.
  Config c = base;
  c.run.out_dir = out_dir;
  T4G_INFO("demo 1/4: synthetic data (", base.data.synthetic.videos, " training, ", base.eval.videos,
           " held-out videos)");
  c.data.shards = prepare_training_set(c, true);
  c.eval.data = prepare_heldout_set(c, true);
  const data::ShardReader heldout(c.eval.data);
  const Json baseline = score_zero_motion_baseline(heldout);
  write_json(path_join(out_dir, "baseline_metrics.json"), baseline);
  report["baseline"] = baseline["mean"];
  T4G_INFO("demo 2/4: zero-motion baseline on ", heldout.size(), " held-out videos: <delta_avg ",
           baseline["mean"]["average_pts_within_thresh"].get<double>());

  auto run = [&](const std::string& name, double corr_weight, int index) {
    Config rc = c;
    rc.run.name = base.run.name + "-" + name;
    rc.run.out_dir = path_join(out_dir, name);
    rc.loss.corr_weight = corr_weight;
    T4G_INFO("demo ", 3 + index, "/4: fine-tuning '", name, "' (lambda = ", corr_weight, ", ", rc.train.steps, " steps)");
    return train(rc, TrainOptions{});
  };
  const TrainResult with_corr = run("track4gen", base.loss.corr_weight, 0);
  const TrainResult no_corr = run("no_corr", 0.0, 1);

  Json runs = Json::object();
  std::string md = "# t4g demo report\n\nHeld-out synthetic videos: " + std::to_string(heldout.size()) +
                   "; TAP-Vid metrics at 256x256, queries at each track's first visible frame.\n\n"
                   "Columns: zero-shot tracking with the query-key probes (DiffTrack's protocol, argmax at cell "
                   "resolution); the same read-out on the refined features; the refined features read out as the "
                   "correspondence loss does (soft-argmax, latent k = frame 4k) with its mean error in 256x256 pixels.\n\n"
                   "| run | lambda | steps | final loss | diffusion | correspondence | QK <delta_avg | "
                   "refined <delta_avg | refined soft-argmax <delta_avg | soft-argmax error (px) |\n"
                   "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const auto& [name, r, lambda] :
       {std::make_tuple(std::string("track4gen"), &with_corr, base.loss.corr_weight),
        std::make_tuple(std::string("no_corr"), &no_corr, 0.0)}) {
    const Json& before = r->evaluations.front();
    const Json& after = r->evaluations.back();
    auto get = [&](const char* k) { return r->last_train.count(k) ? r->last_train.at(k) : std::nan(""); };
    runs[name] = {{"lambda", lambda},
                  {"steps", r->steps_done},
                  {"final_train", r->last_train},
                  {"evaluations", r->evaluations},
                  {"export", r->export_dir}};
    md += "| " + name + " | " + std::to_string(lambda).substr(0, 4) + " | " + std::to_string(r->steps_done) + " | " +
          std::to_string(get("loss")).substr(0, 6) + " | " + std::to_string(get("loss_diffusion")).substr(0, 6) + " | " +
          (lambda > 0 ? std::to_string(get("loss_corr")).substr(0, 6) : std::string("-")) + " | " +
          pct(metric(before, "qk/average_pts_within_thresh")) + " -> " + pct(metric(after, "qk/average_pts_within_thresh")) +
          " | " + pct(metric(before, "refined/average_pts_within_thresh")) + " -> " +
          pct(metric(after, "refined/average_pts_within_thresh")) + " | " +
          pct(metric(before, "refined_softargmax/average_pts_within_thresh")) + " -> " +
          pct(metric(after, "refined_softargmax/average_pts_within_thresh")) + " | " +
          std::to_string(metric(before, "refined_softargmax/pixel_error")).substr(0, 5) + " -> " +
          std::to_string(metric(after, "refined_softargmax/pixel_error")).substr(0, 5) + " |\n";
  }
  md += "\nZero-motion baseline <delta_avg: " + pct(baseline["mean"]["average_pts_within_thresh"].get<double>()) + "\n";
  report["runs"] = runs;
  write_json(path_join(out_dir, "report.json"), report);
  write_file_atomically(path_join(out_dir, "report.md"), md);
  T4G_INFO("demo: done; report in ", path_join(out_dir, "report.md"), "\n", md);
  return report;
}

}  // namespace t4g
