// Training progress on standard error.
//
// On a terminal: one live bar per epoch, redrawn in place at most ~10 times a second:
//   epoch 2/3 [##########--------]  70/125  loss 0.1234  acc 96.20%  5120 samples/s  ETA 0:03
// Otherwise (a pipe, a log file): one plain line every `every` steps and at the end of the epoch, so logs
// stay readable. Mode "none" prints nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace qforge::train {

enum class ProgressMode { automatic, bar, lines, none };

// "auto" | "bar" | "lines" | "none" (InputError otherwise).
ProgressMode parse_progress_mode(const std::string& s);

class Progress {
public:
  Progress(ProgressMode mode, int64_t every, std::FILE* out = stderr);
  void begin_epoch(int64_t epoch, int64_t epochs, int64_t total_steps, int64_t first_step = 0);
  // After each step: steps done in this epoch, running loss/accuracy, samples processed so far this epoch.
  void update(int64_t done, double loss, double acc, int64_t samples);
  // Ends the bar line (bar mode) with a summary.
  void end_epoch(const std::string& summary);
  void message(const std::string& line);  // a line of its own (clears the bar first)
  bool is_bar() const { return mode_ == ProgressMode::bar; }

private:
  void draw(int64_t done, double loss, double acc, int64_t samples, bool final);

  ProgressMode mode_;
  int64_t every_;
  std::FILE* out_;
  int64_t epoch_ = 0, epochs_ = 0, total_ = 0, first_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
};

}  // namespace qforge::train
