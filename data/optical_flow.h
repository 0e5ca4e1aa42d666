// Dense optical flow between video frames through OpenCV: DIS (cv::DISOpticalFlow, the default:
// fast and accurate enough for chaining), Farneback (cv::calcOpticalFlowFarneback) and TV-L1
// (cv::optflow::DualTVL1OpticalFlow from opencv_contrib; slow, for comparison). A flow field is
// float32 [H, W, 2] (dx, dy) in pixels, one vector per pixel for the point at that pixel's centre.
// Without OpenCV every entry point throws one t4g::Error saying the feature needs OpenCV.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

namespace t4g::data {

enum class FlowMethod { kDis, kFarneback, kTvl1 };
// "dis" | "farneback" | "tvl1"; throws t4g::Error otherwise.
FlowMethod parse_flow_method(const std::string& text);
std::string flow_method_name(FlowMethod method);

// DIS's three built-in parameter sets (OpenCV's PRESET_ULTRAFAST, PRESET_FAST, PRESET_MEDIUM).
enum class DisPreset { kUltrafast, kFast, kMedium };
// "ultrafast" | "fast" | "medium"; throws t4g::Error otherwise.
DisPreset parse_dis_preset(const std::string& text);
std::string dis_preset_name(DisPreset preset);

struct OpticalFlowOptions {
  FlowMethod method = FlowMethod::kDis;   // which algorithm
  DisPreset dis_preset = DisPreset::kMedium;  // DIS: parameter set (medium measured best for chained tracks, BENCHMARKS.md)
  int dis_finest_scale = -1;              // DIS: finest pyramid level computed (0 = full resolution; -1 = preset's)
  int dis_refinement_iterations = -1;     // DIS: variational refinement iterations (-1 = preset's)
  int tvl1_warps = 5;                     // TV-L1: warps per pyramid level (OpenCV's default)
  int tvl1_scales = 5;                    // TV-L1: pyramid levels (OpenCV's default)
};

// Forward and backward flow between consecutive frames of a video.
struct VideoFlow {
  torch::Tensor forward;   // float32 [F-1, H, W, 2]: forward[t] is the flow from frame t to t+1
  torch::Tensor backward;  // float32 [F-1, H, W, 2]: backward[t] is the flow from frame t+1 to t
};

// One flow algorithm instance, reused across frame pairs (OpenCV keeps buffers between calls).
// Not thread-safe: use one per thread.
class OpticalFlow {
 public:
  explicit OpticalFlow(const OpticalFlowOptions& options = {});
  ~OpticalFlow();
  OpticalFlow(const OpticalFlow&) = delete;
  OpticalFlow& operator=(const OpticalFlow&) = delete;

  // Flow from frame `from` to frame `to` (uint8 [H, W, 3] RGB, same size): float32 [H, W, 2]
  // with the point at raster position (x, y) of `from` moving to (x + dx, y + dy) in `to`.
  torch::Tensor compute(const torch::Tensor& from, const torch::Tensor& to);

 private:
  // Converts each frame to grey once instead of twice per pair.
  friend VideoFlow compute_video_flow(const torch::Tensor& frames, const OpticalFlowOptions& options);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Sets OpenCV's own worker threads for this process (cv::setNumThreads); 1 = single-threaded,
// what `t4g prepare` wants when it runs one video per worker thread. No-op without OpenCV.
void set_opencv_threads(int threads);

// Computes both directions for every consecutive pair of `frames` (uint8 [F, H, W, 3], F >= 2).
VideoFlow compute_video_flow(const torch::Tensor& frames, const OpticalFlowOptions& options = {});

}  // namespace t4g::data
