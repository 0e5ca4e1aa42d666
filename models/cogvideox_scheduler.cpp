#include "models/cogvideox_scheduler.h"

#include <cmath>

#include "common/error.h"
#include "common/json.h"

namespace t4g {
namespace {

// The reference's rescale_zero_terminal_snr, applied to alphas_cumprod (not to betas).
torch::Tensor rescale_zero_terminal_snr(const torch::Tensor& alphas_cumprod) {
  torch::Tensor q = alphas_cumprod.sqrt();
  const torch::Tensor q0 = q[0].clone();
  const torch::Tensor qT = q[-1].clone();
  q -= qT;
  q *= q0 / (q0 - qT);
  return q.pow(2);
}

}  // namespace

SchedulerConfig read_scheduler_config(const std::string& path) {
  const Json j = read_json(path);
  SchedulerConfig c;
  c.class_name = json_get_or<std::string>(j, "_class_name", c.class_name, path);
  ErrorContext ctx;
  ctx.file = path;
  ctx.key = "_class_name";
  ctx.got = c.class_name;
  ctx.expected = "CogVideoXDDIMScheduler or CogVideoXDPMScheduler";
  T4G_CHECK_CTX(c.class_name == "CogVideoXDDIMScheduler" || c.class_name == "CogVideoXDPMScheduler", ctx,
                "unsupported scheduler");
  c.num_train_timesteps = json_get_or<int64_t>(j, "num_train_timesteps", c.num_train_timesteps, path);
  c.beta_start = json_get_or<double>(j, "beta_start", c.beta_start, path);
  c.beta_end = json_get_or<double>(j, "beta_end", c.beta_end, path);
  c.beta_schedule = json_get_or<std::string>(j, "beta_schedule", c.beta_schedule, path);
  c.rescale_betas_zero_snr = json_get_or<bool>(j, "rescale_betas_zero_snr", c.rescale_betas_zero_snr, path);
  c.snr_shift_scale = json_get_or<double>(j, "snr_shift_scale", c.snr_shift_scale, path);
  c.set_alpha_to_one = json_get_or<bool>(j, "set_alpha_to_one", c.set_alpha_to_one, path);
  c.steps_offset = json_get_or<int64_t>(j, "steps_offset", c.steps_offset, path);

  auto bad = [&](const std::string& key, const std::string& got, const std::string& expected) {
    ErrorContext e;
    e.file = path;
    e.key = key;
    e.got = got;
    e.expected = expected;
    throw Error("unsupported value", e);
  };
  const std::string prediction = json_get_or<std::string>(j, "prediction_type", "v_prediction", path);
  if (prediction == "v_prediction") c.prediction_type = PredictionType::kVPrediction;
  else if (prediction == "epsilon") c.prediction_type = PredictionType::kEpsilon;
  else if (prediction == "sample") c.prediction_type = PredictionType::kSample;
  else bad("prediction_type", prediction, "v_prediction|epsilon|sample");
  const std::string spacing = json_get_or<std::string>(j, "timestep_spacing", "trailing", path);
  if (spacing == "trailing") c.timestep_spacing = TimestepSpacing::kTrailing;
  else if (spacing == "linspace") c.timestep_spacing = TimestepSpacing::kLinspace;
  else if (spacing == "leading") c.timestep_spacing = TimestepSpacing::kLeading;
  else bad("timestep_spacing", spacing, "trailing|linspace|leading");
  if (c.beta_schedule != "scaled_linear" && c.beta_schedule != "linear") {
    bad("beta_schedule", c.beta_schedule, "scaled_linear|linear");
  }
  if (j.contains("trained_betas") && !j.at("trained_betas").is_null()) bad("trained_betas", "a list", "null");
  if (c.num_train_timesteps < 2) bad("num_train_timesteps", std::to_string(c.num_train_timesteps), ">= 2");
  return c;
}

Json scheduler_config_to_json(const SchedulerConfig& c) {
  const char* prediction = c.prediction_type == PredictionType::kVPrediction ? "v_prediction"
                           : c.prediction_type == PredictionType::kEpsilon   ? "epsilon"
                                                                              : "sample";
  const char* spacing = c.timestep_spacing == TimestepSpacing::kTrailing   ? "trailing"
                        : c.timestep_spacing == TimestepSpacing::kLinspace ? "linspace"
                                                                           : "leading";
  // The keys of diffusers' CogVideoXDDIMScheduler / CogVideoXDPMScheduler __init__ (0.42.1).
  return Json{{"_class_name", c.class_name},
              {"_diffusers_version", "0.42.1"},
              {"beta_end", c.beta_end},
              {"beta_schedule", c.beta_schedule},
              {"beta_start", c.beta_start},
              {"clip_sample", false},
              {"clip_sample_range", 1.0},
              {"num_train_timesteps", c.num_train_timesteps},
              {"prediction_type", prediction},
              {"rescale_betas_zero_snr", c.rescale_betas_zero_snr},
              {"sample_max_value", 1.0},
              {"set_alpha_to_one", c.set_alpha_to_one},
              {"snr_shift_scale", c.snr_shift_scale},
              {"steps_offset", c.steps_offset},
              {"timestep_spacing", spacing},
              {"trained_betas", nullptr}};
}

CogVideoXScheduler::CogVideoXScheduler(SchedulerConfig config) : config_(std::move(config)) {
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t n = config_.num_train_timesteps;
  torch::Tensor betas;
  if (config_.beta_schedule == "scaled_linear") {
    betas = torch::linspace(std::sqrt(config_.beta_start), std::sqrt(config_.beta_end), n, f64).pow(2);
  } else {
    // The reference builds linear betas in float32, then computes in float64 after promotion.
    betas = torch::linspace(config_.beta_start, config_.beta_end, n, torch::kFloat32).to(torch::kFloat64);
  }
  torch::Tensor ac = torch::cumprod(1.0 - betas, 0);
  const double s = config_.snr_shift_scale;
  ac = ac / (s + (1.0 - s) * ac);  // SNR shift (SD3 style): SNR / s
  if (config_.rescale_betas_zero_snr) ac = rescale_zero_terminal_snr(ac);
  alphas_cumprod_ = ac.contiguous();
  final_alpha_cumprod_ = config_.set_alpha_to_one ? 1.0 : alphas_cumprod_[0].item<double>();
}

double CogVideoXScheduler::alpha_cumprod(int64_t t) const {
  T4G_CHECK(t >= 0 && t < config_.num_train_timesteps, "timestep ", t, " outside [0, ", config_.num_train_timesteps, ")");
  return alphas_cumprod_.data_ptr<double>()[t];
}

torch::Tensor CogVideoXScheduler::set_timesteps(int64_t steps) {
  const int64_t n = config_.num_train_timesteps;
  T4G_CHECK(steps >= 1 && steps <= n, "inference steps must be in [1, ", n, "], got ", steps);
  num_inference_steps_ = steps;
  std::vector<int64_t> t(static_cast<size_t>(steps));
  switch (config_.timestep_spacing) {
    case TimestepSpacing::kLinspace:
      // numpy: linspace(0, n-1, steps).round()[::-1]
      // numpy computes i * ((stop - start) / (num - 1)) and sets the last value to stop exactly.
      for (int64_t i = 0; i < steps; ++i) {
        const double step = steps == 1 ? 0.0 : static_cast<double>(n - 1) / static_cast<double>(steps - 1);
        const double v = (i == steps - 1 && steps > 1) ? static_cast<double>(n - 1) : static_cast<double>(i) * step;
        t[static_cast<size_t>(steps - 1 - i)] = static_cast<int64_t>(std::nearbyint(v));
      }
      break;
    case TimestepSpacing::kLeading: {
      const int64_t ratio = n / steps;
      for (int64_t i = 0; i < steps; ++i) t[static_cast<size_t>(steps - 1 - i)] = i * ratio + config_.steps_offset;
      break;
    }
    case TimestepSpacing::kTrailing: {
      // numpy: round(arange(n, 0, -n/steps)) - 1; arange accumulates start + i*step in float64.
      const double ratio = static_cast<double>(n) / static_cast<double>(steps);
      for (int64_t i = 0; i < steps; ++i) {
        t[static_cast<size_t>(i)] = static_cast<int64_t>(std::nearbyint(static_cast<double>(n) - i * ratio)) - 1;
      }
      break;
    }
  }
  return torch::tensor(t, torch::kInt64);
}

int64_t CogVideoXScheduler::prev_timestep(int64_t timestep) const {
  T4G_CHECK(num_inference_steps_ > 0, "set_timesteps() must be called before step()");
  return timestep - config_.num_train_timesteps / num_inference_steps_;
}

double CogVideoXScheduler::alpha_cumprod_prev(int64_t prev) const {
  return prev >= 0 ? alpha_cumprod(prev) : final_alpha_cumprod_;
}

torch::Tensor CogVideoXScheduler::predict_original(const torch::Tensor& model_output, int64_t timestep,
                                                   const torch::Tensor& sample) const {
  const double a = alpha_cumprod(timestep);
  const double b = 1.0 - a;
  switch (config_.prediction_type) {
    case PredictionType::kVPrediction:
      return std::sqrt(a) * sample - std::sqrt(b) * model_output;
    case PredictionType::kEpsilon:
      return (sample - std::sqrt(b) * model_output) / std::sqrt(a);
    case PredictionType::kSample:
      return model_output;
  }
  return model_output;
}

StepOutput CogVideoXScheduler::ddim_step(const torch::Tensor& model_output, int64_t timestep,
                                         const torch::Tensor& sample) const {
  const int64_t prev = prev_timestep(timestep);
  const double a = alpha_cumprod(timestep);
  const double a_prev = alpha_cumprod_prev(prev);
  torch::Tensor x0 = predict_original(model_output, timestep, sample);
  // DDIM with eta = 0, written as the reference does: x_prev = a_t x_t + b_t x0.
  const double a_t = std::sqrt((1.0 - a_prev) / (1.0 - a));
  const double b_t = std::sqrt(a_prev) - std::sqrt(a) * a_t;
  torch::Tensor prev_sample = a_t * sample + b_t * x0;
  return {prev_sample, x0};
}

StepOutput CogVideoXScheduler::dpm_step(const torch::Tensor& model_output,
                                        const std::optional<torch::Tensor>& old_pred_original_sample,
                                        int64_t timestep, std::optional<int64_t> timestep_back,
                                        const torch::Tensor& sample, std::optional<torch::Generator> generator) const {
  const int64_t prev = prev_timestep(timestep);
  const double a = alpha_cumprod(timestep);
  const double a_prev = alpha_cumprod_prev(prev);
  torch::Tensor x0 = predict_original(model_output, timestep, sample);

  // log-SNR; +-infinity at the ends of the zero-terminal-SNR table is part of normal operation
  // (h = inf makes mult1 = 0, and the last step returns x0 exactly).
  auto lambda = [](double alpha) { return std::log(std::sqrt(alpha / (1.0 - alpha))); };
  const double lamb = lambda(a), lamb_next = lambda(a_prev);
  const double h = lamb_next - lamb;
  const double mult1 = std::sqrt((1.0 - a_prev) / (1.0 - a)) * std::exp(-h);
  const double mult2 = std::expm1(-2.0 * h) * std::sqrt(a_prev);
  const double mult_noise = std::sqrt(1.0 - a_prev) * std::sqrt(1.0 - std::exp(-2.0 * h));

  // Drawn on the generator's device and moved, as diffusers' randn_tensor does: a CPU generator
  // gives the same noise whether the sample lives on the CPU or a GPU.
  const auto options = sample.options().device(generator.has_value() ? generator->device() : sample.device());
  auto draw = [&] { return torch::randn(sample.sizes(), generator, options).to(sample.device()); };
  torch::Tensor noise = draw();
  torch::Tensor prev_sample = mult1 * sample - mult2 * x0 + mult_noise * noise;
  if (!old_pred_original_sample.has_value() || prev < 0) return {prev_sample, x0};

  T4G_CHECK(timestep_back.has_value(), "dpm_step: the 2M correction needs the previous timestep");
  const double h_last = lamb - lambda(alpha_cumprod(*timestep_back));
  const double r = h_last / h;
  const double mult3 = 1.0 + 1.0 / (2.0 * r);
  const double mult4 = 1.0 / (2.0 * r);
  const torch::Tensor denoised_d = mult3 * x0 - mult4 * (*old_pred_original_sample);
  // The reference draws a second, fresh noise here and discards the first.
  noise = draw();
  prev_sample = mult1 * sample - mult2 * denoised_d + mult_noise * noise;
  return {prev_sample, x0};
}

torch::Tensor CogVideoXScheduler::coefficient(const torch::Tensor& timesteps, const torch::Tensor& like,
                                              bool one_minus) const {
  T4G_CHECK(timesteps.dim() == 1 && timesteps.size(0) == like.size(0), "timesteps must be [B] with B = ",
            like.size(0), ", got ", timesteps.sizes());
  // As the reference: the table is cast to the sample's dtype before indexing and sqrt.
  torch::Tensor ac = alphas_cumprod_.to(like.device(), like.scalar_type()).index_select(0, timesteps.to(like.device()));
  torch::Tensor c = one_minus ? (1 - ac).pow(0.5) : ac.pow(0.5);
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return c.reshape(shape);
}

torch::Tensor CogVideoXScheduler::add_noise(const torch::Tensor& original, const torch::Tensor& noise,
                                            const torch::Tensor& timesteps) const {
  return coefficient(timesteps, original, false) * original + coefficient(timesteps, original, true) * noise;
}

torch::Tensor CogVideoXScheduler::get_velocity(const torch::Tensor& sample, const torch::Tensor& noise,
                                               const torch::Tensor& timesteps) const {
  return coefficient(timesteps, sample, false) * noise - coefficient(timesteps, sample, true) * sample;
}

torch::Tensor CogVideoXScheduler::loss_weights(const torch::Tensor& timesteps) const {
  return 1.0 / (1.0 - alphas_cumprod_.index_select(0, timesteps.to(torch::kCPU)));
}

}  // namespace t4g
