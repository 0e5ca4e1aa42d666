// Time and peak memory of the CogVideoX VAE (models/cogvideox_vae): encode of F x H x W frames and
// decode of the matching latents, at the real CogVideoX VAE size with random weights by default,
// or a given config / diffusers folder. bench/bench_vae_ref.py measures diffusers on the same
// shapes with the same JSON keys, so the two outputs can be compared line by line.
// Prints one JSON line per measurement. Example (H100):
//   bench_vae --device cuda --dtype bf16 --frames 49 --height 480 --width 720
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/error.h"
#include "models/cogvideox_vae.h"

using t4g::bench::synchronize;
using t4g::bench::reset_peak;
using t4g::bench::device_name;
using t4g::bench::peak_bytes_or_rss;

namespace {

struct Flags {
  std::string config = "default";  // "default" (the released CogVideoX VAE architecture) or a config.json
  std::string model;               // a diffusers pipeline or vae folder: real weights instead of random ones
  std::string device = "cuda";
  std::string dtype = "bf16";
  std::string what = "both";  // encode | decode | both
  int64_t batch = 1;
  int64_t frames = 49;
  int64_t height = 480;
  int64_t width = 720;
  int repeat = 3;
  int warmup = 1;
  bool tiled = false;
  bool cudnn_benchmark = false;
  uint64_t seed = 0;
};

torch::Dtype parse_dtype(const std::string& name) {
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "fp16" || name == "float16") return torch::kFloat16;
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  throw t4g::Error("--dtype must be bf16, fp16 or fp32, got " + name);
}

struct Timing {
  double min_s = 0;
  double mean_s = 0;
  int64_t peak = 0;
};

template <typename Fn>
Timing measure(const Flags& flags, const torch::Device& device, Fn&& fn) {
  for (int i = 0; i < flags.warmup; ++i) fn();
  synchronize(device);
  reset_peak(device);
  std::vector<double> seconds;
  for (int i = 0; i < flags.repeat; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    synchronize(device);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  Timing t;
  t.min_s = *std::min_element(seconds.begin(), seconds.end());
  for (double s : seconds) t.mean_s += s / static_cast<double>(seconds.size());
  t.peak = peak_bytes_or_rss(device);
  return t;
}

void report(const char* bench, const Flags& flags, const torch::Device& device, int64_t latent_frames,
            const Timing& t) {
  std::printf(
      "{\"bench\": \"%s\", \"impl\": \"t4g\", \"device\": \"%s\", \"dtype\": \"%s\", \"batch\": %lld, \"frames\": "
      "%lld, "
      "\"height\": %lld, \"width\": %lld, \"latent_frames\": %lld, \"tiled\": %s, \"repeat\": %d, \"seconds_min\": "
      "%.4f, "
      "\"seconds_mean\": %.4f, \"peak_bytes\": %lld}\n",
      bench, device_name(device).c_str(), flags.dtype.c_str(), static_cast<long long>(flags.batch),
      static_cast<long long>(flags.frames), static_cast<long long>(flags.height), static_cast<long long>(flags.width),
      static_cast<long long>(latent_frames), flags.tiled ? "true" : "false", flags.repeat, t.min_s, t.mean_s,
      static_cast<long long>(t.peak));
  std::fflush(stdout);
}

int run(const Flags& flags) {
  const torch::Device device(flags.device);
  const torch::Dtype dtype = parse_dtype(flags.dtype);
  if (flags.cudnn_benchmark) at::globalContext().setBenchmarkCuDNN(true);
  torch::manual_seed(flags.seed);
  t4g::VaeOptions run_options;
  run_options.tiling.enabled = flags.tiled;

  t4g::AutoencoderKLCogVideoX vae{nullptr};
  if (!flags.model.empty()) {
    t4g::VaeLoadOptions load;
    load.dtype = dtype;
    load.device = device;
    load.run = run_options;
    vae = t4g::load_cogvideox_vae(flags.model, load);
  } else {
    const t4g::CogVideoXVaeConfig config =
        flags.config == "default" ? t4g::CogVideoXVaeConfig{} : t4g::read_vae_config(flags.config);
    vae = t4g::AutoencoderKLCogVideoX(config, run_options);  // random (default-initialised) weights
    vae->to(device, dtype);
    vae->eval();
  }
  torch::NoGradGuard no_grad;
  const auto& config = vae->config();
  const int64_t s = config.spatial_compression();
  const int64_t latent_frames = vae->latent_frames(flags.frames);
  const auto opts = torch::TensorOptions().device(device).dtype(dtype);

  if (flags.what == "encode" || flags.what == "both") {
    const torch::Tensor video =
        torch::rand({flags.batch, config.in_channels, flags.frames, flags.height, flags.width}, opts) * 2 - 1;
    const Timing t = measure(flags, device, [&] { vae->encode(video); });
    report("vae_encode", flags, device, latent_frames, t);
  }
  if (flags.what == "decode" || flags.what == "both") {
    const torch::Tensor latents =
        torch::randn({flags.batch, config.latent_channels, latent_frames, flags.height / s, flags.width / s}, opts);
    const Timing t = measure(flags, device, [&] { vae->decode(latents); });
    report("vae_decode", flags, device, latent_frames, t);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time CogVideoX VAE encode/decode (one JSON line per measurement)"};
  Flags flags;
  app.add_option("--config", flags.config, "'default' (CogVideoX VAE architecture) or a vae/config.json");
  app.add_option("--model", flags.model, "diffusers pipeline or vae folder (real weights; overrides --config)");
  app.add_option("--device", flags.device, "cuda, cuda:N or cpu");
  app.add_option("--dtype", flags.dtype, "bf16, fp16 or fp32");
  app.add_option("--what", flags.what, "encode, decode or both")->check(CLI::IsMember({"encode", "decode", "both"}));
  app.add_option("--batch", flags.batch, "videos per call");
  app.add_option("--frames", flags.frames, "video frames (4k+1)");
  app.add_option("--height", flags.height, "frame height in pixels");
  app.add_option("--width", flags.width, "frame width in pixels");
  app.add_option("--repeat", flags.repeat, "timed runs");
  app.add_option("--warmup", flags.warmup, "untimed runs first");
  app.add_option("--seed", flags.seed, "seed of the random weights and inputs");
  app.add_flag("--tiled", flags.tiled, "enable tiling (reference defaults: 240x360 pixel tiles)");
  app.add_flag("--cudnn-benchmark", flags.cudnn_benchmark, "let cuDNN pick the fastest algorithms");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(flags);
  } catch (const std::exception& e) {
    std::cerr << "bench_vae: error: " << e.what() << std::endl;
    return 1;
  }
}
