// Acceptance run of the integer runtime (issue 6) on MNIST: for mnist-cnn, dw-cnn, resnet-tiny and lstm,
// train an FP32 model on the training split, quantize it W8A8 (default AIMET config, BN folded), and
// evaluate the test split (the last 2,000 of t10k when only t10k is present) in four modes:
//   fp32   the FP32 model,       sim   float fake-quant simulation,
//   exact  exact simulation,     int8  integer runtime;
// after PTQ (calibration with compute_encodings) and after QAT (a short fine-tune of the same sim).
// Reported per row: accuracies, the number of logit elements where int8 and exact differ (must be 0),
// whether every prediction agrees, and the agreement of exact with the float sim.
// Usage: qforge_runtime_acceptance [--data mnist:DIR] [--models a,b] [--epochs N] [--qat-steps N] [--json]
// Also runs the inference benchmark (bench_infer) unless --no-bench.
#include "benchmarks/bench_args.hpp"
#include "data/data.hpp"
#include "engine/autograd.hpp"
#include "engine/kernels/kernels.hpp"
#include "engine/ops/ops.hpp"
#include "nn/zoo.hpp"
#include "quant/quantsim.hpp"
#include "quant/runtime/bench_infer.hpp"
#include "quant/runtime/exact.hpp"
#include "quant/runtime/runtime.hpp"
#include "train/trainer.hpp"

#include <cxxopts.hpp>
#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <numeric>

using namespace qforge;
using json = nlohmann::json;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

data::Batch whole(const std::shared_ptr<data::Dataset>& ds, int64_t n = -1) {
  std::vector<int64_t> idx(static_cast<size_t>(n < 0 ? ds->size() : std::min(n, ds->size())));
  std::iota(idx.begin(), idx.end(), 0);
  return ds->get_batch(idx, nullptr);
}

double accuracy(const Tensor& logits, const Tensor& targets) {
  const auto l = logits.to_vector<float>();
  const auto t = targets.to_vector<int32_t>();
  const int64_t C = logits.size(1);
  int64_t ok = 0;
  for (size_t r = 0; r < t.size(); ++r) {
    int64_t a = 0;
    for (int64_t c = 1; c < C; ++c)
      if (l[r * C + c] > l[r * C + a]) a = c;
    ok += a == t[r];
  }
  return static_cast<double>(ok) / static_cast<double>(t.size());
}

std::vector<int64_t> argmax(const Tensor& logits) {
  const auto l = logits.to_vector<float>();
  const int64_t C = logits.size(1), R = logits.size(0);
  std::vector<int64_t> out(R);
  for (int64_t r = 0; r < R; ++r) {
    int64_t a = 0;
    for (int64_t c = 1; c < C; ++c)
      if (l[r * C + c] > l[r * C + a]) a = c;
    out[r] = a;
  }
  return out;
}

template <class F> Tensor batched(const Tensor& x, int64_t bs, F&& f) {
  std::vector<Tensor> parts;
  for (int64_t s = 0; s < x.size(0); s += bs) parts.push_back(f(x.narrow(0, s, std::min(bs, x.size(0) - s)).contiguous()));
  return ops::concat(parts, 0);
}

json evaluate_modes(quant::QuantSim& sim, const Tensor& x, const Tensor& y, const std::string& model,
                    const std::string& stage, double fp32_acc) {
  json row = {{"model", model}, {"stage", stage}, {"samples", x.size(0)}, {"fp32_acc", fp32_acc}};
  sim.model().eval();
  Tensor sim_logits;
  {
    NoGradGuard ng;
    sim_logits = batched(x, 250, [&](const Tensor& b) { return sim.forward({b})[0]; });
  }
  double t0 = now_s();
  const quant::runtime::Program prog = quant::runtime::lower(sim);
  row["lower_s"] = now_s() - t0;
  t0 = now_s();
  const Tensor exact_codes = batched(x, 250, [&](const Tensor& b) { return quant::runtime::execute_exact_codes(prog, b); });
  row["exact_s"] = now_s() - t0;
  quant::runtime::Runtime rt(prog);
  t0 = now_s();
  const Tensor int8_codes = batched(x, 250, [&](const Tensor& b) { return rt.run_codes(b); });
  row["int8_s"] = now_s() - t0;
  const auto q = prog.output_value().q;
  auto deq = [&](const Tensor& codes) {
    return ops::mul(ops::add(codes.to(DType::f32), -static_cast<double>(q.zero_point)), q.scale);
  };
  const Tensor exact = deq(exact_codes), int8 = deq(int8_codes);
  const auto ec = exact_codes.to_vector<int32_t>(), ic = int8_codes.to_vector<int32_t>();
  int64_t diff = 0;
  for (size_t k = 0; k < ec.size(); ++k) diff += ec[k] != ic[k];
  const auto pe = argmax(exact), pi = argmax(int8), ps = argmax(sim_logits);
  int64_t agree_sim = 0, agree_pred = 0;
  for (size_t k = 0; k < pe.size(); ++k) {
    agree_sim += pe[k] == ps[k];
    agree_pred += pe[k] == pi[k];
  }
  row["sim_acc"] = accuracy(sim_logits, y);
  row["exact_acc"] = accuracy(exact, y);
  row["int8_acc"] = accuracy(int8, y);
  row["logit_elements"] = static_cast<int64_t>(ec.size());
  row["differing_elements_int8_vs_exact"] = diff;
  row["predictions_identical_int8_vs_exact"] = agree_pred == static_cast<int64_t>(pe.size());
  row["argmax_agree_exact_vs_sim"] = static_cast<double>(agree_sim) / static_cast<double>(pe.size());
  row["isa"] = kernels::isa_name(kernels::active_isa());
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options o("qforge_runtime_acceptance", "int8 runtime vs exact simulation on MNIST");
  o.add_options()("data", "data spec", cxxopts::value<std::string>()->default_value("mnist"))(
      "models", "models", cxxopts::value<std::string>()->default_value("mnist-cnn,dw-cnn,resnet-tiny,lstm"))(
      "epochs", "FP32 epochs", cxxopts::value<int>()->default_value("2"))(
      "qat-steps", "QAT steps", cxxopts::value<int>()->default_value("100"))(
      "no-bench", "skip the inference benchmark")("json", "JSON lines only");
  cxxopts::ParseResult a;
  if (const int rc = qforge::bench::parse_bench_args(o, argc, argv, a); rc >= 0) return rc;
  const bool as_json = a.count("json") > 0;
  data::DataSplits d = data::load_data(a["data"].as<std::string>());
  const data::Batch test = whole(d.test);
  const data::Batch calib = whole(d.train, 512);

  std::string models = a["models"].as<std::string>();
  std::vector<std::string> names;
  for (size_t s = 0, e; s <= models.size(); s = e + 1) {
    e = models.find(',', s);
    if (e == std::string::npos) e = models.size();
    if (e > s) names.push_back(models.substr(s, e - s));
  }
  json rows = json::array();
  auto emit = [&](const json& r) {
    rows.push_back(r);
    if (as_json) {
      std::cout << r.dump() << std::endl;
    } else if (r.contains("stage")) {
      std::cout << fmt::format("{:12} {:4} fp32 {:.4f}  sim {:.4f}  exact {:.4f}  int8 {:.4f}  differing {}  "
                               "exact~sim argmax {:.4f}  (n={}, {})",
                               r["model"].get<std::string>(), r["stage"].get<std::string>(), r["fp32_acc"].get<double>(),
                               r["sim_acc"].get<double>(), r["exact_acc"].get<double>(), r["int8_acc"].get<double>(),
                               r["differing_elements_int8_vs_exact"].get<int64_t>(),
                               r["argmax_agree_exact_vs_sim"].get<double>(), r["samples"].get<int64_t>(),
                               r["isa"].get<std::string>())
                << std::endl;
    } else {
      std::cout << r.dump() << std::endl;
    }
  };
  for (const auto& name : names) {
    nn::BuildOptions bo;
    bo.seed = 1;
    auto model = nn::build_zoo_model(name, {}, bo);
    train::TrainConfig tc;
    tc.epochs = a["epochs"].as<int>();
    tc.batch_size = 64;
    tc.optimizer.type = "adam";
    tc.optimizer.lr = 1e-3;
    tc.progress = train::ProgressMode::none;
    tc.evaluate_each_epoch = false;
    tc.save_final_weights = false;
    tc.augment = false;
    {
      train::Trainer t(model, d.train, d.test, tc);
      t.fit();
    }
    Tensor fp32_logits;
    model->eval();
    {
      NoGradGuard ng;
      fp32_logits = batched(test.inputs, 250, [&](const Tensor& b) { return (*model)(b); });
    }
    const double fp32_acc = accuracy(fp32_logits, test.targets);
    quant::QuantSim sim(model, {calib.inputs.narrow(0, 0, 64).contiguous()});
    sim.compute_encodings([&](nn::Module& m) {
      for (int64_t s = 0; s < calib.inputs.size(0); s += 128) m({calib.inputs.narrow(0, s, 128).contiguous()});
    });
    emit(evaluate_modes(sim, test.inputs, test.targets, name, "ptq", fp32_acc));
    // QAT: a short fine-tune of the wrapped model (float fake-quant forward, STE backward).
    train::TrainConfig qc = tc;
    qc.epochs = 1;
    qc.max_steps = a["qat-steps"].as<int>();
    qc.optimizer.lr = 1e-4;
    qc.seed = 7;
    {
      train::Trainer t(sim.model_ptr(), d.train, d.test, qc);
      t.fit();
    }
    emit(evaluate_modes(sim, test.inputs, test.targets, name, "qat", fp32_acc));
  }
  if (!a.count("no-bench")) {
    for (const auto& r : quant::runtime::bench_infer()) emit(r);
  }
  return 0;
}
