// Benchmark of the CogVideoX transformer: forward, and forward+backward of all parameters with
// and without per-block gradient checkpointing, at a given config and latent shape with random
// weights. Prints one JSON line per mode (time, peak memory, model TFLOP/s); the diffusers
// counterpart is bench/bench_transformer_ref.py with the same flags.
//   bench_transformer --preset 5b --frames 13 --height 60 --width 90 --text 226 --dtype bf16 --device cuda
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "bench/kernel_profile.h"
#include "common/error.h"
#include "models/cogvideox_transformer.h"

using t4g::bench::peak_bytes;
using t4g::bench::reset_peak;
using t4g::bench::synchronize;

namespace {

using t4g::CogVideoXTransformerConfig;

// The released configurations (research/cogvideox.md 1.1) and a tiny one for a CPU smoke run.
CogVideoXTransformerConfig preset(const std::string& name) {
  if (name == "2b" || name == "5b") return t4g::cogvideox_preset(name);
  CogVideoXTransformerConfig c;
  if (name == "tiny") {
    c.num_attention_heads = 2;
    c.attention_head_dim = 16;
    c.num_layers = 2;
    c.text_embed_dim = 32;
    c.time_embed_dim = 32;
    c.use_rotary_positional_embeddings = true;
    return c;
  }
  throw t4g::Error("unknown preset '" + name + "' (2b, 5b, tiny)");
}

// Model FLOPs of one forward per research/cogvideox.md 8.2 (multiply-add = 2), for the batch.
double forward_flops(const CogVideoXTransformerConfig& c, int64_t batch, int64_t frames, int64_t h, int64_t w,
                     int64_t text) {
  const double d = static_cast<double>(c.inner_dim());
  const double pt = static_cast<double>(c.patch_size_t.value_or(1));
  const double patch = static_cast<double>(c.patch_size * c.patch_size) * pt;
  const double nv = static_cast<double>(frames / c.patch_size_t.value_or(1) * (h / c.patch_size) * (w / c.patch_size));
  const double n = nv + static_cast<double>(text);
  const double layers = static_cast<double>(c.num_layers);
  const double temb = static_cast<double>(c.time_embed_dim);
  double f = layers * (24.0 * n * d * d + 4.0 * n * n * d);
  f += 2.0 * nv * static_cast<double>(c.in_channels) * patch * d +
       2.0 * static_cast<double>(text * c.text_embed_dim) * d;
  f += 2.0 * nv * d * patch * static_cast<double>(c.out_channels);
  f += layers * 2.0 * 2.0 * temb * 6.0 * d + 2.0 * (d * temb + temb * temb) + 2.0 * temb * 2.0 * d;
  return f * static_cast<double>(batch);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CogVideoX transformer benchmark (one JSON line per mode)"};
  std::string preset_name = "2b";
  std::string config_path;
  int64_t batch = 1, frames = 13, height = 60, width = 90, text = 226, iters = 5, warmup = 2, layers = 0;
  std::string dtype_name = "bf16";
  std::string device_name = torch::cuda::is_available() ? "cuda" : "cpu";
  std::vector<std::string> modes = {"forward", "train", "train_ckpt"};
  app.add_option("--preset", preset_name, "2b | 5b | tiny");
  app.add_option("--config", config_path, "a diffusers transformer config.json (overrides --preset)");
  app.add_option("--layers", layers, "override num_layers (0 = keep)");
  app.add_option("--batch", batch);
  app.add_option("--frames", frames, "latent frames");
  app.add_option("--height", height, "latent height");
  app.add_option("--width", width, "latent width");
  app.add_option("--text", text, "text tokens");
  app.add_option("--dtype", dtype_name, "bf16 | fp32");
  app.add_option("--device", device_name, "cuda | cpu");
  app.add_option("--iters", iters, "timed iterations per mode");
  app.add_option("--warmup", warmup, "untimed iterations per mode");
  app.add_option("--modes", modes,
                 "forward train train_ckpt train_ckpt_keep (checkpointing that keeps attention outputs)");
  int64_t profile = 0;
  app.add_option("--profile", profile,
                 "after timing, profile this many calls per mode: device time per kernel category");
  CLI11_PARSE(app, argc, argv);

  try {
    auto config = config_path.empty() ? preset(preset_name) : t4g::load_cogvideox_transformer_config(config_path);
    if (layers > 0) config.num_layers = layers;
    config.max_text_seq_length = text;
    const auto dtype = dtype_name == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    const torch::Device device(device_name);

    torch::manual_seed(0);
    t4g::CogVideoXTransformer3DModel model(config);
    model->to(device, dtype);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->named_parameters()) {
        p.value().normal_(0.0, 0.02);
        if (p.value().dim() == 1 && p.key().size() > 6 && p.key().substr(p.key().size() - 6) == "weight") {
          p.value().add_(1.0);  // LayerNorm weights around 1
        }
      }
    }
    const int64_t in_c = config.in_channels;
    const auto x =
        torch::randn({batch, frames, in_c, height, width}, torch::TensorOptions().device(device).dtype(dtype));
    const auto enc =
        torch::randn({batch, text, config.text_embed_dim}, torch::TensorOptions().device(device).dtype(dtype));
    const auto t = torch::full({batch}, 500, torch::TensorOptions().device(device).dtype(torch::kLong));
    t4g::TransformerForwardOptions options;
    if (config.use_rotary_positional_embeddings) {
      // Precomputed once, as the diffusers pipeline does.
      options.rope = t4g::cogvideox_rotary_embedding(config, frames, height, width, device);
    }
    const double flops = forward_flops(config, batch, frames, height, width, text);

    for (const auto& mode : modes) {
      T4G_CHECK(mode == "forward" || mode == "train" || mode == "train_ckpt" || mode == "train_ckpt_keep",
                "unknown mode ", mode);
      const bool train = mode != "forward";
      model->set_gradient_checkpointing(mode == "train_ckpt" || mode == "train_ckpt_keep", mode == "train_ckpt_keep");
      if (train)
        model->train();
      else
        model->eval();
      auto step = [&] {
        if (!train) {
          torch::NoGradGuard no_grad;
          model(x, enc, t, options);
          return;
        }
        const auto out = model(x, enc, t, options).sample;
        out.to(torch::kFloat32).square().mean().backward();
        for (auto& p : model->parameters()) p.mutable_grad().reset();
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
      const double model_flops = flops * (train ? 3.0 : 1.0);  // backward ~ 2x forward; recompute not counted
      nlohmann::json line = {{"bench", "transformer"},
                             {"impl", "t4g"},
                             {"mode", mode},
                             {"preset", config_path.empty() ? preset_name : config_path},
                             {"layers", config.num_layers},
                             {"shape", {batch, frames, in_c, height, width}},
                             {"text", text},
                             {"dtype", dtype_name},
                             {"device", device.str()},
                             {"iters", iters},
                             {"median_s", median},
                             {"min_s", times.front()},
                             {"peak_gib", peak_bytes(device) < 0 ? nlohmann::json(nullptr)
                                                                 : nlohmann::json(peak_bytes(device) / 1073741824.0)},
                             {"model_tflops", model_flops / median / 1e12}};
      std::cout << line.dump() << std::endl;
      if (profile > 0) {
        nlohmann::json p = t4g::bench::profile_json(t4g::bench::profile_kernels(step, profile, device));
        p["bench"] = "transformer_profile";
        p["impl"] = "t4g";
        p["mode"] = mode;
        p["preset"] = line["preset"];
        std::cout << p.dump() << std::endl;
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_transformer: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
