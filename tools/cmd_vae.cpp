// `t4g vae encode|decode`: flags -> VaeFileOptions -> run_vae_file (models/vae_files.h).
#include <CLI/CLI.hpp>

#include <memory>

#include "common/log.h"
#include "common/shape_string.h"
#include "models/vae_files.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"

namespace t4g::tools {
namespace {

void add_mode(CLI::App* parent, const char* name, const char* help, VaeFileMode mode) {
  auto options = std::make_shared<VaeFileOptions>();
  auto dtype = std::make_shared<std::string>("auto");
  options->mode = mode;
  options->device = "auto";
  CLI::App* cmd = parent->add_subcommand(name, help);
  cmd->add_option("--model", options->model, "diffusers pipeline root or vae/ folder")->required();
  cmd->add_option("--input", options->input, "input .safetensors")->required()->check(CLI::ExistingFile);
  cmd->add_option("--output", options->output, "output .safetensors (written atomically)")->required();
  cmd->add_option("--tensor", options->tensor,
                  "input tensor name (default: the file's only tensor, else 'video' / 'latents')");
  cmd->add_option("--dtype", *dtype, "compute dtype: fp32, bf16, fp16 or auto (bf16 on CUDA, fp32 on the CPU)")
      ->capture_default_str();
  cmd->add_option("--device", options->device, "cpu, cuda, cuda:N or auto (cuda when present)")->capture_default_str();
  cmd->add_flag("--tiled", options->tiled, "spatial tiling (reference tile sizes: half the config's sample size)");
  if (mode == VaeFileMode::kEncode) {
    cmd->add_flag("--sample", options->sample, "latents from a posterior sample instead of the mean");
    cmd->add_option("--seed", options->seed, "seed of the posterior sample (CPU generator)")->capture_default_str();
  } else {
    add_off_flag(cmd, "--unscaled", options->scaled, "input is raw z (not multiplied by scaling_factor)");
  }
  cmd->callback([options, dtype]() {
    options->dtype = parse_compute_dtype(resolve_dtype_flag(*dtype, options->device));
    options->device = resolve_device_flag(options->device);
    const VaeFileReport r = run_vae_file(*options);
    T4G_INFO("vae ", options->mode == VaeFileMode::kEncode ? "encode" : "decode", ": ", r.input_tensor, " ",
             shape_string(r.input_shape), " -> ", shape_string(r.output_shape), " in ", r.seconds, " s, written to ",
             options->output);
  });
}

}  // namespace

void register_vae(CLI::App& app) {
  CLI::App* vae = app.add_subcommand("vae", "Encode videos or decode latents with a CogVideoX VAE (safetensors files)");
  vae->require_subcommand(1);
  add_mode(vae, "encode",
           "video [B, C, F, H, W] in [-1, 1], F = 4k+1 -> latents (scaled), mean, logvar [B, C, F', H/8, W/8]",
           VaeFileMode::kEncode);
  add_mode(vae, "decode", "latents [B, C, F', h, w] (scaled unless --unscaled) -> video [B, C, F, 8h, 8w]",
           VaeFileMode::kDecode);
}

}  // namespace t4g::tools
