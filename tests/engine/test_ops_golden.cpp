// Golden tests: every op of engine/ops/ops.hpp against PyTorch 1.13, in f64.
//
// The fixtures in tests/fixtures/ops/*.json come from tools/gen_fixtures_ops.py (see its header for the
// format). Each case is replayed: the inputs are loaded as f64 (i64 targets/indices as i32), the op runs
// with the case's params, and the outputs and the gradients of sum_k sum(outs[k] * ws[k]) must match
// PyTorch within 1e-9 * (1 + |expected|). An op name without a runner here fails the test, and every
// runner must be exercised by at least one case, so neither side can silently drop coverage.
#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "tests/support/fixtures.hpp"

#include <cmath>
#include <functional>
#include <map>
#include <set>

using namespace qforge;
using nlohmann::json;

namespace {

using Inputs = std::vector<Tensor>;
using Runner = std::function<std::vector<Tensor>(const Inputs&, const json&)>;

std::array<int64_t, 2> pair_of(const json& j) { return {j.at(0).get<int64_t>(), j.at(1).get<int64_t>()}; }

template <class F> Runner one(F f) {
  return [f](const Inputs& in, const json& p) { return std::vector<Tensor>{f(in, p)}; };
}

ops::Pool2dParams pool_params(const json& p) {
  ops::Pool2dParams q;
  q.kernel = pair_of(p.at("kernel"));
  q.stride = pair_of(p.at("stride"));
  q.padding = pair_of(p.at("padding"));
  q.count_include_pad = p.value("count_include_pad", true);
  return q;
}

const std::map<std::string, Runner>& runners() {
  static const std::map<std::string, Runner> r = {
      // arithmetic
      {"add", one([](const Inputs& in, const json&) { return ops::add(in[0], in[1]); })},
      {"sub", one([](const Inputs& in, const json&) { return ops::sub(in[0], in[1]); })},
      {"mul", one([](const Inputs& in, const json&) { return ops::mul(in[0], in[1]); })},
      {"div", one([](const Inputs& in, const json&) { return ops::div(in[0], in[1]); })},
      {"maximum", one([](const Inputs& in, const json&) { return ops::maximum(in[0], in[1]); })},
      {"minimum", one([](const Inputs& in, const json&) { return ops::minimum(in[0], in[1]); })},
      {"pow", one([](const Inputs& in, const json&) { return ops::pow(in[0], in[1]); })},
      {"where", one([](const Inputs& in, const json&) {
         return ops::where(ops::gt(in[0], Tensor::scalar(0.5, DType::f64)), in[1], in[2]);
       })},
      {"add_scalar", one([](const Inputs& in, const json& p) { return ops::add(in[0], p.at("value").get<double>()); })},
      {"mul_scalar", one([](const Inputs& in, const json& p) { return ops::mul(in[0], p.at("value").get<double>()); })},
      {"pow_scalar", one([](const Inputs& in, const json& p) { return ops::pow(in[0], p.at("value").get<double>()); })},
      // unary
      {"neg", one([](const Inputs& in, const json&) { return ops::neg(in[0]); })},
      {"exp", one([](const Inputs& in, const json&) { return ops::exp(in[0]); })},
      {"log", one([](const Inputs& in, const json&) { return ops::log(in[0]); })},
      {"sqrt", one([](const Inputs& in, const json&) { return ops::sqrt(in[0]); })},
      {"abs", one([](const Inputs& in, const json&) { return ops::abs(in[0]); })},
      {"clamp", one([](const Inputs& in, const json& p) {
         std::optional<double> lo, hi;
         if (p.contains("lo")) lo = p.at("lo").get<double>();
         if (p.contains("hi")) hi = p.at("hi").get<double>();
         return ops::clamp(in[0], lo, hi);
       })},
      {"relu", one([](const Inputs& in, const json&) { return ops::relu(in[0]); })},
      {"relu6", one([](const Inputs& in, const json&) { return ops::relu6(in[0]); })},
      {"leaky_relu", one([](const Inputs& in, const json& p) { return ops::leaky_relu(in[0], p.at("slope").get<double>()); })},
      {"hardswish", one([](const Inputs& in, const json&) { return ops::hardswish(in[0]); })},
      {"sigmoid", one([](const Inputs& in, const json&) { return ops::sigmoid(in[0]); })},
      {"tanh", one([](const Inputs& in, const json&) { return ops::tanh(in[0]); })},
      // reductions
      {"sum", one([](const Inputs& in, const json& p) {
         return ops::sum(in[0], p.at("dims").get<std::vector<int64_t>>(), p.at("keepdim").get<bool>());
       })},
      {"mean", one([](const Inputs& in, const json& p) {
         return ops::mean(in[0], p.at("dims").get<std::vector<int64_t>>(), p.at("keepdim").get<bool>());
       })},
      {"max_dim", one([](const Inputs& in, const json& p) {
         return ops::max(in[0], p.at("dim").get<int64_t>(), p.at("keepdim").get<bool>());
       })},
      {"min_dim", one([](const Inputs& in, const json& p) {
         return ops::min(in[0], p.at("dim").get<int64_t>(), p.at("keepdim").get<bool>());
       })},
      {"argmax", one([](const Inputs& in, const json& p) {
         return ops::argmax(in[0], p.at("dim").get<int64_t>(), p.at("keepdim").get<bool>());
       })},
      {"max_all", one([](const Inputs& in, const json&) { return ops::max(in[0]); })},
      {"min_all", one([](const Inputs& in, const json&) { return ops::min(in[0]); })},
      {"softmax", one([](const Inputs& in, const json& p) { return ops::softmax(in[0], p.at("dim").get<int64_t>()); })},
      {"log_softmax", one([](const Inputs& in, const json& p) { return ops::log_softmax(in[0], p.at("dim").get<int64_t>()); })},
      // views
      {"reshape", one([](const Inputs& in, const json& p) { return in[0].reshape(p.at("shape").get<Shape>()); })},
      {"view", one([](const Inputs& in, const json& p) { return in[0].view(p.at("shape").get<Shape>()); })},
      {"transpose", one([](const Inputs& in, const json& p) {
         return in[0].transpose(p.at("d0").get<int64_t>(), p.at("d1").get<int64_t>());
       })},
      {"transpose_contiguous", one([](const Inputs& in, const json& p) {
         return in[0].transpose(p.at("d0").get<int64_t>(), p.at("d1").get<int64_t>()).contiguous();
       })},
      {"permute", one([](const Inputs& in, const json& p) { return in[0].permute(p.at("dims").get<Shape>()); })},
      {"narrow", one([](const Inputs& in, const json& p) {
         return in[0].narrow(p.at("dim").get<int64_t>(), p.at("start").get<int64_t>(), p.at("length").get<int64_t>());
       })},
      {"slice", one([](const Inputs& in, const json& p) {
         return in[0].slice(p.at("dim").get<int64_t>(), p.at("start").get<int64_t>(), p.at("end").get<int64_t>(),
                            p.at("step").get<int64_t>());
       })},
      {"select", one([](const Inputs& in, const json& p) {
         return in[0].select(p.at("dim").get<int64_t>(), p.at("index").get<int64_t>());
       })},
      {"expand", one([](const Inputs& in, const json& p) { return in[0].expand(p.at("shape").get<Shape>()); })},
      {"squeeze", one([](const Inputs& in, const json& p) { return in[0].squeeze(p.at("dim").get<int64_t>()); })},
      {"unsqueeze", one([](const Inputs& in, const json& p) { return in[0].unsqueeze(p.at("dim").get<int64_t>()); })},
      {"flatten", one([](const Inputs& in, const json& p) {
         return ops::flatten(in[0], p.at("start").get<int64_t>(), p.at("end").get<int64_t>());
       })},
      // linear algebra, convolution, pooling
      {"matmul", one([](const Inputs& in, const json&) { return ops::matmul(in[0], in[1]); })},
      {"linear", one([](const Inputs& in, const json&) {
         return ops::linear(in[0], in[1], in.size() > 2 ? in[2] : Tensor());
       })},
      {"conv2d", one([](const Inputs& in, const json& p) {
         ops::Conv2dParams c;
         c.stride = pair_of(p.at("stride"));
         c.padding = pair_of(p.at("padding"));
         c.dilation = pair_of(p.at("dilation"));
         c.groups = p.at("groups").get<int64_t>();
         return ops::conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), c);
       })},
      {"max_pool2d", one([](const Inputs& in, const json& p) { return ops::max_pool2d(in[0], pool_params(p)); })},
      {"avg_pool2d", one([](const Inputs& in, const json& p) { return ops::avg_pool2d(in[0], pool_params(p)); })},
      {"adaptive_avg_pool2d", one([](const Inputs& in, const json& p) {
         return ops::adaptive_avg_pool2d(in[0], pair_of(p.at("output_size")));
       })},
      {"global_avg_pool2d", one([](const Inputs& in, const json&) { return ops::global_avg_pool2d(in[0]); })},
      // normalisation, regularisation, lookup
      {"batch_norm", one([](const Inputs& in, const json& p) {
         return ops::batch_norm(in[0], in[1], in[2], in[3], in[4], p.at("training").get<bool>(),
                                p.at("momentum").get<double>(), p.at("eps").get<double>());
       })},
      {"dropout", one([](const Inputs& in, const json& p) {
         Generator gen(7);
         return ops::dropout(in[0], p.at("p").get<double>(), p.at("training").get<bool>(), gen);
       })},
      {"embedding", one([](const Inputs& in, const json&) { return ops::embedding(in[1], in[0]); })},
      // shape
      {"concat", one([](const Inputs& in, const json& p) { return ops::concat(in, p.at("dim").get<int64_t>()); })},
      {"stack", one([](const Inputs& in, const json& p) { return ops::stack(in, p.at("dim").get<int64_t>()); })},
      {"split", [](const Inputs& in, const json& p) {
         return ops::split(in[0], p.at("split_size").get<int64_t>(), p.at("dim").get<int64_t>());
       }},
      {"chunk", [](const Inputs& in, const json& p) {
         return ops::chunk(in[0], p.at("chunks").get<int64_t>(), p.at("dim").get<int64_t>());
       }},
      {"pad", one([](const Inputs& in, const json& p) {
         return ops::pad(in[0], p.at("pads").get<std::vector<int64_t>>(), p.at("value").get<double>());
       })},
      // losses
      {"cross_entropy", one([](const Inputs& in, const json& p) {
         return ops::cross_entropy(in[0], in[1], p.at("ignore_index").get<int64_t>(),
                                   p.at("label_smoothing").get<double>());
       })},
      {"nll_loss", one([](const Inputs& in, const json& p) {
         return ops::nll_loss(in[0], in[1], p.at("ignore_index").get<int64_t>());
       })},
      {"mse_loss", one([](const Inputs& in, const json&) { return ops::mse_loss(in[0], in[1]); })},
  };
  return r;
}

// Empty when `got` matches `want` within 1e-9 * (1 + |want|) elementwise (shape and NaNs must match).
std::string compare(const Tensor& got, const Tensor& want, const std::string& what) {
  if (!got.defined()) return what + ": missing";
  if (got.shape() != want.shape())
    return fmt::format("{}: shape {} vs expected {}", what, shape_str(got.shape()), shape_str(want.shape()));
  const auto g = got.to_vector<double>();
  const auto w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) {
    const bool both_nan = std::isnan(g[i]) && std::isnan(w[i]);
    if (!both_nan && !(std::abs(g[i] - w[i]) <= 1e-9 * (1 + std::abs(w[i]))))
      return fmt::format("{}: element {} is {:.17g}, PyTorch {:.17g}", what, i, g[i], w[i]);
  }
  return {};
}

void run_case(const json& c) {
  const std::string name = c.at("name").get<std::string>();
  const std::string op = c.at("op").get<std::string>();
  INFO("case: ", name, " (op ", op, ")");
  auto it = runners().find(op);
  if (it == runners().end()) {
    FAIL_CHECK("no golden runner for op " << op);
    return;
  }

  Inputs in;
  const auto& rg = c.at("requires_grad");
  for (size_t i = 0; i < c.at("inputs").size(); ++i) {
    const json& j = c.at("inputs")[i];
    if (j.is_null()) {
      in.emplace_back();
      continue;
    }
    Tensor t = testing::tensor_from_json(j);
    if (rg[i].get<bool>()) t.set_requires_grad(true);
    in.push_back(t);
  }
  const std::vector<Tensor> outs = it->second(in, c.at("params"));
  const auto& want_outs = c.at("outs");
  if (outs.size() != want_outs.size()) {
    FAIL_CHECK(outs.size() << " outputs, PyTorch has " << want_outs.size());
    return;
  }
  Tensor loss;
  for (size_t k = 0; k < outs.size(); ++k) {
    const Tensor want = testing::tensor_from_json(want_outs[k]);
    if (want.dtype() == DType::i32) {
      CHECK_MESSAGE(outs[k].dtype() == DType::i32, "output " << k << " should be i32");
      CHECK_MESSAGE(outs[k].to_vector<int32_t>() == want.to_vector<int32_t>(), "output " << k << " indices differ");
      CHECK(outs[k].shape() == want.shape());
      continue;
    }
    const std::string msg = compare(outs[k], want, fmt::format("output {}", k));
    CHECK_MESSAGE(msg.empty(), msg);
    const json& wj = c.at("ws")[k];
    if (wj.is_null()) continue;
    Tensor term = ops::sum(ops::mul(outs[k], testing::tensor_from_json(wj)));
    loss = loss.defined() ? ops::add(loss, term) : term;
  }
  if (loss.defined() && loss.requires_grad()) loss.backward();
  for (size_t i = 0; i < in.size(); ++i) {
    const json& gj = c.at("grads")[i];
    if (gj.is_null()) continue;
    const Tensor want = testing::tensor_from_json(gj);
    Tensor got = in[i].grad();
    if (!got.defined()) got = Tensor::zeros(in[i].shape(), DType::f64);  // no path reached it: zero gradient
    const std::string msg = compare(got, want, fmt::format("gradient of input {}", i));
    CHECK_MESSAGE(msg.empty(), msg);
  }
  if (c.contains("after"))
    for (const auto& [key, tj] : c.at("after").items()) {
      const size_t i = std::stoul(key);
      const std::string msg = compare(in[i], testing::tensor_from_json(tj), fmt::format("input {} after the op", i));
      CHECK_MESSAGE(msg.empty(), msg);
    }
}

void run_family(const std::string& family) {
  const json f = testing::load_fixture("ops/" + family + ".json");
  const auto& cases = f.at("cases");
  REQUIRE(!cases.empty());
  for (const auto& c : cases) run_case(c);
}

}  // namespace

TEST_CASE("golden: arithmetic ops match PyTorch (values and gradients)") { run_family("arith"); }
TEST_CASE("golden: unary ops and activations match PyTorch") { run_family("unary"); }
TEST_CASE("golden: reductions, max/min/argmax and softmax match PyTorch") { run_family("reduce"); }
TEST_CASE("golden: views match PyTorch") { run_family("views"); }
TEST_CASE("golden: matmul and linear match PyTorch") { run_family("linalg"); }
TEST_CASE("golden: conv2d (stride, padding, dilation, groups, depthwise) matches PyTorch") { run_family("conv"); }
TEST_CASE("golden: max/avg/adaptive pooling matches PyTorch") { run_family("pool"); }
TEST_CASE("golden: batch_norm train/eval incl. running stats matches PyTorch") { run_family("norm"); }
TEST_CASE("golden: dropout identity cases and embedding match PyTorch") { run_family("misc"); }
TEST_CASE("golden: concat/stack/split/chunk/pad match PyTorch") { run_family("shape"); }
TEST_CASE("golden: cross_entropy, nll_loss, mse_loss match PyTorch") { run_family("loss"); }

TEST_CASE("golden: every op runner is covered by a fixture case") {
  std::set<std::string> seen;
  for (const char* fam : {"arith", "unary", "reduce", "views", "linalg", "conv", "pool", "norm", "misc", "shape", "loss"}) {
    const json f = testing::load_fixture(std::string("ops/") + fam + ".json");
    for (const auto& c : f.at("cases")) seen.insert(c.at("op").get<std::string>());
  }
  for (const auto& [op, fn] : runners()) CHECK_MESSAGE(seen.count(op) == 1, "no fixture case for op " << op);
}
