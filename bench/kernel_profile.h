// Where GPU time goes: runs a callable under the Kineto profiler (CUPTI) and sums device time per
// kernel and per kernel category (attention, GEMM, normalisation, elementwise, copy, ...). The same
// categories are used by bench/kernel_profile.py for the Python references, so the two profiles
// of one benchmark can be compared row by row in BENCHMARKS.md.
#pragma once

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace t4g::bench {

// The category of a CUDA kernel from its (mangled or plain) name. Order matters: attention kernels
// contain "gemm"-like substrings, so they are matched first. Keep in sync with kernel_profile.py.
inline std::string kernel_category(const std::string& raw) {
  std::string n = raw;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto has = [&](const char* s) { return n.find(s) != std::string::npos; };
  if (has("flash") || has("fmha") || has("sdpa") || has("attention") || has("attn")) return "attention";
  if (has("gemm") || has("xmma") || has("cutlass") || has("nvjet") || has("matmul") || has("cublas")) return "gemm";
  if (has("conv") || has("implicit_convolve") || has("winograd") || has("cudnn")) return "conv";
  if (has("layer_norm") || has("layernorm") || has("group_norm") || has("groupnorm") || has("rms")) return "norm";
  if (has("nccl")) return "nccl";
  if (has("memcpy") || has("memset") || has("copy") || has("cat") || has("index") || has("gather") ||
      has("scatter"))
    return "copy";
  if (has("reduce") || has("softmax") || has("norm")) return "reduce";
  if (has("elementwise") || has("vectorized") || has("unrolled") || has("gelu") || has("silu") || has("mul") ||
      has("add"))
    return "elementwise";
  return "other";
}

struct KernelProfile {
  double total_ms = 0;                          // summed device time of every kernel, memcpy and memset
  std::map<std::string, double> category_ms;    // by kernel_category
  std::map<std::string, int64_t> category_calls;
  struct Kernel {
    std::string name;
    int64_t calls = 0;
    double ms = 0;
  };
  std::vector<Kernel> kernels;  // descending by time
};

// Runs `fn` `iters` times under the profiler (after the caller's warm-up) and returns device time
// per call of `fn` (totals divided by iters). Needs a CUDA build with CUPTI; on a build without
// it the profile comes back empty.
inline KernelProfile profile_kernels(const std::function<void()>& fn, int64_t iters, const torch::Device& device) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  const ProfilerConfig config(ProfilerState::KINETO);
  const std::set<ActivityType> activities{ActivityType::CPU, ActivityType::CUDA};
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  for (int64_t i = 0; i < iters; ++i) fn();
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? 0 : device.index());
  const auto result = prof::disableProfiler();
  std::map<std::string, KernelProfile::Kernel> by_name;
  KernelProfile out;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;
    const double ms = static_cast<double>(e.durationNs()) / 1e6 / static_cast<double>(iters);
    auto& k = by_name[e.name()];
    k.name = e.name();
    ++k.calls;
    k.ms += ms;
    out.total_ms += ms;
  }
  for (auto& [name, k] : by_name) {
    k.calls /= std::max<int64_t>(1, iters);
    const std::string cat = kernel_category(name);
    out.category_ms[cat] += k.ms;
    out.category_calls[cat] += k.calls;
    out.kernels.push_back(k);
  }
  std::sort(out.kernels.begin(), out.kernels.end(), [](const auto& a, const auto& b) { return a.ms > b.ms; });
  return out;
}

// The profile as JSON: totals per category and the `top` most expensive kernels (names cut to 120
// characters).
inline nlohmann::json profile_json(const KernelProfile& p, size_t top = 15) {
  nlohmann::json categories = nlohmann::json::object();
  for (const auto& [cat, ms] : p.category_ms) {
    categories[cat] = {{"ms", ms}, {"calls", p.category_calls.at(cat)}, {"share", p.total_ms > 0 ? ms / p.total_ms : 0}};
  }
  nlohmann::json kernels = nlohmann::json::array();
  for (size_t i = 0; i < std::min(top, p.kernels.size()); ++i) {
    const auto& k = p.kernels[i];
    kernels.push_back({{"name", k.name.substr(0, 120)}, {"calls", k.calls}, {"ms", k.ms},
                       {"category", kernel_category(k.name)}});
  }
  return {{"device_ms", p.total_ms}, {"categories", categories}, {"top_kernels", kernels}};
}

}  // namespace t4g::bench
