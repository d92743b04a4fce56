#include "train/schedule.hpp"

#include "engine/error.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace qforge::train {

namespace {

class Constant : public LrSchedule {
public:
  double factor(int64_t) const override { return 1.0; }
  std::string describe() const override { return "constant"; }
};

class StepLr : public LrSchedule {
public:
  StepLr(int64_t size, double gamma) : size_(size), gamma_(gamma) {}
  double factor(int64_t step) const override { return std::pow(gamma_, static_cast<double>(step / size_)); }
  std::string describe() const override { return fmt::format("step(every {} steps x{})", size_, gamma_); }

private:
  int64_t size_;
  double gamma_;
};

class MultiStep : public LrSchedule {
public:
  MultiStep(std::vector<int64_t> m, double gamma) : m_(std::move(m)), gamma_(gamma) {
    std::sort(m_.begin(), m_.end());
  }
  double factor(int64_t step) const override {
    const auto k = std::upper_bound(m_.begin(), m_.end(), step) - m_.begin();
    return std::pow(gamma_, static_cast<double>(k));
  }
  std::string describe() const override { return fmt::format("multistep(at steps {} x{})", m_, gamma_); }

private:
  std::vector<int64_t> m_;
  double gamma_;
};

class Cosine : public LrSchedule {
public:
  Cosine(int64_t total, double min) : total_(total), min_(min) {}
  double factor(int64_t step) const override {
    const double t = std::min<double>(static_cast<double>(step), static_cast<double>(total_));
    return min_ + (1 - min_) * (1 + std::cos(M_PI * t / static_cast<double>(total_))) / 2;
  }
  std::string describe() const override { return fmt::format("cosine({} steps, min x{})", total_, min_); }

private:
  int64_t total_;
  double min_;
};

class Warmup : public LrSchedule {
public:
  Warmup(int64_t steps, double start) : steps_(steps), start_(start) {}
  double factor(int64_t step) const override {
    if (step >= steps_) return 1.0;
    return start_ + (1 - start_) * static_cast<double>(step) / static_cast<double>(steps_);
  }
  std::string describe() const override { return fmt::format("warmup({} steps from x{})", steps_, start_); }

private:
  int64_t steps_;
  double start_;
};

class Product : public LrSchedule {
public:
  explicit Product(std::vector<SchedulePtr> parts) : parts_(std::move(parts)) {}
  double factor(int64_t step) const override {
    double f = 1;
    for (const auto& p : parts_) f *= p->factor(step);
    return f;
  }
  std::string describe() const override {
    std::string s;
    for (const auto& p : parts_) s += (s.empty() ? "" : " * ") + p->describe();
    return s;
  }

private:
  std::vector<SchedulePtr> parts_;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.push_back("");
  return out;
}

double to_double(const std::string& s, const std::string& whole) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != 0 || !std::isfinite(v))
    throw InputError(fmt::format("schedule '{}': '{}' is not a number", whole, s));
  return v;
}

int64_t to_int(const std::string& s, const std::string& whole) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != 0 || v <= 0 || errno == ERANGE || v > 1000000000)
    throw InputError(fmt::format("schedule '{}': '{}' is not a positive integer (at most 1e9)", whole, s));
  return v;
}

// A multiplicative factor (decay gamma, cosine floor, warmup start) must lie in [lo, 1].
double to_factor(const std::string& s, const std::string& whole, double lo, bool lo_open) {
  const double v = to_double(s, whole);
  if (v > 1 || v < lo || (lo_open && v == lo))
    throw InputError(fmt::format("schedule '{}': factor {} must be in {}{}, 1]", whole, s, lo_open ? "(" : "[", lo));
  return v;
}

}  // namespace

SchedulePtr constant_schedule() { return std::make_shared<Constant>(); }

SchedulePtr step_schedule(int64_t step_size, double gamma) {
  if (step_size <= 0) throw InputError(fmt::format("step schedule: step size must be positive, got {}", step_size));
  return std::make_shared<StepLr>(step_size, gamma);
}

SchedulePtr multistep_schedule(std::vector<int64_t> milestones, double gamma) {
  return std::make_shared<MultiStep>(std::move(milestones), gamma);
}

SchedulePtr cosine_schedule(int64_t total_steps, double min_factor) {
  if (total_steps <= 0) throw InputError(fmt::format("cosine schedule: total steps must be positive, got {}", total_steps));
  return std::make_shared<Cosine>(total_steps, min_factor);
}

SchedulePtr warmup_schedule(int64_t warmup_steps, double start_factor) {
  if (warmup_steps <= 0) throw InputError(fmt::format("warmup: steps must be positive, got {}", warmup_steps));
  return std::make_shared<Warmup>(warmup_steps, start_factor);
}

SchedulePtr product_schedule(std::vector<SchedulePtr> parts) { return std::make_shared<Product>(std::move(parts)); }

SchedulePtr parse_schedule(const std::string& text, int64_t steps_per_epoch, int64_t total_epochs) {
  QFORGE_CHECK(steps_per_epoch > 0 && total_epochs > 0, "parse_schedule: steps per epoch {} and epochs {} must be positive",
               steps_per_epoch, total_epochs);
  std::vector<SchedulePtr> parts;
  std::vector<std::string> seen;
  if (text.empty()) throw InputError("schedule: empty (expected e.g. constant, cosine, step:E[:G])");
  for (const std::string& part : split(text, '+')) {
    const auto f = split(part, ':');
    const std::string kind = f.empty() ? "" : f[0];
    if (std::find(seen.begin(), seen.end(), kind) != seen.end())
      throw InputError(fmt::format("schedule '{}': '{}' given twice", text, kind));
    seen.push_back(kind);
    const auto arity = [&](size_t lo, size_t hi) {
      if (f.size() < lo || f.size() > hi)
        throw InputError(fmt::format("schedule '{}': '{}' takes {} to {} arguments", text, kind, lo - 1, hi - 1));
    };
    if (kind == "constant" || kind == "none") {
      arity(1, 1);
      parts.push_back(constant_schedule());
    } else if (kind == "step") {
      arity(2, 3);
      parts.push_back(step_schedule(to_int(f[1], text) * steps_per_epoch, f.size() > 2 ? to_factor(f[2], text, 0, true) : 0.1));
    } else if (kind == "multistep") {
      arity(2, 3);
      std::vector<int64_t> m;
      for (const auto& e : split(f[1], ',')) {
        m.push_back(to_int(e, text) * steps_per_epoch);
        if (m.size() > 1 && m[m.size() - 2] >= m.back())
          throw InputError(fmt::format("schedule '{}': milestones must increase", text));
      }
      if (m.empty()) throw InputError(fmt::format("schedule '{}': no milestones", text));
      parts.push_back(multistep_schedule(m, f.size() > 2 ? to_factor(f[2], text, 0, true) : 0.1));
    } else if (kind == "cosine") {
      arity(1, 2);
      parts.push_back(cosine_schedule(total_epochs * steps_per_epoch, f.size() > 1 ? to_factor(f[1], text, 0, false) : 0.0));
    } else if (kind == "warmup") {
      arity(2, 3);
      parts.push_back(warmup_schedule(to_int(f[1], text), f.size() > 2 ? to_factor(f[2], text, 0, false) : 0.0));
    } else {
      throw InputError(fmt::format(
          "unknown schedule '{}' in '{}' (expected constant, step:E[:G], multistep:E1,E2[:G], cosine[:MIN], warmup:S[:START])",
          kind, text));
    }
  }
  if (parts.size() == 1) return parts[0];
  return product_schedule(std::move(parts));
}

}  // namespace qforge::train
