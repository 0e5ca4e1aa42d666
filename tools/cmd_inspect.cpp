// `t4g inspect`: looks inside files without running a model. `inspect weights PATH` lists the
// tensors and parameter counts of a .safetensors file, a sharded index, a component folder or a
// whole diffusers pipeline. `inspect` is a parent command so other inspectors can join it.
#include <iostream>
#include <memory>
#include <string>

#include "models/weights_summary.h"
#include "tools/commands.h"

namespace t4g::tools {

CLI::App* register_inspect(CLI::App& app) {
  CLI::App* inspect = app.add_subcommand("inspect", "Look inside weights and data files");
  inspect->require_subcommand(1);

  struct WeightsFlags {
    std::string path;
    bool json = false;
  };
  auto flags = std::make_shared<WeightsFlags>();
  CLI::App* weights = inspect->add_subcommand(
      "weights",
      "List every tensor (name, dtype, shape) and the parameter count, total and per top-level module, of a "
      ".safetensors file, a sharded *.safetensors.index.json, a component folder or a diffusers pipeline root");
  weights->add_option("PATH", flags->path, "file, index, component folder or pipeline root")->required();
  weights->add_flag("--json", flags->json, "print one JSON document instead of the table");
  weights->callback([flags]() {
    const WeightsSummary summary = summarize_weights(flags->path);
    std::cout << (flags->json ? weights_summary_json(summary) : format_weights_summary(summary)) << std::flush;
  });
  return inspect;
}

}  // namespace t4g::tools
