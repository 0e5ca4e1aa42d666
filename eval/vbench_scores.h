// The VBench dimensions t4g computes as VBench does (research/benchmarks.md 3.1, 3.3, 3.8), over a
// set of videos: per-video values and VBench's aggregates. One entry point for the trainer's
// periodic evaluation (vbench_scores on sampled frames) and one for `t4g vbench` (files in,
// METRICS.json out). Protocol notes travel with the numbers: temporal flickering is scored on the
// videos given (VBench first drops non-static videos with a RAFT filter, which t4g does not run);
// subject consistency's aggregate is VBench's single-process, frame-weighted one; i2v_subject
// (VBench-I2V) needs the conditioning image of each video. VBench-I2V's i2v_background (DreamSim)
// is not implemented.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "common/json.h"
#include "eval/dino_vit.h"
#include "eval/vbench_i2v_subject.h"
#include "eval/vbench_subject_consistency.h"

namespace t4g {

// The dimensions, named as VBench names them.
enum class VbenchDimension { kTemporalFlickering, kSubjectConsistency, kI2vSubject };

// "temporal_flickering" / "subject_consistency" / "i2v_subject".
std::string vbench_dimension_name(VbenchDimension dimension);
// Parses one name; throws t4g::Error listing the supported names otherwise.
VbenchDimension parse_vbench_dimension(const std::string& name);
// Parses a comma-separated list ("temporal_flickering,subject_consistency"); duplicates are an error.
std::vector<VbenchDimension> parse_vbench_dimensions(const std::string& list);

// What to compute and with which model.
struct VbenchOptions {
  std::vector<VbenchDimension> dimensions = {VbenchDimension::kTemporalFlickering};  // in output order
  std::string dino_weights;           // DINO ViT-B/16 safetensors (eval/dino_vit.h); needed for subject_consistency, i2v_subject
  DinoVit dino{nullptr};              // an already loaded DINO (the trainer keeps one); used instead of dino_weights
  std::string device = "cpu";         // where DINO runs when loaded here: cpu, cuda or cuda:N
  SubjectConsistencyOptions subject;  // subject consistency's preprocessing and batching
  I2vSubjectOptions i2v;              // i2v_subject's preprocessing and batching (batch_size follows --batch in t4g vbench)
  std::vector<torch::Tensor> images;  // i2v_subject's conditioning images, uint8 RGB [H, W, 3]: one for all videos or one per video
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
// Loads DINO from options.dino_weights when subject_consistency or i2v_subject is asked for and
// options.dino is null: a missing or invalid file is one error naming it, raised before any video
// is scored. i2v_subject pairs video i with options.images[i], or with images[0] when there is one.
VbenchReport vbench_report(const std::vector<torch::Tensor>& videos, const std::vector<std::string>& names,
                           const VbenchOptions& options);

// The aggregates only, for the trainer: {dimension name: VBench's aggregate over `videos`}.
std::map<std::string, double> vbench_scores(const std::vector<torch::Tensor>& videos, const VbenchOptions& options);

// `t4g vbench`: videos from a .h5 file or a folder of them, METRICS.json out.
struct VbenchFileOptions {
  std::string videos;    // one video (HDF5 with dataset `frames`, or a video file) or a folder of them
  std::string image;     // i2v_subject: an RGB PNG for every video, or a folder with <video stem>.png (or <prompt>.png) per video
  std::string out;       // METRICS.json, written atomically; "" = not written
  VbenchOptions vbench;  // dimensions and DINO (its `images` are not used: `image` names them)
};

// The videos `path` names: the file itself, or a folder's *.h5 and video files in name order. Errors
// name the path when it does not exist or the folder holds none.
std::vector<std::string> list_vbench_videos(const std::string& path);

// The conditioning image of the video file `video` for i2v_subject: `image` itself when it is a
// file; in a folder <image>/<stem>.png, or else, for a stem "<prompt>-<digits>" (VBench's naming
// of sampled videos), <image>/<prompt>.png (VBench pairs each prompt's videos with one image).
// Errors name the image path(s) looked for.
std::string vbench_image_for_video(const std::string& image, const std::string& video);

// Reads the videos (each named by its file stem), scores them and writes options.out. With
// i2v_subject, each video's image is read (and checked) before the video is scored, one image
// file only once.
VbenchReport vbench_files(const VbenchFileOptions& options);

}  // namespace t4g
