// Benchmark of text-to-video sampling (eval/sampler): the denoising loop with CFG (and optional
// CAG) plus the VAE decode, with random weights. With --full it runs the released CogVideoX-2B or
// -5B transformer and VAE at 49 x 480 x 720 in bf16 on the GPU; without, a tiny model of the same
// form on the CPU (a smoke run). Prints one JSON line: time per step, denoise, decode, total and
// peak memory per phase. bench/bench_sample_ref.py makes the same call with diffusers'
// CogVideoXPipeline and the same keys (impl "diffusers").
//   bench_sample --preset 5b --full --steps 50 [--cag-layers 15,17,18]
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bench/bench_util.h"
#include "common/error.h"
#include "eval/sampler.h"
#include "models/cogvideox_transformer.h"

using t4g::bench::synchronize;
using t4g::bench::reset_peak;
using t4g::bench::device_name;
using t4g::bench::peak_bytes_or_rss;

namespace {

struct Flags {
  std::string preset = "2b";  // 2b (sin-cos, DDIM) | 5b (RoPE, DPM)
  bool full = false;          // the released sizes on the GPU; else a tiny model of the same form on the CPU
  int64_t layers = 0;         // override num_layers (0 = keep)
  int64_t steps = 50;
  double cfg = 6.0;
  bool dynamic_cfg = false;
  std::string cag_layers;     // "13,17,21"; empty = no CAG
  double cag_scale = 1.0;
  std::string cag_mode = "auto";  // auto: drop with CFG, renorm without (DiffTrack's pipeline)
  int64_t frames = 0;         // 0: 49 (full) or 9 (tiny)
  int64_t height = 0;         // 0: 480 (full) or 64 (tiny)
  int64_t width = 0;          // 0: 720 (full) or 96 (tiny)
  std::string dtype;          // "": bf16 (full) or fp32 (tiny)
  std::string device;         // "": cuda (full) or cpu (tiny)
  int64_t warmup_steps = 1;   // an untimed sample of this many steps (and a decode) first; 0 = none
  bool decode = true;
  uint64_t seed = 0;
};

// The released transformer configs (research/cogvideox.md 1.1), or tiny ones of the same form.
t4g::CogVideoXTransformerConfig transformer_config(const Flags& flags) {
  T4G_CHECK(flags.preset == "2b" || flags.preset == "5b", "unknown preset '", flags.preset, "' (2b, 5b)");
  t4g::CogVideoXTransformerConfig c = t4g::cogvideox_preset(flags.preset);
  if (!flags.full) {
    t4g::TinyModelConfig tiny;
    tiny.use_rotary_positional_embeddings = c.use_rotary_positional_embeddings;
    c = t4g::tiny_transformer_config(tiny);
  }
  if (flags.layers > 0) c.num_layers = flags.layers;
  return c;
}

std::set<int64_t> parse_layers(const std::string& text) {
  std::set<int64_t> layers;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) layers.insert(std::stoll(item));
  return layers;
}

int run(const Flags& flags) {
  const torch::Device device(flags.device.empty() ? (flags.full ? "cuda" : "cpu") : flags.device);
  const std::string dtype_name = flags.dtype.empty() ? (flags.full ? "bf16" : "fp32") : flags.dtype;
  T4G_CHECK(dtype_name == "bf16" || dtype_name == "fp32", "--dtype must be bf16 or fp32, got ", dtype_name);
  const torch::ScalarType dtype = dtype_name == "bf16" ? torch::kBFloat16 : torch::kFloat32;

  t4g::ModelComponents m;
  m.source = "random " + flags.preset + (flags.full ? "" : " (tiny)");
  m.device = device;
  m.dtype = dtype;
  const t4g::CogVideoXTransformerConfig config = transformer_config(flags);
  m.transformer = t4g::CogVideoXTransformer3DModel(config);
  m.transformer->to(device, dtype);
  {
    // Drawn on the device (a CPU draw of 5B parameters takes minutes), as bench_transformer:
    // N(0, 0.02), LayerNorm weights around 1.
    torch::NoGradGuard no_grad;
    torch::manual_seed(static_cast<int64_t>(flags.seed));
    for (auto& p : m.transformer->named_parameters()) {
      p.value().normal_(0.0, 0.02);
      if (p.value().dim() == 1 && p.key().size() > 6 && p.key().substr(p.key().size() - 6) == "weight") {
        p.value().add_(1.0);
      }
    }
  }
  m.transformer->eval();
  if (flags.decode) {
    // Default-initialised, as bench_vae: the released VAE architecture, or the tiny one.
    torch::manual_seed(static_cast<int64_t>(flags.seed));
    m.vae = t4g::AutoencoderKLCogVideoX(flags.full ? t4g::CogVideoXVaeConfig{} : t4g::tiny_vae_config({}));
    m.vae->to(device, dtype);
    m.vae->eval();
  }
  t4g::SchedulerConfig scheduler;
  scheduler.class_name = flags.preset == "5b" ? "CogVideoXDPMScheduler" : "CogVideoXDDIMScheduler";
  scheduler.snr_shift_scale = flags.preset == "5b" ? 1.0 : 3.0;
  m.scheduler = t4g::CogVideoXScheduler(scheduler);
  m.text_tokens = config.max_text_seq_length;
  m.text_embed_dim = config.text_embed_dim;

  auto gen = at::make_generator<at::CPUGeneratorImpl>(flags.seed + 1);
  t4g::PromptEmbeddings prompts;
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat32);
  prompts.positive = torch::randn({1, m.text_tokens, m.text_embed_dim}, gen, cpu).to(device, dtype);
  prompts.negative = torch::randn({1, m.text_tokens, m.text_embed_dim}, gen, cpu).to(device, dtype);

  t4g::SampleOptions options;
  options.steps = flags.steps;
  options.guidance_scale = flags.cfg;
  options.dynamic_cfg = flags.dynamic_cfg;
  options.cag_layers = parse_layers(flags.cag_layers);
  options.cag_scale = flags.cag_scale;
  options.cag_mode = t4g::parse_cag_mode(flags.cag_mode);
  options.seed = flags.seed;
  options.frames = flags.frames > 0 ? flags.frames : (flags.full ? 49 : 9);
  options.height = flags.height > 0 ? flags.height : (flags.full ? 480 : 64);
  options.width = flags.width > 0 ? flags.width : (flags.full ? 720 : 96);
  options.decode = false;  // decoded below, timed on its own
  options.progress = false;

  if (flags.warmup_steps > 0) {
    t4g::SampleOptions warm = options;
    warm.steps = flags.warmup_steps;
    const torch::Tensor latents = t4g::denoise_latents(m.transformer, m.scheduler, prompts, warm);
    if (flags.decode) t4g::decode_latents_to_video(m.vae, latents);
    synchronize(device);
  }

  reset_peak(device);
  t4g::SampleResult result;
  const auto start = std::chrono::steady_clock::now();
  result.latents = t4g::denoise_latents(m.transformer, m.scheduler, prompts, options, &result);
  synchronize(device);
  const double denoise_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t peak_denoise = peak_bytes_or_rss(device);

  double decode_s = 0;
  int64_t peak_decode = 0;
  if (flags.decode) {
    reset_peak(device);
    const auto decode_start = std::chrono::steady_clock::now();
    const torch::Tensor frames = t4g::vae_output_to_frames(t4g::decode_latents_to_video(m.vae, result.latents));
    synchronize(device);
    decode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - decode_start).count();
    peak_decode = peak_bytes_or_rss(device);
  }

  std::vector<double> steps = result.step_seconds;
  std::sort(steps.begin(), steps.end());
  const double gib = 1024.0 * 1024.0 * 1024.0;
  nlohmann::json line = {
      {"bench", "sample"},
      {"impl", "t4g"},
      {"preset", flags.preset},
      {"full", flags.full},
      {"layers", config.num_layers},
      {"scheduler", scheduler.class_name},
      {"frames", options.frames},
      {"height", options.height},
      {"width", options.width},
      {"text", m.text_tokens},
      {"dtype", dtype_name},
      {"device", device_name(device)},
      {"steps", flags.steps},
      {"cfg", flags.cfg},
      {"dynamic_cfg", flags.dynamic_cfg},
      {"cag_layers", std::vector<int64_t>(options.cag_layers.begin(), options.cag_layers.end())},
      {"cag_scale", options.cag_layers.empty() ? 0.0 : flags.cag_scale},
      {"cag_mode", options.cag_layers.empty() ? "none" : t4g::cag_mode_name(t4g::resolve_cag_mode(options))},
      {"step_s_median", steps[steps.size() / 2]},
      {"step_s_min", steps.front()},
      {"step_s_first", result.step_seconds.front()},
      {"denoise_s", denoise_s},
      {"decode_s", decode_s},
      {"total_s", denoise_s + decode_s},
      {"peak_gib_denoise", peak_denoise / gib},
      {"peak_gib_decode", flags.decode ? nlohmann::json(peak_decode / gib) : nlohmann::json(nullptr)},
  };
  std::cout << line.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time CogVideoX text-to-video sampling (one JSON line)"};
  Flags flags;
  app.add_option("--preset", flags.preset, "2b (sin-cos, DDIM) or 5b (RoPE, DPM)");
  app.add_flag("--full", flags.full, "the released sizes at 49x480x720, bf16, cuda (else tiny on the CPU)");
  app.add_option("--layers", flags.layers, "override num_layers (0 = keep)");
  app.add_option("--steps", flags.steps, "denoising steps");
  app.add_option("--cfg", flags.cfg, "CFG scale");
  app.add_flag("--dynamic-cfg", flags.dynamic_cfg, "diffusers' use_dynamic_cfg");
  app.add_option("--cag-layers", flags.cag_layers, "CAG blocks, e.g. 13,17,21 (2B) or 15,17,18 (5B)");
  app.add_option("--cag-scale", flags.cag_scale, "CAG scale");
  app.add_option("--cag-mode", flags.cag_mode, "auto (drop with CFG, renorm without) | drop | renorm")
      ->check(CLI::IsMember({"auto", "drop", "renorm"}));
  app.add_option("--frames", flags.frames, "video frames (4k+1)");
  app.add_option("--height", flags.height, "pixels");
  app.add_option("--width", flags.width, "pixels");
  app.add_option("--dtype", flags.dtype, "bf16 | fp32");
  app.add_option("--device", flags.device, "cuda, cuda:N or cpu");
  app.add_option("--warmup-steps", flags.warmup_steps, "untimed warm-up sample of this many steps (and a decode)");
  app.add_flag("!--no-decode", flags.decode, "skip the VAE");
  app.add_option("--seed", flags.seed, "seed of weights, embeddings and noise");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(flags);
  } catch (const std::exception& e) {
    std::cerr << "bench_sample: error: " << e.what() << std::endl;
    return 1;
  }
}
