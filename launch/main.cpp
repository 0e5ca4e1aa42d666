// t4grun: torchrun for t4g's C++ programs. Parses the flags (launch/launcher_options.h), runs the
// supervision loop (launch/elastic_agent.h) and turns its result into output and an exit code.
// The only place in launch/ that prints errors and chooses the exit status.
#include <c10/util/Exception.h>

#include <iostream>

#include "common/error.h"
#include "launch/elastic_agent.h"
#include "launch/launcher_options.h"

namespace {

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int main(int argc, char** argv) {
  try {
    t4g::launch::LauncherOptions options;
    if (!t4g::launch::parse_launcher_options(argc, argv, options)) return 0;
    const t4g::launch::RunResult result = t4g::launch::run_agent(options);
    if (!result.report.empty()) std::cerr << result.report << std::flush;
    return result.exit_code;
  } catch (const t4g::Error& e) {
    std::cerr << "t4grun: error: " << e.what() << std::endl;
  } catch (const c10::Error& e) {
    std::cerr << "t4grun: error: " << first_line(e.what_without_backtrace()) << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "t4grun: error: " << first_line(e.what()) << std::endl;
  }
  return 1;
}
