// One micro-step's forward (see training_step.h).
#include "train/training_step.h"

#include <algorithm>
#include <memory>

#include "losses/diffusion_loss.h"

namespace t4g {

CorrespondenceLossOptions correspondence_options(const LossConfig& loss, int64_t temporal_compression) {
  CorrespondenceLossOptions o;
  o.num_query_points = loss.query_points;
  o.query_frame = loss.query_frame == "random" ? QueryFrameRule::kRandomVisible : QueryFrameRule::kFirst;
  o.target_frames = loss.target_frames > 0 ? TargetFrameRule::kRandomSubset : TargetFrameRule::kAllOthers;
  o.num_target_frames = std::max<int64_t>(1, loss.target_frames);
  o.temperature = loss.temperature;
  o.loss = loss.corr_loss == "l1" ? RobustLoss::kL1 : loss.corr_loss == "l2" ? RobustLoss::kL2 : RobustLoss::kHuber;
  o.huber_delta = loss.huber_delta;
  o.temporal_compression = temporal_compression;
  o.validate();
  return o;
}

StepLosses forward_losses(ModelComponents& model, Refiner& refiner, const LossConfig& loss,
                          const CorrespondenceLossOptions& corr, const StepInputs& in, torch::Generator noise_generator,
                          torch::Generator query_generator) {
  const NoisedBatch noised = add_training_noise(model.scheduler, in.latents, noise_generator);
  ProbeOptions probes;
  auto refined = std::make_shared<RefinedFeatures>();
  if (refiner) refiner->install(probes, refined);
  TransformerForwardOptions fo;
  fo.probes = &probes;
  const TransformerOutput out = model.transformer->forward(noised.noisy, in.text, noised.timesteps, fo);
  StepLosses r;
  r.diffusion = diffusion_loss(model.scheduler, out.sample, noised.noisy, in.latents, noised.timesteps);
  r.loss = r.diffusion;
  if (refiner && loss.corr_weight > 0) {
    r.corr = correspondence_loss(refined->video(), in.tracks, in.visibility, in.track_mask, corr, query_generator);
    r.loss = r.loss + loss.corr_weight * r.corr.loss.to(torch::kFloat32);
    r.has_corr = true;
  }
  return r;
}

}  // namespace t4g
