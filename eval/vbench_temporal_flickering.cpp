// VBench temporal flickering: integer frame differences, then VBench's normalisation.
// Differences are summed in int64 per pair (at most 255 * H * W * 3 per pair: no overflow for any
// real frame size), so the result does not depend on the device or the summation order.
#include "eval/vbench_temporal_flickering.h"

#include "common/error.h"
#include "eval/video_frames.h"

namespace t4g {

std::vector<double> frame_mean_abs_differences(const torch::Tensor& frames) {
  check_video_frames(frames, "frames", 2);
  const int64_t t = frames.size(0);
  const double elements = static_cast<double>(frames[0].numel());
  // int16 holds every difference of two uint8 values; one pair at a time keeps memory at 2 frames.
  std::vector<double> mae;
  mae.reserve(static_cast<size_t>(t - 1));
  torch::Tensor previous = frames[0].to(torch::kInt16);
  for (int64_t i = 1; i < t; ++i) {
    torch::Tensor current = frames[i].to(torch::kInt16);
    const int64_t sum = (current - previous).abs().sum(torch::kInt64).item<int64_t>();
    mae.push_back(static_cast<double>(sum) / elements);
    previous = std::move(current);
  }
  return mae;
}

double temporal_flickering(const torch::Tensor& frames) {
  const std::vector<double> mae = frame_mean_abs_differences(frames);
  double total = 0;
  for (double m : mae) total += m;
  return (255.0 - total / static_cast<double>(mae.size())) / 255.0;
}

double temporal_flickering_mean(const std::vector<double>& per_video) {
  T4G_CHECK(!per_video.empty(), "temporal flickering: no videos to average");
  double total = 0;
  for (double s : per_video) total += s;
  return total / static_cast<double>(per_video.size());
}

}  // namespace t4g
