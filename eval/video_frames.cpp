// check_video_frames: the one shape/dtype check for uint8 [T, H, W, 3] videos; read_frames_h5.
#include "eval/video_frames.h"

#include "common/error.h"
#include "common/fs.h"
#include "common/hdf5.h"
#include "common/shape_string.h"
#include "data/video_io.h"

namespace t4g {

void check_video_frames(const torch::Tensor& frames, const std::string& what, int64_t min_frames) {
  ErrorContext ctx;
  ctx.tensor = what;
  ctx.expected = str("uint8 [T, H, W, 3] with T >= ", min_frames);
  T4G_CHECK_CTX(frames.defined(), ctx, "no video frames");
  ctx.got = std::string(c10::toString(frames.scalar_type())) + " " + shape_string(frames.sizes());
  T4G_CHECK_CTX(frames.scalar_type() == torch::kUInt8 && frames.dim() == 4 && frames.size(3) == 3, ctx,
                "video frames must be uint8 RGB [T, H, W, 3]");
  T4G_CHECK_CTX(frames.size(0) >= min_frames, ctx, "too few frames");
  T4G_CHECK_CTX(frames.size(1) >= 1 && frames.size(2) >= 1, ctx, "empty frames");
}

torch::Tensor read_frames_h5(const std::string& path) {
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(path_exists(path), ctx, "video file not found");
  T4G_CHECK_CTX(h5::is_hdf5_file(path), ctx, "not an HDF5 file");
  const h5::File file = h5::File::open(path);
  const h5::Group root = file.root();
  ctx.key = "frames";
  ctx.expected = "uint8 [F, H, W, 3]";
  T4G_CHECK_CTX(root.has_dataset("frames"), ctx, "no dataset 'frames' (the layout t4g sample writes)");
  const h5::DatasetInfo info = root.dataset("frames").info();
  ctx.got = std::string(c10::toString(info.dtype)) + " " + shape_string(info.shape);
  T4G_CHECK_CTX(!info.is_string && info.dtype == torch::kUInt8 && info.shape.size() == 4 && info.shape[3] == 3, ctx,
                "video frames must be uint8 RGB [F, H, W, 3]");
  return root.read("frames");
}

torch::Tensor read_any_video(const std::string& path) {
  const auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
  };
  if (ends_with(".h5") || ends_with(".hdf5") || (is_regular_file(path) && h5::is_hdf5_file(path))) {
    return read_frames_h5(path);
  }
  ErrorContext ctx;
  ctx.file = path;
  T4G_CHECK_CTX(path_exists(path), ctx, "video not found");
  ctx.expected = "an HDF5 video (dataset frames), a video file (.mp4, .webm, ...) or a folder of frame images";
  T4G_CHECK_CTX(data::is_video_source(path), ctx, "not a video t4g reads");
  T4G_CHECK_CTX(data::have_opencv(), ctx,
                "this build has no OpenCV, so it reads no video files: convert to HDF5 (dataset frames) or rebuild "
                "with OpenCV");
  data::VideoReadOptions read;
  read.height = 0;
  read.width = 0;
  read.frames = 0;
  read.allow_short = true;
  return data::read_video(path, read).frames;
}

}  // namespace t4g
