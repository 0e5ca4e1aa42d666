// t4g sample: text-to-video sampling (CFG, optional CAG) from prompt embeddings to a video file;
// flags -> SampleFileOptions -> sample_to_file (eval/sample_file.h).
#include <memory>
#include <sstream>

#include "common/error.h"
#include "common/log.h"
#include "common/shape_string.h"
#include "eval/sample_file.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"

namespace t4g::tools {

void register_sample(CLI::App& app) {
  struct Flags {
    RecipeFlags recipe;
    ModelFlags model;
    std::string cag_layers;
    std::string cag_mode = "auto";
    std::string scheduler = "config";
    SampleFileOptions options;
  };
  auto flags = std::make_shared<Flags>();
  SampleOptions& s = flags->options.sample;
  CLI::App* cmd = app.add_subcommand(
      "sample", "Text-to-video sampling with CFG (and optional CAG) from prompt embeddings to an mp4 or HDF5 file");
  add_recipe_flags(cmd, flags->recipe);
  add_model_flags(cmd, flags->model, "Sizes, dtype and device default to the model's own");
  cmd->add_option("--prompt", flags->options.prompts, "text prompt (repeat for several videos), encoded by the model's T5");
  cmd->add_option("--negative-prompt", flags->options.negative_prompt, "negative prompt for CFG (default empty)");
  cmd->add_option("--text-cache", flags->options.text_cache, "folder caching T5 embeddings by prompt");
  cmd->add_option("--prompt-embeds", flags->options.prompt_embeds,
                  "safetensors with prompt_embeds [B, L, D] and negative_prompt_embeds (tiny model: optional)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", flags->options.out, "output .mp4 (needs OpenCV) or .h5 (dataset frames [F, H, W, 3])")
      ->required();
  cmd->add_option("--steps", s.steps, "denoising steps")->capture_default_str();
  cmd->add_option("--cfg", s.guidance_scale, "classifier-free guidance scale (off when <= 1)")->capture_default_str();
  cmd->add_flag("--dynamic-cfg", s.dynamic_cfg, "diffusers' use_dynamic_cfg (recommended for 5B with DPM)");
  cmd->add_option("--cag-layers", flags->cag_layers, "CAG: comma-separated blocks (2B: 13,17,21; 5B: 15,17,18)");
  cmd->add_option("--cag-scale", s.cag_scale, "CAG scale")->capture_default_str();
  cmd->add_option("--cag-mode", flags->cag_mode,
                  "auto: as DiffTrack's pipeline, drop with CFG (--cfg > 1) and renorm without; "
                  "drop: full softmax, cross-frame probabilities zeroed, not renormalised; "
                  "renorm: -inf mask, softmax within text + own frame")
      ->check(CLI::IsMember({"auto", "drop", "renorm"}))
      ->capture_default_str();
  cmd->add_option("--scheduler", flags->scheduler, "config (scheduler_config.json), ddim or dpm")
      ->check(CLI::IsMember({"config", "ddim", "dpm"}))
      ->capture_default_str();
  cmd->add_option("--seed", s.seed, "seed of the CPU generator (initial noise, DPM noise)")->capture_default_str();
  cmd->add_option("--frames", s.frames, "frames, 4k+1 (default: the model's own, e.g. 49 for CogVideoX 1.0)");
  cmd->add_option("--height", s.height, "height in pixels (default: the model's own, e.g. 480)");
  cmd->add_option("--width", s.width, "width in pixels (default: the model's own, e.g. 720)");
  cmd->add_option("--fps", flags->options.fps, "frame rate of the mp4")->capture_default_str();
  cmd->add_option("--save-latents", flags->options.save_latents,
                  "also write the final latents and the decoded video (float32, [0, 1]) to this safetensors file");
  add_off_flag(cmd, "--no-progress", s.progress, "no progress bar");
  cmd->callback([flags] {
    Config recipe = load_model_recipe(flags->recipe, flags->model);
    set_log_level(parse_log_level(recipe.run.log_level));
    flags->options.components = component_request(flags->model);
    SampleOptions& sample = flags->options.sample;
    if (!flags->cag_layers.empty()) {
      const std::vector<int64_t> layers = parse_index_list(flags->cag_layers, "--cag-layers", "13,17,21");
      sample.cag_layers = std::set<int64_t>(layers.begin(), layers.end());
    }
    sample.cag_mode = parse_cag_mode(flags->cag_mode);
    sample.sampler = flags->scheduler == "ddim"  ? SamplerKind::kDdim
                     : flags->scheduler == "dpm" ? SamplerKind::kDpm
                                                 : SamplerKind::kFromConfig;
    const SampleFileReport r = sample_to_file(recipe, flags->options);
    std::string files;
    for (const auto& f : r.files) files += (files.empty() ? "" : ", ") + f;
    T4G_INFO("sample: frames ", shape_string(r.frames_shape), ", denoise ", r.denoise_seconds, " s, decode ",
             r.decode_seconds, " s, written to ", files);
  });
}

}  // namespace t4g::tools
