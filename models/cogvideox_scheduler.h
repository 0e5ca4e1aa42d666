// CogVideoX's two samplers (diffusers CogVideoXDDIMScheduler and CogVideoXDPMScheduler) and the
// training side of the same noise process (add noise at t, the v target, the loss weights).
// The noise table is built in float64 exactly as the reference does: scaled-linear betas, the
// SNR shift (alphas_cumprod / (s + (1 - s) alphas_cumprod)), then the zero-terminal-SNR rescale
// applied to alphas_cumprod directly (research/cogvideox.md section 4).
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace t4g {

enum class PredictionType { kEpsilon, kSample, kVPrediction };
enum class TimestepSpacing { kLinspace, kLeading, kTrailing };

// scheduler/scheduler_config.json. Defaults are CogVideoX-2B's.
struct SchedulerConfig {
  std::string class_name = "CogVideoXDDIMScheduler";  // or CogVideoXDPMScheduler
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.00085;
  double beta_end = 0.012;
  std::string beta_schedule = "scaled_linear";  // scaled_linear | linear
  PredictionType prediction_type = PredictionType::kVPrediction;
  bool rescale_betas_zero_snr = true;
  double snr_shift_scale = 3.0;  // 2B: 3.0, 5B: 1.0
  bool set_alpha_to_one = true;
  int64_t steps_offset = 0;
  TimestepSpacing timestep_spacing = TimestepSpacing::kTrailing;
};

// Reads a diffusers scheduler_config.json; unknown classes and unsupported options are errors
// naming the file and key.
SchedulerConfig read_scheduler_config(const std::string& path);
// The config as diffusers writes scheduler_config.json (read_scheduler_config reads it back).
nlohmann::json scheduler_config_to_json(const SchedulerConfig& config);

// Output of one sampling step.
struct StepOutput {
  torch::Tensor prev_sample;           // x at the next (smaller) timestep
  torch::Tensor pred_original_sample;  // x0 predicted at this step (DPM keeps it for the next)
};

class CogVideoXScheduler {
 public:
  explicit CogVideoXScheduler(SchedulerConfig config = {});

  const SchedulerConfig& config() const { return config_; }
  // alphas_cumprod, float64 [num_train_timesteps], on CPU.
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  double alpha_cumprod(int64_t t) const;

  // Sampling timesteps for `steps` inference steps (int64, descending), as set_timesteps does.
  torch::Tensor set_timesteps(int64_t steps);
  int64_t num_inference_steps() const { return num_inference_steps_; }

  // Deterministic DDIM (eta = 0) step: model_output is the network's prediction at `timestep`.
  StepOutput ddim_step(const torch::Tensor& model_output, int64_t timestep, const torch::Tensor& sample) const;

  // DPM-Solver++(2M)-SDE step. `old_pred_original_sample` and `timestep_back` come from the
  // previous step (absent on the first). Draws its noise from `generator` like the reference
  // (one draw, plus a second one when the 2M correction applies), on the generator's device and
  // then moved to the sample's (a CPU generator may drive a CUDA sample, as in the pipeline).
  StepOutput dpm_step(const torch::Tensor& model_output, const std::optional<torch::Tensor>& old_pred_original_sample,
                      int64_t timestep, std::optional<int64_t> timestep_back, const torch::Tensor& sample,
                      std::optional<torch::Generator> generator) const;

  // Training side. `timesteps` is int64 [B]; per-sample coefficients broadcast over the rest.
  // x_t = sqrt(a) x0 + sqrt(1 - a) noise
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise, const torch::Tensor& timesteps) const;
  // sqrt(a) noise - sqrt(1 - a) sample (with sample = v_hat and noise = x_t this is x0_hat).
  torch::Tensor get_velocity(const torch::Tensor& sample, const torch::Tensor& noise, const torch::Tensor& timesteps) const;
  // The weights of diffusers' CogVideoX training scripts: 1 / (1 - alphas_cumprod[t]), float64 [B] on CPU
  // (the reference keeps them in float64, so the weighted loss is summed in float64).
  torch::Tensor loss_weights(const torch::Tensor& timesteps) const;

 private:
  int64_t prev_timestep(int64_t timestep) const;
  double alpha_cumprod_prev(int64_t prev) const;
  torch::Tensor predict_original(const torch::Tensor& model_output, int64_t timestep, const torch::Tensor& sample) const;
  torch::Tensor coefficient(const torch::Tensor& timesteps, const torch::Tensor& like, bool one_minus) const;

  SchedulerConfig config_;
  torch::Tensor alphas_cumprod_;  // float64
  double final_alpha_cumprod_ = 1.0;
  int64_t num_inference_steps_ = 0;
};

}  // namespace t4g
