#include "eval/tapvid_metrics.h"

#include <cmath>
#include <limits>

#include "common/error.h"

namespace t4g {
namespace {

const int64_t kThresholds[] = {1, 2, 4, 8, 16};

void check_shape(const torch::Tensor& t, const std::string& name, std::vector<int64_t> shape) {
  ErrorContext ctx;
  ctx.tensor = name;
  ctx.got = t4g::str(t.sizes());
  ctx.expected = t4g::str(c10::IntArrayRef(shape));
  T4G_CHECK_CTX(t.sizes() == c10::IntArrayRef(shape), ctx, "wrong shape");
}

double ratio(int64_t num, int64_t den) {
  return den == 0 ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(num) / static_cast<double>(den);
}

}  // namespace

QueryMode parse_query_mode(const std::string& text) {
  if (text == "first") return QueryMode::kFirst;
  if (text == "strided") return QueryMode::kStrided;
  ErrorContext ctx;
  ctx.key = "query mode";
  ctx.expected = "first|strided";
  ctx.got = text;
  throw Error("unknown query mode", ctx);
}

const std::vector<std::string>& tapvid_metric_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n = {"occlusion_accuracy"};
    for (int64_t d : kThresholds) n.push_back("pts_within_" + std::to_string(d));
    for (int64_t d : kThresholds) n.push_back("jaccard_" + std::to_string(d));
    n.push_back("average_jaccard");
    n.push_back("average_pts_within_thresh");
    return n;
  }();
  return names;
}

TapVidQueries sample_queries(const torch::Tensor& tracks, const torch::Tensor& occluded, QueryMode mode,
                             int64_t stride) {
  T4G_CHECK(tracks.dim() == 3 && tracks.size(2) == 2, "tracks must be [N, T, 2], got ", tracks.sizes());
  const int64_t n = tracks.size(0), t = tracks.size(1);
  check_shape(occluded, "occluded", {n, t});
  T4G_CHECK(stride >= 1, "query stride must be >= 1, got ", stride);
  const torch::Tensor pts = tracks.to(torch::kFloat32).contiguous();
  const torch::Tensor occ = occluded.to(torch::kBool).contiguous();
  const auto p = pts.accessor<float, 3>();
  const auto o = occ.accessor<bool, 2>();

  std::vector<int64_t> index, query_frame;
  if (mode == QueryMode::kFirst) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t f = 0; f < t; ++f) {
        if (!o[i][f]) {
          index.push_back(i);
          query_frame.push_back(f);
          break;
        }
      }
    }
  } else {
    for (int64_t f = 0; f < t; f += stride) {
      for (int64_t i = 0; i < n; ++i) {
        if (!o[i][f]) {
          index.push_back(i);
          query_frame.push_back(f);
        }
      }
    }
  }
  const int64_t q = static_cast<int64_t>(index.size());
  TapVidQueries out;
  out.track_index = torch::tensor(index, torch::kInt64).reshape({q});
  out.query_points = torch::empty({q, 3}, torch::kFloat32);
  auto qp = out.query_points.accessor<float, 2>();
  for (int64_t k = 0; k < q; ++k) {
    qp[k][0] = static_cast<float>(query_frame[static_cast<size_t>(k)]);
    qp[k][1] = p[index[static_cast<size_t>(k)]][query_frame[static_cast<size_t>(k)]][1];
    qp[k][2] = p[index[static_cast<size_t>(k)]][query_frame[static_cast<size_t>(k)]][0];
  }
  out.target_points = pts.index_select(0, out.track_index);
  out.occluded = occ.index_select(0, out.track_index);
  return out;
}

std::map<std::string, double> compute_tapvid_metrics(const torch::Tensor& query_points,
                                                     const torch::Tensor& gt_occluded,
                                                     const torch::Tensor& gt_tracks,
                                                     const torch::Tensor& pred_occluded,
                                                     const torch::Tensor& pred_tracks, QueryMode mode) {
  T4G_CHECK(gt_tracks.dim() == 3 && gt_tracks.size(2) == 2, "gt_tracks must be [Q, T, 2], got ", gt_tracks.sizes());
  const int64_t q = gt_tracks.size(0), t = gt_tracks.size(1);
  check_shape(query_points, "query_points", {q, 3});
  check_shape(gt_occluded, "gt_occluded", {q, t});
  check_shape(pred_occluded, "pred_occluded", {q, t});
  check_shape(pred_tracks, "pred_tracks", {q, t, 2});

  // Evaluation mask: 'first' scores frames strictly after the query frame, 'strided' every frame
  // but the query frame. The query frame is np.round(t) (half to even, like nearbyint).
  const torch::Tensor qf = query_points.select(1, 0).to(torch::kFloat64).round().to(torch::kInt64).unsqueeze(1);
  const torch::Tensor frames = torch::arange(t, torch::kInt64).unsqueeze(0);
  const torch::Tensor eval = mode == QueryMode::kFirst ? frames > qf : frames != qf;

  const torch::Tensor gt_occ = gt_occluded.to(torch::kBool), pred_occ = pred_occluded.to(torch::kBool);
  const torch::Tensor visible = ~gt_occ, pred_visible = ~pred_occ;
  // Squared distances in the inputs' promoted dtype, like numpy (float32 tracks stay float32), so
  // a distance within rounding of a threshold falls on the same side as in the reference.
  const auto dtype = torch::promote_types(pred_tracks.scalar_type(), gt_tracks.scalar_type());
  const torch::Tensor d2 = (pred_tracks.to(dtype) - gt_tracks.to(dtype)).pow(2).sum(-1);

  auto count = [](const torch::Tensor& m) { return m.sum().item<int64_t>(); };
  std::map<std::string, double> metrics;
  metrics["occlusion_accuracy"] = ratio(count((pred_occ == gt_occ) & eval), count(eval));
  const int64_t visible_eval = count(visible & eval);
  double sum_within = 0.0, sum_jaccard = 0.0;
  for (int64_t delta : kThresholds) {
    const torch::Tensor within = d2 < static_cast<double>(delta * delta);
    const torch::Tensor correct = within & visible;
    const double frac = ratio(count(correct & eval), visible_eval);
    const int64_t true_positives = count(correct & pred_visible & eval);
    // Predicted visible but wrong: GT-occluded, or farther than delta.
    const int64_t false_positives = count((~within | ~visible) & pred_visible & eval);
    const double jaccard = ratio(true_positives, visible_eval + false_positives);
    metrics["pts_within_" + std::to_string(delta)] = frac;
    metrics["jaccard_" + std::to_string(delta)] = jaccard;
    sum_within += frac;
    sum_jaccard += jaccard;
  }
  metrics["average_jaccard"] = sum_jaccard / 5.0;
  metrics["average_pts_within_thresh"] = sum_within / 5.0;
  return metrics;
}

std::map<std::string, double> mean_over_videos(const std::vector<std::map<std::string, double>>& per_video) {
  std::map<std::string, double> mean;
  if (per_video.empty()) return mean;
  for (const std::string& name : tapvid_metric_names()) {
    double sum = 0.0;
    for (const auto& v : per_video) {
      const auto it = v.find(name);
      T4G_CHECK(it != v.end(), "metric ", name, " missing from a video's results");
      sum += it->second;
    }
    mean[name] = sum / static_cast<double>(per_video.size());
  }
  return mean;
}

}  // namespace t4g
