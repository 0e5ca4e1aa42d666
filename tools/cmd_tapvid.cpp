// t4g tapvid score: TAP-Vid metrics of predictions (PRED.h5) against a TAP-Vid pickle.
#include <iostream>

#include "common/json.h"
#include "eval/tapvid_score.h"
#include "tools/commands.h"

namespace t4g::tools {

void register_tapvid(CLI::App& app) {
  CLI::App* tapvid = app.add_subcommand("tapvid", "TAP-Vid benchmark: score predictions");
  tapvid->require_subcommand(1);
  static TapVidScoreOptions options;
  static std::string mode = "first", out;
  CLI::App* score = tapvid->add_subcommand(
      "score", "Compute tapnet's metrics (per video and the mean over videos) of PRED.h5 on a TAP-Vid pickle");
  score->add_option("--data", options.data, "TAP-Vid pickle (DAVIS dict form or Kinetics list form), or a shard folder (ground truth = its tracks)")->required();
  score->add_option("--pred", options.pred,
                    "predictions: one group per video with tracks float32 [Q,T,2] (256x256 pixels) and "
                    "occluded uint8 [Q,T]")
      ->required();
  score->add_option("--query-mode", mode, "first | strided")->check(CLI::IsMember({"first", "strided"}));
  score->add_option("--query-stride", options.query_stride, "frame stride of 'strided' queries");
  score->add_option("--out", out, "METRICS.json (default: print to stdout)");
  score->callback([] {
    options.query_mode = parse_query_mode(mode);
    const Json metrics = score_tapvid(options);
    if (out.empty()) {
      std::cout << metrics.dump(2) << "\n";
    } else {
      write_json(out, metrics);
    }
  });
}

}  // namespace t4g::tools
