// t4g: the one command line. Subcommands (tools/cmd_*.cpp) parse flags and call the libraries.
// This file owns the only catch: any error becomes one line on stderr and a non-zero exit.
#include <c10/util/Exception.h>

#include <iostream>
#include <string>

#include "common/error.h"
#include "common/error_file.h"
#include "t4g/build_config.h"
#include "tools/commands.h"
#include "train/dist_env.h"

namespace {

// First line of a message: torch errors carry multi-line context that a user does not need.
std::string first_line(const std::string& text) {
  const auto pos = text.find('\n');
  return pos == std::string::npos ? text : text.substr(0, pos);
}

// The one error line, also left in TORCHELASTIC_ERROR_FILE when a launcher (t4grun, torchrun)
// asked for it, so its failure summary names this worker's error (research A.1.6).
int fail(const std::string& message, const std::string& details) {
  std::cerr << "t4g: error: " << message << std::endl;
  try {
    t4g::write_error_file(t4g::error_file_from_env(), message, details);
  } catch (const std::exception& e) {
    std::cerr << "t4g: cannot write the error file: " << e.what() << std::endl;
  }
  return 1;
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
  t4g::tools::register_train(app);
  t4g::tools::register_prepare(app);
  t4g::tools::register_tapvid(app);
  t4g::tools::register_vae(app);
  t4g::tools::register_inspect_shards(*t4g::tools::register_inspect(app));
  t4g::tools::register_forward(app);
  t4g::tools::register_sample(app);
  t4g::tools::register_encode_text(app);
  t4g::tools::register_track(app);
  t4g::tools::register_analyze(app);
  t4g::tools::register_vbench(app);
  t4g::tools::register_transfer(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const t4g::Error& e) {
    return fail(e.what(), "t4g::Error");
  } catch (const c10::Error& e) {
    return fail(first_line(e.what_without_backtrace()), e.what());
  } catch (const std::exception& e) {
    return fail(first_line(e.what()), e.what());
  }
  return 0;
}
