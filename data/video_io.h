// Video input and output through OpenCV: video files (mp4, avi, webm, ... via cv::VideoCapture)
// and folders of numbered frames (cv::imread, sorted by name), decoded to uint8 [F, H, W, 3] RGB,
// with a frame stride and count, resized and centre-cropped to the model's size (CogVideoX:
// 49 frames at 480x720). The writer makes an mp4 for `t4g sample`. Without OpenCV (the GPU
// machines) every entry point throws one t4g::Error saying the feature needs OpenCV.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace t4g::data {

// How a decoded video is sampled in time and fitted to the output size.
struct VideoReadOptions {
  int64_t height = 480;     // output frame height in pixels (0 = keep the source size; then width must be 0 too)
  int64_t width = 720;      // output frame width in pixels
  int64_t frames = 49;      // frames to return (0 = every frame the stride reaches)
  int64_t stride = 1;       // source frames per returned frame (keep every stride-th frame)
  int64_t start = 0;        // first source frame to use
  bool allow_short = false; // a source with fewer than `frames` frames gives what it has (else an error)
};

// A decoded, resized and cropped video.
struct DecodedVideo {
  torch::Tensor frames;           // uint8 [F, H, W, 3] RGB
  double fps = 0;                 // frames per second of the returned frames (source fps / stride; 0 = unknown)
  int64_t source_frames = 0;      // frames the source holds (counted while decoding)
  int64_t source_height = 0;      // source frame size before resizing
  int64_t source_width = 0;
};

// True when this build has OpenCV (video files, frame folders and optical flow work).
bool have_opencv();

// File name extensions read as video files and as frame images (lower case, with the dot).
const std::vector<std::string>& video_file_extensions();
const std::vector<std::string>& image_file_extensions();

// True when `path` names a video file by its extension or a folder holding frame images.
bool is_video_source(const std::string& path);

// Reads a video file or a folder of frames. Errors name the file: not a video, no frames,
// too few frames for the request, frames of differing sizes in a folder.
DecodedVideo read_video(const std::string& path, const VideoReadOptions& options = {});

// Scales `frame` (uint8 [H, W, 3]) by the smallest factor that covers height x width and crops
// the centre: no stretching, no black bars. Area interpolation when shrinking, bilinear when
// enlarging. Exposed for tests and for callers that decode elsewhere (TAP-Vid JPEGs).
torch::Tensor resize_and_center_crop(const torch::Tensor& frame, int64_t height, int64_t width);

struct VideoWriteOptions {
  double fps = 8;             // frames per second written into the container
  std::string fourcc;          // codec four-character code; "" = by container: H.264 (avc1) for .mp4/.m4v/.mov
                               // where the OpenCV build can encode it (what players expect), else mp4v (in
                               // every OpenCV build with FFmpeg); VP8 for .webm, MJPG for .avi
};

// Writes uint8 [F, H, W, 3] RGB frames to a video file (container from the extension, normally
// .mp4), atomically: a temporary file renamed when complete.
void write_video(const std::string& path, const torch::Tensor& frames, const VideoWriteOptions& options = {});

}  // namespace t4g::data
