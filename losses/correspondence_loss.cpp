// Correspondence loss: query sampling runs on the CPU (trajectories are small and arrive on the
// CPU from the loader; every random draw comes from the caller's generator), the loss itself is
// tensor code on the features' device. The cost volume is one batched matmul of the queries
// against every frame's normalised map ([B, F, Q, h*w], 36 MB for 2 clips x 13 frames x 256 points
// x 30x45 cells in fp32); the query features are sampled from every frame's map at once and the
// query frame's sample kept, so no per-query copy of a feature map is ever made.
#include "losses/correspondence_loss.h"

#include <algorithm>

#include "common/error.h"
#include "common/pixel_grid.h"
#include "common/shape_string.h"

namespace t4g {
namespace F = torch::nn::functional;

namespace {

void check_tensor(bool ok, const char* name, const std::string& expected, const torch::Tensor& t) {
  ErrorContext ctx;
  ctx.tensor = name;
  ctx.expected = expected;
  ctx.got = t.defined() ? shape_string(t.sizes()) + " " + std::string(c10::toString(t.scalar_type())) : "undefined";
  T4G_CHECK_CTX(ok, ctx, "correspondence loss: bad ", name);
}

// The robust distance of errors [..., 2] (feature cells), summed over x and y.
torch::Tensor robust_distance(const torch::Tensor& err, const CorrespondenceLossOptions& options) {
  switch (options.loss) {
    case RobustLoss::kL1:
      return err.abs().sum(-1);
    case RobustLoss::kL2:
      return err.square().sum(-1);
    case RobustLoss::kHuber: {
      const double d = options.huber_delta;
      const auto a = err.abs();
      return torch::where(a <= d, 0.5 * err.square(), d * (a - 0.5 * d)).sum(-1);
    }
  }
  throw Error("unknown robust loss");
}

}  // namespace

void CorrespondenceLossOptions::validate() const {
  ErrorContext ctx;
  ctx.key = "correspondence";
  T4G_CHECK_CTX(num_query_points >= 1, ctx, "num_query_points must be >= 1, got ", num_query_points);
  T4G_CHECK_CTX(num_target_frames >= 1, ctx, "num_target_frames must be >= 1, got ", num_target_frames);
  T4G_CHECK_CTX(temperature > 0.0, ctx, "temperature must be > 0, got ", temperature);
  T4G_CHECK_CTX(huber_delta > 0.0, ctx, "huber_delta must be > 0, got ", huber_delta);
  T4G_CHECK_CTX(stride >= 1, ctx, "stride must be >= 1, got ", stride);
  T4G_CHECK_CTX(temporal_compression >= 1, ctx, "temporal_compression must be >= 1, got ", temporal_compression);
}

CorrespondenceQueries sample_correspondence_queries(const torch::Tensor& tracks, const torch::Tensor& visibility,
                                                    const torch::Tensor& track_mask, int64_t latent_frames,
                                                    const CorrespondenceLossOptions& options,
                                                    torch::Generator generator) {
  options.validate();
  check_tensor(tracks.defined() && tracks.dim() == 4 && tracks.size(3) == 2 && tracks.is_floating_point(), "tracks",
               "float [B, N, F, 2]", tracks);
  const int64_t b = tracks.size(0), n = tracks.size(1), pixel_frames = tracks.size(2);
  check_tensor(visibility.defined() && visibility.scalar_type() == torch::kBool &&
                   visibility.sizes() == torch::IntArrayRef({b, n, pixel_frames}),
               "visibility", t4g::str("bool [", b, ", ", n, ", ", pixel_frames, "]"), visibility);
  check_tensor(track_mask.defined() && track_mask.scalar_type() == torch::kBool &&
                   track_mask.sizes() == torch::IntArrayRef({b, n}),
               "track_mask", t4g::str("bool [", b, ", ", n, "]"), track_mask);
  T4G_CHECK(latent_frames >= 1, "correspondence loss: the feature map has no frame");
  const int64_t last = latent_frame_to_pixel_frame(latent_frames - 1, options.temporal_compression);
  {
    ErrorContext ctx;
    ctx.tensor = "tracks";
    ctx.expected = t4g::str("at least ", last + 1, " frames (", latent_frames, " latent frames, temporal compression ",
                            options.temporal_compression, ")");
    ctx.got = t4g::str(pixel_frames, " frames");
    T4G_CHECK_CTX(last < pixel_frames, ctx, "correspondence loss: the trajectories are shorter than the latents");
  }

  // Trajectories at each latent frame's representative video frame.
  std::vector<int64_t> frames(static_cast<size_t>(latent_frames));
  for (int64_t k = 0; k < latent_frames; ++k) {
    frames[static_cast<size_t>(k)] = latent_frame_to_pixel_frame(k, options.temporal_compression);
  }
  const auto frame_index = torch::tensor(frames, torch::kLong);
  const auto xy = tracks.to(torch::kCPU, torch::kFloat32).index_select(2, frame_index);  // [B, N, F, 2]
  const auto visible = visibility.to(torch::kCPU).index_select(2, frame_index) &
                       track_mask.to(torch::kCPU).unsqueeze(-1) & torch::isfinite(xy).all(-1);  // [B, N, F]

  const int64_t q = std::min(options.num_query_points, n);
  const int64_t f = latent_frames;
  CorrespondenceQueries out;
  out.point_index = torch::full({b, q}, -1, torch::kLong);
  out.query_frame = torch::zeros({b, q}, torch::kLong);
  out.query_xy = torch::zeros({b, q, 2}, torch::kFloat32);
  out.target_xy = torch::zeros({b, q, f, 2}, torch::kFloat32);
  out.valid = torch::zeros({b, q, f}, torch::kBool);
  if (q == 0) return out;

  for (int64_t i = 0; i < b; ++i) {
    const auto vis = visible[i];  // [N, F]
    const auto eligible = options.query_frame == QueryFrameRule::kFirst ? vis.select(1, 0) : vis.any(1);
    const auto candidates = eligible.nonzero().flatten();
    const int64_t count = std::min(q, candidates.size(0));
    if (count == 0) continue;
    // A uniform draw without replacement: the candidates with the `count` smallest random keys.
    const auto order = torch::rand({candidates.size(0)}, generator).argsort();
    const auto chosen = candidates.index_select(0, order.slice(0, 0, count));  // [count]
    const auto chosen_vis = vis.index_select(0, chosen);                       // [count, F]

    torch::Tensor query_frame;
    if (options.query_frame == QueryFrameRule::kFirst) {
      query_frame = torch::zeros({count}, torch::kLong);
    } else {
      // Uniform among the visible frames: the largest random key among them.
      const auto keys = torch::rand({count, f}, generator).masked_fill(~chosen_vis, -1.0);
      query_frame = keys.argmax(1);
    }
    const auto is_query = torch::arange(f, torch::kLong).unsqueeze(0) == query_frame.unsqueeze(1);  // [count, F]
    torch::Tensor target;
    if (options.target_frames == TargetFrameRule::kAllOthers) {
      target = ~is_query;
    } else {
      const int64_t k = std::min(options.num_target_frames, f - 1);
      target = torch::zeros({count, f}, torch::kBool);
      if (k > 0) {
        const auto keys = torch::rand({count, f}, generator).masked_fill(is_query, -1.0);
        target.scatter_(1, std::get<1>(keys.topk(k, 1)), true);
      }
    }
    const auto valid = target & chosen_vis;
    const auto chosen_xy = xy[i].index_select(0, chosen);  // [count, F, 2]
    out.candidate_pairs += target.sum().item<int64_t>();
    out.point_index[i].slice(0, 0, count) = chosen;
    out.query_frame[i].slice(0, 0, count) = query_frame;
    out.query_xy[i].slice(0, 0, count) =
        chosen_xy.gather(1, query_frame.view({count, 1, 1}).expand({count, 1, 2})).squeeze(1);
    out.target_xy[i].slice(0, 0, count) = torch::where(valid.unsqueeze(-1), chosen_xy, torch::zeros_like(chosen_xy));
    out.valid[i].slice(0, 0, count) = valid;
  }
  return out;
}

CorrespondenceResult correspondence_loss(const torch::Tensor& features, const CorrespondenceQueries& queries,
                                         const CorrespondenceLossOptions& options) {
  options.validate();
  check_tensor(features.defined() && features.dim() == 5 && features.is_floating_point(), "features",
               "float [B, F, C, h, w]", features);
  const int64_t b = features.size(0), f = features.size(1), c = features.size(2);
  const int64_t h = features.size(3), w = features.size(4);
  const int64_t q = queries.point_index.defined() ? queries.point_index.size(1) : -1;
  check_tensor(queries.valid.defined() && queries.valid.sizes() == torch::IntArrayRef({b, q, f}), "queries.valid",
               t4g::str("[", b, ", Q, ", f, "] matching the features [B, F, ...]"), queries.valid);
  check_tensor(queries.target_xy.sizes() == torch::IntArrayRef({b, q, f, 2}), "queries.target_xy",
               t4g::str("[", b, ", ", q, ", ", f, ", 2]"), queries.target_xy);
  check_tensor(queries.query_xy.sizes() == torch::IntArrayRef({b, q, 2}), "queries.query_xy",
               t4g::str("[", b, ", ", q, ", 2]"), queries.query_xy);
  check_tensor(queries.query_frame.sizes() == torch::IntArrayRef({b, q}), "queries.query_frame",
               t4g::str("[", b, ", ", q, "]"), queries.query_frame);

  // float32 at least: a temperature-sharpened softmax over thousands of cells in bf16 is too coarse.
  const auto dtype = features.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const auto device = features.device();
  const auto opts = torch::TensorOptions().dtype(dtype).device(device);
  const double stride = static_cast<double>(options.stride);
  const auto normed = F::normalize(features.to(dtype), F::NormalizeFuncOptions().dim(2));  // [B, F, C, h, w]

  // Query features: every frame's map sampled at the clip's queries, then the query frame's sample.
  const auto grid = raster_to_grid_sample(queries.query_xy.to(device, dtype), h * options.stride, w * options.stride);
  const auto grid_all = grid.unsqueeze(1).expand({b, f, q, 2}).reshape({b * f, q, 1, 2});
  const auto sampled = F::grid_sample(normed.reshape({b * f, c, h, w}), grid_all,
                                      F::GridSampleFuncOptions()
                                          .mode(torch::kBilinear)
                                          .padding_mode(torch::kBorder)
                                          .align_corners(false));           // [B*F, C, Q, 1]
  const auto per_frame = sampled.view({b, f, c, q}).permute({0, 3, 1, 2});  // [B, Q, F, C]
  const auto frame = queries.query_frame.to(device).view({b, q, 1, 1}).expand({b, q, 1, c});
  const auto query = F::normalize(per_frame.gather(2, frame).squeeze(2), F::NormalizeFuncOptions().dim(-1));

  // Cosines against every cell of every frame, softmax, soft-argmax over the cell centres.
  const auto cosine = torch::matmul(query.unsqueeze(1), normed.view({b, f, c, h * w}));  // [B, F, Q, h*w]
  const auto probs = torch::softmax(cosine / options.temperature, -1);
  const auto xs = (torch::arange(w, opts) + 0.5) * stride;
  const auto ys = (torch::arange(h, opts) + 0.5) * stride;
  const auto centres = torch::stack({xs.repeat({h}), ys.repeat_interleave(w)}, -1);  // [h*w, 2], row-major
  const auto predicted = torch::matmul(probs, centres).permute({0, 2, 1, 3});        // [B, Q, F, 2]

  const auto valid_cpu = queries.valid.to(torch::kCPU);
  const int64_t valid_pairs = valid_cpu.sum().item<int64_t>();
  const auto valid = valid_cpu.to(device);
  const auto target = queries.target_xy.to(device, dtype);  // 0 where not valid: finite everywhere
  const auto per_pair = robust_distance((predicted - target) / stride, options);  // [B, Q, F]
  const double denominator = static_cast<double>(std::max<int64_t>(valid_pairs, 1));

  CorrespondenceResult result;
  // Masked mean: with no valid pair this is exactly 0 and its gradient is defined (all zeros).
  result.loss = (per_pair * valid.to(dtype)).sum() / denominator;
  result.predicted_xy = predicted;
  {
    torch::NoGradGuard no_grad;
    const auto distance = (predicted - target).norm(2, -1);
    result.mean_pixel_error = torch::where(valid, distance, torch::zeros_like(distance)).sum() / denominator;
  }
  result.valid_pairs = valid_pairs;
  result.fraction_valid = queries.candidate_pairs > 0
                              ? static_cast<double>(valid_pairs) / static_cast<double>(queries.candidate_pairs)
                              : 0.0;
  return result;
}

CorrespondenceResult correspondence_loss(const torch::Tensor& features, const torch::Tensor& tracks,
                                         const torch::Tensor& visibility, const torch::Tensor& track_mask,
                                         const CorrespondenceLossOptions& options, torch::Generator generator) {
  check_tensor(features.defined() && features.dim() == 5, "features", "float [B, F, C, h, w]", features);
  check_tensor(tracks.defined() && tracks.dim() == 4 && tracks.size(0) == features.size(0), "tracks",
               t4g::str("[", features.size(0), ", N, F, 2] (one batch element per clip of the features)"), tracks);
  const auto queries =
      sample_correspondence_queries(tracks, visibility, track_mask, features.size(1), options, std::move(generator));
  return correspondence_loss(features, queries, options);
}

}  // namespace t4g
