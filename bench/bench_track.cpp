// Benchmark of zero-shot tracking (eval/zero_shot_tracker.h): one random video tracked end to end
// (resize, per-frame VAE latents, one forward per chunk up to the probed layer, cost maps,
// read-out) with random weights. --full: the CogVideoX-2B transformer and VAE configs on the GPU,
// a 50-frame 480x720 video, 13-frame chunks, layer 17, timestep index 49 (DiffTrack's released
// setting); without it, the tiny recipe models on a 9-frame 64x96 video (a CPU smoke run). Prints
// one JSON line (total time, per-chunk time, peak memory); bench/bench_track_ref.py runs
// DiffTrack's procedure in diffusers on the same shapes.
//   bench_track --full --iters 3
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "bench/kernel_profile.h"
#include "common/config.h"
#include "eval/track_run.h"
#include "eval/zero_shot_tracker.h"
#include "models/cogvideox_transformer.h"

using t4g::bench::synchronize;
using t4g::bench::reset_peak;
using t4g::bench::peak_bytes;

int main(int argc, char** argv) {
  CLI::App app{"Zero-shot tracking benchmark (one JSON line)"};
  bool full = false, sample = false, no_tiling = false;
  int64_t frames = 0, height = 0, width = 0, chunk_len = 0, layer = -1, grid = 20, iters = 3, warmup = 1, vae_batch = 4;
  std::string dtype_name = "bf16";
  std::string device_name = torch::cuda::is_available() ? "cuda" : "cpu";
  app.add_flag("--full", full, "CogVideoX-2B configs, 50 x 480 x 720, chunks of 13, layer 17 (else tiny on 9 x 64 x 96)");
  app.add_option("--frames", frames, "video frames (default 50 full / 9 tiny)");
  app.add_option("--height", height, "frame height (default 480 / 64)");
  app.add_option("--width", width, "frame width (default 720 / 96)");
  app.add_option("--chunk-len", chunk_len, "chunk length (default 13 / 5)");
  app.add_option("--layer", layer, "probed block (default 17 / 1)");
  app.add_option("--grid", grid, "grid x grid frame-0 queries");
  app.add_option("--vae-batch", vae_batch, "frames per VAE call");
  app.add_flag("--sample", sample, "sample the VAE posterior (the reference) instead of its mean");
  app.add_flag("--no-vae-tiling", no_tiling, "encode whole frames (the reference tiles)");
  app.add_option("--dtype", dtype_name, "bf16 | fp32");
  app.add_option("--device", device_name, "cuda | cpu");
  app.add_option("--iters", iters, "timed runs");
  app.add_option("--warmup", warmup, "untimed runs");
  int64_t profile = 0;
  app.add_option("--profile", profile, "after timing, profile this many runs: device time per kernel category");
  CLI11_PARSE(app, argc, argv);

  try {
    frames = frames > 0 ? frames : (full ? 50 : 9);
    height = height > 0 ? height : (full ? 480 : 64);
    width = width > 0 ? width : (full ? 720 : 96);
    chunk_len = chunk_len > 0 ? chunk_len : (full ? 13 : 5);
    layer = layer >= 0 ? layer : (full ? 17 : 1);
    const torch::Device device(device_name);
    const auto dtype = dtype_name == "bf16" ? torch::kBFloat16 : torch::kFloat32;

    t4g::ModelComponents c;
    c.device = device;
    c.dtype = dtype;
    c.source = full ? "random-2b" : "tiny";
    if (full) {
      t4g::CogVideoXTransformerConfig tc;  // the 2B config
      c.transformer = t4g::CogVideoXTransformer3DModel(tc);
      t4g::init_random_weights(*c.transformer, 0, 0.02);
      c.vae = t4g::AutoencoderKLCogVideoX(t4g::CogVideoXVaeConfig{});
      t4g::init_random_weights(*c.vae, 1, 0.02);
      c.text_tokens = tc.max_text_seq_length;
      c.text_embed_dim = tc.text_embed_dim;
    } else {
      t4g::ModelConfig mc;
      mc.device = device.is_cuda() ? t4g::DeviceKind::kCuda : t4g::DeviceKind::kCpu;
      mc.dtype = dtype == torch::kBFloat16 ? t4g::DType::kBFloat16 : t4g::DType::kFloat32;
      c = t4g::load_model_components(mc, 0);
      no_tiling = true;  // the tiny VAE's tiles do not divide its frames
    }
    c.transformer->to(device, dtype);
    c.vae->to(device, dtype);
    c.transformer->eval();
    c.vae->eval();
    for (auto& p : c.transformer->parameters()) p.set_requires_grad(false);
    for (auto& p : c.vae->parameters()) p.set_requires_grad(false);

    t4g::ZeroShotTrackerOptions o;
    o.layers = {layer};
    o.height = height;
    o.width = width;
    o.chunks.chunk_len = chunk_len;
    o.vae_tiling = !no_tiling;
    o.vae_batch = vae_batch;
    o.latent_sampling = sample ? t4g::LatentSampling::kSample : t4g::LatentSampling::kMean;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
    const auto video = at::randint(0, 256, {frames, height, width, 3}, gen, torch::kLong).to(torch::kUInt8);
    const auto xy = t4g::grid_queries(grid, height, width);
    const auto queries =
        torch::cat({torch::zeros({xy.size(0), 1}), xy.select(1, 1).unsqueeze(1), xy.select(1, 0).unsqueeze(1)}, 1);
    const int64_t chunks = static_cast<int64_t>(t4g::difftrack_chunks(frames, o.chunks).size());

    for (int64_t i = 0; i < warmup; ++i) t4g::track_video(c, video, queries, o);
    synchronize(device);
    reset_peak(device);
    std::vector<double> times;
    for (int64_t i = 0; i < iters; ++i) {
      const auto start = std::chrono::steady_clock::now();
      t4g::track_video(c, video, queries, o);
      synchronize(device);
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    const int64_t peak = peak_bytes(device);
    nlohmann::json line = {{"bench", "track"},
                           {"impl", "t4g"},
                           {"model", c.source},
                           {"video", {frames, height, width}},
                           {"chunk_len", chunk_len},
                           {"chunks", chunks},
                           {"layer", layer},
                           {"queries", queries.size(0)},
                           {"latent", sample ? "sample" : "mean"},
                           {"vae_tiling", !no_tiling},
                           {"dtype", dtype_name},
                           {"device", device.str()},
                           {"iters", iters},
                           {"total_s", median},
                           {"min_s", times.front()},
                           {"per_chunk_s", median / static_cast<double>(chunks)},
                           {"peak_gib", peak < 0 ? nlohmann::json(nullptr) : nlohmann::json(peak / 1073741824.0)}};
    std::cout << line.dump() << std::endl;
    if (profile > 0) {
      nlohmann::json p = t4g::bench::profile_json(
          t4g::bench::profile_kernels([&] { t4g::track_video(c, video, queries, o); }, profile, device), 25);
      p["bench"] = "track_profile";
      p["impl"] = "t4g";
      std::cout << p.dump() << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_track: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
