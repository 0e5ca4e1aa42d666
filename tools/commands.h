// The t4g subcommands. Each lives in its own tools/cmd_<name>.cpp and registers itself on
// the CLI11 app; a subcommand only turns flags into a library call (no logic of its own).
#pragma once

#include <CLI/CLI.hpp>

namespace t4g::tools {

// Each adds one top-level subcommand (with its own subcommands, flags and --help).
// t4g inspect weights|shards PATH. Returns the `inspect` parent so other inspectors
// (cmd_inspect_*.cpp) can add their own subcommand to it.
CLI::App* register_inspect(CLI::App& app);
void register_config(CLI::App& app);   // t4g config show|doc|check
void register_demo(CLI::App& app);     // t4g demo: the main job on the embedded tiny config
void register_train(CLI::App& app);    // t4g train: fine-tuning on a recipe
void register_tapvid(CLI::App& app);   // t4g tapvid score
void register_prepare(CLI::App& app);  // t4g prepare: videos -> HDF5 shards with tracks
void register_vae(CLI::App& app);      // t4g vae encode|decode: safetensors through the CogVideoX VAE

// Adds `shards DIR` under the `inspect` subcommand (whose parent app register_inspect makes).
void register_inspect_shards(CLI::App& inspect);
void register_forward(CLI::App& app);  // t4g forward transformer: one forward from/to safetensors
void register_sample(CLI::App& app);   // t4g sample: text-to-video with CFG / CAG to mp4 or HDF5
void register_encode_text(CLI::App& app);  // t4g encode-text: prompts -> T5 embeddings (safetensors)
void register_track(CLI::App& app);    // t4g track: DiffTrack zero-shot tracking -> PRED.h5, METRICS.json, strips
void register_analyze(CLI::App& app);  // t4g analyze: DiffTrack layer x timestep analysis -> CSV, heatmaps
void register_vbench(CLI::App& app);       // t4g vbench: VBench dimensions of HDF5 videos
void register_transfer(CLI::App& app);  // t4g transfer: motion transfer with Attention Motion Flow (DiTFlow)
void register_precompute(CLI::App& app);  // t4g precompute: VAE latents and T5 embeddings into shards

}  // namespace t4g::tools
