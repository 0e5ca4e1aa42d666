// Tracking evaluation during training (see tracking_eval.h).
#include "train/tracking_eval.h"

#include <array>
#include <cmath>

#include "common/fs.h"
#include "common/log.h"
#include "common/rng.h"
#include "losses/correspondence_loss.h"
#include "models/text_encoder.h"
#include "eval/sampler.h"
#include "eval/tapvid_metrics.h"
#include "eval/vbench_scores.h"
#include "eval/zero_shot_tracker.h"
#include "train/communicator.h"
#include "train/training_step.h"

namespace t4g {
namespace {

bool is_pickle(const std::string& path) { return path.size() > 4 && path.compare(path.size() - 4, 4, ".pkl") == 0; }

// T5("") for real models, zeros for random ones (models/text_encoder.h), computed at the first
// evaluation and kept: DiffTrack's and VBench's unconditional forwards condition on it.
const torch::Tensor& empty_prompt(TrainingModel& m) {
  if (!m.empty_prompt.defined()) m.empty_prompt = empty_prompt_embedding(m.components);
  return m.empty_prompt;
}

// The refined feature map [F, C, h, w] (float32) of transformer latents [1, F, C_lat, H, W]: one
// forward at the evaluation timestep, stopping after the refiner's block, and that block's video
// tokens through the refiner.
torch::Tensor refined_map(const Config& c, TrainingModel& m, const torch::Tensor& latents) {
  ModelComponents& mc = m.components;
  const int64_t t = mc.scheduler.set_timesteps(50)[c.eval.timestep_index].item<int64_t>();
  const int64_t block = m.refiner->config().block;
  ProbeOptions probes;
  probes.hidden_layers = {block};
  probes.stop_after_last_capture = true;
  TransformerForwardOptions fo;
  fo.probes = &probes;
  const TransformerOutput out = mc.transformer->forward(
      latents, empty_prompt(m), torch::full({1}, t, torch::TensorOptions().dtype(torch::kLong).device(mc.device)), fo);
  const TokenGrid grid = mc.transformer->token_grid(latents.size(1), latents.size(3), latents.size(4));
  return m.refiner->forward(out.captured.hidden.at(block), grid).to(torch::kFloat32);
}

// The refiner's features of frames [T, H, W, 3] for the tracker: every frame encoded on its own
// (one latent per frame, as the tracker feeds the model), then refined_map.
FeatureExtractor refiner_extractor(const Config& c, TrainingModel& m) {
  return [&c, &m](const torch::Tensor& frames) {
    torch::NoGradGuard no_grad;
    return refined_map(c, m, encode_frames_one_by_one(m.components.vae, frames.unsqueeze(0)));  // [T, C, h, w]
  };
}

// The refiner's own measure on a held-out clip, in the training pipeline's terms: the clip encoded
// with the VAE's temporal compression, the forward at the evaluation timestep, the refined map,
// then the correspondence loss's soft-argmax for every track visible at frame 0 against every
// other latent frame (latent k <-> frame 4k). Returns (sum of per-pair errors in 256x256 raster
// pixels, number of pairs, sum over thresholds 1..16 of hits) so callers can pool videos.
struct SoftArgmaxTally {
  double error_sum = 0;
  double pairs = 0;
  std::array<double, 5> within{};  // 1, 2, 4, 8, 16 px at 256x256
};

SoftArgmaxTally refined_soft_argmax(const Config& c, TrainingModel& m, const TrackingVideo& v) {
  torch::NoGradGuard no_grad;
  ModelComponents& mc = m.components;
  SoftArgmaxTally tally;
  const int64_t ratio = mc.vae->config().temporal_compression_ratio;
  const int64_t frames = ((v.frames.size(0) - 1) / ratio) * ratio + 1;  // the longest 4k+1 prefix
  if (frames < 1 + ratio) return tally;
  const torch::Tensor latents = encode_frames_to_latents(mc.vae, v.frames.narrow(0, 0, frames).unsqueeze(0));
  const torch::Tensor map = refined_map(c, m, latents);  // [F', C, h, w]
  const int64_t latent_frames = map.size(0);
  const torch::Tensor features = map.unsqueeze(0);
  CorrespondenceLossOptions o = correspondence_options(c.loss, ratio);
  o.num_query_points = v.tracks.size(0);  // every track
  o.query_frame = QueryFrameRule::kFirst;
  o.target_frames = TargetFrameRule::kAllOthers;
  const torch::Tensor tracks = v.tracks.narrow(1, 0, frames).unsqueeze(0).to(mc.device);
  const torch::Tensor vis = v.visibility.narrow(1, 0, frames).unsqueeze(0).to(mc.device);
  const torch::Tensor mask = torch::ones({1, v.tracks.size(0)}, torch::TensorOptions().dtype(torch::kBool).device(mc.device));
  const CorrespondenceQueries q = sample_correspondence_queries(tracks, vis, mask, latent_frames, o, make_generator(0, {7}));
  const CorrespondenceResult r = correspondence_loss(features, q, o);
  const double sx = 256.0 / static_cast<double>(v.frames.size(2)), sy = 256.0 / static_cast<double>(v.frames.size(1));
  const torch::Tensor scale = torch::tensor({static_cast<float>(sx), static_cast<float>(sy)}).to(mc.device);
  const torch::Tensor err = ((r.predicted_xy - q.target_xy.to(r.predicted_xy.device())) * scale).norm(2, -1);  // [1, Q, F]
  const torch::Tensor valid = q.valid.to(err.device());
  tally.pairs = valid.sum().item<double>();
  tally.error_sum = err.masked_select(valid).sum().item<double>();
  const double thresholds[5] = {1, 2, 4, 8, 16};
  for (int i = 0; i < 5; ++i) tally.within[i] = (err < thresholds[i]).logical_and(valid).sum().item<double>();
  return tally;
}

constexpr uint64_t kStreamVbench = 8;  // seed stream of the VBench samples

// Sums `values` (CPU) over ranks through `comm`, on the model's device (NCCL moves CUDA tensors
// only); a no-op for one rank.
torch::Tensor sum_over_ranks(Communicator* comm, int world_size, const torch::Tensor& values, const torch::Device& device) {
  if (comm == nullptr || world_size <= 1) return values;
  torch::Tensor t = values.to(device).contiguous();
  comm->all_reduce(t, ReduceOp::kSum);
  return t.to(torch::kCPU);
}

}  // namespace

std::map<std::string, double> evaluate_model_tracking(const Config& c, TrainingModel& m, const std::string& heldout,
                                                      int rank, int world_size, Communicator* comm) {
  const TrackingVideoSource all = is_pickle(heldout) ? tracking_videos_from_tapvid(heldout, c.eval.videos)
                                                     : tracking_videos_from_shards(heldout, c.eval.videos);
  // This rank's share of the videos.
  TrackingVideoSource mine;
  std::vector<size_t> indices;
  for (size_t i = static_cast<size_t>(rank); i < all.count; i += static_cast<size_t>(world_size)) indices.push_back(i);
  mine.count = indices.size();
  mine.load = [all, indices](size_t i) { return all.load(indices[i]); };

  TrackingEvalOptions o;
  o.show_progress = false;
  ZeroShotTrackerOptions& t = o.tracker;
  const int64_t num_layers = m.components.transformer->config().num_layers;
  const int64_t block = m.refiner ? m.refiner->config().block : default_refiner_block(num_layers);
  t.layers = {c.eval.layer >= 0 ? c.eval.layer : block};
  t.timestep_indices = {c.eval.timestep_index};
  t.height = c.data.height;
  t.width = c.data.width;
  t.resize_via_256 = false;
  t.vae_tiling = false;
  t.match.readout.reference_readout = false;  // the exact raster mapping at small sizes
  t.chunks.chunk_len = std::min<int64_t>(13, c.data.frames);
  t.text_embedding = empty_prompt(m);

  const bool was_training = m.components.transformer->is_training();
  m.components.transformer->eval();
  if (m.refiner) m.refiner->eval();
  // Every rank reduces the same keys in the same order, even one without videos.
  std::map<std::string, double> sums;
  for (const std::string& name : tapvid_metric_names()) {
    sums["qk/" + name] = 0.0;
    if (m.refiner) sums["refined/" + name] = 0.0;
  }
  auto accumulate = [&](const std::string& prefix, const TrackingEvaluation& e) {
    for (const auto& v : e.videos) {
      for (const auto& [k, x] : v.metrics) sums[prefix + k] += x;
    }
  };
  accumulate("qk/", evaluate_tracking(m.components, mine, o));
  double soft_pairs = 0, soft_error = 0;
  std::array<double, 5> soft_within{};
  if (m.refiner) {
    accumulate("refined/", evaluate_tracking(m.components, mine, o, refiner_extractor(c, m)));
    for (size_t i = 0; i < mine.count; ++i) {
      const SoftArgmaxTally t = refined_soft_argmax(c, m, mine.load(i));
      soft_pairs += t.pairs;
      soft_error += t.error_sum;
      for (int k = 0; k < 5; ++k) soft_within[k] += t.within[k];
    }
  }
  m.components.transformer->train(was_training);
  if (m.refiner) m.refiner->train();

  // Sum over ranks, then divide by the number of videos: the unweighted mean over the whole set.
  std::vector<std::string> keys;
  for (const auto& kv : sums) keys.push_back(kv.first);
  torch::Tensor values = torch::zeros({static_cast<int64_t>(keys.size())}, torch::kFloat64);
  for (size_t i = 0; i < keys.size(); ++i) values[static_cast<int64_t>(i)] = sums[keys[i]];
  values = sum_over_ranks(comm, world_size, values, m.components.device);
  std::map<std::string, double> mean;
  for (size_t i = 0; i < keys.size(); ++i) {
    mean[keys[i]] = values[static_cast<int64_t>(i)].item<double>() / static_cast<double>(std::max<size_t>(1, all.count));
  }
  if (m.refiner) {
    // Pooled over every (track, frame) pair of every video: [pairs, error, within x5].
    torch::Tensor soft = torch::tensor({soft_pairs, soft_error, soft_within[0], soft_within[1], soft_within[2],
                                        soft_within[3], soft_within[4]},
                                       torch::kFloat64);
    soft = sum_over_ranks(comm, world_size, soft, m.components.device);
    const double pairs = std::max(1.0, soft[0].item<double>());
    mean["refined_softargmax/pixel_error"] = soft[1].item<double>() / pairs;
    double avg = 0;
    const char* names[5] = {"pts_within_1", "pts_within_2", "pts_within_4", "pts_within_8", "pts_within_16"};
    for (int k = 0; k < 5; ++k) {
      const double frac = soft[2 + k].item<double>() / pairs;
      mean[std::string("refined_softargmax/") + names[k]] = frac;
      avg += frac / 5.0;
    }
    mean["refined_softargmax/average_pts_within_thresh"] = avg;
  }
  return mean;
}

std::map<std::string, double> evaluate_model_vbench(const Config& c, TrainingModel& m, int rank, int world_size,
                                                    Communicator* comm) {
  std::map<std::string, double> out;
  if (c.eval.vbench_videos <= 0) return out;
  ModelComponents& mc = m.components;
  // Empty prompts, as DiffTrack's and VBench's unconditional checks.
  PromptEmbeddings prompts;
  prompts.positive = empty_prompt(m);
  prompts.negative = prompts.positive;
  SampleOptions so;
  so.steps = c.eval.sample_steps;
  so.guidance_scale = 1.0;  // identical prompts: CFG would only double the work
  so.frames = c.data.frames;
  so.height = c.data.height;
  so.width = c.data.width;
  so.progress = false;
  std::vector<torch::Tensor> videos;
  const bool was_training = mc.transformer->is_training();
  mc.transformer->eval();
  for (int64_t i = rank; i < c.eval.vbench_videos; i += world_size) {
    so.seed = derive_seed(static_cast<uint64_t>(c.run.seed), {kStreamVbench, static_cast<uint64_t>(i)});
    videos.push_back(sample_video(mc, prompts, so).frames.select(0, 0));
  }
  mc.transformer->train(was_training);
  VbenchOptions vo;
  if (!c.eval.dino.empty()) {
    vo.dimensions.push_back(VbenchDimension::kSubjectConsistency);
    vo.dino_weights = c.eval.dino;
    vo.device = mc.device.str();
  }
  // Per-rank sums of per-video scores (every video has the same frame count, so VBench's
  // frame-weighted aggregate is the plain mean), then the mean over all videos.
  torch::Tensor sums = torch::zeros({static_cast<int64_t>(vo.dimensions.size())}, torch::kFloat64);
  if (!videos.empty()) {
    const std::map<std::string, double> scores = vbench_scores(videos, vo);
    for (size_t d = 0; d < vo.dimensions.size(); ++d) {
      sums[static_cast<int64_t>(d)] = scores.at(vbench_dimension_name(vo.dimensions[d])) * static_cast<double>(videos.size());
    }
  }
  sums = sum_over_ranks(comm, world_size, sums, mc.device);
  for (size_t d = 0; d < vo.dimensions.size(); ++d) {
    out["vbench/" + vbench_dimension_name(vo.dimensions[d])] =
        sums[static_cast<int64_t>(d)].item<double>() / static_cast<double>(c.eval.vbench_videos);
  }
  return out;
}

EvaluationHook make_tracking_eval_hook(const Config& c, const std::string& heldout, int rank, int world_size,
                                       Communicator* comm) {
  return [c, heldout, rank, world_size, comm](TrainingModel& m, int64_t step) {
    auto metrics = evaluate_model_tracking(c, m, heldout, rank, world_size, comm);
    for (const auto& kv : evaluate_model_vbench(c, m, rank, world_size, comm)) metrics.insert(kv);
    if (rank == 0) {
      T4G_INFO("eval @ step ", step, ": query-key AJ ", metrics.count("qk/average_jaccard") ? metrics.at("qk/average_jaccard") : NAN,
               ", <delta_avg ", metrics.count("qk/average_pts_within_thresh") ? metrics.at("qk/average_pts_within_thresh") : NAN,
               m.refiner ? "; refined <delta_avg " + std::to_string(metrics.at("refined/average_pts_within_thresh")) : "");
    }
    return metrics;
  };
}

}  // namespace t4g
