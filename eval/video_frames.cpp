// check_video_frames: the one shape/dtype check for uint8 [T, H, W, 3] videos.
#include "eval/video_frames.h"

#include "common/error.h"
#include "common/shape_string.h"

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

}  // namespace t4g
