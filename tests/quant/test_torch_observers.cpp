// PyTorch 1.13 observers (quant/torch_observers.hpp) against golden fixtures from
// tools/gen_fixtures_torch_observers.py: after every batch, the float32 buffers and calculate_qparams()
// scale must have the same bits and the zero point must be equal; fused fake-quant outputs exactly equal.
#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "engine/random.hpp"
#include "quant/quantizer.hpp"
#include "quant/torch_observers.hpp"
#include "tests/support/fixtures.hpp"

#include <bit>
#include <cstring>
#include <string>
#include <vector>

using namespace qforge;
using namespace qforge::quant;
using nlohmann::json;
using qforge::testing::load_fixture;

namespace {

const json& fixture() {
  static const json j = load_fixture("torch_observers/observers.json");
  return j;
}

TorchObserverOptions options_of(const json& o) {
  TorchObserverOptions r;
  const std::string dt = o.at("dtype"), qs = o.at("qscheme");
  r.dtype = dt == "quint8" ? TorchDType::quint8 : TorchDType::qint8;
  if (qs == "per_tensor_affine") r.qscheme = TorchQScheme::per_tensor_affine;
  else if (qs == "per_tensor_symmetric") r.qscheme = TorchQScheme::per_tensor_symmetric;
  else if (qs == "per_channel_affine") r.qscheme = TorchQScheme::per_channel_affine;
  else r.qscheme = TorchQScheme::per_channel_symmetric;
  r.reduce_range = o.value("reduce_range", false);
  if (o.contains("quant_min")) {
    r.quant_min = o.at("quant_min").get<int64_t>();
    r.quant_max = o.at("quant_max").get<int64_t>();
  }
  if (o.contains("eps")) r.eps = static_cast<float>(o.at("eps").get<double>());
  r.averaging_constant = static_cast<float>(o.value("averaging_constant", 0.01));
  r.ch_axis = o.value("ch_axis", 0);
  r.bins = o.value("bins", 2048);
  r.upsample_rate = o.value("upsample_rate", 128);
  return r;
}

std::vector<float> floats(const json& a) {
  std::vector<float> v;
  for (const auto& x : a) {
    if (!x.is_string()) v.push_back(static_cast<float>(x.get<double>()));
    else v.push_back(std::stof(x.get<std::string>()));  // "inf", "-inf", "nan"
  }
  return v;
}

Tensor batch(const json& b) {
  Shape shape = b.at("shape").get<Shape>();
  return Tensor::from_vector(floats(b.at("data")), shape);
}

// "" when equal bit for bit (every element), else the first difference.
std::string bits_diff(const std::vector<float>& got, const json& want, const char* what) {
  const std::vector<float> w = floats(want);
  if (got.size() != w.size()) return fmt::format("{}: {} values, expected {}", what, got.size(), w.size());
  for (size_t i = 0; i < w.size(); ++i)
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(w[i]))
      return fmt::format("{}[{}]: {:.9g} (0x{:08x}) vs torch {:.9g} (0x{:08x})", what, i, got[i],
                         std::bit_cast<uint32_t>(got[i]), w[i], std::bit_cast<uint32_t>(w[i]));
  return "";
}

std::string zp_diff(const std::vector<int32_t>& got, const json& want, const char* what) {
  const auto w = want.get<std::vector<int64_t>>();
  if (got.size() != w.size()) return fmt::format("{}: {} values, expected {}", what, got.size(), w.size());
  for (size_t i = 0; i < w.size(); ++i)
    if (got[i] != w[i]) return fmt::format("{}[{}]: {} vs torch {}", what, i, got[i], w[i]);
  return "";
}

std::string qparams_diff(const TorchQParams& q, const json& step) {
  std::string d = bits_diff(q.scale, step.at("scale"), "scale");
  if (d.empty()) d = zp_diff(q.zero_point, step.at("zero_point"), "zero_point");
  return d;
}

// Runs every fixture case of `kind` through `run`, which returns "" or the first difference.
template <class F> int check_cases(const std::string& kind, F&& run) {
  int n = 0;
  for (const auto& c : fixture().at("cases")) {
    if (c.at("kind") != kind) continue;
    ++n;
    const std::string diff = run(c);
    INFO("case " << c.at("name").get<std::string>());
    CHECK_MESSAGE(diff.empty(), diff);
  }
  return n;
}

template <class Obs> std::string run_per_tensor(const json& c) {
  Obs o(options_of(c.at("options")));
  const auto& steps = c.at("steps");
  for (size_t i = 0; i < steps.size(); ++i) {
    o.forward(batch(c.at("batches")[i]));
    const std::vector<float> mn{o.min_val()}, mx{o.max_val()};
    std::string d = bits_diff(mn, steps[i].at("min_val"), "min_val");
    if (d.empty()) d = bits_diff(mx, steps[i].at("max_val"), "max_val");
    if (d.empty()) d = qparams_diff(o.calculate_qparams(), steps[i]);
    if (!d.empty()) return fmt::format("step {}: {}", i, d);
  }
  return "";
}

template <class Obs> std::string run_per_channel(const json& c) {
  Obs o(options_of(c.at("options")));
  const auto& steps = c.at("steps");
  for (size_t i = 0; i < steps.size(); ++i) {
    o.forward(batch(c.at("batches")[i]));
    std::string d = bits_diff(o.min_val(), steps[i].at("min_val"), "min_val");
    if (d.empty()) d = bits_diff(o.max_val(), steps[i].at("max_val"), "max_val");
    if (d.empty()) d = qparams_diff(o.calculate_qparams(), steps[i]);
    if (!d.empty()) return fmt::format("step {}: {}", i, d);
  }
  return "";
}

}  // namespace

TEST_CASE("torch observers: MinMaxObserver matches torch 1.13 bit for bit") {
  CHECK(check_cases("minmax", run_per_tensor<MinMaxObserver>) > 100);
}

TEST_CASE("torch observers: MovingAverageMinMaxObserver matches torch over several steps") {
  CHECK(check_cases("moving_average", run_per_tensor<MovingAverageMinMaxObserver>) > 100);
}

TEST_CASE("torch observers: per-channel min/max and moving-average observers match torch") {
  CHECK(check_cases("per_channel", run_per_channel<PerChannelMinMaxObserver>) > 20);
  CHECK(check_cases("moving_average_per_channel", run_per_channel<MovingAveragePerChannelMinMaxObserver>) > 20);
}

TEST_CASE("torch observers: HistogramObserver histogram, search range and qparams match torch") {
  const int n = check_cases("histogram", [](const json& c) -> std::string {
    HistogramObserver o(options_of(c.at("options")));
    const auto& steps = c.at("steps");
    for (size_t i = 0; i < steps.size(); ++i) {
      o.forward(batch(c.at("batches")[i]));
      const auto& st = steps[i];
      std::string d = bits_diff({o.min_val()}, st.at("min_val"), "min_val");
      if (d.empty()) d = bits_diff({o.max_val()}, st.at("max_val"), "max_val");
      if (d.empty() && st.contains("histogram_nz")) {
        std::vector<float> want(o.histogram().size(), 0.0f);
        for (const auto& p : st.at("histogram_nz"))
          want.at(p[0].get<size_t>()) = static_cast<float>(p[1].get<double>());
        d = bits_diff(o.histogram(), json(want), "histogram");
      }
      if (d.empty()) {
        const auto [mn, mx] = o.non_linear_param_search();
        d = bits_diff({mn, mx}, json::array({st.at("search_min"), st.at("search_max")}), "search [min, max]");
      }
      if (d.empty()) d = qparams_diff(o.calculate_qparams(), st);
      if (!d.empty()) return fmt::format("step {}: {}", i, d);
    }
    return "";
  });
  CHECK(n > 30);
}

TEST_CASE("torch observers: FusedMovingAvgObsFakeQuantize steps, enable flags and outputs match torch") {
  const int n = check_cases("fused", [](const json& c) -> std::string {
    FusedMovingAvgObsFakeQuantize fq(options_of(c.at("options")));
    const auto& steps = c.at("steps");
    for (size_t i = 0; i < steps.size(); ++i) {
      const auto& st = steps[i];
      fq.observer_enabled = st.at("observer_enabled").get<int>() != 0;
      fq.fake_quant_enabled = st.at("fake_quant_enabled").get<int>() != 0;
      const Tensor y = fq(batch(c.at("batches")[i]));
      std::string d = bits_diff(y.to_vector<float>(), st.at("y"), "output");
      if (d.empty()) d = bits_diff(fq.running_min(), st.at("running_min"), "running_min");
      if (d.empty()) d = bits_diff(fq.running_max(), st.at("running_max"), "running_max");
      if (d.empty()) d = bits_diff(fq.scale(), st.at("buffer_scale"), "scale buffer");
      if (d.empty()) d = zp_diff(fq.zero_point(), st.at("buffer_zero_point"), "zero_point buffer");
      if (d.empty()) d = qparams_diff(fq.calculate_qparams(), st.at("python"));
      if (!d.empty()) return fmt::format("step {}: {}", i, d);
    }
    return "";
  });
  CHECK(n > 10);
}

TEST_CASE("torch observers: documented vectors (pytorch-fake-quant.md §7, §8)") {
  const Tensor x = Tensor::from_vector(std::vector<float>{-1, 0.5f, 2, 3}, {4});
  MinMaxObserver sym({.dtype = TorchDType::qint8, .qscheme = TorchQScheme::per_tensor_symmetric});
  sym.forward(x);
  CHECK(sym.calculate_qparams().scale[0] == 3.0f / 127.5f);
  MinMaxObserver zeros;
  zeros.forward(Tensor::zeros({5}));
  CHECK(zeros.calculate_qparams().scale[0] == std::numeric_limits<float>::epsilon());
  MinMaxObserver none;
  CHECK(none.calculate_qparams().scale[0] == 1.0f);  // nothing observed
  const TorchChosenQParams q = torch_choose_qparams(-1, 3, -128, 127, true);
  CHECK(q.scale == doctest::Approx(0.0236220472).epsilon(1e-7));  // 3/127, not the Python 3/127.5
  CHECK(q.zero_point == 0);
}

TEST_CASE("torch observers: invalid options are InputErrors naming the field") {
  using qforge::testing::error_of;
  CHECK(error_of([] { MinMaxObserver({.quant_min = 1, .quant_max = 10}); }).find("include 0") != std::string::npos);
  CHECK(error_of([] { MinMaxObserver({.dtype = TorchDType::qint8, .quant_min = -200, .quant_max = 100}); })
            .find("qint8") != std::string::npos);
  CHECK(error_of([] {
          MinMaxObserver({.qscheme = TorchQScheme::per_tensor_symmetric, .reduce_range = true});
        }).find("quint8") != std::string::npos);
  CHECK(error_of([] { MinMaxObserver({.qscheme = TorchQScheme::per_channel_affine}); }).find("qscheme") !=
        std::string::npos);
  CHECK(error_of([] { FusedMovingAvgObsFakeQuantize({.dtype = TorchDType::qint8, .quant_min = 0, .quant_max = 255}); })
            .find("quant_min/quant_max") != std::string::npos);
}

TEST_CASE("torch observers: torch qparams map to an Encoding with the same grid") {
  GridSpec g;  // 8-bit asymmetric
  const TorchObserverOptions o = torch_options_for_grid(g);
  MinMaxObserver ob(o);
  ob.forward(Tensor::from_vector(std::vector<float>{-1, 0.5f, 2, 3}, {4}));
  const TorchQParams q = ob.calculate_qparams();
  const Encoding e = encoding_from_torch_qparams(q.scale[0], q.zero_point[0], ob.quant_min(), ob.quant_max(), g);
  CHECK(static_cast<float>(e.delta) == q.scale[0]);
  CHECK(e.offset == -q.zero_point[0]);
  CHECK(affine_params(e).scale == q.scale[0]);
  GridSpec s{.bitwidth = 8, .symmetric = true, .strict_symmetric = true};
  const TorchObserverOptions os = torch_options_for_grid(s);
  MinMaxObserver obs(os);
  obs.forward(Tensor::from_vector(std::vector<float>{-1, 0.5f, 2, 3}, {4}));
  const TorchQParams qs = obs.calculate_qparams();
  CHECK(qs.scale[0] == 3.0f / 127.0f);
  const Encoding es = encoding_from_torch_qparams(qs.scale[0], qs.zero_point[0], obs.quant_min(), obs.quant_max(), s);
  CHECK(es.offset == -127);
  CHECK(qforge::testing::error_of([&] {
          encoding_from_torch_qparams(std::numeric_limits<float>::infinity(), 0, 0, 255, g);
        }).find("scale") != std::string::npos);
}

TEST_CASE("torch schemes: a quantizer calibrated with torch_* gets torch's scale and zero point") {
  CHECK(parse_scheme("torch_minmax") == QuantScheme::torch_minmax);
  CHECK(parse_scheme("torch_moving_average") == QuantScheme::torch_moving_average);
  CHECK(parse_scheme("torch_histogram") == QuantScheme::torch_histogram);
  Generator gen(7);
  std::vector<Tensor> batches;
  for (int k = 0; k < 3; ++k) batches.push_back(Tensor::randn({4, 50}, gen) * (1.0 + k) + 0.3 * k);
  for (QuantScheme scheme : {QuantScheme::torch_minmax, QuantScheme::torch_moving_average, QuantScheme::torch_histogram})
    for (bool sym : {false, true})
      for (bool strict : {false, true}) {
        if (strict && !sym) continue;
        QuantizerSettings s;
        s.grid.symmetric = sym;
        s.grid.strict_symmetric = strict;
        s.scheme = scheme;
        Quantizer q(s, "act");
        q.start_calibration();
        for (const Tensor& b : batches) q.observe(b);
        REQUIRE(q.compute_encoding());
        const Encoding e = q.encodings().at(0);
        // The same batches through the observer itself.
        const TorchObserverOptions o = torch_options_for_grid(s.grid);
        TorchQParams want;
        int64_t qmin = 0;
        if (scheme == QuantScheme::torch_minmax) {
          MinMaxObserver ob(o);
          for (const Tensor& b : batches) ob.forward(b);
          want = ob.calculate_qparams();
          qmin = ob.quant_min();
        } else if (scheme == QuantScheme::torch_moving_average) {
          MovingAverageMinMaxObserver ob(o);
          for (const Tensor& b : batches) ob.forward(b);
          want = ob.calculate_qparams();
          qmin = ob.quant_min();
        } else {
          HistogramObserver ob(o);
          for (const Tensor& b : batches) ob.forward(b);
          want = ob.calculate_qparams();
          qmin = ob.quant_min();
        }
        INFO(scheme_name(scheme) << (sym ? (strict ? " strict-symmetric" : " symmetric") : " asymmetric"));
        CHECK(std::bit_cast<uint32_t>(affine_params(e).scale) == std::bit_cast<uint32_t>(want.scale[0]));
        CHECK(e.offset == static_cast<double>(qmin - want.zero_point[0]));
        if (sym) CHECK(want.zero_point[0] == 0);
      }
}
