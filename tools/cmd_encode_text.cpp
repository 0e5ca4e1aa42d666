// `t4g encode-text`: flags -> EncodeTextFileOptions -> encode_text_file (models/text_encoder.h).
#include <CLI/CLI.hpp>

#include <memory>

#include "common/log.h"
#include "common/shape_string.h"
#include "models/text_encoder.h"
#include "models/vae_files.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"

namespace t4g::tools {

void register_encode_text(CLI::App& app) {
  auto options = std::make_shared<EncodeTextFileOptions>();
  auto dtype = std::make_shared<std::string>("auto");
  options->device = "auto";
  CLI::App* cmd = app.add_subcommand(
      "encode-text",
      "Encode prompts with the pipeline's T5 (tokenizer/ + text_encoder/) as CogVideoX does: prompt_embeds "
      "[B, L, D], negative_prompt_embeds [B, L, D] and empty_prompt_embeds [1, L, D] float32, input_ids and "
      "attention_mask [B, L] to a safetensors file that `t4g sample` and `t4g transfer` read");
  cmd->add_option("--model", options->model, "diffusers pipeline root, or a folder with text_encoder/ and tokenizer/")
      ->required();
  cmd->add_option("--prompt", options->prompts, "a prompt (repeat for a batch; \"\" is the empty negative prompt)")
      ->required()
      ->allow_extra_args(false);
  cmd->add_option("--out", options->output, "output .safetensors (written atomically)")->required();
  cmd->add_option("--negative-prompt", options->negative_prompt,
                  "negative prompt of every video (default empty, as the pipeline): negative_prompt_embeds");
  cmd->add_option("--max-length", options->max_length,
                  "tokens per prompt including </s> (default: the model's, transformer/config.json "
                  "max_text_seq_length; CogVideoX: 226)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", *dtype, "compute dtype: fp32, bf16, fp16 or auto (bf16 on CUDA, fp32 on the CPU)")
      ->capture_default_str();
  cmd->add_option("--device", options->device, "cpu, cuda, cuda:N or auto (cuda when present)")->capture_default_str();
  cmd->add_option("--cache", options->cache, "text-embedding cache folder (reused across runs)");
  cmd->callback([options, dtype]() {
    options->dtype = parse_compute_dtype(resolve_dtype_flag(*dtype, options->device));
    options->device = resolve_device_flag(options->device);
    const EncodeTextFileReport r = encode_text_file(*options);
    T4G_INFO("encode-text: ", options->prompts.size(), " prompts -> prompt_embeds ", shape_string(r.shape), " in ",
             r.seconds, " s", r.truncated ? " (" + std::to_string(r.truncated) + " truncated)" : std::string(),
             ", written to ", options->output);
  });
}

}  // namespace t4g::tools
