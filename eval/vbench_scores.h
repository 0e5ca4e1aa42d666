// The VBench dimensions t4g computes as VBench does (research/benchmarks.md 3.1, 3.3), over a set
// of videos: per-video values and VBench's aggregates. One entry point for the trainer's periodic
// evaluation (vbench_scores on sampled frames) and one for `t4g vbench` (files in, METRICS.json out).
// Protocol notes travel with the numbers: temporal flickering is scored on the videos given (VBench
// first drops non-static videos with a RAFT filter, which t4g does not run); subject consistency's
// aggregate is VBench's single-process, frame-weighted one.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "common/json.h"
#include "eval/dino_vit.h"
#include "eval/vbench_subject_consistency.h"

namespace t4g {

// The dimensions, named as VBench names them.
enum class VbenchDimension { kTemporalFlickering, kSubjectConsistency };

// "temporal_flickering" / "subject_consistency".
std::string vbench_dimension_name(VbenchDimension dimension);
// Parses one name; throws t4g::Error listing the supported names otherwise.
VbenchDimension parse_vbench_dimension(const std::string& name);
// Parses a comma-separated list ("temporal_flickering,subject_consistency"); duplicates are an error.
std::vector<VbenchDimension> parse_vbench_dimensions(const std::string& list);

// What to compute and with which model.
struct VbenchOptions {
  std::vector<VbenchDimension> dimensions = {VbenchDimension::kTemporalFlickering};  // in output order
  std::string dino_weights;           // DINO ViT-B/16 safetensors (eval/dino_vit.h); needed for subject_consistency
  DinoVit dino{nullptr};              // an already loaded DINO (the trainer keeps one); used instead of dino_weights
  std::string device = "cpu";         // where DINO runs when loaded here: cpu, cuda or cuda:N
  SubjectConsistencyOptions subject;  // subject consistency's preprocessing and batching
};

// Per-video values and aggregates.
struct VbenchReport {
  std::vector<std::string> names;                        // one per video
  std::vector<std::map<std::string, double>> per_video;  // dimension name -> value
  std::map<std::string, double> mean;                    // dimension name -> VBench's aggregate

  // {"per_video": {name: {dim: value}}, "mean": {dim: value}, "videos": N, "protocol": {...}}.
  Json to_json() const;
};

// Scores uint8 videos [T >= 2, H, W, 3] (any device). `names` may be empty (video_NNNN then).
// Loads DINO from options.dino_weights when subject_consistency is asked for and options.dino is
// null: a missing or invalid file is one error naming it, raised before any video is scored.
VbenchReport vbench_report(const std::vector<torch::Tensor>& videos, const std::vector<std::string>& names,
                           const VbenchOptions& options);

// The aggregates only, for the trainer: {dimension name: VBench's aggregate over `videos`}.
std::map<std::string, double> vbench_scores(const std::vector<torch::Tensor>& videos, const VbenchOptions& options);

// `t4g vbench`: videos from a .h5 file or a folder of them, METRICS.json out.
struct VbenchFileOptions {
  std::string videos;    // one HDF5 video (dataset `frames`) or a folder whose *.h5 files are the videos
  std::string out;       // METRICS.json, written atomically; "" = not written
  VbenchOptions vbench;  // dimensions and DINO
};

// The HDF5 videos `path` names: the file itself, or a folder's *.h5 files in name order. Errors
// name the path when it does not exist or the folder holds none.
std::vector<std::string> list_vbench_videos(const std::string& path);

// Reads the videos (each named by its file stem), scores them and writes options.out.
VbenchReport vbench_files(const VbenchFileOptions& options);

}  // namespace t4g
