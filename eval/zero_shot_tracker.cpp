// DiffTrack zero-shot tracking (see zero_shot_tracker.h). Work is organised so that the full
// token-by-token attention is never built and nothing per chunk outlives its use: per-frame VAE
// latents are computed once, each chunk runs one forward that stops after the probed layer, its
// cost maps are accumulated per frame, and a frame is read out (and its map freed) as soon as the
// last chunk holding it is done.
#include "eval/zero_shot_tracker.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <set>

#include "common/error.h"
#include "common/log.h"
#include "common/pixel_grid.h"
#include "common/progress.h"
#include "common/shape_string.h"
#include "data/shards.h"
#include "data/tapvid.h"
#include "models/attention_probe.h"

namespace t4g {
namespace {

namespace F = torch::nn::functional;

// The reference's intermediate resize (methods.md 1.4.1).
constexpr int64_t kReferenceResize = 256;

void check_frames(const torch::Tensor& frames) {
  ErrorContext ctx;
  ctx.tensor = "frames";
  ctx.expected = "uint8 [T, H, W, 3]";
  ctx.got = str(c10::toString(frames.scalar_type()), " [", shape_string(frames.sizes()), "]");
  T4G_CHECK_CTX(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == torch::kUInt8, ctx,
                "tracking needs uint8 RGB frames");
}

void check_queries(const torch::Tensor& query_points) {
  ErrorContext ctx;
  ctx.tensor = "query_points";
  ctx.expected = "[Q, 3] as (t, y, x)";
  ctx.got = str("[", shape_string(query_points.sizes()), "]");
  T4G_CHECK_CTX(query_points.dim() == 2 && query_points.size(1) == 3, ctx, "wrong query shape");
}

// (x, y) of queries (t, y, x), float32.
torch::Tensor query_xy(const torch::Tensor& query_points) {
  return torch::stack({query_points.select(1, 2), query_points.select(1, 1)}, 1).to(torch::kFloat32);
}

// Scales (x, y) in the last dimension.
torch::Tensor scale_xy(const torch::Tensor& xy, double sx, double sy) {
  return xy * torch::tensor({sx, sy}, torch::TensorOptions().dtype(xy.scalar_type()).device(xy.device()));
}

void check_finite(const torch::Tensor& t, const std::string& what) {
  ErrorContext ctx;
  ctx.tensor = what;
  T4G_CHECK_CTX(torch::isfinite(t).all().item<bool>(), ctx, what, " holds NaN or infinity");
}

// Empty tracks [Q, T, 2] with each query's own frame filled in (visible).
PointTracks initial_tracks(const torch::Tensor& query_points, int64_t num_frames) {
  const int64_t q = query_points.size(0);
  PointTracks out;
  out.tracks = torch::zeros({q, num_frames, 2}, torch::kFloat32);
  out.occluded = torch::zeros({q, num_frames}, torch::kBool);
  const auto xy = query_xy(query_points.cpu());
  const auto frames = query_points.select(1, 0).cpu().round().to(torch::kLong);
  for (int64_t i = 0; i < q; ++i) out.tracks[i][frames[i].item<int64_t>()] = xy[i];
  return out;
}

void store_matches(PointTracks& out, const std::vector<int64_t>& rows, int64_t frame, const FrameMatches& m) {
  const auto index = torch::tensor(rows, torch::kLong);
  out.tracks.select(1, frame).index_copy_(0, index, m.positions.to(torch::kCPU, torch::kFloat32));
  out.occluded.select(1, frame).index_copy_(0, index, m.occluded.to(torch::kCPU));
}

// Restores a VAE's run options when it goes out of scope (tracking switches tiling on or off).
class VaeOptionsScope {
 public:
  VaeOptionsScope(AutoencoderKLCogVideoX& vae, const VaeOptions& options) : vae_(vae), saved_(vae->options()) {
    vae_->set_options(options);
  }
  ~VaeOptionsScope() { vae_->set_options(saved_); }
  VaeOptionsScope(const VaeOptionsScope&) = delete;
  VaeOptionsScope& operator=(const VaeOptionsScope&) = delete;

 private:
  AutoencoderKLCogVideoX& vae_;
  VaeOptions saved_;
};

// Every frame of `video` (float [T, H, W, 3] in [0, 255], on the VAE's device) encoded as its own
// 1-frame video (batched along B, which is the same computation) -> scaled latents [T, C, h, w].
// Sampled latents draw from a per-frame generator, so they do not depend on vae_batch. Tiling is
// the reference's (diffusers tiles frames larger than one tile); where its tiles do not fit the
// frame (diffusers' tiled_encode then returns a latent of the wrong size, e.g. 64 x 96 frames with
// a tiny model's 32 x 48 tiles), frames are encoded whole instead.
torch::Tensor encode_each_frame(AutoencoderKLCogVideoX& vae, const torch::Tensor& video,
                                const ZeroShotTrackerOptions& options) {
  const torch::Tensor any = vae->parameters().front();
  const double scaling = vae->config().scaling_factor;
  const int64_t factor = vae->config().spatial_compression();
  const int64_t want_h = video.size(1) / factor, want_w = video.size(2) / factor;
  T4G_CHECK(options.vae_batch > 0, "vae_batch must be positive, got ", options.vae_batch);
  auto encode_all = [&](bool tiling) -> torch::Tensor {
    VaeOptions run = vae->options();
    run.tiling.enabled = tiling;
    VaeOptionsScope scope(vae, run);
    std::vector<torch::Tensor> latents;
    const int64_t frames = video.size(0);
    for (int64_t begin = 0; begin < frames; begin += options.vae_batch) {
      const int64_t n = std::min(options.vae_batch, frames - begin);
      const auto x = video.narrow(0, begin, n)
                         .permute({0, 3, 1, 2})
                         .div(127.5)
                         .sub(1.0)
                         .unsqueeze(2)
                         .to(any.device(), any.scalar_type());
      const VaePosterior posterior = vae->encode(x);
      if (tiling && (posterior.mean.size(3) != want_h || posterior.mean.size(4) != want_w)) return {};
      torch::Tensor z;
      if (options.latent_sampling == LatentSampling::kMean) {
        z = posterior.mean;
      } else {
        std::vector<torch::Tensor> samples;
        for (int64_t i = 0; i < n; ++i) {
          VaePosterior one{posterior.mean.narrow(0, i, 1), posterior.logvar.narrow(0, i, 1)};
          auto gen =
              at::make_generator<at::CPUGeneratorImpl>(options.seed * 1000003ULL + static_cast<uint64_t>(begin + i));
          samples.push_back(one.sample(gen));
        }
        z = torch::cat(samples, 0);
      }
      latents.push_back((z * scaling).squeeze(2));
    }
    return torch::cat(latents, 0);
  };
  if (options.vae_tiling) {
    torch::Tensor z = encode_all(true);
    if (z.defined()) return z;
    static std::atomic<bool> said{false};  // once per process, not once per video
    if (!said.exchange(true)) {
      T4G_INFO("tracking: the VAE's tiles do not fit ", video.size(1), " x ", video.size(2),
               " frames; encoding whole frames");
    }
  }
  return encode_all(false);
}

// [1, S, D] text embedding for the forward.
torch::Tensor prompt_embedding(const ModelComponents& c, const ZeroShotTrackerOptions& options) {
  const int64_t dim = c.transformer->config().text_embed_dim;
  if (!options.text_embedding.defined()) {
    if (!c.is_tiny()) {
      T4G_WARN("no empty-prompt text embedding given: zeros stand in for T5(\"\") (pass one for the reference's exact Q/K)");
    }
    return torch::zeros({1, c.text_tokens, dim}, torch::TensorOptions().dtype(c.dtype).device(c.device));
  }
  auto t = options.text_embedding.dim() == 2 ? options.text_embedding.unsqueeze(0) : options.text_embedding;
  ErrorContext ctx;
  ctx.tensor = "text_embedding";
  ctx.expected = str("[S, ", dim, "] or [1, S, ", dim, "]");
  ctx.got = str("[", shape_string(options.text_embedding.sizes()), "]");
  T4G_CHECK_CTX(t.dim() == 3 && t.size(0) == 1 && t.size(2) == dim, ctx, "the text embedding does not fit the model");
  return t.to(c.device, c.dtype);
}

// Validates layers and timestep indices against the model; returns the timesteps.
std::vector<int64_t> check_probe_choice(const ModelComponents& c, const std::vector<int64_t>& layers,
                                        const std::vector<int64_t>& timestep_indices, int64_t num_steps) {
  const int64_t num_layers = c.transformer->config().num_layers;
  T4G_CHECK(!layers.empty(), "no probe layer given");
  for (const int64_t l : layers) {
    ErrorContext ctx;
    ctx.key = "layer";
    ctx.expected = str("a block index in [0, ", num_layers, ")");
    ctx.got = std::to_string(l);
    T4G_CHECK_CTX(l >= 0 && l < num_layers, ctx, "layer ", l, " is out of range: the model has ", num_layers,
                  " transformer blocks");
  }
  T4G_CHECK(num_steps > 0, "num_steps must be positive, got ", num_steps);
  T4G_CHECK(!timestep_indices.empty(), "no timestep index given");
  CogVideoXScheduler scheduler = c.scheduler;
  const torch::Tensor timesteps = scheduler.set_timesteps(num_steps);
  std::vector<int64_t> out;
  for (const int64_t i : timestep_indices) {
    ErrorContext ctx;
    ctx.key = "timestep index";
    ctx.expected = str("an index in [0, ", num_steps, ")");
    ctx.got = std::to_string(i);
    T4G_CHECK_CTX(i >= 0 && i < timesteps.size(0), ctx, "timestep index ", i, " is out of range for ", num_steps,
                  " steps");
    out.push_back(timesteps[i].item<int64_t>());
  }
  T4G_CHECK(!c.transformer->config().patch_size_t,
            "tracking needs one token frame per latent frame (CogVideoX 1.0); this model has a temporal patch size");
  return out;
}

// The DiffTrack procedure on resized frames (float [T, H, W, 3] on the model's device) with
// queries in those pixels.
PointTracks difftrack(ModelComponents& c, const torch::Tensor& video, const torch::Tensor& query_points,
                      const ZeroShotTrackerOptions& options) {
  T4G_CHECK(c.transformer && c.vae, "zero-shot tracking needs the transformer and the VAE");
  const std::vector<int64_t> timesteps = check_probe_choice(c, options.layers, options.timestep_indices, options.num_steps);
  const int64_t num_frames = video.size(0), height = video.size(1), width = video.size(2);
  // A video shorter than a chunk is one chunk (the reference needs chunk_len - 1 frames; its
  // 13 is CogVideoX's 13 latent frames, not a property of the video).
  ChunkOptions chunking = options.chunks;
  if (chunking.chunk_len > num_frames) {
    T4G_DEBUG("tracking: ", num_frames, " frames, fewer than a chunk of ", chunking.chunk_len, ": one chunk of ",
              num_frames);
    chunking.chunk_len = num_frames;
    chunking.stride = std::min(chunking.stride, num_frames - 1);
  }
  const auto chunks = difftrack_chunks(num_frames, chunking);
  const auto groups = queries_by_frame(query_points, num_frames);
  PointTracks out = initial_tracks(query_points, num_frames);
  if (groups.empty()) return out;

  torch::NoGradGuard no_grad;
  const torch::Tensor latents = encode_each_frame(c.vae, video, options);  // [T, C, h, w]
  const int64_t vae_factor = int64_t{1} << (c.vae->config().block_out_channels.size() - 1);
  T4G_CHECK(latents.size(2) * vae_factor == height && latents.size(3) * vae_factor == width, "the VAE made a ",
            latents.size(2), "x", latents.size(3), " latent from ", height, "x", width, " frames (expected ",
            height / vae_factor, "x", width / vae_factor, "); its tiles do not fit this size: turn VAE tiling off");
  const torch::Tensor text = prompt_embedding(c, options);
  const int64_t text_len = text.size(1);
  ProbeOptions probes;
  probes.query_key_layers = std::set<int64_t>(options.layers.begin(), options.layers.end());
  probes.stop_after_last_capture = true;
  TransformerForwardOptions forward;
  forward.probes = &probes;

  for (const auto& [anchor, rows] : groups) {
    // The other frames in order; chunk position p (1-based) stands for others[p - 1].
    std::vector<int64_t> others;
    for (int64_t f = 0; f < num_frames; ++f) {
      if (f != anchor) others.push_back(f);
    }
    std::map<int64_t, size_t> last_chunk;
    for (size_t ci = 0; ci < chunks.size(); ++ci) {
      for (const int64_t p : chunks[ci]) last_chunk[others[p - 1]] = ci;
    }
    const auto anchor_xy = query_xy(query_points.index_select(0, torch::tensor(rows, torch::kLong)));
    std::map<int64_t, torch::Tensor> sums;
    std::map<int64_t, int64_t> counts;
    for (size_t ci = 0; ci < chunks.size(); ++ci) {
      std::vector<int64_t> frame_ids{anchor};
      for (const int64_t p : chunks[ci]) frame_ids.push_back(others[p - 1]);
      const auto index = torch::tensor(frame_ids, torch::kLong).to(latents.device());
      const auto z0 = latents.index_select(0, index).unsqueeze(0);  // [1, L, C, h, w]
      std::vector<torch::Tensor> qs, ks;
      for (size_t ti = 0; ti < timesteps.size(); ++ti) {
        const auto t = torch::full({1}, timesteps[ti], torch::TensorOptions().dtype(torch::kLong));
        torch::Tensor z = z0;
        if (options.add_noise) {
          auto gen = at::make_generator<at::CPUGeneratorImpl>(options.seed ^ (0x5851f42d4c957f2dULL * (ci + 1) +
                                                                              static_cast<uint64_t>(anchor * 1000 + ti)));
          const auto noise = at::normal(0.0, 1.0, z0.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat32));
          z = c.scheduler.add_noise(z0.to(torch::kFloat32), noise.to(z0.device()), t.to(z0.device())).to(z0.scalar_type());
        }
        TransformerOutput o = c.transformer->forward(z, text, t, forward);
        for (const int64_t l : probes.query_key_layers) {
          qs.push_back(std::move(o.captured.query.at(l)));
          ks.push_back(std::move(o.captured.key.at(l)));
        }
      }
      // Several (timestep, layer) descriptors: concatenated along channels, as the reference.
      const auto q = qs.size() == 1 ? qs[0] : torch::cat(qs, -1);
      const auto k = ks.size() == 1 ? ks[0] : torch::cat(ks, -1);
      qs.clear();
      ks.clear();
      const TokenGrid grid = c.transformer->token_grid(z0.size(1), z0.size(3), z0.size(4));
      CostMapOptions cost;
      cost.scale = options.softmax_scale > 0 ? options.softmax_scale : 1.0 / std::sqrt(static_cast<double>(q.size(1)));
      cost.mean_over_heads = true;
      cost.query_chunk = options.query_chunk;
      for (int64_t j = 1; j < grid.frames; ++j) {
        const int64_t frame = frame_ids[j];
        if (!options.average_overlapping && counts.count(frame) != 0) continue;
        std::vector<std::pair<int64_t, int64_t>> pairs{{0, j}};
        if (options.bidirectional) pairs.emplace_back(j, 0);
        const auto maps = attention_cost_maps(q, k, text_len, grid, pairs, cost);
        // C[target j, source i]: anchor->k transposed, averaged with k->anchor.
        torch::Tensor cmap = maps[0][0][0].t();
        if (options.bidirectional) cmap = (cmap + maps[1][0][0]) * 0.5;
        auto it = sums.find(frame);
        if (it == sums.end()) {
          sums.emplace(frame, cmap.contiguous());
        } else {
          it->second.add_(cmap);
        }
        ++counts[frame];
      }
      // Frames no later chunk holds: read out now and free their maps.
      for (size_t j = 1; j < frame_ids.size(); ++j) {
        const int64_t frame = frame_ids[j];
        if (last_chunk.at(frame) != ci || sums.count(frame) == 0) continue;
        const auto cmap = sums.at(frame) / static_cast<double>(counts.at(frame));
        const FrameMatches m = match_through_cost_map(cmap, grid.height, grid.width, height, width, anchor_xy,
                                                      options.match, str("cost map of frame ", frame));
        store_matches(out, rows, frame, m);
        sums.erase(frame);
      }
      T4G_DEBUG("tracking: anchor ", anchor, " chunk ", ci + 1, "/", chunks.size(), " done");
    }
  }
  return out;
}

}  // namespace

std::vector<std::vector<int64_t>> difftrack_chunks(int64_t num_frames, const ChunkOptions& options) {
  T4G_CHECK(num_frames >= 2, "tracking needs a video of at least 2 frames, got ", num_frames);
  T4G_CHECK(options.chunk_len >= 2, "chunk length must be at least 2 (the anchor and one frame), got ",
            options.chunk_len);
  const int64_t per_chunk = options.chunk_len - 1;  // frames after the anchor
  int64_t interval = 1, stride = options.stride;
  if (options.mode == ChunkMode::kFrameInterval) {
    interval = num_frames / per_chunk;
    T4G_CHECK(interval >= 1, "a video of ", num_frames, " frames is too short for interval chunking with chunk length ",
              options.chunk_len, " (needs at least ", per_chunk, " frames; use a smaller chunk length)");
    stride = 1;
  } else {
    T4G_CHECK(stride >= 1 && stride <= per_chunk, "chunk stride must be in [1, ", per_chunk,
              "] (chunk length - 1; a larger stride skips frames), got ", stride);
  }
  std::vector<std::vector<int64_t>> chunks;
  std::set<int64_t> visited;
  int64_t start = 1, end = std::min((per_chunk - 1) * interval + 1, num_frames - 1);
  while (static_cast<int64_t>(visited.size()) < num_frames - 1) {
    T4G_CHECK(start <= num_frames - 1, "chunking left frames unvisited (start ", start, ", ", num_frames, " frames)");
    std::vector<int64_t> chunk;
    for (int64_t i = start; i <= end; i += interval) chunk.push_back(i);
    visited.insert(chunk.begin(), chunk.end());
    chunks.push_back(std::move(chunk));
    start += stride;
    end = std::min(start + (per_chunk - 1) * interval, num_frames - 1);
  }
  return chunks;
}

torch::Tensor argmax_match_map(const torch::Tensor& cost, int64_t grid_height, int64_t grid_width) {
  const int64_t cells = grid_height * grid_width;
  T4G_CHECK(cost.dim() == 2 && cost.size(0) == cells && cost.size(1) == cells, "a cost map must be [", cells, ", ",
            cells, "] for a ", grid_height, "x", grid_width, " grid, got [", shape_string(cost.sizes()), "]");
  const auto target = cost.argmax(0);  // best target cell per source cell
  const auto col = target.remainder(grid_width);
  const auto row = target.div(grid_width, "floor");
  return torch::stack({col, row}, 0).to(torch::kFloat32).reshape({2, grid_height, grid_width});
}

torch::Tensor read_out_matches(const torch::Tensor& match_map, const torch::Tensor& points, int64_t image_height,
                               int64_t image_width, const ReadoutOptions& options) {
  T4G_CHECK(match_map.dim() == 3 && match_map.size(0) == 2, "a match map must be [2, h, w], got [",
            shape_string(match_map.sizes()), "]");
  T4G_CHECK(points.dim() == 2 && points.size(1) == 2, "points must be [Q, 2] (x, y), got [",
            shape_string(points.sizes()), "]");
  const int64_t h = match_map.size(1), w = match_map.size(2);
  const double stride_x = static_cast<double>(image_width) / static_cast<double>(w);
  const double stride_y = static_cast<double>(image_height) / static_cast<double>(h);
  const auto map = match_map.to(torch::kFloat32).unsqueeze(0);
  const auto xy = points.to(map.device(), torch::kFloat32);
  if (points.size(0) == 0) return torch::zeros({0, 2}, map.options());
  torch::Tensor grid;
  F::GridSampleFuncOptions sample;
  sample.mode(torch::kBilinear);
  if (options.reference_readout) {
    // Latent coordinates, then the reference's margin normalisation (methods.md 1.5).
    const double margin = static_cast<double>(image_width) / (64.0 * stride_x);
    const auto gx = xy.select(1, 0) / stride_x / (static_cast<double>(w) - margin) * 2.0 - 1.0;
    const auto gy = xy.select(1, 1) / stride_y / (static_cast<double>(h) - margin) * 2.0 - 1.0;
    grid = torch::stack({gx, gy}, 1);
    sample.padding_mode(torch::kZeros).align_corners(true);
  } else {
    grid = raster_to_grid_sample(xy, image_height, image_width);
    sample.padding_mode(torch::kBorder).align_corners(false);
  }
  auto cells = F::grid_sample(map, grid.view({1, -1, 1, 2}), sample).view({2, -1}).t();  // [Q, 2] cell units
  if (!options.reference_readout) cells = cells + 0.5;  // cell index -> its centre in cell units
  return scale_xy(cells, stride_x, stride_y);
}

FrameMatches match_through_cost_map(const torch::Tensor& cost, int64_t grid_height, int64_t grid_width,
                                    int64_t image_height, int64_t image_width, const torch::Tensor& query_xy,
                                    const MatchOptions& options, const std::string& what) {
  check_finite(cost, what);
  const auto forward = argmax_match_map(cost, grid_height, grid_width);
  FrameMatches m;
  m.positions = read_out_matches(forward, query_xy, image_height, image_width, options.readout);
  if (options.occlusion.rule == OcclusionRule::kNone) {
    m.occluded = torch::zeros({query_xy.size(0)}, torch::TensorOptions().dtype(torch::kBool));
    return m;
  }
  // Round trip: from the predicted target position back to the anchor through the reverse argmax.
  const auto backward = argmax_match_map(cost.t(), grid_height, grid_width);
  const auto back = read_out_matches(backward, m.positions, image_height, image_width, options.readout);
  const double stride_x = static_cast<double>(image_width) / static_cast<double>(grid_width);
  const double stride_y = static_cast<double>(image_height) / static_cast<double>(grid_height);
  const auto miss = scale_xy(back - query_xy.to(back.device(), torch::kFloat32), 1.0 / stride_x, 1.0 / stride_y);
  m.occluded = (miss.norm(2, 1) > options.occlusion.threshold_cells).cpu();
  return m;
}

std::map<int64_t, std::vector<int64_t>> queries_by_frame(const torch::Tensor& query_points, int64_t num_frames) {
  check_queries(query_points);
  const auto t = query_points.select(1, 0).cpu().to(torch::kDouble);
  std::map<int64_t, std::vector<int64_t>> groups;
  for (int64_t i = 0; i < t.size(0); ++i) {
    const int64_t frame = static_cast<int64_t>(std::nearbyint(t[i].item<double>()));
    ErrorContext ctx;
    ctx.tensor = "query_points";
    ctx.expected = str("query frames in [0, ", num_frames, ")");
    ctx.got = std::to_string(frame);
    T4G_CHECK_CTX(frame >= 0 && frame < num_frames, ctx, "query ", i, " is at a frame outside the video");
    groups[frame].push_back(i);
  }
  return groups;
}

PointTracks track_with_features(const torch::Tensor& features, const torch::Tensor& query_points,
                                int64_t image_height, int64_t image_width, const MatchOptions& options) {
  ErrorContext ctx;
  ctx.tensor = "features";
  ctx.expected = "[T, C, h, w]";
  ctx.got = str("[", shape_string(features.sizes()), "]");
  T4G_CHECK_CTX(features.dim() == 4, ctx, "wrong feature shape");
  check_finite(features, "features");
  const int64_t num_frames = features.size(0), h = features.size(2), w = features.size(3);
  const auto groups = queries_by_frame(query_points, num_frames);
  PointTracks out = initial_tracks(query_points, num_frames);
  torch::NoGradGuard no_grad;
  // Unit-norm descriptors per cell: [T, C, h * w].
  const auto f = F::normalize(features.detach().to(torch::kFloat32).flatten(2), F::NormalizeFuncOptions().dim(1));
  for (const auto& [anchor, rows] : groups) {
    const auto xy = query_xy(query_points.index_select(0, torch::tensor(rows, torch::kLong)));
    for (int64_t k = 0; k < num_frames; ++k) {
      if (k == anchor) continue;
      const auto cost = torch::matmul(f[k].t(), f[anchor]);  // [target cells, source cells]
      const FrameMatches m =
          match_through_cost_map(cost, h, w, image_height, image_width, xy, options, str("feature cost map of frame ", k));
      store_matches(out, rows, k, m);
    }
  }
  return out;
}

torch::Tensor resize_frames_for_tracking(const torch::Tensor& frames, int64_t height, int64_t width, bool via_256) {
  check_frames(frames);
  auto x = frames.permute({0, 3, 1, 2}).to(torch::kFloat32);
  auto resize = [](const torch::Tensor& t, int64_t h, int64_t w) {
    if (t.size(2) == h && t.size(3) == w) return t;
    return F::interpolate(t, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{h, w})
                                 .mode(torch::kBilinear)
                                 .align_corners(false)
                                 .antialias(false));
  };
  if (via_256) x = resize(x, kReferenceResize, kReferenceResize);
  return resize(x, height, width).permute({0, 2, 3, 1}).contiguous();
}

PointTracks track_video(ModelComponents& components, const torch::Tensor& frames, const torch::Tensor& query_points,
                        const ZeroShotTrackerOptions& options, const FeatureExtractor& extractor) {
  check_frames(frames);
  check_queries(query_points);
  T4G_CHECK(options.height > 0 && options.width > 0 && options.height % 16 == 0 && options.width % 16 == 0,
            "tracking size must be positive multiples of 16, got ", options.height, "x", options.width);
  torch::Tensor video = frames;
  if (options.max_frames > 0 && video.size(0) > options.max_frames) video = video.narrow(0, 0, options.max_frames);
  const int64_t src_h = video.size(1), src_w = video.size(2);
  const double sx = static_cast<double>(options.width) / static_cast<double>(src_w);
  const double sy = static_cast<double>(options.height) / static_cast<double>(src_h);
  // Queries in pixels of the model input: (t, y * sy, x * sx), as the reference rescales them.
  const auto queries = query_points.to(torch::kCPU, torch::kFloat32) *
                       torch::tensor({1.0, sy, sx}, torch::TensorOptions().dtype(torch::kFloat32));
  const auto resized =
      resize_frames_for_tracking(video.to(components.device), options.height, options.width, options.resize_via_256);
  PointTracks out;
  if (extractor) {
    const auto u8 = resized.round().clamp(0, 255).to(torch::kUInt8);
    const torch::Tensor features = extractor(u8);
    ErrorContext ctx;
    ctx.tensor = "features";
    ctx.expected = str("[", video.size(0), ", C, h, w]");
    ctx.got = str("[", shape_string(features.sizes()), "]");
    T4G_CHECK_CTX(features.dim() == 4 && features.size(0) == video.size(0), ctx,
                  "the feature extractor returned the wrong shape");
    out = track_with_features(features, queries, options.height, options.width, options.match);
  } else {
    out = difftrack(components, resized, queries, options);
  }
  out.tracks = scale_xy(out.tracks, 1.0 / sx, 1.0 / sy);
  return out;
}

TrackingVideoSource tracking_videos_from_shards(const std::string& dir, int64_t max_videos) {
  auto reader = std::make_shared<data::ShardReader>(dir);
  TrackingVideoSource source;
  source.count = reader->size();
  if (max_videos > 0) source.count = std::min(source.count, static_cast<size_t>(max_videos));
  source.load = [reader](size_t i) {
    data::ShardVideo v = reader->read(i);
    return TrackingVideo{v.id, v.frames, v.tracks, v.visibility};
  };
  return source;
}

TrackingVideoSource tracking_videos_from_tapvid(const std::string& path, int64_t max_videos) {
  auto videos = std::make_shared<std::vector<data::TapVidVideo>>(data::read_tapvid_pickle(path));
  TrackingVideoSource source;
  source.count = videos->size();
  if (max_videos > 0) source.count = std::min(source.count, static_cast<size_t>(max_videos));
  source.load = [videos](size_t i) {
    const data::TapVidVideo& v = videos->at(i);
    TrackingVideo out;
    out.name = tapvid_group_name(v.name, static_cast<int64_t>(i));
    out.frames = data::decode_tapvid_frames(v);
    const data::TapVidTracks t = data::tapvid_to_pixels(v, out.frames.size(1), out.frames.size(2));
    out.tracks = t.tracks;
    out.visibility = t.visibility;
    return out;
  };
  return source;
}

TrackingEvaluation evaluate_tracking(ModelComponents& components, const TrackingVideoSource& source,
                                     const TrackingEvalOptions& options, const FeatureExtractor& extractor,
                                     const TrackingVideoCallback& on_video) {
  TrackingEvaluation result;
  // Bad layers or timestep indices fail before any video is read.
  if (!extractor) {
    T4G_CHECK(components.transformer, "zero-shot tracking needs the transformer (or a feature extractor)");
    check_probe_choice(components, options.tracker.layers, options.tracker.timestep_indices, options.tracker.num_steps);
  }
  ProgressOptions progress_options;
  progress_options.unit = "videos";
  progress_options.enabled = options.show_progress && log_level() <= LogLevel::kInfo;
  ProgressBar progress("tracking", static_cast<int64_t>(source.count), progress_options);
  std::vector<std::map<std::string, double>> per_video;
  for (size_t i = 0; i < source.count; ++i) {
    TrackingVideo v = source.load(i);
    check_frames(v.frames);
    int64_t frames = v.frames.size(0);
    const int64_t height = v.frames.size(1), width = v.frames.size(2);
    ErrorContext ctx;
    ctx.key = v.name;
    ctx.tensor = "tracks";
    ctx.expected = str("[N, ", frames, ", 2] with visibility [N, ", frames, "]");
    ctx.got = str("[", shape_string(v.tracks.sizes()), "] and [", shape_string(v.visibility.sizes()), "]");
    T4G_CHECK_CTX(v.tracks.dim() == 3 && v.tracks.size(1) == frames && v.tracks.size(2) == 2 &&
                      v.visibility.dim() == 2 && v.visibility.size(0) == v.tracks.size(0) &&
                      v.visibility.size(1) == frames,
                  ctx, "ground-truth tracks do not fit the video");
    if (options.tracker.max_frames > 0 && frames > options.tracker.max_frames) {
      frames = options.tracker.max_frames;
      v.frames = v.frames.narrow(0, 0, frames);
      v.tracks = v.tracks.narrow(1, 0, frames);
      v.visibility = v.visibility.narrow(1, 0, frames);
    }
    // Ground truth at 256x256 (tapnet: normalised * 256; ours: pixels * 256 / size).
    const double to256_x = static_cast<double>(kTapVidResolution) / static_cast<double>(width);
    const double to256_y = static_cast<double>(kTapVidResolution) / static_cast<double>(height);
    const auto gt = scale_xy(v.tracks.to(torch::kFloat32), to256_x, to256_y);
    TapVidQueries q = sample_queries(gt, v.visibility.logical_not(), options.query_mode, options.query_stride);
    if (options.frame0_queries_only) {
      const auto keep = (q.query_points.select(1, 0).round() == 0).nonzero().flatten();
      if (keep.numel() == 0) {
        T4G_WARN("tracking: ", v.name, " has no query at frame 0; skipped (as DiffTrack skips it)");
        progress.update();
        continue;
      }
      q.query_points = q.query_points.index_select(0, keep);
      q.target_points = q.target_points.index_select(0, keep);
      q.occluded = q.occluded.index_select(0, keep);
      q.track_index = q.track_index.index_select(0, keep);
    }
    // Queries in pixels of the stored frames for the tracker: (t, y / to256_y, x / to256_x).
    const auto queries = q.query_points *
                         torch::tensor({1.0, 1.0 / to256_y, 1.0 / to256_x}, torch::TensorOptions().dtype(torch::kFloat32));
    const auto start = std::chrono::steady_clock::now();
    const PointTracks pred = track_video(components, v.frames, queries, options.tracker, extractor);
    TrackingVideoResult r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.name = v.name;
    r.prediction.name = v.name;
    r.prediction.tracks = scale_xy(pred.tracks, to256_x, to256_y);
    r.prediction.occluded = pred.occluded;
    r.metrics = compute_tapvid_metrics(q.query_points, q.occluded, q.target_points, r.prediction.occluded,
                                       r.prediction.tracks, options.query_mode);
    r.queries = std::move(q);
    per_video.push_back(r.metrics);
    T4G_DEBUG("tracking: ", v.name, " <delta_avg ", r.metrics.at("average_pts_within_thresh"), " in ", r.seconds, " s");
    if (on_video) on_video(v, r);
    result.videos.push_back(std::move(r));
    progress.update();
  }
  progress.finish();
  result.mean = mean_over_videos(per_video);
  return result;
}

}  // namespace t4g
