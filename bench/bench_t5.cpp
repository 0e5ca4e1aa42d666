// Benchmark of the T5 text encoder (models/t5_encoder): encode time of a batch of prompts of
// --length tokens with random weights, at the real T5 v1.1 XXL config with --full (CogVideoX's
// text encoder) or a tiny one for a CPU smoke run. One JSON line per batch size (time, peak
// memory, model TFLOP/s); bench/bench_t5_ref.py is transformers' T5EncoderModel with the same flags.
//   bench_t5 --full --batch 1 2 8 --length 226 --dtype bf16 --device cuda
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "common/error.h"
#include "models/t5_encoder.h"

using t4g::bench::synchronize;
using t4g::bench::reset_peak;
using t4g::bench::peak_bytes;

namespace {

using t4g::T5EncoderConfig;

// T5 v1.1 XXL (research/cogvideox.md 6.1) is the struct's default; tiny for a CPU smoke run.
T5EncoderConfig preset(bool full) {
  T5EncoderConfig c;
  if (full) return c;
  c.d_model = 64;
  c.d_kv = 16;
  c.num_heads = 4;
  c.d_ff = 128;
  c.num_layers = 2;
  return c;
}

// Model FLOPs of one encoder forward (multiply-add = 2), for the batch: per layer the q/k/v/o
// projections 8*T*D*inner, the feed-forward 2*T*D*d_ff per matrix (3 gated, 2 plain), QK^T and
// AV 4*T^2*inner. research/cogvideox.md 8.2 gives 2.11e12 per 226-token prompt for XXL.
double forward_flops(const T5EncoderConfig& c, int64_t batch, int64_t length) {
  const double t = static_cast<double>(length);
  const double d = static_cast<double>(c.d_model);
  const double inner = static_cast<double>(c.inner_dim());
  const double ff = static_cast<double>(c.d_ff) * (c.gated ? 3.0 : 2.0);
  const double per_layer = 2.0 * t * (4.0 * d * inner + ff * d) + 4.0 * t * t * inner;
  return per_layer * static_cast<double>(c.num_layers) * static_cast<double>(batch);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"T5 text encoder benchmark (one JSON line per batch size)"};
  bool full = false;
  std::string config_path;
  std::vector<int64_t> batches = {1, 2};
  int64_t length = 226, iters = 5, warmup = 2, layers = 0;
  std::string dtype_name = "bf16";
  std::string device_name = torch::cuda::is_available() ? "cuda" : "cpu";
  app.add_flag("--full", full, "the real T5 v1.1 XXL config (CogVideoX's text encoder); default: tiny");
  app.add_option("--config", config_path, "a transformers T5 config.json (overrides --full)");
  app.add_option("--layers", layers, "override num_layers (0 = keep)");
  app.add_option("--batch", batches, "batch sizes, one JSON line each");
  app.add_option("--length", length, "tokens per prompt (CogVideoX: 226)");
  app.add_option("--dtype", dtype_name, "bf16 | fp16 | fp32 (fp16 keeps wo in fp32, as transformers)");
  app.add_option("--device", device_name, "cuda | cpu");
  app.add_option("--iters", iters, "timed iterations per batch size");
  app.add_option("--warmup", warmup, "untimed iterations per batch size");
  CLI11_PARSE(app, argc, argv);

  try {
    auto config = config_path.empty() ? preset(full) : t4g::load_t5_encoder_config(config_path);
    if (layers > 0) config.num_layers = layers;
    const auto dtype = dtype_name == "bf16"   ? torch::kBFloat16
                       : dtype_name == "fp16" ? torch::kFloat16
                       : dtype_name == "fp32" ? torch::kFloat32
                                              : throw t4g::Error("unknown dtype '" + dtype_name + "' (bf16, fp16, fp32)");
    const torch::Device device(device_name);

    // Allocated on the device in the compute dtype, then random (no host copy of the weights).
    t4g::T5EncoderModel model(config, t4g::T5InitOptions{dtype, device});
    model->set_compute_dtype(dtype);
    t4g::randomize_t5_encoder(model, 0);
    model->eval();
    int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel();
    params -= model->shared->weight.numel();  // counted twice (tied)

    for (const int64_t batch : batches) {
      const auto ids = torch::randint(0, config.vocab_size, {batch, length},
                                      torch::TensorOptions().dtype(torch::kLong).device(device));
      auto step = [&] {
        torch::NoGradGuard no_grad;
        model(ids);
      };
      for (int64_t i = 0; i < warmup; ++i) step();
      synchronize(device);
      reset_peak(device);
      std::vector<double> times;
      for (int64_t i = 0; i < iters; ++i) {
        const auto start = std::chrono::steady_clock::now();
        step();
        synchronize(device);
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(times.begin(), times.end());
      const double median = times[times.size() / 2];
      const int64_t peak = peak_bytes(device);
      nlohmann::json line = {{"bench", "t5"},
                             {"impl", "t4g"},
                             {"preset", config_path.empty() ? (full ? "xxl" : "tiny") : config_path},
                             {"layers", config.num_layers},
                             {"params", params},
                             {"batch", batch},
                             {"length", length},
                             {"dtype", dtype_name},
                             {"device", device.str()},
                             {"iters", iters},
                             {"median_s", median},
                             {"min_s", times.front()},
                             {"prompts_per_s", static_cast<double>(batch) / median},
                             {"peak_gib", peak < 0 ? nlohmann::json(nullptr) : nlohmann::json(peak / 1073741824.0)},
                             {"model_tflops", forward_flops(config, batch, length) / median / 1e12}};
      std::cout << line.dump() << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_t5: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
