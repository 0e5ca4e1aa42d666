// DiffTrack's layer x timestep analysis (see difftrack_analysis.h). Per video: frames -> standard
// (4x temporal) VAE latents; per timestep one forward that captures Q/K and hidden states of every
// analysed layer and stops after the last; per layer the four measurements below; sums over videos
// are averaged at the end. Choices where the reference is ambiguous or buggy (methods.md 1.7, 4.9):
// the query token is gathered at row = y, column = x (the reference swaps them); a query's cell is
// the one containing it (floor(x / stride)); never-visible points count 0 in the cross confidence,
// as in the reference; the 13 -> 49 frame interpolation is the reference's (align_corners = false).
#include "eval/difftrack_analysis.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/png.h"
#include "common/progress.h"
#include "common/shape_string.h"
#include "models/attention_probe.h"

namespace t4g {
namespace {

namespace F = torch::nn::functional;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Sums over videos of one cell's measurements.
struct CellSums {
  double qk = 0, hidden = 0;
  double conf_text = 0, conf_self = 0, conf_cross = 0;
  double attn_text = 0, attn_self = 0, attn_cross = 0;
  int64_t attn_videos = 0;  // videos with a point visible at frame 0
};

// Latent-frame tracks [N, L, 2] -> pixel-frame tracks [N, frames, 2] by the reference's 1-D linear
// interpolation (align_corners = false): frame o reads latent (o + 0.5) * L / frames - 0.5, clamped.
torch::Tensor upsample_tracks(const torch::Tensor& latent_tracks, int64_t frames) {
  const int64_t latents = latent_tracks.size(1);
  std::vector<torch::Tensor> out;
  for (int64_t o = 0; o < frames; ++o) {
    double c = (static_cast<double>(o) + 0.5) * static_cast<double>(latents) / static_cast<double>(frames) - 0.5;
    c = std::clamp(c, 0.0, static_cast<double>(latents - 1));
    const int64_t lo = static_cast<int64_t>(std::floor(c));
    const int64_t hi = std::min(lo + 1, latents - 1);
    const double a = c - static_cast<double>(lo);
    out.push_back(latent_tracks.select(1, lo) * (1.0 - a) + latent_tracks.select(1, hi) * a);
  }
  return torch::stack(out, 1);
}

// 100 * share of visible (point, frame) pairs predicted within the threshold.
double matching_accuracy(const torch::Tensor& pred, const torch::Tensor& gt, const torch::Tensor& visible,
                         double threshold) {
  const auto close = (pred - gt).norm(2, -1) < threshold;
  const double visible_count = visible.sum().item<double>();
  if (visible_count == 0) return kNaN;
  return 100.0 * (close & visible).sum().item<double>() / visible_count;
}

// Tracks of all queries from frame 0 through per-latent-frame cost maps C_f [target, source].
torch::Tensor latent_tracks_from(const std::function<torch::Tensor(int64_t)>& cost_of_frame, int64_t latents,
                                 const torch::Tensor& queries, const TokenGrid& grid, int64_t height, int64_t width,
                                 const MatchOptions& match, const std::string& what) {
  std::vector<torch::Tensor> per_frame{queries};
  for (int64_t f = 1; f < latents; ++f) {
    const FrameMatches m = match_through_cost_map(cost_of_frame(f), grid.height, grid.width, height, width, queries,
                                                  match, str(what, " cost map of latent frame ", f));
    per_frame.push_back(m.positions.cpu());
  }
  return torch::stack(per_frame, 1);
}

std::vector<int64_t> all_if_empty(const std::vector<int64_t>& v, int64_t n) {
  if (!v.empty()) return v;
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  return all;
}

// A colour for v in [0, 1]: dark blue -> teal -> green -> yellow (a viridis-like ramp).
std::array<uint8_t, 3> ramp(double v) {
  static const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  v = std::clamp(v, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(v));
  const double a = v - i;
  std::array<uint8_t, 3> c{};
  for (int k = 0; k < 3; ++k) c[k] = static_cast<uint8_t>(std::lround(stops[i][k] * (1 - a) + stops[i + 1][k] * a));
  return c;
}

// Min-max normalisation over the whole table (utils/harmonic_mean.py).
std::vector<double> min_max(const std::vector<double>& v) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const double x : v) {
    if (std::isfinite(x)) lo = std::min(lo, x), hi = std::max(hi, x);
  }
  std::vector<double> out;
  for (const double x : v) out.push_back((x - lo) / (hi - lo));
  return out;
}

}  // namespace

AnalysisResult analyze_difftrack(ModelComponents& c, const TrackingVideoSource& source, const AnalysisOptions& o) {
  T4G_CHECK(c.transformer && c.vae, "the analysis needs the transformer and the VAE");
  T4G_CHECK(o.height % 16 == 0 && o.width % 16 == 0 && o.height > 0 && o.width > 0,
            "analysis size must be positive multiples of 16, got ", o.height, "x", o.width);
  AnalysisResult result;
  result.layers = all_if_empty(o.layers, c.transformer->config().num_layers);
  result.timestep_indices = all_if_empty(o.timestep_indices, o.num_steps);
  // Validates both lists against the model (same errors as the tracker).
  std::vector<int64_t> timesteps;
  {
    CogVideoXScheduler scheduler = c.scheduler;
    T4G_CHECK(o.num_steps > 0, "num_steps must be positive, got ", o.num_steps);
    const torch::Tensor grid = scheduler.set_timesteps(o.num_steps);
    const int64_t num_layers = c.transformer->config().num_layers;
    for (const int64_t l : result.layers) {
      ErrorContext ctx;
      ctx.key = "layer";
      ctx.expected = str("a block index in [0, ", num_layers, ")");
      ctx.got = std::to_string(l);
      T4G_CHECK_CTX(l >= 0 && l < num_layers, ctx, "layer ", l, " is out of range: the model has ", num_layers,
                    " transformer blocks");
    }
    for (const int64_t i : result.timestep_indices) {
      ErrorContext ctx;
      ctx.key = "timestep index";
      ctx.expected = str("an index in [0, ", o.num_steps, ")");
      ctx.got = std::to_string(i);
      T4G_CHECK_CTX(i >= 0 && i < grid.size(0), ctx, "timestep index ", i, " is out of range for ", o.num_steps, " steps");
      timesteps.push_back(grid[i].item<int64_t>());
    }
  }
  const size_t rows = result.timestep_indices.size(), cols = result.layers.size();
  std::vector<CellSums> sums(rows * cols);

  torch::Tensor text;
  if (o.text_embedding.defined()) {
    text = (o.text_embedding.dim() == 2 ? o.text_embedding.unsqueeze(0) : o.text_embedding).to(c.device, c.dtype);
    T4G_CHECK(text.dim() == 3 && text.size(2) == c.transformer->config().text_embed_dim,
              "text embedding must be [S, ", c.transformer->config().text_embed_dim, "], got [",
              shape_string(o.text_embedding.sizes()), "]");
  } else {
    text = torch::zeros({1, c.text_tokens, c.transformer->config().text_embed_dim},
                        torch::TensorOptions().dtype(c.dtype).device(c.device));
  }
  const int64_t text_len = text.size(1);
  MatchOptions match;
  match.readout.reference_readout = o.reference_readout;
  match.occlusion.rule = OcclusionRule::kNone;
  ProbeOptions probes;
  probes.query_key_layers = std::set<int64_t>(result.layers.begin(), result.layers.end());
  if (o.hidden_features) probes.hidden_layers = probes.query_key_layers;
  probes.stop_after_last_capture = true;
  TransformerForwardOptions forward;
  forward.probes = &probes;
  const int64_t ratio = 4;  // CogVideoX's temporal compression: latent f >= 1 covers frames 4f-3 .. 4f

  size_t count = source.count;
  if (o.max_videos > 0) count = std::min(count, static_cast<size_t>(o.max_videos));
  ProgressOptions po;
  po.unit = "videos";
  po.enabled = o.show_progress && log_level() <= LogLevel::kInfo;
  ProgressBar progress("analysis", static_cast<int64_t>(count), po);
  torch::NoGradGuard no_grad;
  for (size_t vi = 0; vi < count; ++vi) {
    TrackingVideo v = source.load(vi);
    ErrorContext vctx;
    vctx.key = v.name;
    vctx.tensor = "tracks";
    vctx.got = str("[", shape_string(v.tracks.sizes()), "]");
    T4G_CHECK_CTX(v.tracks.defined() && v.tracks.dim() == 3 && v.tracks.size(0) > 0 && v.tracks.size(1) == v.frames.size(0),
                  vctx, "the analysis needs ground-truth tracks for every frame");
    const int64_t available = v.frames.size(0);
    const int64_t n = o.frames > 0 ? o.frames : (available - 1) / ratio * ratio + 1;
    T4G_CHECK((n - 1) % ratio == 0, "analysis frames must be 4k+1, got ", n);
    if (available < n) {
      T4G_WARN("analysis: ", v.name, " has ", available, " frames, fewer than ", n, "; skipped");
      progress.update();
      continue;
    }
    const double sx = static_cast<double>(o.width) / static_cast<double>(v.frames.size(2));
    const double sy = static_cast<double>(o.height) / static_cast<double>(v.frames.size(1));
    const auto gt = v.tracks.narrow(1, 0, n).to(torch::kFloat32) * torch::tensor({sx, sy}).to(torch::kFloat32);
    const auto visible = v.visibility.narrow(1, 0, n).to(torch::kBool);
    const auto queries = gt.select(1, 0).contiguous();  // every track's frame-0 position (the grid in the reference)
    const auto visible0 = visible.select(1, 0);
    const auto video = resize_frames_for_tracking(v.frames.narrow(0, 0, n).to(c.device), o.height, o.width, false);
    const torch::Tensor any = c.vae->parameters().front();
    const auto pixels = video.permute({3, 0, 1, 2}).unsqueeze(0).div(127.5).sub(1.0).to(any.device(), any.scalar_type());
    const auto z0 = vae_to_transformer_layout(c.vae->encode_latents(pixels));  // [1, L, C, h, w]
    const int64_t latents = z0.size(1);
    const TokenGrid grid = c.transformer->token_grid(latents, z0.size(3), z0.size(4));
    const int64_t tokens = grid.tokens_per_frame();
    const double stride_x = static_cast<double>(o.width) / static_cast<double>(grid.width);
    const double stride_y = static_cast<double>(o.height) / static_cast<double>(grid.height);
    // Visibility per latent frame: visible in every pixel frame the latent covers.
    std::vector<torch::Tensor> latent_visible{visible0};
    for (int64_t f = 1; f < latents; ++f) {
      const int64_t first = ratio * f - (ratio - 1), last = std::min(ratio * f, n - 1);
      latent_visible.push_back(visible.narrow(1, first, last - first + 1).all(1));
    }
    const auto lv = torch::stack(latent_visible, 1).to(torch::kFloat32).to(c.device);  // [N, L]
    // Frame-0 token of each query: the cell containing it, row = y, column = x.
    const auto col = (queries.select(1, 0) / stride_x).floor().clamp(0, grid.width - 1).to(torch::kLong);
    const auto row = (queries.select(1, 1) / stride_y).floor().clamp(0, grid.height - 1).to(torch::kLong);
    const auto query_tokens = (row * grid.width + col + text_len).to(c.device);

    for (size_t ri = 0; ri < rows; ++ri) {
      const auto t = torch::full({1}, timesteps[ri], torch::TensorOptions().dtype(torch::kLong));
      torch::Tensor z = z0;
      if (o.add_noise) {
        auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed * 7919ULL + vi * 1000ULL + ri);
        const auto noise = at::normal(0.0, 1.0, z0.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat32));
        z = c.scheduler.add_noise(z0.to(torch::kFloat32), noise.to(z0.device()), t.to(z0.device())).to(z0.scalar_type());
      }
      TransformerOutput out = c.transformer->forward(z, text, t, forward);
      for (size_t li = 0; li < cols; ++li) {
        const int64_t layer = result.layers[li];
        CellSums& s = sums[ri * cols + li];
        const torch::Tensor q = out.captured.query.at(layer), k = out.captured.key.at(layer);
        const double head_dim = static_cast<double>(q.size(-1));
        // (a) Query-key matching: frame 0 -> f, per-head softmax with 1/sqrt(head_dim), heads averaged.
        CostMapOptions cost;
        cost.scale = 1.0 / std::sqrt(head_dim);
        cost.mean_over_heads = true;
        const auto qk_cost = [&](int64_t f) {
          return attention_cost_maps(q, k, text_len, grid, {{0, f}}, cost)[0][0][0].t();
        };
        const auto qk_tracks = upsample_tracks(
            latent_tracks_from(qk_cost, latents, queries, grid, o.height, o.width, match, str("layer ", layer)), n);
        s.qk += matching_accuracy(qk_tracks, gt, visible, o.accuracy_threshold_px);
        // (b) Confidence and attention scores from frame-0 queries over the whole joint sequence.
        std::vector<torch::Tensor> attention;  // [N, S] chunks, heads averaged
        for (int64_t begin = 0; begin < query_tokens.size(0); begin += o.query_chunk) {
          const auto idx = query_tokens.narrow(0, begin, std::min(o.query_chunk, query_tokens.size(0) - begin));
          const auto qs = q[0].index_select(1, idx).to(torch::kFloat32);  // [heads, n, d]
          const auto logits = torch::matmul(qs, k[0].to(torch::kFloat32).transpose(-1, -2)) / std::sqrt(head_dim);
          attention.push_back(torch::softmax(logits, -1).mean(0));
        }
        const auto a = torch::cat(attention, 0);  // [N, S]
        const auto text_part = a.narrow(1, 0, text_len);
        const auto self_part = a.narrow(1, text_len, tokens);
        const auto frames_part = a.narrow(1, text_len, grid.video_tokens()).view({a.size(0), latents, tokens});
        s.conf_text += text_part.amax(1).mean().item<double>();
        s.conf_self += self_part.amax(1).mean().item<double>();
        const auto cross_max = frames_part.amax(2).narrow(1, 1, latents - 1);  // [N, L - 1]
        const auto vis = lv.narrow(1, 1, latents - 1);
        s.conf_cross += ((cross_max * vis).sum(1) / vis.sum(1).clamp_min(1e-8)).mean().item<double>();
        const auto keep = visible0.to(c.device).nonzero().flatten();
        if (keep.numel() > 0) {
          const auto ak = a.index_select(0, keep);
          s.attn_text += ak.narrow(1, 0, text_len).sum(1).mean().item<double>();
          s.attn_self += ak.narrow(1, text_len, tokens).sum(1).mean().item<double>();
          s.attn_cross += ak.narrow(1, text_len + tokens, grid.video_tokens() - tokens).sum(1).mean().item<double>();
          ++s.attn_videos;
        }
        // (c) Hidden features: cosine matching of the block's output tokens.
        if (o.hidden_features) {
          const auto h = out.captured.hidden.at(layer)[0].to(torch::kFloat32);  // [L * tokens, D]
          const auto feats = F::normalize(h.view({latents, tokens, -1}), F::NormalizeFuncOptions().dim(2));
          const auto hidden_cost = [&](int64_t f) { return torch::matmul(feats[f], feats[0].t()); };
          const auto hidden_tracks = upsample_tracks(
              latent_tracks_from(hidden_cost, latents, queries, grid, o.height, o.width, match,
                                 str("hidden layer ", layer)),
              n);
          s.hidden += matching_accuracy(hidden_tracks, gt, visible, o.accuracy_threshold_px);
        }
      }
    }
    ++result.videos;
    progress.update();
  }
  progress.finish();
  T4G_CHECK(result.videos > 0, "no video could be analysed (each needs at least the requested 4k+1 frames)");

  const double nv = static_cast<double>(result.videos);
  std::vector<double> acc, conf, attn;
  for (size_t ri = 0; ri < rows; ++ri) {
    for (size_t li = 0; li < cols; ++li) {
      const CellSums& s = sums[ri * cols + li];
      AnalysisCell cell;
      cell.timestep_index = result.timestep_indices[ri];
      cell.timestep = timesteps[ri];
      cell.layer = result.layers[li];
      cell.qk_accuracy = s.qk / nv;
      cell.hidden_accuracy = o.hidden_features ? s.hidden / nv : kNaN;
      cell.confidence_text = s.conf_text / nv;
      cell.confidence_self = s.conf_self / nv;
      cell.confidence_cross = s.conf_cross / nv;
      const double na = static_cast<double>(s.attn_videos);
      cell.attention_text = s.attn_videos > 0 ? s.attn_text / na : kNaN;
      cell.attention_self = s.attn_videos > 0 ? s.attn_self / na : kNaN;
      cell.attention_cross = s.attn_videos > 0 ? s.attn_cross / na : kNaN;
      acc.push_back(cell.qk_accuracy);
      conf.push_back(cell.confidence_cross);
      attn.push_back(cell.attention_cross);
      result.cells.push_back(cell);
    }
  }
  const auto na = min_max(acc), nc = min_max(conf), nt = min_max(attn);
  for (size_t i = 0; i < result.cells.size(); ++i) {
    const double hm = 3.0 / (1.0 / na[i] + 1.0 / nc[i] + 1.0 / nt[i]);
    result.cells[i].harmonic_mean = std::isfinite(hm) ? hm : 0.0;
    if (result.cells[i].harmonic_mean > result.cells[result.best].harmonic_mean) result.best = i;
    if (result.cells[i].qk_accuracy > result.cells[result.best_accuracy].qk_accuracy) result.best_accuracy = i;
  }
  return result;
}

std::string analysis_csv(const AnalysisResult& r) {
  std::ostringstream os;
  os.precision(6);
  os << "timestep_index,timestep,layer,qk_accuracy,hidden_accuracy,confidence_text,confidence_self,confidence_cross,"
        "attention_text,attention_self,attention_cross,harmonic_mean\n";
  for (const AnalysisCell& c : r.cells) {
    os << c.timestep_index << ',' << c.timestep << ',' << c.layer << ',' << c.qk_accuracy << ',' << c.hidden_accuracy
       << ',' << c.confidence_text << ',' << c.confidence_self << ',' << c.confidence_cross << ',' << c.attention_text
       << ',' << c.attention_self << ',' << c.attention_cross << ',' << c.harmonic_mean << '\n';
  }
  return os.str();
}

torch::Tensor analysis_heatmap(const AnalysisResult& r, double AnalysisCell::*metric, int64_t cell) {
  const int64_t rows = static_cast<int64_t>(r.timestep_indices.size()), cols = static_cast<int64_t>(r.layers.size());
  T4G_CHECK(rows * cols == static_cast<int64_t>(r.cells.size()) && rows > 0 && cell > 0,
            "heatmap: the table does not match its grid");
  std::vector<double> values;
  for (const AnalysisCell& c : r.cells) values.push_back(c.*metric);
  const auto scaled = min_max(values);
  auto image = torch::empty({rows * cell, cols * cell, 3}, torch::kUInt8);
  auto acc = image.accessor<uint8_t, 3>();
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const double v = scaled[static_cast<size_t>(i * cols + j)];
      // A constant table (0 / 0) is drawn at the middle of the ramp; NaN entries grey.
      const std::array<uint8_t, 3> colour =
          std::isnan(values[static_cast<size_t>(i * cols + j)]) ? std::array<uint8_t, 3>{128, 128, 128}
                                                                 : ramp(std::isfinite(v) ? v : 0.5);
      for (int64_t y = i * cell; y < (i + 1) * cell; ++y) {
        for (int64_t x = j * cell; x < (j + 1) * cell; ++x) {
          for (int k = 0; k < 3; ++k) acc[y][x][k] = colour[k];
        }
      }
    }
  }
  return image;
}

Json write_analysis(const std::string& dir, const AnalysisResult& r) {
  make_dirs(dir);
  write_file_atomically(path_join(dir, "ANALYSIS.csv"), analysis_csv(r));
  write_png(path_join(dir, "heatmap_qk_accuracy.png"), analysis_heatmap(r, &AnalysisCell::qk_accuracy));
  write_png(path_join(dir, "heatmap_harmonic_mean.png"), analysis_heatmap(r, &AnalysisCell::harmonic_mean));
  if (!r.cells.empty() && !std::isnan(r.cells.front().hidden_accuracy)) {
    write_png(path_join(dir, "heatmap_hidden_accuracy.png"), analysis_heatmap(r, &AnalysisCell::hidden_accuracy));
  }
  auto cell_json = [](const AnalysisCell& c) {
    auto num = [](double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); };
    return Json{{"timestep_index", c.timestep_index}, {"timestep", c.timestep}, {"layer", c.layer},
                {"qk_accuracy", num(c.qk_accuracy)}, {"hidden_accuracy", num(c.hidden_accuracy)},
                {"confidence_cross", num(c.confidence_cross)}, {"attention_cross", num(c.attention_cross)},
                {"harmonic_mean", num(c.harmonic_mean)}};
  };
  Json doc{{"videos", r.videos},
           {"layers", r.layers},
           {"timestep_indices", r.timestep_indices},
           {"heatmap_rows", "timestep_indices (top to bottom)"},
           {"heatmap_columns", "layers (left to right)"},
           {"best_harmonic_mean", cell_json(r.cells.at(r.best))},
           {"best_qk_accuracy", cell_json(r.cells.at(r.best_accuracy))}};
  write_json(path_join(dir, "ANALYSIS.json"), doc);
  return doc;
}

}  // namespace t4g
