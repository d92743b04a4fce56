#include "tests/support/fixtures.hpp"
#include "tests/support/gradcheck.hpp"

#include "engine/autograd.hpp"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

namespace qforge::testing {

namespace fs = std::filesystem;

fs::path source_root() {
  if (const char* r = std::getenv("QFORGE_SOURCE_ROOT")) return r;
#ifdef QFORGE_SOURCE_ROOT_DEFAULT
  return QFORGE_SOURCE_ROOT_DEFAULT;
#else
  return fs::current_path();
#endif
}

fs::path fixture_path(const std::string& name) { return source_root() / "tests" / "fixtures" / name; }

nlohmann::json load_fixture(const std::string& name) {
  const fs::path p = fixture_path(name);
  std::ifstream in(p);
  if (!in) throw Error(fmt::format("fixture {} not found (run from the source tree or set QFORGE_SOURCE_ROOT)", p.string()));
  return nlohmann::json::parse(in);
}

Tensor tensor_from_json(const nlohmann::json& j, DType as) {
  Shape shape = j.at("shape").get<Shape>();
  const std::string dt = j.value("dtype", "f32");
  const auto& data = j.at("data");
  if (dt == "i64" || dt == "i32") {
    std::vector<int32_t> v;
    v.reserve(data.size());
    for (const auto& x : data) v.push_back(x.get<int32_t>());
    return Tensor::from_vector(v, shape);
  }
  std::vector<double> v;
  v.reserve(data.size());
  for (const auto& x : data) v.push_back(x.is_null() ? NAN : x.get<double>());
  Tensor t = Tensor::from_vector(v, shape);
  return as == DType::f64 ? t : t.to(as);
}

fs::path data_dir() {
  if (const char* d = std::getenv("QFORGE_DATA")) return d;
  for (fs::path p : {source_root() / ".." / "shared" / "data", source_root() / ".." / ".." / "shared" / "data"})
    if (fs::exists(p)) return fs::canonical(p);
  return {};
}

Tensor rand_input(const Shape& shape, uint64_t seed, double lo, double hi, bool requires_grad) {
  Generator g(seed);
  Tensor t = Tensor::rand(shape, g, lo, hi, DType::f64);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  QFORGE_CHECK(a.shape() == b.shape(), "max_abs_diff: shapes {} and {} differ", shape_str(a.shape()),
               shape_str(b.shape()));
  auto va = a.to_vector<double>();
  auto vb = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}

std::string gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs_in,
                      const GradcheckOptions& opt) {
  // Work on f64 leaf copies.
  std::vector<Tensor> inputs;
  for (const auto& t : inputs_in) {
    if (!t.defined() || !is_floating(t.dtype())) {
      inputs.push_back(t);
      continue;
    }
    Tensor c;
    {
      NoGradGuard g;
      c = t.detach().to(DType::f64).clone();
    }
    if (t.requires_grad()) c.set_requires_grad(true);
    inputs.push_back(c);
  }
  Tensor out = f(inputs);
  if (!out.requires_grad()) return "gradcheck: output does not require grad";
  Generator gen(opt.seed);
  Tensor w = Tensor::rand(out.shape(), gen, 0.5, 1.5, DType::f64);
  Tensor loss = ops::sum(ops::mul(out.to(DType::f64), w));
  loss.backward();

  auto eval = [&]() {
    NoGradGuard g;
    Tensor o = f(inputs).to(DType::f64);
    return ops::sum(ops::mul(o, w)).item();
  };
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor analytic = x.grad();
    const int64_t n = x.numel();
    std::vector<double> an = analytic.defined() ? analytic.to_vector<double>() : std::vector<double>(n, 0.0);
    double* p = x.data<double>();  // leaf copies are contiguous
    for (int64_t i = 0; i < n; ++i) {
      const double orig = p[i];
      p[i] = orig + opt.eps;
      x.bump_version();
      const double lp = eval();
      p[i] = orig - opt.eps;
      x.bump_version();
      const double lm = eval();
      p[i] = orig;
      x.bump_version();
      const double numeric = (lp - lm) / (2 * opt.eps);
      if (std::abs(numeric - an[i]) > opt.atol + opt.rtol * std::abs(numeric))
        return fmt::format("gradcheck: input {} (shape {}) element {}: analytic {:.10g} vs numeric {:.10g}", k,
                           shape_str(x.shape()), i, an[i], numeric);
    }
  }
  return {};
}

std::filesystem::path temp_dir(const std::string& name) {
  const std::filesystem::path d =
      std::filesystem::temp_directory_path() / fmt::format("qforge-test-{}-{}", name, ::getpid());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace qforge::testing
