// The t4g subcommands. Each lives in its own tools/cmd_<name>.cpp and registers itself on
// the CLI11 app; a subcommand only turns flags into a library call (no logic of its own).
#pragma once

#include <CLI/CLI.hpp>

namespace t4g::tools {

// Each adds one top-level subcommand (with its own subcommands, flags and --help).
void register_inspect(CLI::App& app);  // t4g inspect weights|shards PATH
void register_config(CLI::App& app);   // t4g config show|doc|check
void register_demo(CLI::App& app);     // t4g demo: the main job on the embedded tiny config
void register_forward(CLI::App& app);  // t4g forward transformer: one forward from/to safetensors

}  // namespace t4g::tools
