// Motion Fidelity (see motion_fidelity.h). The similarity is one matrix product of the unit
// displacements flattened over time: S = D_gen D_ref^T / T, [N, T*2] x [T*2, M].
#include "eval/motion_fidelity.h"

#include <algorithm>
#include <string>

#include "common/error.h"
#include "common/shape_string.h"
#include "data/flow_tracks.h"

namespace t4g {
namespace {

void check_tracks(const torch::Tensor& tracks, const char* name) {
  ErrorContext ctx;
  ctx.tensor = name;
  ctx.expected = "float [N, T, 2] with N >= 1, T >= 2";
  ctx.got = tracks.defined() ? shape_string(tracks.sizes()) : "none";
  T4G_CHECK_CTX(tracks.defined() && tracks.dim() == 3 && tracks.size(0) >= 1 && tracks.size(1) >= 2 &&
                    tracks.size(2) == 2 && tracks.is_floating_point(),
                ctx, "motion fidelity: ", name, " must be ", ctx.expected, ", got ", ctx.got);
}

// Unit per-frame displacement vectors [N, T - 1, 2] in float64.
torch::Tensor unit_steps(const torch::Tensor& tracks, int64_t frames, bool nan_on_zero_motion) {
  const torch::Tensor t = tracks.slice(1, 0, frames).to(torch::kFloat64);
  const torch::Tensor d = t.slice(1, 1) - t.slice(1, 0, frames - 1);
  const torch::Tensor norm = d.norm(2, -1, /*keepdim=*/true);
  if (nan_on_zero_motion) return d / norm;  // 0 / 0 = NaN, as the reference
  return torch::where(norm > 0, d / norm.clamp_min(1e-300), torch::zeros_like(d));
}

}  // namespace

torch::Tensor motion_similarity_matrix(const torch::Tensor& generated_tracks, const torch::Tensor& reference_tracks,
                                       bool nan_on_zero_motion) {
  check_tracks(generated_tracks, "generated tracks");
  check_tracks(reference_tracks, "reference tracks");
  const int64_t frames = std::min(generated_tracks.size(1), reference_tracks.size(1));
  const torch::Tensor gen = unit_steps(generated_tracks, frames, nan_on_zero_motion).flatten(1);
  const torch::Tensor ref =
      unit_steps(reference_tracks.to(generated_tracks.device()), frames, nan_on_zero_motion).flatten(1);
  return (torch::matmul(gen, ref.transpose(0, 1)) / static_cast<double>(frames - 1)).to(torch::kFloat32);
}

double motion_fidelity(const torch::Tensor& generated_tracks, const torch::Tensor& reference_tracks,
                       const MotionFidelityOptions& options) {
  torch::Tensor s = motion_similarity_matrix(generated_tracks, reference_tracks, options.nan_on_zero_motion);
  if (options.form == MotionFidelityForm::kSymmetric) {
    return 0.5 * (std::get<0>(s.max(1)).mean().item<double>() + std::get<0>(s.max(0)).mean().item<double>());
  }
  if (options.subtract_identity) {
    ErrorContext ctx;
    ctx.tensor = "generated tracks";
    ctx.expected = std::to_string(s.size(1)) + " tracks like the reference (the identity is subtracted)";
    ctx.got = std::to_string(s.size(0)) + " tracks";
    T4G_CHECK_CTX(s.size(0) == s.size(1), ctx, "motion fidelity with the identity subtracted (the reference code) ",
                  "needs as many generated tracks as reference tracks: ", s.size(0), " vs ", s.size(1));
    s = s - torch::eye(s.size(0), s.options());
  }
  return std::get<0>(s.max(1)).mean().item<double>();
}

double motion_fidelity_from_flow(const torch::Tensor& generated_frames, const torch::Tensor& reference_frames,
                                 int64_t grid_step, const MotionFidelityOptions& options) {
  for (const auto& [f, name] : {std::pair<const torch::Tensor*, const char*>{&generated_frames, "generated frames"},
                                {&reference_frames, "reference frames"}}) {
    ErrorContext ctx;
    ctx.tensor = name;
    ctx.expected = "uint8 [F, H, W, 3] with F >= 2";
    ctx.got = shape_string(f->sizes());
    T4G_CHECK_CTX(f->dim() == 4 && f->size(0) >= 2 && f->size(3) == 3 && f->scalar_type() == torch::kUInt8, ctx,
                  "motion fidelity: ", name, " must be ", ctx.expected, ", got ", ctx.got);
  }
  T4G_CHECK(
      generated_frames.size(1) == reference_frames.size(1) && generated_frames.size(2) == reference_frames.size(2),
      "motion fidelity: the videos must have the same frame size, got ", generated_frames.sizes(), " and ",
      reference_frames.sizes());
  const int64_t frames = std::min(generated_frames.size(0), reference_frames.size(0));
  data::FlowTrackOptions flow;
  flow.grid_step = grid_step;
  flow.reseed_every = 0;  // one track per grid point in both videos: N == M, same seeds
  const data::FlowTracks gen = data::flow_tracks(generated_frames.slice(0, 0, frames), flow);
  const data::FlowTracks ref = data::flow_tracks(reference_frames.slice(0, 0, frames), flow);
  return motion_fidelity(gen.tracks, ref.tracks, options);
}

}  // namespace t4g
