// t4g vbench: VBench dimensions (temporal flickering, subject consistency, VBench-I2V's
// i2v_subject) of HDF5 videos.
#include <iostream>

#include "common/log.h"
#include "eval/vbench_scores.h"
#include "tools/commands.h"

namespace t4g::tools {

void register_vbench(CLI::App& app) {
  static VbenchFileOptions options;
  static std::string dims = "temporal_flickering";
  CLI::App* cmd = app.add_subcommand(
      "vbench", "VBench dimensions computed as VBench does: per video and VBench's aggregate over the videos");
  cmd->add_option("--videos", options.videos,
                  "one video (HDF5 with dataset frames, uint8 [F,H,W,3], as t4g sample writes; or a video file such as .mp4) "
                  "or a folder of them")
      ->required();
  cmd->add_option("--dims", dims, "comma-separated: temporal_flickering, subject_consistency, i2v_subject")
      ->capture_default_str();
  cmd->add_option("--dino", options.vbench.dino_weights,
                  "DINO ViT-B/16 weights (.safetensors with DINO's keys) for subject_consistency and i2v_subject");
  cmd->add_option("--image", options.image,
                  "i2v_subject's conditioning image: an RGB PNG for every video, or a folder holding <video stem>.png "
                  "for each video (or <prompt>.png for VBench's <prompt>-<i> videos)");
  cmd->add_option("--device", options.vbench.device, "where DINO runs: cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--batch", options.vbench.subject.batch_size, "frames per DINO forward")->capture_default_str();
  cmd->add_option("--out", options.out, "METRICS.json (default: print to stdout)");
  cmd->callback([] {
    options.vbench.dimensions = parse_vbench_dimensions(dims);
    options.vbench.i2v.batch_size = options.vbench.subject.batch_size;
    const VbenchReport report = vbench_files(options);
    if (options.out.empty()) {
      std::cout << report.to_json().dump(2) << "\n";
    } else {
      T4G_INFO("vbench: ", report.names.size(), " video(s) scored, written to ", options.out);
    }
  });
}

}  // namespace t4g::tools
