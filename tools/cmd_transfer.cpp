// t4g transfer: motion transfer with Attention Motion Flow (DiTFlow) from a reference video to a
// new generation; flags -> TransferFileOptions -> transfer_to_file (eval/motion_transfer_file.h).
#include <memory>
#include <sstream>

#include "common/error.h"
#include "common/log.h"
#include "eval/motion_transfer_file.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"

namespace t4g::tools {

void register_transfer(CLI::App& app) {
  struct Flags {
    RecipeFlags recipe;
    ModelFlags model;
    std::string target = "latents";
    std::string blocks;
    std::string injection_blocks = "0";
    bool no_injection = false;
    std::string dynamic_cfg = "auto";
    std::string scheduler = "config";
    TransferFileOptions options;
  };
  auto flags = std::make_shared<Flags>();
  MotionTransferOptions& t = flags->options.transfer;
  t.sample.guidance_scale = 7.0;  // DiTFlow's defaults
  t.sample.seed = 1;
  CLI::App* cmd = app.add_subcommand(
      "transfer",
      "Motion transfer (DiTFlow): guide a new generation with the reference video's Attention Motion Flow, with "
      "DiTFlow's KV injection at block 0 on the guided steps (its code's default; --no-injection turns it off)");
  add_recipe_flags(cmd, flags->recipe);
  add_model_flags(cmd, flags->model, "Sizes, dtype and device default to the model's own");
  cmd->add_option("--reference", flags->options.reference,
                  "reference video: a video file (needs OpenCV), FRAMES.h5 (dataset frames) or SHARDS_DIR:ID");
  cmd->add_option("--prompt-embeds", flags->options.prompt_embeds,
                  "safetensors with prompt_embeds, negative_prompt_embeds and empty_prompt_embeds (T5 of \"\"); "
                  "tiny model: optional")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", flags->options.out, "output .mp4 (needs OpenCV) or .h5 (dataset frames [F, H, W, 3])")
      ->required();
  cmd->add_option("--report", flags->options.report, "JSON report with the AMF loss per iteration (default: OUT.json)");
  cmd->add_option("--target", flags->target, "what is optimised: latents, or posemb (RoPE tables / sin-cos table)")
      ->check(CLI::IsMember({"latents", "posemb"}))
      ->capture_default_str();
  cmd->add_option("--save-posemb", flags->options.save_posemb,
                  "target posemb: where the optimised embeddings go (default: OUT.posemb.safetensors)");
  cmd->add_option(
         "--load-posemb", flags->options.load_posemb,
         "zero-shot transfer: reuse saved embeddings at the guided steps, no optimisation (implies --target posemb); "
         "KV injection still needs --reference (or --no-injection)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--blocks", flags->blocks, "AMF blocks (default: 20 for 5B, 15 for 2B, num_layers/2 otherwise)");
  const char* injection_help =
      "KV injection, on by default as in DiTFlow's code (injection_blocks [0]): on each guided step the reference "
      "latents, noised to t with the generation's initial noise, go through one forward with the prompt, and these "
      "blocks' video K/V replace the generation's in every forward of the step (AMF loss and both CFG branches)";
  CLI::Option* injection =
      cmd->add_option("--injection-blocks", flags->injection_blocks, injection_help)->capture_default_str();
  cmd->add_flag("--no-injection", flags->no_injection,
                "no KV injection (DiTFlow's --no_injection): the AMF guidance alone")
      ->excludes(injection);
  cmd->add_option("--guidance-steps", t.guidance_steps, "first denoising steps that are guided (-1: 20% of --steps)")
      ->capture_default_str();
  cmd->add_option("--iterations", t.iterations, "Adam iterations per guided step")->capture_default_str();
  cmd->add_option("--lr", t.lr_start, "learning rate of the first guided step")->capture_default_str();
  cmd->add_option("--lr-end", t.lr_end, "lr of guided step i = linspace(lr, lr-end, guided + 1)[i]")
      ->capture_default_str();
  cmd->add_option("--temperature", t.amf.temperature, "AMF softmax temperature multiplier")->capture_default_str();
  cmd->add_flag("!--no-threshold", t.threshold, "loss over every AMF entry, not only where the reference moves");
  cmd->add_option("--reference-timestep", t.reference_timestep, "timestep of the reference forward (clean latents)")
      ->capture_default_str();
  cmd->add_option("--steps", t.sample.steps, "denoising steps")->capture_default_str();
  cmd->add_option("--cfg", t.sample.guidance_scale, "classifier-free guidance scale")->capture_default_str();
  cmd->add_option("--dynamic-cfg", flags->dynamic_cfg, "auto (on for RoPE models, as DiTFlow's 5B), on or off")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  cmd->add_option("--scheduler", flags->scheduler, "config (scheduler_config.json), ddim or dpm")
      ->check(CLI::IsMember({"config", "ddim", "dpm"}))
      ->capture_default_str();
  cmd->add_option("--seed", t.sample.seed, "seed of the initial noise (and DPM noise)")->capture_default_str();
  cmd->add_option("--frames", t.sample.frames, "frames, 4k+1 (default: the reference's, rounded down to 4k+1)");
  cmd->add_option("--height", t.sample.height, "height in pixels (default: the model's)");
  cmd->add_option("--width", t.sample.width, "width in pixels (default: the model's)");
  cmd->add_option("--fps", flags->options.fps, "frame rate of the mp4")->capture_default_str();
  cmd->add_flag("!--no-progress", t.sample.progress, "no progress bar");
  cmd->callback([flags] {
    Config recipe = load_model_recipe(flags->recipe, flags->model);
    set_log_level(parse_log_level(recipe.run.log_level));
    flags->options.components = component_request(flags->model);
    MotionTransferOptions& transfer = flags->options.transfer;
    transfer.target = flags->target == "posemb" ? TransferTarget::kPositions : TransferTarget::kLatents;
    if (!flags->blocks.empty()) transfer.blocks = parse_index_list(flags->blocks, "--blocks", "20 or 20,15,10");
    transfer.injection_blocks = flags->no_injection
                                    ? std::vector<int64_t>{}
                                    : parse_index_list(flags->injection_blocks, "--injection-blocks", "0");
    transfer.sample.sampler = flags->scheduler == "ddim"  ? SamplerKind::kDdim
                              : flags->scheduler == "dpm" ? SamplerKind::kDpm
                                                          : SamplerKind::kFromConfig;
    // "auto" is decided once the model is known (on for the RoPE form, as DiTFlow's 5B).
    transfer.sample.dynamic_cfg = flags->dynamic_cfg == "on";
    flags->options.dynamic_cfg_auto = flags->dynamic_cfg == "auto";
    const TransferFileReport r = transfer_to_file(recipe, flags->options);
    std::string files;
    for (const auto& f : r.files) files += (files.empty() ? "" : ", ") + f;
    T4G_INFO("transfer: AMF loss ", r.first_loss, " -> ", r.last_loss, ", ", r.seconds, " s, written to ", files);
  });
}

}  // namespace t4g::tools
