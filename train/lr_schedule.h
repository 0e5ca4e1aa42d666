// Learning-rate schedules with warmup, as diffusers' get_scheduler builds them (the schedules
// the reference CogVideoX training scripts use): a factor of the base LR per optimizer step,
// where step 0 is the first update (so with warmup the first update has LR 0, as there).
#pragma once

#include <cstdint>
#include <string>

namespace t4g {

enum class LrScheduleKind {
  kConstant,  // "constant_with_warmup": ramp over warmup, then 1
  kCosine,    // "cosine": ramp, then 0.5 (1 + cos(pi progress)) down to min_ratio
  kLinear,    // "linear": ramp, then linear decay to min_ratio at the last step
};

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;
  double base_lr = 1e-4;     // peak learning rate
  int64_t warmup_steps = 0;  // linear ramp from 0 over this many steps
  int64_t total_steps = 1;   // the run's optimizer steps (decay reaches its end here)
  double min_ratio = 0.0;    // floor of the decay as a fraction of base_lr

  // The learning rate of optimizer step `step` (0-based).
  double lr_at(int64_t step) const;
};

// "constant" | "cosine" | "linear"; throws t4g::Error naming `key` otherwise.
LrScheduleKind parse_lr_schedule(const std::string& text, const std::string& key = "train.lr_schedule");

}  // namespace t4g
