// t4g: the one command line. Subcommands (tools/cmd_*.cpp) parse flags and call the libraries.
// This file owns the only catch: any error becomes one line on stderr and a non-zero exit.
#include <c10/util/Exception.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

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

// Edit distance, for "did you mean" on a mistyped subcommand.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The one line for a command-line mistake: a word where a subcommand belongs names the nearest
// subcommand; anything else is CLI11's message plus where the flags are listed.
std::string usage_error(CLI::App& app, int argc, char** argv, const CLI::ParseError& error) {
  CLI::App* at = &app;
  std::string path = "t4g";
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') break;
    const std::vector<CLI::App*> subs = at->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) break;
    CLI::App* next = nullptr;
    for (CLI::App* sub : subs) {
      if (sub->get_name() == word) next = sub;
    }
    if (next == nullptr) {
      std::string best;
      size_t best_distance = 3;  // suggest only near misses
      for (CLI::App* sub : subs) {
        const size_t d = edit_distance(word, sub->get_name());
        if (d < best_distance) best_distance = d, best = sub->get_name();
      }
      std::string names;
      for (CLI::App* sub : subs) names += (names.empty() ? "" : ", ") + sub->get_name();
      return (path == "t4g" ? std::string() : path.substr(4) + ": ") + "unknown command '" + word + "'" +
             (best.empty() ? std::string() : " (did you mean '" + best + "'?)") + "; commands: " + names;
    }
    at = next;
    path += " " + word;
  }
  std::string message = error.what();
  for (char& ch : message) {
    if (ch == '\n') ch = ' ';
  }
  return (path == "t4g" ? std::string() : path.substr(4) + ": ") + message + " (`" + path + " --help` lists " +
         (at->get_subcommands([](CLI::App*) { return true; }).empty() ? "the flags)" : "the commands)");
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
  t4g::tools::register_precompute(app);
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
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // --help: the help text, exit 0
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A usage mistake is one error line like any other (CLI11 would print its own text and exit 104-109).
    return fail(usage_error(app, argc, argv, e), "CLI::ParseError");
  } catch (const t4g::Error& e) {
    return fail(e.what(), "t4g::Error");
  } catch (const c10::Error& e) {
    return fail(first_line(e.what_without_backtrace()), e.what());
  } catch (const std::exception& e) {
    return fail(first_line(e.what()), e.what());
  }
  return 0;
}
