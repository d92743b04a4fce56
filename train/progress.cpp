#include "train/progress.hpp"

#include "engine/error.hpp"

#include <unistd.h>

namespace qforge::train {

ProgressMode parse_progress_mode(const std::string& s) {
  if (s == "auto") return ProgressMode::automatic;
  if (s == "bar") return ProgressMode::bar;
  if (s == "lines") return ProgressMode::lines;
  if (s == "none") return ProgressMode::none;
  throw InputError(fmt::format("unknown progress mode '{}' (expected auto, bar, lines or none)", s));
}

Progress::Progress(ProgressMode mode, int64_t every, std::FILE* out) : mode_(mode), every_(every), out_(out) {
  if (mode_ == ProgressMode::automatic) mode_ = isatty(fileno(out_)) ? ProgressMode::bar : ProgressMode::lines;
  if (every_ <= 0) every_ = 50;
}

void Progress::begin_epoch(int64_t epoch, int64_t epochs, int64_t total_steps, int64_t first_step) {
  epoch_ = epoch;
  epochs_ = epochs;
  total_ = total_steps;
  first_ = first_step;
  start_ = std::chrono::steady_clock::now();
  last_draw_ = start_ - std::chrono::seconds(1);
  drawn_ = false;
}

namespace {

std::string clock_str(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) : fmt::format("{}:{:02}", s / 60, s % 60);
}

}  // namespace

void Progress::draw(int64_t done, double loss, double acc, int64_t samples, bool final) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(samples) / elapsed : 0.0;
  const int64_t steps_here = done - first_;
  const double eta = steps_here > 0 ? elapsed / static_cast<double>(steps_here) * static_cast<double>(total_ - done) : -1;
  const std::string stats = fmt::format("loss {:.4f}  acc {:.2f}%  {:.0f} samples/s  {} {}", loss, acc, rate,
                                        final ? "took" : "ETA", clock_str(final ? elapsed : eta));
  if (mode_ == ProgressMode::bar) {
    constexpr int kWidth = 24;
    const int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : kWidth;
    fmt::print(out_, "\r\033[Kepoch {}/{} [{}{}] {:>{}}/{}  {}", epoch_ + 1, epochs_, std::string(filled, '#'),
               std::string(kWidth - filled, '-'), done, std::to_string(total_).size(), total_, stats);
    drawn_ = true;
  } else {
    fmt::print(out_, "epoch {}/{} step {}/{}  {}\n", epoch_ + 1, epochs_, done, total_, stats);
  }
  std::fflush(out_);
  last_draw_ = now;
}

void Progress::update(int64_t done, double loss, double acc, int64_t samples) {
  if (mode_ == ProgressMode::none) return;
  if (mode_ == ProgressMode::bar) {
    const auto now = std::chrono::steady_clock::now();
    if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    draw(done, loss, acc, samples, done == total_);
  } else if (done % every_ == 0 || done == total_) {
    draw(done, loss, acc, samples, done == total_);
  }
}

void Progress::end_epoch(const std::string& summary) {
  if (mode_ == ProgressMode::none) return;
  if (mode_ == ProgressMode::bar && drawn_) fmt::print(out_, "\n");
  drawn_ = false;
  if (!summary.empty()) fmt::print(out_, "{}\n", summary);
  std::fflush(out_);
}

void Progress::message(const std::string& line) {
  if (mode_ == ProgressMode::none) return;
  if (mode_ == ProgressMode::bar && drawn_) fmt::print(out_, "\r\033[K");
  fmt::print(out_, "{}\n", line);
  drawn_ = false;
  std::fflush(out_);
}

}  // namespace qforge::train
