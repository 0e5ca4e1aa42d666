// TAP-Vid pickles (see tapvid.h): structure checks on top of the safe pickle reader, JPEG
// decoding through OpenCV when available, and the conversion to pixel tracks and visibility.
#include "data/tapvid.h"

#include <cstdio>

#include "common/error.h"
#include "common/shape_string.h"
#include "data/pickle.h"
#include "t4g/build_config.h"

#if T4G_HAVE_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace t4g::data {
namespace {

using pickle::Value;
using pickle::ValuePtr;

ErrorContext ctx_of(const std::string& file, const std::string& key, const std::string& expected = "",
                    const std::string& got = "") {
  ErrorContext ctx;
  ctx.file = file;
  ctx.key = key;
  ctx.expected = expected;
  ctx.got = got;
  return ctx;
}

TapVidVideo parse_video(const ValuePtr& v, const std::string& file, const std::string& key) {
  T4G_CHECK_CTX(v->kind == Value::Kind::kDict, ctx_of(file, key, "dict", v->describe()), "TAP-Vid video is not a dict");
  auto field = [&](const char* name) {
    ValuePtr f = v->get(name);
    T4G_CHECK_CTX(f != nullptr, ctx_of(file, key + "/" + name), "missing key (a TAP-Vid video has 'video', 'points', 'occluded')");
    T4G_CHECK_CTX(f->kind == Value::Kind::kArray, ctx_of(file, key + "/" + name, "numpy array", f->describe()), "wrong type");
    return f->array;
  };
  TapVidVideo out;
  const auto video = field("video"), points = field("points"), occluded = field("occluded");
  if (video->kind == 'S') {
    T4G_CHECK_CTX(video->shape.size() == 1, ctx_of(file, key + "/video", "[T] JPEG bytes", "rank " + std::to_string(video->shape.size())),
                  "wrong shape");
    out.jpeg_frames = video->to_bytes_list();
  } else {
    out.frames = video->to_tensor();
    T4G_CHECK_CTX(out.frames.scalar_type() == torch::kUInt8 && out.frames.dim() == 4 && out.frames.size(3) == 3,
                  ctx_of(file, key + "/video", "uint8 [T,H,W,3]", video->typestr() + " " + shape_string(out.frames.sizes())),
                  "wrong frames");
  }
  T4G_CHECK_CTX(points->kind == 'f', ctx_of(file, key + "/points", "float", points->typestr()), "wrong dtype");
  out.points = points->to_tensor().to(torch::kFloat64);
  T4G_CHECK_CTX(occluded->kind == 'b', ctx_of(file, key + "/occluded", "bool", occluded->typestr()), "wrong dtype");
  out.occluded = occluded->to_tensor();
  const int64_t T = out.num_frames();
  T4G_CHECK_CTX(out.points.dim() == 3 && out.points.size(1) == T && out.points.size(2) == 2,
                ctx_of(file, key + "/points", str("[N,", T, ",2]"), shape_string(out.points.sizes())), "wrong shape");
  T4G_CHECK_CTX(out.occluded.dim() == 2 && out.occluded.size(0) == out.points.size(0) && out.occluded.size(1) == T,
                ctx_of(file, key + "/occluded", str("[", out.points.size(0), ",", T, "]"), shape_string(out.occluded.sizes())),
                "wrong shape");
  T4G_CHECK_CTX(out.points.numel() == 0 || torch::isfinite(out.points).all().item<bool>(), ctx_of(file, key + "/points"),
                "NaN or infinite coordinates");
  return out;
}

}  // namespace

int64_t TapVidVideo::num_frames() const {
  return frames.defined() ? frames.size(0) : static_cast<int64_t>(jpeg_frames.size());
}

std::vector<TapVidVideo> read_tapvid_pickle(const std::string& path) {
  const ValuePtr root = pickle::load_file(path);
  std::vector<TapVidVideo> videos;
  if (root->kind == Value::Kind::kDict) {
    for (const auto& [k, v] : root->entries) {
      T4G_CHECK_CTX(k->kind == Value::Kind::kString, ctx_of(path, "", "str keys", k->describe()), "TAP-Vid dict key is not a string");
      TapVidVideo video = parse_video(v, path, k->text);
      video.name = k->text;
      videos.push_back(std::move(video));
    }
  } else if (root->kind == Value::Kind::kList) {
    for (size_t i = 0; i < root->items.size(); ++i) videos.push_back(parse_video(root->items[i], path, str("[", i, "]")));
  } else {
    throw Error("not a TAP-Vid pickle: top level is a " + root->describe() + " (expected a dict or a list of videos)",
                ctx_of(path, ""));
  }
  return videos;
}

torch::Tensor decode_tapvid_frames(const TapVidVideo& video) {
  if (video.frames.defined()) return video.frames;
#if T4G_HAVE_OPENCV
  std::vector<torch::Tensor> frames;
  for (size_t t = 0; t < video.jpeg_frames.size(); ++t) {
    const std::string& jpeg = video.jpeg_frames[t];
    const cv::Mat raw(1, static_cast<int>(jpeg.size()), CV_8UC1, const_cast<char*>(jpeg.data()));
    cv::Mat bgr = cv::imdecode(raw, cv::IMREAD_COLOR);
    T4G_CHECK_CTX(!bgr.empty(), ctx_of("", str(video.name, "/video[", t, "]")), "cannot decode JPEG frame");
    cv::Mat rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    frames.push_back(torch::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, torch::kUInt8).clone());
    T4G_CHECK_CTX(frames.back().sizes() == frames.front().sizes(), ctx_of("", str(video.name, "/video[", t, "]")),
                  "JPEG frames of different sizes");
  }
  T4G_CHECK(!frames.empty(), "TAP-Vid video ", video.name, " has no frames");
  return torch::stack(frames);
#else
  throw Error("TAP-Vid JPEG frames (Kinetics form) need OpenCV, which this build does not have");
#endif
}

TapVidTracks tapvid_to_pixels(const TapVidVideo& video, int64_t height, int64_t width) {
  TapVidTracks out;
  const auto scale = torch::tensor({static_cast<double>(width), static_cast<double>(height)}, torch::kFloat64);
  out.tracks = (video.points * scale).to(torch::kFloat32);
  out.visibility = video.occluded.logical_not();
  return out;
}

std::string tapvid_video_id(const std::string& stem, const TapVidVideo& video, int64_t index) {
  if (!video.name.empty()) {
    std::string name = video.name;
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    return stem + "-" + name;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "-%04lld", static_cast<long long>(index));
  return stem + buf;
}

}  // namespace t4g::data
