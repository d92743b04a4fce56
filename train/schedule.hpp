// Learning-rate schedules: a schedule is a pure function step -> factor, and each parameter group's lr is
// base_lr * factor(step) (step = optimizer steps taken so far, counted from 0). Being stateless, a
// schedule's checkpoint state is just the step count, and resuming is exact.
//
// Epoch-based schedules (step, multi-step) are expressed in steps with steps_per_epoch, so that they
// change exactly at epoch boundaries like PyTorch's StepLR/MultiStepLR stepped once per epoch:
//   step        factor = gamma ^ floor(step / step_size)
//   multistep   factor = gamma ^ (number of milestones <= step)
//   cosine      factor = min + (1 - min) * (1 + cos(pi * step / total)) / 2   (CosineAnnealingLR per step)
//   warmup      factor = start + (1 - start) * step / warmup  for step < warmup, else 1 (LinearLR)
// Schedules compose by multiplication (like ChainedScheduler): "warmup:100+cosine".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qforge::train {

class LrSchedule {
public:
  virtual ~LrSchedule() = default;
  virtual double factor(int64_t step) const = 0;
  virtual std::string describe() const = 0;
};

using SchedulePtr = std::shared_ptr<const LrSchedule>;

SchedulePtr constant_schedule();
SchedulePtr step_schedule(int64_t step_size, double gamma);
SchedulePtr multistep_schedule(std::vector<int64_t> milestones, double gamma);
SchedulePtr cosine_schedule(int64_t total_steps, double min_factor = 0.0);
SchedulePtr warmup_schedule(int64_t warmup_steps, double start_factor = 0.0);
SchedulePtr product_schedule(std::vector<SchedulePtr> parts);

// Parses a schedule string; epochs are converted to steps with steps_per_epoch:
//   "constant" | "none"
//   "step:E[:GAMMA]"              every E epochs multiply by GAMMA (default 0.1)
//   "multistep:E1,E2,...[:GAMMA]" at these epochs multiply by GAMMA (default 0.1)
//   "cosine[:MIN]"                cosine over the whole run (total_epochs), down to MIN * base lr
//   "warmup:S[:START]"            linear warm-up over S steps from START * base lr (default 0)
//   "A+B"                         the product of A and B, e.g. "warmup:200+cosine"
// Bad strings throw InputError.
SchedulePtr parse_schedule(const std::string& text, int64_t steps_per_epoch, int64_t total_epochs);

}  // namespace qforge::train
