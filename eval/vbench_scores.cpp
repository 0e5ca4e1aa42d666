// VBench dimensions over a set of videos. Videos are scored one at a time by an accumulator, so
// `t4g vbench` on a folder holds one decoded video in memory, not all of them.
#include "eval/vbench_scores.h"

#include "data/video_io.h"

#include <algorithm>
#include <cstdio>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "eval/vbench_temporal_flickering.h"
#include "eval/video_frames.h"

namespace t4g {

std::string vbench_dimension_name(VbenchDimension dimension) {
  switch (dimension) {
    case VbenchDimension::kTemporalFlickering:
      return "temporal_flickering";
    case VbenchDimension::kSubjectConsistency:
      return "subject_consistency";
    case VbenchDimension::kI2vSubject:
      return "i2v_subject";
  }
  return "unknown";
}

VbenchDimension parse_vbench_dimension(const std::string& name) {
  if (name == "temporal_flickering") return VbenchDimension::kTemporalFlickering;
  if (name == "subject_consistency") return VbenchDimension::kSubjectConsistency;
  if (name == "i2v_subject") return VbenchDimension::kI2vSubject;
  ErrorContext ctx;
  ctx.key = "dims";
  ctx.expected = "temporal_flickering, subject_consistency or i2v_subject";
  ctx.got = name;
  T4G_CHECK_CTX(name != "i2v_background", ctx,
                "VBench-I2V's i2v_background (DreamSim) is not implemented; i2v_subject is");
  throw Error("unknown VBench dimension", ctx);
}

std::vector<VbenchDimension> parse_vbench_dimensions(const std::string& list) {
  std::vector<VbenchDimension> out;
  size_t begin = 0;
  while (begin <= list.size()) {
    const size_t end = std::min(list.find(',', begin), list.size());
    const VbenchDimension d = parse_vbench_dimension(list.substr(begin, end - begin));
    ErrorContext ctx;
    ctx.key = "dims";
    ctx.got = list;
    T4G_CHECK_CTX(std::find(out.begin(), out.end(), d) == out.end(), ctx,
                  "VBench dimension listed twice: ", vbench_dimension_name(d));
    out.push_back(d);
    begin = end + 1;
  }
  return out;
}

Json VbenchReport::to_json() const {
  Json per = Json::object();
  for (size_t i = 0; i < names.size(); ++i) per[names[i]] = per_video[i];
  Json protocol = Json::object();
  if (mean.count("temporal_flickering")) {
    protocol["temporal_flickering"] = {
        {"static_filter", false}, {"aggregate", "mean over the videos given (VBench: over static-filtered videos)"}};
  }
  if (mean.count("subject_consistency")) {
    protocol["subject_consistency"] = {
        {"aggregate", "frame_weighted (VBench single process)"},
        {"preprocessing", "dino_transform(224): bilinear short-side resize, antialias=False"}};
  }
  if (mean.count("i2v_subject")) {
    protocol["i2v_subject"] = {
        {"aggregate", "mean over videos"},
        {"formula", "0.4 max conformity to the image + 0.3 mean + 0.3 min consecutive-frame consistency"},
        {"preprocessing",
         "dino_transform_internet: frames Resize(256, bicubic, antialias=True) as float tensors, image "
         "Resize(256) by Pillow bicubic; CenterCrop(224); ImageNet normalisation"}};
  }
  return {{"videos", names.size()}, {"per_video", per}, {"mean", mean}, {"protocol", protocol}};
}

namespace {

// Scores videos one at a time and keeps what the aggregates need.
class VbenchAccumulator {
 public:
  explicit VbenchAccumulator(const VbenchOptions& options) : options_(options), dino_(options.dino) {
    T4G_CHECK(!options_.dimensions.empty(), "VBench: no dimensions to compute");
    const bool needs_dino = wants(VbenchDimension::kSubjectConsistency) || wants(VbenchDimension::kI2vSubject);
    if (needs_dino && !dino_) {
      ErrorContext ctx;
      ctx.key = "dino";
      ctx.expected = "DINO ViT-B/16 weights (.safetensors)";
      T4G_CHECK_CTX(!options_.dino_weights.empty(), ctx,
                    wants(VbenchDimension::kSubjectConsistency) ? "subject_consistency" : "i2v_subject",
                    " needs DINO weights (--dino)");
      dino_ = load_dino_vit(options_.dino_weights, torch::Device(options_.device));
    }
  }

  bool wants(VbenchDimension d) const {
    return std::find(options_.dimensions.begin(), options_.dimensions.end(), d) != options_.dimensions.end();
  }

  // `image`: the video's conditioning image, needed (uint8 RGB [H, W, 3]) only for i2v_subject.
  void add(const std::string& name, const torch::Tensor& frames, const torch::Tensor& image = {}) {
    check_video_frames(frames, name, 2);
    std::map<std::string, double> scores;
    for (VbenchDimension d : options_.dimensions) {
      if (d == VbenchDimension::kTemporalFlickering) {
        const double s = temporal_flickering(frames);
        flickering_.push_back(s);
        scores[vbench_dimension_name(d)] = s;
      } else if (d == VbenchDimension::kSubjectConsistency) {
        const SubjectConsistencyResult r = subject_consistency(dino_, frames, options_.subject);
        subject_.push_back(r);
        scores[vbench_dimension_name(d)] = r.score;
      } else {
        check_rgb_image(image, "image of " + name);
        const I2vSubjectResult r = i2v_subject(dino_, image, frames, options_.i2v);
        i2v_subject_.push_back(r);
        scores[vbench_dimension_name(d)] = r.score;
      }
    }
    report_.names.push_back(name);
    report_.per_video.push_back(std::move(scores));
  }

  VbenchReport finish() {
    T4G_CHECK(!report_.names.empty(), "VBench: no videos to score");
    for (VbenchDimension d : options_.dimensions) {
      double mean = 0;
      switch (d) {
        case VbenchDimension::kTemporalFlickering: mean = temporal_flickering_mean(flickering_); break;
        case VbenchDimension::kSubjectConsistency: mean = subject_consistency_frame_weighted(subject_); break;
        case VbenchDimension::kI2vSubject: mean = i2v_subject_mean(i2v_subject_); break;
      }
      report_.mean[vbench_dimension_name(d)] = mean;
    }
    return report_;
  }

 private:
  const VbenchOptions& options_;
  DinoVit dino_;
  std::vector<double> flickering_;
  std::vector<SubjectConsistencyResult> subject_;
  std::vector<I2vSubjectResult> i2v_subject_;
  VbenchReport report_;
};

std::string default_video_name(size_t index) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "video_%04zu", index);
  return buffer;
}

}  // namespace

VbenchReport vbench_report(const std::vector<torch::Tensor>& videos, const std::vector<std::string>& names,
                           const VbenchOptions& options) {
  T4G_CHECK(names.empty() || names.size() == videos.size(), "VBench: ", names.size(), " names for ", videos.size(),
            " videos");
  VbenchAccumulator accumulator(options);
  if (accumulator.wants(VbenchDimension::kI2vSubject)) {
    ErrorContext ctx;
    ctx.key = "images";
    ctx.expected = str("1 or ", videos.size(), " conditioning images");
    ctx.got = std::to_string(options.images.size());
    T4G_CHECK_CTX(options.images.size() == 1 || (!videos.empty() && options.images.size() == videos.size()), ctx,
                  "i2v_subject needs the conditioning image of the videos");
  }
  for (size_t i = 0; i < videos.size(); ++i) {
    const torch::Tensor image = options.images.empty() ? torch::Tensor()
                                : options.images.size() == 1 ? options.images[0]
                                                             : options.images[i];
    accumulator.add(names.empty() ? default_video_name(i) : names[i], videos[i], image);
  }
  return accumulator.finish();
}

std::map<std::string, double> vbench_scores(const std::vector<torch::Tensor>& videos, const VbenchOptions& options) {
  return vbench_report(videos, {}, options).mean;
}

std::vector<std::string> list_vbench_videos(const std::string& path) {
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(path_exists(path), ctx, "videos not found");
  if (!is_directory(path)) return {path};
  std::vector<std::string> files;
  for (const std::string& name : list_dir(path)) {
    const std::string file = path_join(path, name);
    const bool h5 = name.size() > 3 && name.compare(name.size() - 3, 3, ".h5") == 0;
    if (h5 || (is_regular_file(file) && data::is_video_source(file))) files.push_back(file);
  }
  std::sort(files.begin(), files.end());
  ctx.expected = "videos: *.h5 (dataset frames) or video files such as *.mp4";
  ctx.got = "none";
  T4G_CHECK_CTX(!files.empty(), ctx, "no videos in the folder");
  return files;
}

std::string vbench_image_for_video(const std::string& image, const std::string& video) {
  ErrorContext ctx;
  ctx.file = image;
  T4G_CHECK_CTX(!image.empty(), ctx, "i2v_subject needs the conditioning image (--image)");
  T4G_CHECK_CTX(path_exists(image), ctx, "conditioning image not found");
  if (!is_directory(image)) return image;
  const std::string stem = file_stem(video);
  const std::string path = path_join(image, stem + ".png");
  if (path_exists(path)) return path;
  // VBench's sampled videos are "<prompt>-<i>.mp4" and its images "<prompt>.jpg".
  const size_t dash = stem.find_last_of('-');
  const bool numbered = dash != std::string::npos && dash > 0 && dash + 1 < stem.size() &&
                        stem.find_first_not_of("0123456789", dash + 1) == std::string::npos;
  const std::string prompt_path = numbered ? path_join(image, stem.substr(0, dash) + ".png") : "";
  if (numbered && path_exists(prompt_path)) return prompt_path;
  ctx.file = path;
  ctx.expected = numbered ? path + " or " + prompt_path : path;
  throw Error(str("conditioning image of ", file_name(video), " not found"), ctx);
}

VbenchReport vbench_files(const VbenchFileOptions& options) {
  const std::vector<std::string> files = list_vbench_videos(options.videos);
  VbenchAccumulator accumulator(options.vbench);
  const bool needs_image = accumulator.wants(VbenchDimension::kI2vSubject);
  if (!needs_image && !options.image.empty()) T4G_WARN("vbench: --image is only used by i2v_subject; ignored");
  std::string image_path;  // the image read last, kept so that one file is read once
  torch::Tensor image;
  for (const std::string& file : files) {
    if (needs_image) {
      const std::string path = vbench_image_for_video(options.image, file);
      if (path != image_path) {
        image = read_vbench_image(path);
        image_path = path;
      }
    }
    const torch::Tensor frames = read_any_video(file);
    try {
      accumulator.add(file_stem(file), frames, image);
    } catch (const Error& e) {
      ErrorContext ctx = e.context();
      ctx.file = file;
      throw Error(e.message(), ctx);
    }
    T4G_DEBUG("vbench: scored ", file);
  }
  VbenchReport report = accumulator.finish();
  if (!options.out.empty()) write_json(options.out, report.to_json());
  return report;
}

}  // namespace t4g
