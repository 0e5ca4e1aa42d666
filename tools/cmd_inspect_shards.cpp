// `t4g inspect shards DIR`: prints data::summarize_shards (data/shards.h).
#include <CLI/CLI.hpp>
#include <iostream>

#include "data/shards.h"
#include "tools/commands.h"

namespace t4g::tools {

void register_inspect_shards(CLI::App& inspect) {
  auto dir = std::make_shared<std::string>();
  CLI::App* cmd = inspect.add_subcommand("shards", "Summarise a shard dataset: videos, frames, sizes, tracks, visibility, "
                                                   "optional tensors");
  cmd->add_option("DIR", *dir, "dataset folder (with index.json)")->required();
  cmd->callback([dir]() { std::cout << data::format_shard_summary(*dir, data::summarize_shards(*dir)) << std::endl; });
}

}  // namespace t4g::tools
