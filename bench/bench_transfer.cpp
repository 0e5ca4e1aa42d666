// Benchmark of DiTFlow motion transfer (eval/motion_transfer): one guided generation, i.e. the
// reference AMF forward, `guidance_steps` x `iterations` loss forwards (stopping after the AMF
// block) with backward and Adam, and the CFG denoising of every step, with random weights and
// random reference latents (the VAE is timed by bench_vae). With --full: the released
// CogVideoX-5B (or 2B) transformer in bf16 on the GPU at DiTFlow's 21 x 480 x 720 (6 latent
// frames); without, the tiny model of the same form on the CPU (a smoke run). One JSON line: total,
// guidance and plain-step times, time per optimiser iteration, peak memory.
// bench/bench_transfer_ref.py measures the same procedure written with diffusers (impl "diffusers").
//   bench_transfer --preset 5b --full [--steps 50 --guidance-steps 10 --iterations 5 --target latents]
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "common/error.h"
#include "eval/motion_transfer.h"
#include "models/cogvideox_transformer.h"

using t4g::bench::synchronize;
using t4g::bench::reset_peak;
using t4g::bench::device_name;
using t4g::bench::peak_bytes_or_rss;

namespace {

struct Flags {
  std::string preset = "5b";       // 2b (sin-cos, DDIM) | 5b (RoPE, DPM)
  bool full = false;               // released sizes on the GPU; else a tiny model of the same form on the CPU
  int64_t steps = 50;              // denoising steps
  int64_t guidance_steps = -1;     // -1: 20% of steps (10 of 50)
  int64_t iterations = 5;          // Adam iterations per guided step
  int64_t block = -1;              // AMF block (-1: 20 for 5B, 15 for 2B)
  std::string target = "latents";  // latents | posemb
  double cfg = 7.0;
  int64_t frames = 0;          // 0: 21 (full, 6 latent frames) or 9 (tiny)
  int64_t height = 0;          // 0: 480 (full) or 64 (tiny)
  int64_t width = 0;           // 0: 720 (full) or 96 (tiny)
  bool checkpointing = false;  // gradient checkpointing of the blocks before the AMF block
  std::string device;          // "": cuda (full) or cpu (tiny)
  uint64_t seed = 0;
};

t4g::CogVideoXTransformerConfig transformer_config(const Flags& flags) {
  T4G_CHECK(flags.preset == "2b" || flags.preset == "5b", "unknown preset '", flags.preset, "' (2b, 5b)");
  t4g::CogVideoXTransformerConfig c;  // the struct's defaults are the 2B config
  if (flags.preset == "5b") {
    c.num_attention_heads = 48;
    c.num_layers = 42;
    c.use_rotary_positional_embeddings = true;
  }
  if (!flags.full) {
    t4g::TinyModelConfig tiny;
    tiny.use_rotary_positional_embeddings = c.use_rotary_positional_embeddings;
    c = t4g::tiny_transformer_config(tiny);
  }
  return c;
}

int run(const Flags& flags) {
  const torch::Device device(flags.device.empty() ? (flags.full ? "cuda" : "cpu") : flags.device);
  const torch::ScalarType dtype = flags.full ? torch::kBFloat16 : torch::kFloat32;
  t4g::ModelComponents m;
  m.source = "random " + flags.preset + (flags.full ? "" : " (tiny)");
  m.device = device;
  m.dtype = dtype;
  const t4g::CogVideoXTransformerConfig config = transformer_config(flags);
  m.transformer = t4g::CogVideoXTransformer3DModel(config);
  m.transformer->to(device, dtype);
  {
    // Drawn on the device, as bench_sample: N(0, 0.02), LayerNorm weights around 1; frozen.
    torch::NoGradGuard no_grad;
    torch::manual_seed(static_cast<int64_t>(flags.seed));
    for (auto& p : m.transformer->named_parameters()) {
      p.value().normal_(0.0, 0.02);
      if (p.value().dim() == 1 && p.key().size() > 6 && p.key().substr(p.key().size() - 6) == "weight") {
        p.value().add_(1.0);
      }
      p.value().set_requires_grad(false);
    }
  }
  m.transformer->eval();
  m.transformer->set_gradient_checkpointing(flags.checkpointing);
  t4g::SchedulerConfig scheduler;
  scheduler.class_name = flags.preset == "5b" ? "CogVideoXDPMScheduler" : "CogVideoXDDIMScheduler";
  scheduler.snr_shift_scale = flags.preset == "5b" ? 1.0 : 3.0;
  m.scheduler = t4g::CogVideoXScheduler(scheduler);
  m.text_tokens = config.max_text_seq_length;
  m.text_embed_dim = config.text_embed_dim;

  t4g::MotionTransferOptions o;
  o.target = flags.target == "posemb" ? t4g::TransferTarget::kPositions : t4g::TransferTarget::kLatents;
  o.sample.steps = flags.steps;
  o.sample.guidance_scale = flags.cfg;
  o.sample.dynamic_cfg = flags.preset == "5b";
  o.sample.seed = flags.seed;
  o.sample.frames = flags.frames > 0 ? flags.frames : (flags.full ? 21 : 9);
  o.sample.height = flags.height > 0 ? flags.height : (flags.full ? 480 : 64);
  o.sample.width = flags.width > 0 ? flags.width : (flags.full ? 720 : 96);
  o.sample.decode = false;
  o.sample.progress = false;
  o.guidance_steps = flags.guidance_steps;
  o.iterations = flags.iterations;
  if (flags.block >= 0) o.blocks = {flags.block};
  const t4g::SampleGeometry g = t4g::resolve_sample_geometry(config, o.sample);

  auto gen = at::make_generator<at::CPUGeneratorImpl>(flags.seed + 1);
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat32);
  t4g::PromptEmbeddings prompts;
  prompts.positive = torch::randn({1, m.text_tokens, m.text_embed_dim}, gen, cpu).to(device, dtype);
  prompts.negative = torch::randn({1, m.text_tokens, m.text_embed_dim}, gen, cpu).to(device, dtype);
  const torch::Tensor empty = torch::randn({1, m.text_tokens, m.text_embed_dim}, gen, cpu).to(device, dtype);
  const torch::Tensor reference = torch::randn(g.latent_shape(1), gen, cpu).to(device, dtype);

  {
    // Warm-up: one step, one guided iteration (kernels, allocator).
    t4g::MotionTransferOptions warm = o;
    warm.sample.steps = 1;
    warm.guidance_steps = 1;
    warm.iterations = 1;
    t4g::transfer_motion(m, reference, prompts, empty, warm);
    synchronize(device);
  }
  reset_peak(device);
  const auto start = std::chrono::steady_clock::now();
  const t4g::MotionTransferResult r = t4g::transfer_motion(m, reference, prompts, empty, o);
  synchronize(device);
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t peak = peak_bytes_or_rss(device);

  const int64_t guided = t4g::resolve_guidance_steps(o);
  double guided_steps_s = 0, plain_steps_s = 0;
  for (size_t i = 0; i < r.sample.step_seconds.size(); ++i) {
    (static_cast<int64_t>(i) < guided ? guided_steps_s : plain_steps_s) += r.sample.step_seconds[i];
  }
  std::vector<int64_t> blocks;
  for (const auto& [b, _] : r.reference_amf) blocks.push_back(b);
  const int64_t iterations = static_cast<int64_t>(r.iterations.size());
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const nlohmann::json line = {
      {"bench", "transfer"},
      {"impl", "t4g"},
      {"preset", flags.preset},
      {"full", flags.full},
      {"target", flags.target},
      {"blocks", blocks},
      {"frames", o.sample.frames},
      {"latent_frames", g.latent_frames},
      {"height", o.sample.height},
      {"width", o.sample.width},
      {"dtype", flags.full ? "bf16" : "fp32"},
      {"device", device_name(device)},
      {"checkpointing", flags.checkpointing},
      {"steps", flags.steps},
      {"guidance_steps", guided},
      {"iterations", flags.iterations},
      {"total_s", total_s},
      {"guidance_s", r.guidance_seconds},
      {"iteration_s", iterations > 0 ? r.guidance_seconds / static_cast<double>(iterations) : 0.0},
      {"guided_steps_s", guided_steps_s},
      {"plain_step_s", flags.steps > guided ? plain_steps_s / static_cast<double>(flags.steps - guided) : 0.0},
      {"first_loss", r.iterations.empty() ? 0.0 : r.iterations.front().loss},
      {"peak_gib", peak / gib},
  };
  std::cout << line.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time one DiTFlow guided generation (one JSON line)"};
  Flags flags;
  app.add_option("--preset", flags.preset, "2b (sin-cos, DDIM) or 5b (RoPE, DPM, dynamic CFG)");
  app.add_flag("--full", flags.full, "the released sizes at 21x480x720, bf16, cuda (else tiny on the CPU)");
  app.add_option("--steps", flags.steps, "denoising steps");
  app.add_option("--guidance-steps", flags.guidance_steps, "guided steps (-1: 20% of steps)");
  app.add_option("--iterations", flags.iterations, "Adam iterations per guided step");
  app.add_option("--block", flags.block, "AMF block (-1: 20 for 5B, 15 for 2B)");
  app.add_option("--target", flags.target, "latents | posemb")->check(CLI::IsMember({"latents", "posemb"}));
  app.add_option("--cfg", flags.cfg, "CFG scale");
  app.add_option("--frames", flags.frames, "video frames (4k+1)");
  app.add_option("--height", flags.height, "pixels");
  app.add_option("--width", flags.width, "pixels");
  app.add_flag("--checkpointing", flags.checkpointing, "gradient checkpointing (the reference enables it)");
  app.add_option("--device", flags.device, "cuda, cuda:N or cpu");
  app.add_option("--seed", flags.seed, "seed of weights, embeddings and noise");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(flags);
  } catch (const std::exception& e) {
    std::cerr << "bench_transfer: error: " << e.what() << std::endl;
    return 1;
  }
}
