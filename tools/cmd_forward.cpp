// t4g forward transformer: one CogVideoX transformer forward from tensors in a safetensors file,
// with optional Q/K probes (the parity and debugging entry point).
#include "models/cogvideox_io.h"
#include "tools/commands.h"
#include "tools/recipe_flags.h"

namespace t4g::tools {

void register_forward(CLI::App& app) {
  CLI::App* forward = app.add_subcommand("forward", "Run one model forward on tensors from a safetensors file");
  forward->require_subcommand(1);

  static ForwardTransformerFileOptions options;
  static int64_t probe_layer = -1;
  static std::string dtype = "auto";
  static std::string device = "auto";
  CLI::App* transformer =
      forward->add_subcommand("transformer",
                              "CogVideoX transformer: IN has hidden_states, encoder_hidden_states, timestep (ofs); "
                              "OUT gets sample (and query_L{N}, key_L{N} with --probe-layer)");
  transformer->add_option("--model", options.model, "diffusers transformer folder (or pipeline root)")->required();
  transformer->add_option("--inputs", options.inputs, "input safetensors file")->required();
  transformer->add_option("--output", options.output, "output safetensors file")->required();
  transformer->add_option("--probe-layer", probe_layer, "capture query/key fed to attention at this block")
      ->check(CLI::NonNegativeNumber);
  transformer->add_option("--dtype", dtype, "compute dtype (auto: bf16 on CUDA, fp32 on the CPU)")
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}))
      ->capture_default_str();
  transformer->add_option("--device", device, "cpu or cuda (auto: cuda when present)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  transformer->callback([] {
    options.probe_layer = probe_layer >= 0 ? std::optional<int64_t>(probe_layer) : std::nullopt;
    options.load.dtype = resolve_dtype_flag(dtype, device) == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    options.load.device = torch::Device(resolve_device_flag(device));
    forward_transformer_file(options);
  });
}

}  // namespace t4g::tools
