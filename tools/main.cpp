// t4g: the one command line. Subcommands (tools/cmd_*.cpp) parse flags and call the libraries.
// This file owns the only catch: any error becomes one line on stderr and a non-zero exit.
#include <c10/util/Exception.h>

#include <iostream>
#include <string>

#include "common/error.h"
#include "t4g/build_config.h"
#include "tools/commands.h"

namespace {

// First line of a message: torch errors carry multi-line context that a user does not need.
std::string first_line(const std::string& text) {
  const auto pos = text.find('\n');
  return pos == std::string::npos ? text : text.substr(0, pos);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"t4g: Track4Gen-style fine-tuning, point tracking and analysis of video diffusion "
               "transformers (CogVideoX)"};
  app.set_version_flag("--version", std::string("t4g ") + T4G_VERSION + " (torch " + T4G_TORCH_VERSION + ")");
  app.require_subcommand(1);
  // Subcommands, one line each (tools/commands.h):
  t4g::tools::register_config(app);
  t4g::tools::register_demo(app);
  t4g::tools::register_prepare(app);
  t4g::tools::register_vae(app);
  t4g::tools::register_inspect_shards(*t4g::tools::register_inspect(app));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const t4g::Error& e) {
    std::cerr << "t4g: error: " << e.what() << std::endl;
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "t4g: error: " << first_line(e.what_without_backtrace()) << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "t4g: error: " << first_line(e.what()) << std::endl;
    return 1;
  }
  return 0;
}
