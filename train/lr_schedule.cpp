// Learning-rate schedules (see lr_schedule.h).
#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace t4g {

double LrSchedule::lr_at(int64_t step) const {
  if (step < warmup_steps) return base_lr * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  if (kind == LrScheduleKind::kConstant) return base_lr;
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
  const double decay = kind == LrScheduleKind::kCosine ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return base_lr * (min_ratio + (1.0 - min_ratio) * decay);
}

LrScheduleKind parse_lr_schedule(const std::string& text, const std::string& key) {
  if (text == "constant") return LrScheduleKind::kConstant;
  if (text == "cosine") return LrScheduleKind::kCosine;
  if (text == "linear") return LrScheduleKind::kLinear;
  ErrorContext ctx;
  ctx.key = key;
  ctx.expected = "constant | cosine | linear";
  ctx.got = text;
  throw Error("unknown learning-rate schedule", ctx);
}

}  // namespace t4g
