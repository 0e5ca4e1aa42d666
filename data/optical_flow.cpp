// Optical flow through OpenCV (see optical_flow.h). Frames are converted to grey once each;
// the flow is always computed into a fresh cv::Mat because DIS silently uses a correctly sized
// output matrix as its initial guess.
#include "data/optical_flow.h"

#include "common/error.h"
#include "t4g/build_config.h"

#if T4G_HAVE_OPENCV
#include <opencv2/imgproc.hpp>
#include <opencv2/optflow.hpp>
#include <opencv2/video/tracking.hpp>
#endif

namespace t4g::data {
namespace {

[[maybe_unused]] [[noreturn]] void need_opencv() {
  throw Error(
      "optical flow needs OpenCV, and this t4g was built without it (install libopencv-dev and "
      "libopencv-contrib-dev, then reconfigure with -DT4G_WITH_OPENCV=ON)");
}

void check_frame(const torch::Tensor& frame, const char* name) {
  ErrorContext ctx;
  ctx.tensor = name;
  ctx.expected = "uint8 [H, W, 3]";
  ctx.got = frame.defined() ? t4g::str(frame.scalar_type(), " ", frame.sizes()) : "undefined";
  T4G_CHECK_CTX(frame.defined() && frame.scalar_type() == torch::kUInt8 && frame.dim() == 3 && frame.size(2) == 3 &&
                    frame.size(0) >= 2 && frame.size(1) >= 2,
                ctx, "optical flow: wrong frame type or shape");
}

#if T4G_HAVE_OPENCV
cv::Mat to_gray(const torch::Tensor& rgb) {
  const torch::Tensor c = rgb.contiguous();
  const cv::Mat m(static_cast<int>(c.size(0)), static_cast<int>(c.size(1)), CV_8UC3, const_cast<uint8_t*>(c.data_ptr<uint8_t>()));
  cv::Mat gray;
  cv::cvtColor(m, gray, cv::COLOR_RGB2GRAY);
  return gray;
}
#endif

}  // namespace

FlowMethod parse_flow_method(const std::string& text) {
  if (text == "dis") return FlowMethod::kDis;
  if (text == "farneback") return FlowMethod::kFarneback;
  if (text == "tvl1") return FlowMethod::kTvl1;
  ErrorContext ctx;
  ctx.expected = "dis, farneback or tvl1";
  ctx.got = text;
  throw Error("unknown optical flow method", ctx);
}

std::string flow_method_name(FlowMethod method) {
  switch (method) {
    case FlowMethod::kDis: return "dis";
    case FlowMethod::kFarneback: return "farneback";
    case FlowMethod::kTvl1: return "tvl1";
  }
  return "?";
}

DisPreset parse_dis_preset(const std::string& text) {
  if (text == "ultrafast") return DisPreset::kUltrafast;
  if (text == "fast") return DisPreset::kFast;
  if (text == "medium") return DisPreset::kMedium;
  ErrorContext ctx;
  ctx.expected = "ultrafast, fast or medium";
  ctx.got = text;
  throw Error("unknown DIS preset", ctx);
}

std::string dis_preset_name(DisPreset preset) {
  switch (preset) {
    case DisPreset::kUltrafast: return "ultrafast";
    case DisPreset::kFast: return "fast";
    case DisPreset::kMedium: return "medium";
  }
  return "?";
}

struct OpticalFlow::Impl {
  OpticalFlowOptions options;
#if T4G_HAVE_OPENCV
  cv::Ptr<cv::DenseOpticalFlow> dense;  // DIS or TV-L1; null for Farneback (a free function)

  torch::Tensor compute_gray(const cv::Mat& from, const cv::Mat& to) {
    cv::Mat flow;
    if (options.method == FlowMethod::kFarneback) {
      // OpenCV's sample parameters for video (samples/cpp/fback.cpp), 5 levels for larger motion.
      cv::calcOpticalFlowFarneback(from, to, flow, 0.5, 5, 15, 3, 5, 1.2, 0);
    } else {
      dense->calc(from, to, flow);
    }
    torch::Tensor out = torch::empty({flow.rows, flow.cols, 2}, torch::kFloat32);
    cv::Mat dst(flow.rows, flow.cols, CV_32FC2, out.data_ptr<float>());
    flow.copyTo(dst);
    return out;
  }
#endif
};

OpticalFlow::OpticalFlow(const OpticalFlowOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
#if T4G_HAVE_OPENCV
  if (options.method == FlowMethod::kDis) {
    const int preset = options.dis_preset == DisPreset::kUltrafast ? cv::DISOpticalFlow::PRESET_ULTRAFAST
                       : options.dis_preset == DisPreset::kFast    ? cv::DISOpticalFlow::PRESET_FAST
                                                                   : cv::DISOpticalFlow::PRESET_MEDIUM;
    cv::Ptr<cv::DISOpticalFlow> dis = cv::DISOpticalFlow::create(preset);
    if (options.dis_finest_scale >= 0) dis->setFinestScale(options.dis_finest_scale);
    if (options.dis_refinement_iterations >= 0) dis->setVariationalRefinementIterations(options.dis_refinement_iterations);
    impl_->dense = dis;
  } else if (options.method == FlowMethod::kTvl1) {
    T4G_CHECK(options.tvl1_warps > 0 && options.tvl1_scales > 0, "TV-L1: warps and scales must be positive");
    cv::Ptr<cv::optflow::DualTVL1OpticalFlow> tvl1 = cv::optflow::DualTVL1OpticalFlow::create();
    tvl1->setWarpingsNumber(options.tvl1_warps);
    tvl1->setScalesNumber(options.tvl1_scales);
    impl_->dense = tvl1;
  }
#else
  need_opencv();
#endif
}

OpticalFlow::~OpticalFlow() = default;

torch::Tensor OpticalFlow::compute(const torch::Tensor& from, const torch::Tensor& to) {
  check_frame(from, "from");
  check_frame(to, "to");
  T4G_CHECK(from.sizes() == to.sizes(), "optical flow: frames differ in size: ", from.sizes(), " vs ", to.sizes());
#if T4G_HAVE_OPENCV
  return impl_->compute_gray(to_gray(from), to_gray(to));
#else
  need_opencv();
#endif
}

void set_opencv_threads(int threads) {
#if T4G_HAVE_OPENCV
  cv::setNumThreads(threads);
#else
  (void)threads;
#endif
}

VideoFlow compute_video_flow(const torch::Tensor& frames, const OpticalFlowOptions& options) {
  ErrorContext ctx;
  ctx.tensor = "frames";
  ctx.expected = "uint8 [F >= 2, H, W, 3]";
  ctx.got = frames.defined() ? t4g::str(frames.scalar_type(), " ", frames.sizes()) : "undefined";
  T4G_CHECK_CTX(frames.defined() && frames.scalar_type() == torch::kUInt8 && frames.dim() == 4 && frames.size(3) == 3 &&
                    frames.size(0) >= 2,
                ctx, "optical flow: wrong video type or shape");
#if T4G_HAVE_OPENCV
  OpticalFlow flow(options);
  const int64_t F = frames.size(0), H = frames.size(1), W = frames.size(2);
  VideoFlow out;
  out.forward = torch::empty({F - 1, H, W, 2}, torch::kFloat32);
  out.backward = torch::empty({F - 1, H, W, 2}, torch::kFloat32);
  cv::Mat prev = to_gray(frames[0]);
  for (int64_t t = 0; t + 1 < F; ++t) {
    cv::Mat next = to_gray(frames[t + 1]);
    out.forward[t].copy_(flow.impl_->compute_gray(prev, next));
    out.backward[t].copy_(flow.impl_->compute_gray(next, prev));
    prev = next;
  }
  return out;
#else
  need_opencv();
#endif
}

}  // namespace t4g::data
