// Parity of models/cogvideox_scheduler with diffusers' CogVideoXDDIMScheduler and
// CogVideoXDPMScheduler (fixtures: tests/fixtures/schedulers/make_fixtures.py).
#include "models/cogvideox_scheduler.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/json.h"
#include "common/rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include "tests/testing.h"

namespace t4g {
namespace {

const Json& expected() {
  static const Json j = read_json(testing::fixture("schedulers/expected.json"));
  return j;
}

torch::Tensor tensor_from(const Json& values, const std::vector<int64_t>& shape,
                          torch::ScalarType dtype = torch::kFloat32) {
  const auto v = values.get<std::vector<double>>();
  return torch::tensor(v, torch::kFloat64).reshape(shape).to(dtype);
}

// Largest |a - b| relative to max(1, |b|).
double max_rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs() / b.to(torch::kFloat64).abs().clamp_min(1.0))
      .max()
      .item<double>();
}

TEST(CogVideoXScheduler, ReadsDiffusersConfigs) {
  const SchedulerConfig ddim = read_scheduler_config(testing::fixture("schedulers/ddim_2b/scheduler_config.json"));
  EXPECT_EQ(ddim.class_name, "CogVideoXDDIMScheduler");
  EXPECT_DOUBLE_EQ(ddim.snr_shift_scale, 3.0);
  EXPECT_EQ(ddim.timestep_spacing, TimestepSpacing::kTrailing);
  const SchedulerConfig dpm = read_scheduler_config(testing::fixture("schedulers/dpm_5b/scheduler_config.json"));
  EXPECT_EQ(dpm.class_name, "CogVideoXDPMScheduler");
  EXPECT_DOUBLE_EQ(dpm.snr_shift_scale, 1.0);
}

TEST(CogVideoXScheduler, RejectsUnsupportedConfigs) {
  testing::TempDir dir;
  testing::write_file(dir.file("a.json"), R"({"_class_name": "EulerDiscreteScheduler"})");
  testing::write_file(dir.file("b.json"), R"({"_class_name": "CogVideoXDDIMScheduler", "timestep_spacing": "odd"})");
  testing::write_file(dir.file("c.json"), R"({"_class_name": "CogVideoXDDIMScheduler", "beta_end": "high"})");
  try {
    read_scheduler_config(dir.file("a.json"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a.json: _class_name: unsupported scheduler"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_scheduler_config(dir.file("b.json")), Error);
  EXPECT_THROW(read_scheduler_config(dir.file("c.json")), Error);
}

// The noise tables agree with the reference to float64 rounding (cumprod and sqrt may be
// vectorised differently): relative 1e-12.
TEST(CogVideoXScheduler, NoiseTablesMatch) {
  SchedulerConfig c2b;
  SchedulerConfig c5b;
  c5b.snr_shift_scale = 1.0;
  const auto ref2 = tensor_from(expected()["alphas_cumprod_2b"], {1000}, torch::kFloat64);
  const auto ref5 = tensor_from(expected()["alphas_cumprod_5b"], {1000}, torch::kFloat64);
  EXPECT_LT(max_rel_err(CogVideoXScheduler(c2b).alphas_cumprod(), ref2), 1e-12);
  EXPECT_LT(max_rel_err(CogVideoXScheduler(c5b).alphas_cumprod(), ref5), 1e-12);
  EXPECT_EQ(CogVideoXScheduler(c2b).alpha_cumprod(999), 0.0);  // zero terminal SNR, exactly
  EXPECT_NEAR(CogVideoXScheduler(c2b).alpha_cumprod(0), 0.9974543276, 1e-9);  // cogvideox.md 4.1 anchor
}

TEST(CogVideoXScheduler, TimestepsMatchEverySpacing) {
  for (const auto& [key, values] : expected()["timesteps"].items()) {
    SchedulerConfig c;
    const std::string spacing = key.substr(0, key.find('_'));
    const int64_t n = std::stoll(key.substr(key.find('_') + 1));
    c.timestep_spacing = spacing == "trailing" ? TimestepSpacing::kTrailing
                         : spacing == "linspace" ? TimestepSpacing::kLinspace
                                                 : TimestepSpacing::kLeading;
    CogVideoXScheduler s(c);
    const auto t = s.set_timesteps(n);
    EXPECT_EQ(std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel()),
              values.get<std::vector<int64_t>>())
        << key;
  }
}

// Each step is computed from the C++ chain's own previous output, so errors would accumulate;
// float32 steps agree to 1e-6 relative.
TEST(CogVideoXScheduler, DdimSequenceMatches) {
  const Json& seq = expected()["ddim_sequence"];
  const auto shape = seq["shape"].get<std::vector<int64_t>>();
  CogVideoXScheduler s(read_scheduler_config(testing::fixture("schedulers/ddim_2b/scheduler_config.json")));
  const auto timesteps = s.set_timesteps(seq["steps"].get<int64_t>());
  torch::Tensor x = tensor_from(seq["x_T"], shape);
  for (int64_t i = 0; i < timesteps.numel(); ++i) {
    const int64_t t = timesteps[i].item<int64_t>();
    EXPECT_EQ(t, seq["timesteps"][i].get<int64_t>());
    const StepOutput out = s.ddim_step(tensor_from(seq["model_outputs"][i], shape), t, x);
    EXPECT_LT(max_rel_err(out.prev_sample, tensor_from(seq["prev_samples"][i], shape)), 1e-6) << "step " << i;
    EXPECT_LT(max_rel_err(out.pred_original_sample, tensor_from(seq["pred_original_samples"][i], shape)), 1e-6);
    x = out.prev_sample;
  }
}

// The DPM sampler draws noise from a CPU generator seeded as torch.Generator().manual_seed(s):
// the same libtorch gives the same normals, so the stochastic chain matches too.
TEST(CogVideoXScheduler, DpmSequenceMatchesIncludingNoise) {
  const Json& seq = expected()["dpm_sequence"];
  const auto shape = seq["shape"].get<std::vector<int64_t>>();
  CogVideoXScheduler s(read_scheduler_config(testing::fixture("schedulers/dpm_5b/scheduler_config.json")));
  const auto timesteps = s.set_timesteps(seq["steps"].get<int64_t>());
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seq["noise_seed"].get<uint64_t>());
  torch::Tensor x = tensor_from(seq["x_T"], shape);
  std::optional<torch::Tensor> old_x0;
  for (int64_t i = 0; i < timesteps.numel(); ++i) {
    const int64_t t = timesteps[i].item<int64_t>();
    std::optional<int64_t> back;
    if (i > 0) back = timesteps[i - 1].item<int64_t>();
    const StepOutput out = s.dpm_step(tensor_from(seq["model_outputs"][i], shape), old_x0, t, back, x, gen);
    EXPECT_LT(max_rel_err(out.prev_sample, tensor_from(seq["prev_samples"][i], shape)), 1e-5) << "step " << i;
    EXPECT_LT(max_rel_err(out.pred_original_sample, tensor_from(seq["pred_original_samples"][i], shape)), 1e-5);
    x = out.prev_sample;
    old_x0 = out.pred_original_sample;
  }
  EXPECT_FALSE(torch::isnan(x).any().item<bool>());
}

TEST(CogVideoXScheduler, TrainingSideMatches) {
  const Json& tr = expected()["training"];
  const auto shape = tr["shape"].get<std::vector<int64_t>>();
  const auto t = torch::tensor(tr["timesteps"].get<std::vector<int64_t>>(), torch::kInt64);
  CogVideoXScheduler s;
  const auto x0 = tensor_from(tr["x0"], shape), eps = tensor_from(tr["noise"], shape);
  EXPECT_LT(max_rel_err(s.add_noise(x0, eps, t), tensor_from(tr["x_t"], shape)), 1e-6);
  EXPECT_LT(max_rel_err(s.get_velocity(x0, eps, t), tensor_from(tr["velocity"], shape)), 1e-6);
  EXPECT_LT(max_rel_err(s.loss_weights(t), tensor_from(tr["weights"], {5}, torch::kFloat64)), 1e-12);
}

// The identity behind the training loss: w_t (x0_hat - x0)^2 == (v_hat - v)^2 with
// x0_hat = get_velocity(v_hat, x_t, t) and w_t = 1 / (1 - alphas_cumprod[t]) (cogvideox.md 4.5).
TEST(CogVideoXScheduler, WeightedX0LossEqualsVLoss) {
  CogVideoXScheduler s;
  auto g = make_generator(3, {0});
  const auto t = torch::tensor({10, 250, 600, 998}, torch::kInt64);
  const auto x0 = torch::randn({4, 3, 5}, g, torch::kFloat64), eps = torch::randn({4, 3, 5}, g, torch::kFloat64);
  const auto v_hat = torch::randn({4, 3, 5}, g, torch::kFloat64);
  const auto x_t = s.add_noise(x0, eps, t);
  const auto v = s.get_velocity(x0, eps, t);
  const auto x0_hat = s.get_velocity(v_hat, x_t, t);
  const auto lhs = s.loss_weights(t).reshape({4, 1, 1}) * (x0_hat - x0).pow(2);
  EXPECT_TRUE(torch::allclose(lhs, (v_hat - v).pow(2), 1e-9, 1e-9));
}

TEST(CogVideoXScheduler, StepBeforeSetTimestepsIsAnError) {
  CogVideoXScheduler s;
  EXPECT_THROW(s.ddim_step(torch::zeros({1}), 999, torch::zeros({1})), Error);
  EXPECT_THROW(s.set_timesteps(0), Error);
  EXPECT_THROW(s.set_timesteps(1001), Error);
}

}  // namespace
}  // namespace t4g
