// Flow-chained trajectories (see flow_tracks.h). Each track is chained on its own, forwards and
// backwards from its seed, in double precision; only the flow fields are float. Positions go
// through common/pixel_grid.h's samplers, which own the half-pixel offset between raster
// positions and per-pixel flow vectors.
#include "data/flow_tracks.h"

#include <cmath>
#include <vector>

#include "common/error.h"
#include "common/pixel_grid.h"

namespace t4g::data {
namespace {

// Read-only view of a video's flow fields.
struct FlowView {
  const float* forward;
  const float* backward;
  int64_t frames, height, width;
  const float* forward_at(int64_t t) const { return forward + t * height * width * 2; }
  const float* backward_at(int64_t t) const { return backward + t * height * width * 2; }
};

FlowView view_of(const VideoFlow& flow) {
  ErrorContext ctx;
  ctx.tensor = "flow";
  ctx.expected = "float32 forward and backward [F-1, H, W, 2] of equal shape";
  ctx.got = flow.forward.defined() && flow.backward.defined()
                ? t4g::str(flow.forward.scalar_type(), " ", flow.forward.sizes(), " and ", flow.backward.scalar_type(), " ",
                      flow.backward.sizes())
                : "undefined";
  T4G_CHECK_CTX(flow.forward.defined() && flow.backward.defined() && flow.forward.scalar_type() == torch::kFloat32 &&
                    flow.backward.scalar_type() == torch::kFloat32 && flow.forward.dim() == 4 &&
                    flow.forward.size(3) == 2 && flow.forward.sizes() == flow.backward.sizes() &&
                    flow.forward.is_contiguous() && flow.backward.is_contiguous() && flow.forward.size(0) >= 1,
                ctx, "flow tracks: bad flow fields");
  return {flow.forward.data_ptr<float>(), flow.backward.data_ptr<float>(), flow.forward.size(0) + 1, flow.forward.size(1),
          flow.forward.size(2)};
}

// Follows one point through `step` fields (forward or backward in time) and checks each step
// against the `reverse` fields. t runs from t0 in direction dir (+1 or -1); field(t) is the flow
// from frame t to t + dir.
class Chainer {
 public:
  Chainer(const FlowView& view, const FlowTrackOptions& options) : v_(view), o_(options) {}

  // Fills track [F, 2] and vis [F] for a point at (x, y) in frame t0.
  void chain(int64_t t0, double x, double y, float* track, uint8_t* vis) const {
    track[2 * t0] = static_cast<float>(x);
    track[2 * t0 + 1] = static_cast<float>(y);
    vis[t0] = 1;
    run(t0, x, y, +1, track, vis);
    run(t0, x, y, -1, track, vis);
  }

 private:
  void sample(const float* field, double x, double y, float* out) const {
    if (o_.subpixel) {
      sample_bilinear(field, v_.height, v_.width, 2, x, y, out);
    } else {
      sample_nearest(field, v_.height, v_.width, 2, x, y, out);
    }
  }
  // Integer chaining (subpixel = false): every step starts from the centre of the pixel that
  // contains the point, as trackers without sub-pixel positions do.
  double snap(double v) const { return o_.subpixel ? v : std::floor(v) + 0.5; }

  void run(int64_t t0, double x, double y, int dir, float* track, uint8_t* vis) const {
    bool alive = true;
    const double W = static_cast<double>(v_.width), H = static_cast<double>(v_.height);
    for (int64_t t = t0; dir > 0 ? t + 1 < v_.frames : t > 0; t += dir) {
      // Forward in time: forward[t] then check with backward[t]; backward: backward[t-1], forward[t-1].
      const float* step = dir > 0 ? v_.forward_at(t) : v_.backward_at(t - 1);
      const float* reverse = dir > 0 ? v_.backward_at(t) : v_.forward_at(t - 1);
      x = snap(x);
      y = snap(y);
      float f[2];
      sample(step, x, y, f);
      const double nx = x + f[0], ny = y + f[1];
      if (alive) {
        if (!(nx >= 0 && nx < W && ny >= 0 && ny < H)) {
          alive = false;  // left the frame
        } else {
          float r[2];
          sample(reverse, nx, ny, r);
          const double ex = static_cast<double>(f[0]) + r[0], ey = static_cast<double>(f[1]) + r[1];
          const double ff = static_cast<double>(f[0]) * f[0] + static_cast<double>(f[1]) * f[1];
          const double rr = static_cast<double>(r[0]) * r[0] + static_cast<double>(r[1]) * r[1];
          if (ex * ex + ey * ey >= o_.fb_alpha * (ff + rr) + o_.fb_beta) alive = false;  // occluded
        }
      }
      x = nx;
      y = ny;
      const int64_t u = t + dir;
      track[2 * u] = static_cast<float>(x);
      track[2 * u + 1] = static_cast<float>(y);
      vis[u] = alive ? 1 : 0;
    }
  }

  const FlowView& v_;
  const FlowTrackOptions& o_;
};

// Growing set of tracks, turned into tensors at the end.
struct TrackSet {
  int64_t frames;
  std::vector<float> tracks;
  std::vector<uint8_t> vis;
  std::vector<int64_t> seed;

  int64_t size() const { return static_cast<int64_t>(seed.size()); }
  void add(const Chainer& chainer, int64_t t0, double x, double y) {
    tracks.resize(tracks.size() + static_cast<size_t>(frames * 2));
    vis.resize(vis.size() + static_cast<size_t>(frames));
    chainer.chain(t0, x, y, tracks.data() + tracks.size() - frames * 2, vis.data() + vis.size() - frames);
    seed.push_back(t0);
  }
  FlowTracks tensors() const {
    const int64_t N = size();
    FlowTracks out;
    out.tracks = torch::empty({N, frames, 2}, torch::kFloat32);
    out.visibility = torch::empty({N, frames}, torch::kBool);
    out.seed_frame = torch::empty({N}, torch::kInt64);
    if (N == 0) return out;
    std::copy(tracks.begin(), tracks.end(), out.tracks.data_ptr<float>());
    bool* vp = out.visibility.data_ptr<bool>();
    for (size_t i = 0; i < vis.size(); ++i) vp[i] = vis[i] != 0;
    std::copy(seed.begin(), seed.end(), out.seed_frame.data_ptr<int64_t>());
    return out;
  }
};

}  // namespace

void validate_flow_track_options(const FlowTrackOptions& o) {
  T4G_CHECK(o.grid_step > 0, "flow tracks: grid_step must be positive, got ", o.grid_step);
  T4G_CHECK(o.reseed_every >= 0, "flow tracks: reseed_every must be >= 0, got ", o.reseed_every);
  T4G_CHECK(o.max_tracks >= 0, "flow tracks: max_tracks must be >= 0, got ", o.max_tracks);
  T4G_CHECK(o.fb_alpha >= 0 && o.fb_beta >= 0 && std::isfinite(o.fb_alpha) && std::isfinite(o.fb_beta),
            "flow tracks: fb_alpha and fb_beta must be finite and >= 0, got ", o.fb_alpha, " and ", o.fb_beta);
}

FlowTracks chain_tracks(const VideoFlow& flow, const torch::Tensor& queries, const FlowTrackOptions& options) {
  validate_flow_track_options(options);
  const FlowView view = view_of(flow);
  ErrorContext ctx;
  ctx.tensor = "queries";
  ctx.expected = "[Q, 3] (t, x, y)";
  ctx.got = queries.defined() ? t4g::str(queries.sizes()) : "undefined";
  T4G_CHECK_CTX(queries.defined() && queries.dim() == 2 && queries.size(1) == 3, ctx, "flow tracks: bad query points");
  const torch::Tensor q = queries.to(torch::kFloat64).contiguous();
  const double* qp = q.data_ptr<double>();
  const Chainer chainer(view, options);
  TrackSet set{view.frames, {}, {}, {}};
  for (int64_t i = 0; i < q.size(0); ++i) {
    const double t = qp[3 * i], x = qp[3 * i + 1], y = qp[3 * i + 2];
    ctx.got = t4g::str("query ", i, " = (", t, ", ", x, ", ", y, ")");
    ctx.expected = t4g::str("integer t in [0, ", view.frames, "), finite x, y");
    T4G_CHECK_CTX(t >= 0 && t < static_cast<double>(view.frames) && t == std::floor(t) && std::isfinite(x) &&
                      std::isfinite(y),
                  ctx, "flow tracks: query point out of range");
    set.add(chainer, static_cast<int64_t>(t), x, y);
  }
  return set.tensors();
}

FlowTracks grid_tracks(const VideoFlow& flow, const FlowTrackOptions& options) {
  validate_flow_track_options(options);
  const FlowView view = view_of(flow);
  const Chainer chainer(view, options);
  const int64_t step = options.grid_step;
  const int64_t gw = (view.width + step - 1) / step, gh = (view.height + step - 1) / step;
  TrackSet set{view.frames, {}, {}, {}};
  std::vector<uint8_t> occupied(static_cast<size_t>(gw * gh));
  for (int64_t t = 0; t < view.frames; ++t) {
    if (t > 0 && (options.reseed_every == 0 || t % options.reseed_every != 0)) continue;
    // A cell is occupied when a track visible at t lies in it.
    std::fill(occupied.begin(), occupied.end(), 0);
    for (int64_t n = 0; n < set.size(); ++n) {
      if (!set.vis[static_cast<size_t>(n * view.frames + t)]) continue;
      const float* p = set.tracks.data() + (n * view.frames + t) * 2;
      const int64_t cx = static_cast<int64_t>(p[0]) / step, cy = static_cast<int64_t>(p[1]) / step;
      if (cx >= 0 && cx < gw && cy >= 0 && cy < gh) occupied[static_cast<size_t>(cy * gw + cx)] = 1;
    }
    for (int64_t cy = 0; cy < gh; ++cy) {
      for (int64_t cx = 0; cx < gw; ++cx) {
        if (occupied[static_cast<size_t>(cy * gw + cx)]) continue;
        if (options.max_tracks > 0 && set.size() >= options.max_tracks) return set.tensors();
        const double x = (static_cast<double>(cx) + 0.5) * static_cast<double>(step);
        const double y = (static_cast<double>(cy) + 0.5) * static_cast<double>(step);
        if (x >= static_cast<double>(view.width) || y >= static_cast<double>(view.height)) continue;  // partial cell
        set.add(chainer, t, x, y);
      }
    }
  }
  return set.tensors();
}

FlowTracks flow_tracks(const torch::Tensor& frames, const FlowTrackOptions& options) {
  validate_flow_track_options(options);
  return grid_tracks(compute_video_flow(frames, options.flow), options);
}

}  // namespace t4g::data
