// Video decode and encode (see video_io.h). OpenCV works in BGR; frames leave this file as RGB.
// Frames are decoded one at a time and fitted to the output size straight away, so a long
// 1080p source never sits in memory whole.
#include "data/video_io.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "common/error.h"
#include "common/fs.h"
#include "t4g/build_config.h"

#if T4G_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/videoio.hpp>
#include <opencv2/videoio/registry.hpp>

#include <cstdlib>
#include <mutex>
#endif

namespace t4g::data {
namespace {

std::string lower_extension(const std::string& path) {
  const std::string name = file_name(path);
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return "";
  std::string ext = name.substr(dot);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

bool has_extension(const std::string& path, const std::vector<std::string>& extensions) {
  const std::string ext = lower_extension(path);
  return std::find(extensions.begin(), extensions.end(), ext) != extensions.end();
}

// "frame_2.png" before "frame_10.png": digit runs compare as numbers, the rest as text.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = std::isdigit(static_cast<unsigned char>(a[i])), db = std::isdigit(static_cast<unsigned char>(b[j]));
    if (da && db) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      // Compare without leading zeros: first by length, then digit by digit.
      size_t is = i, js = j;
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      const int c = a.compare(is, ie - is, b, js, je - js);
      if (c != 0) return c < 0;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// Frame images in a folder, naturally sorted.
std::vector<std::string> frame_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& name : list_dir(dir)) {
    if (has_extension(name, image_file_extensions())) files.push_back(name);
  }
  std::sort(files.begin(), files.end(), natural_less);
  return files;
}

ErrorContext ctx_of(const std::string& file) {
  ErrorContext ctx;
  ctx.file = file;
  return ctx;
}

void check_options(const VideoReadOptions& o, const std::string& path) {
  T4G_CHECK_CTX(o.stride >= 1, ctx_of(path), "video stride must be >= 1, got ", o.stride);
  T4G_CHECK_CTX(o.frames >= 0 && o.start >= 0, ctx_of(path), "video frames and start must be >= 0");
  T4G_CHECK_CTX(o.height >= 0 && o.width >= 0 && (o.height == 0) == (o.width == 0), ctx_of(path),
                "video height and width must both be positive (or both 0 to keep the source size), got ", o.height, "x",
                o.width);
}

#if T4G_HAVE_OPENCV

// A bad file must give our one error line, not FFmpeg's and OpenCV's own messages on stderr:
// quiet FFmpeg (OpenCV reads OPENCV_FFMPEG_LOGLEVEL when it first loads FFmpeg; -8 is
// AV_LOG_QUIET) and OpenCV's logger, unless the user asked for their output.
void quiet_video_backends() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("OPENCV_FFMPEG_LOGLEVEL") == nullptr && std::getenv("OPENCV_FFMPEG_DEBUG") == nullptr) {
      setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", 0);
    }
    if (std::getenv("OPENCV_LOG_LEVEL") == nullptr) cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  });
}

// FFmpeg when this OpenCV has it (mp4, avi, webm, mkv, ...); GStreamer's fallback only adds noise.
int video_backend() { return cv::videoio_registry::hasBackend(cv::CAP_FFMPEG) ? cv::CAP_FFMPEG : cv::CAP_ANY; }

cv::Mat fit_mat(const cv::Mat& src, int64_t height, int64_t width) {
  if (height == 0 || (src.rows == height && src.cols == width)) return src;
  const double scale = std::max(static_cast<double>(height) / src.rows, static_cast<double>(width) / src.cols);
  const int rw = std::max(static_cast<int>(width), static_cast<int>(std::lround(src.cols * scale)));
  const int rh = std::max(static_cast<int>(height), static_cast<int>(std::lround(src.rows * scale)));
  cv::Mat resized;
  cv::resize(src, resized, cv::Size(rw, rh), 0, 0, scale < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
  const int x0 = (rw - static_cast<int>(width)) / 2, y0 = (rh - static_cast<int>(height)) / 2;
  return resized(cv::Rect(x0, y0, static_cast<int>(width), static_cast<int>(height)));
}

// BGR frame -> fitted RGB tensor [H, W, 3].
torch::Tensor to_rgb_tensor(const cv::Mat& bgr, int64_t height, int64_t width) {
  cv::Mat fitted = fit_mat(bgr, height, width);
  cv::Mat rgb;
  cv::cvtColor(fitted, rgb, cv::COLOR_BGR2RGB);
  torch::Tensor t = torch::empty({rgb.rows, rgb.cols, 3}, torch::kUInt8);
  cv::Mat dst(rgb.rows, rgb.cols, CV_8UC3, t.data_ptr<uint8_t>());
  rgb.copyTo(dst);
  return t;
}

// Source frame k is kept when k >= start, (k - start) % stride == 0, and fewer than `frames`
// frames are kept so far.
struct Selector {
  const VideoReadOptions& o;
  int64_t kept = 0;
  bool wants(int64_t k) const { return k >= o.start && (k - o.start) % o.stride == 0; }
  bool done() const { return o.frames > 0 && kept >= o.frames; }
};

DecodedVideo finish(std::vector<torch::Tensor>& frames, const VideoReadOptions& o, const std::string& path,
                    int64_t available) {
  T4G_CHECK_CTX(!frames.empty(), ctx_of(path), "no frames decoded (source has ", available, " frames; start ", o.start,
                ", stride ", o.stride, ")");
  T4G_CHECK_CTX(o.frames == 0 || o.allow_short || static_cast<int64_t>(frames.size()) == o.frames, ctx_of(path),
                "video too short: ", frames.size(), " frames at stride ", o.stride, " from frame ", o.start, ", need ",
                o.frames, " (source has ", available, ")");
  DecodedVideo v;
  v.frames = torch::stack(frames);
  v.source_frames = available;
  return v;
}

DecodedVideo read_frame_folder(const std::string& dir, const VideoReadOptions& o) {
  const std::vector<std::string> files = frame_files(dir);
  T4G_CHECK_CTX(!files.empty(), ctx_of(dir), "folder holds no frame images (", "expected .png/.jpg/... files)");
  Selector sel{o};
  std::vector<torch::Tensor> frames;
  int64_t h0 = 0, w0 = 0;
  for (int64_t k = 0; k < static_cast<int64_t>(files.size()) && !sel.done(); ++k) {
    if (!sel.wants(k)) continue;
    const std::string path = path_join(dir, files[static_cast<size_t>(k)]);
    const cv::Mat img = cv::imread(path, cv::IMREAD_COLOR);
    T4G_CHECK_CTX(!img.empty(), ctx_of(path), "cannot decode frame image");
    if (frames.empty()) {
      h0 = img.rows;
      w0 = img.cols;
    }
    ErrorContext ctx = ctx_of(path);
    ctx.expected = t4g::str(h0, "x", w0);
    ctx.got = t4g::str(img.rows, "x", img.cols);
    T4G_CHECK_CTX(img.rows == h0 && img.cols == w0, ctx, "frame size differs from the folder's first frame");
    frames.push_back(to_rgb_tensor(img, o.height, o.width));
    ++sel.kept;
  }
  DecodedVideo v = finish(frames, o, dir, static_cast<int64_t>(files.size()));
  v.source_height = h0;
  v.source_width = w0;
  v.fps = 0;
  return v;
}

DecodedVideo read_video_file(const std::string& path, const VideoReadOptions& o) {
  T4G_CHECK_CTX(is_regular_file(path), ctx_of(path), "no such video file");
  quiet_video_backends();
  cv::VideoCapture cap(path, video_backend());
  T4G_CHECK_CTX(cap.isOpened(), ctx_of(path), "not a readable video (unknown format or codec)");
  const double fps = cap.get(cv::CAP_PROP_FPS);
  Selector sel{o};
  std::vector<torch::Tensor> frames;
  int64_t k = 0, h0 = 0, w0 = 0;
  cv::Mat img;
  for (; !sel.done(); ++k) {
    if (!sel.wants(k)) {
      if (!cap.grab()) break;  // skipped frames are not converted
      continue;
    }
    if (!cap.read(img) || img.empty()) break;
    if (frames.empty()) {
      h0 = img.rows;
      w0 = img.cols;
    }
    frames.push_back(to_rgb_tensor(img, o.height, o.width));
    ++sel.kept;
  }
  const double reported = cap.get(cv::CAP_PROP_FRAME_COUNT);
  DecodedVideo v = finish(frames, o, path, sel.done() && reported > 0 ? static_cast<int64_t>(reported) : k);
  v.source_height = h0;
  v.source_width = w0;
  v.fps = fps > 0 && std::isfinite(fps) ? fps / static_cast<double>(o.stride) : 0;
  return v;
}

#endif  // T4G_HAVE_OPENCV

[[maybe_unused]] [[noreturn]] void need_opencv(const std::string& what, const std::string& path) {
  throw Error(what + " needs OpenCV, and this t4g was built without it (install libopencv-dev and "
                     "libopencv-contrib-dev, then reconfigure with -DT4G_WITH_OPENCV=ON)",
              ctx_of(path));
}

void check_frames(const torch::Tensor& frames, const std::string& path) {
  ErrorContext ctx = ctx_of(path);
  ctx.tensor = "frames";
  ctx.expected = "uint8 [F, H, W, 3]";
  ctx.got = frames.defined() ? t4g::str(frames.scalar_type(), " ", frames.sizes()) : "undefined";
  T4G_CHECK_CTX(frames.defined() && frames.scalar_type() == torch::kUInt8 && frames.dim() == 4 && frames.size(3) == 3 &&
                    frames.size(0) > 0,
                ctx, "frames to write have the wrong type or shape");
}

}  // namespace

bool have_opencv() { return T4G_HAVE_OPENCV != 0; }

const std::vector<std::string>& video_file_extensions() {
  static const std::vector<std::string> kExt = {".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".gif"};
  return kExt;
}

const std::vector<std::string>& image_file_extensions() {
  static const std::vector<std::string> kExt = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"};
  return kExt;
}

bool is_video_source(const std::string& path) {
  if (is_directory(path)) return !frame_files(path).empty();
  return is_regular_file(path) && has_extension(path, video_file_extensions());
}

DecodedVideo read_video(const std::string& path, const VideoReadOptions& options) {
  check_options(options, path);
#if T4G_HAVE_OPENCV
  return is_directory(path) ? read_frame_folder(path, options) : read_video_file(path, options);
#else
  need_opencv("reading videos and frame folders", path);
#endif
}

torch::Tensor resize_and_center_crop(const torch::Tensor& frame, int64_t height, int64_t width) {
  ErrorContext ctx;
  ctx.tensor = "frame";
  ctx.expected = "uint8 [H, W, 3]";
  ctx.got = frame.defined() ? t4g::str(frame.scalar_type(), " ", frame.sizes()) : "undefined";
  T4G_CHECK_CTX(frame.defined() && frame.scalar_type() == torch::kUInt8 && frame.dim() == 3 && frame.size(2) == 3, ctx,
                "cannot resize: wrong frame type or shape");
  T4G_CHECK(height > 0 && width > 0, "resize_and_center_crop: size must be positive, got ", height, "x", width);
#if T4G_HAVE_OPENCV
  torch::Tensor src = frame.contiguous();
  const cv::Mat m(static_cast<int>(src.size(0)), static_cast<int>(src.size(1)), CV_8UC3, src.data_ptr<uint8_t>());
  const cv::Mat fitted = fit_mat(m, height, width);
  torch::Tensor out = torch::empty({height, width, 3}, torch::kUInt8);
  cv::Mat dst(static_cast<int>(height), static_cast<int>(width), CV_8UC3, out.data_ptr<uint8_t>());
  fitted.copyTo(dst);
  return out;
#else
  need_opencv("resizing frames", "");
#endif
}

void write_video(const std::string& path, const torch::Tensor& frames, const VideoWriteOptions& options) {
  check_frames(frames, path);
  T4G_CHECK_CTX(options.fourcc.empty() || options.fourcc.size() == 4, ctx_of(path),
                "fourcc must have 4 characters, got '", options.fourcc, "'");
  T4G_CHECK_CTX(options.fps > 0, ctx_of(path), "fps must be positive, got ", options.fps);
#if T4G_HAVE_OPENCV
  const torch::Tensor rgb = frames.contiguous();
  const int h = static_cast<int>(rgb.size(1)), w = static_cast<int>(rgb.size(2));
  const std::string ext = lower_extension(path).empty() ? ".mp4" : lower_extension(path);
  write_atomically(path, [&](const std::string& tmp) {
    // VideoWriter picks the container from the extension, so the temporary keeps it.
    const std::string tmp_ext = tmp + ext;
    try {
      std::vector<std::string> codecs = {options.fourcc};
      if (options.fourcc.empty()) {
        if (ext == ".webm") codecs = {"VP80"};
        else if (ext == ".avi") codecs = {"MJPG"};
        else if (ext == ".mp4" || ext == ".m4v" || ext == ".mov") codecs = {"avc1", "mp4v"};
        else codecs = {"mp4v"};
      }
      quiet_video_backends();
      cv::VideoWriter writer;
      std::string tried;
      for (const std::string& f : codecs) {
        tried += (tried.empty() ? "" : ", ") + f;
        if (writer.open(tmp_ext, video_backend(), cv::VideoWriter::fourcc(f[0], f[1], f[2], f[3]), options.fps,
                        cv::Size(w, h), true)) {
          break;
        }
      }
      T4G_CHECK_CTX(writer.isOpened(), ctx_of(path), "cannot open a video writer (codec ", tried,
                    " or container not available in this OpenCV build)");
      cv::Mat bgr;
      for (int64_t t = 0; t < rgb.size(0); ++t) {
        const cv::Mat m(h, w, CV_8UC3, rgb[t].data_ptr<uint8_t>());
        cv::cvtColor(m, bgr, cv::COLOR_RGB2BGR);
        writer.write(bgr);
      }
      writer.release();
      T4G_CHECK_CTX(is_regular_file(tmp_ext) && file_size(tmp_ext) > 0, ctx_of(path), "video writer produced no file");
      rename_path(tmp_ext, tmp);
    } catch (...) {
      remove_all(tmp_ext);
      throw;
    }
  });
#else
  need_opencv("writing video files", path);
#endif
}

}  // namespace t4g::data
