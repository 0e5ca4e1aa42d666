// One micro-step's forward of Track4Gen fine-tuning, shared by the trainer and the training
// benchmark: noise the latents at random timesteps, run the transformer with the refiner hooked
// after its block, and compute diffusion + lambda * correspondence. The caller runs backward and
// the optimizer. Every random draw comes from the two generators passed in.
#pragma once

#include <torch/torch.h>

#include "common/config.h"
#include "losses/correspondence_loss.h"
#include "models/model_components.h"
#include "models/refiner.h"

namespace t4g {

// What one micro-step consumes: transformer latents and text embeddings on the model's device,
// trajectories in pixels of the clip's frames (data/loader.h Batch layout).
struct StepInputs {
  torch::Tensor latents;     // [B, F', C, h, w], scaled
  torch::Tensor text;        // [B, S, D_text]
  torch::Tensor tracks;      // float32 [B, N, F, 2]
  torch::Tensor visibility;  // bool [B, N, F]
  torch::Tensor track_mask;  // bool [B, N]
};

struct StepLosses {
  torch::Tensor loss;       // diffusion + corr_weight * correspondence (float32 scalar, with graph)
  torch::Tensor diffusion;  // the diffusion part
  bool has_corr = false;    // refiner on and corr_weight > 0
  CorrespondenceResult corr;
};

// Options of the correspondence loss from the recipe's `loss` section; `temporal_compression` is
// the VAE's (frames per latent frame).
CorrespondenceLossOptions correspondence_options(const LossConfig& loss, int64_t temporal_compression);

// The forward of one micro-step. `refiner` may be null (no refiner, no correspondence loss).
StepLosses forward_losses(ModelComponents& model, Refiner& refiner, const LossConfig& loss,
                          const CorrespondenceLossOptions& corr, const StepInputs& in, torch::Generator noise_generator,
                          torch::Generator query_generator);

}  // namespace t4g
