// PTQ benchmark rows on the MNIST split (8000 train / 2000 test): FP32, nearest-rounding PTQ and each
// pass (CLE, bias correction, AdaRound), as test accuracy. Measures; asserts nothing.
//
//   qforge_bench_ptq [--data mnist:/work/shared/data/mnist] [--cache DIR] [--rows w8,w4] [--seeds 0,1,2,3,4]
//                    [--ranges] [--json] [--dw-epochs/--dw-opt/--dw-lr/--dw-wd/--dw-decay-all/--dw-schedule]
//
// FP32 models are trained once with one thread (batch 64) and cached as safetensors in --cache under a
// name that spells the recipe, so a changed recipe retrains:
//   mnist-cnn  3 epochs, SGD lr 0.02 momentum 0.9, constant lr, no weight decay, seed 0;
//   dw-cnn     30 epochs, SGD lr 0.05 momentum 0.9, cosine to 0, weight decay 5e-4 on every parameter
//              (PyTorch's SGD(model.parameters(), weight_decay=5e-4): BN gamma/beta and biases included),
//              seeds from --seeds (W8A8 rows: every seed and the mean; W4A8 rows and AutoQuant: seed 0).
// dw-cnn keeps its ReLU6 activations. Calibration: the first 512 training images (unshuffled, no
// augmentation); AdaRound caches the first 2000. W8A8 rows also count the test images whose prediction
// differs from FP32's (the paired noise scale of a difference). --ranges prints dw-cnn's per-channel
// weight ranges after BN folding and after CLE (see RESULTS.md).
#include "benchmarks/bench_args.hpp"
#include "data/data.hpp"
#include "nn/safetensors.hpp"
#include "nn/spec.hpp"
#include "nn/zoo.hpp"
#include "quant/ptq/graph_util.hpp"
#include "quant/ptq/ptq.hpp"
#include "train/trainer.hpp"

#include <cxxopts.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <tuple>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iostream>

using namespace qforge;
namespace fs = std::filesystem;

namespace {

std::vector<Tensor> batches_of(const data::Dataset& ds, int64_t n, int64_t bs) {
  std::vector<Tensor> out;
  for (int64_t s = 0; s < n; s += bs) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(n, s + bs); ++i) idx.push_back(i);
    out.push_back(ds.get_batch(idx, nullptr).inputs);
  }
  return out;
}

// How an FP32 model is trained; tag() names the cached weights, so a changed recipe retrains.
struct Recipe {
  int64_t epochs = 3;
  std::string optimizer = "sgd";
  double lr = 0.02, momentum = 0.9, weight_decay = 0;
  bool decay_all = false;  // weight decay also on biases and BatchNorm parameters (PyTorch's default)
  std::string schedule = "constant";
  uint64_t seed = 0;  // model initialisation and shuffling
  std::string tag() const {
    return fmt::format("e{}-{}-lr{}-m{}-wd{}{}-{}-s{}", epochs, optimizer, lr, momentum, weight_decay,
                       decay_all ? "all" : "", schedule, seed);
  }
};

std::shared_ptr<nn::Graph> trained(const std::string& name, const Recipe& r, const data::DataSplits& d,
                                   const fs::path& cache) {
  auto m = nn::build_zoo_model(name, {}, {.seed = r.seed});
  std::string tag = r.tag();
  for (char& c : tag)
    if (c == ':' || c == '+' || c == '/') c = '_';
  const fs::path w = cache / (name + "." + tag + ".safetensors");
  if (fs::exists(w)) {
    nn::load_weights(*m, w);
    return m;
  }
  fmt::print(stderr, "training {} ({}) ...\n", name, r.tag());
  train::TrainConfig cfg;
  cfg.epochs = r.epochs;
  cfg.batch_size = 64;
  cfg.seed = r.seed;
  cfg.threads = 1;  // shared 2-core machine
  cfg.optimizer.type = r.optimizer;
  cfg.optimizer.lr = r.lr;
  cfg.optimizer.momentum = r.optimizer == "sgd" ? r.momentum : 0.0;
  cfg.optimizer.weight_decay = r.weight_decay;
  cfg.no_decay_on_bias_and_norm = !r.decay_all;
  cfg.schedule = r.schedule;
  cfg.progress = train::ProgressMode::none;
  cfg.evaluate_each_epoch = false;
  const auto t0 = std::chrono::steady_clock::now();
  train::Trainer t(m, d.train, d.test, cfg);
  t.fit();
  fmt::print(stderr, "trained {} in {:.0f} s\n", name,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  fs::create_directories(cache);
  nn::save_weights(*m, w);
  return m;
}

std::vector<int> g_last_predictions;  // argmax of the last accuracy() call, per test image

double accuracy(nn::Module& m, const data::DataSplits& d) {
  const auto r = train::evaluate(m, d.test, {.keep_logits = true});
  const auto logits = r.logits.to_vector<float>();
  const int64_t n = r.logits.size(0), c = r.logits.size(1);
  g_last_predictions.assign(n, 0);
  for (int64_t i = 0; i < n; ++i)
    g_last_predictions[i] = static_cast<int>(std::max_element(logits.begin() + i * c, logits.begin() + (i + 1) * c) -
                                             (logits.begin() + i * c));
  return r.metrics.accuracy();
}

// Test images whose predicted class differs between two prediction vectors: the paired noise scale of an
// accuracy difference between two variants of one model (a difference of k points needs >= 20k flips).
int64_t flips(const std::vector<int>& a, const std::vector<int>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) n += a[i] != b[i];
  return n;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  for (size_t p = 0; p <= s.size();) {
    const size_t q = s.find(',', p);
    out.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return out;
}

// Per-output-channel max|w| of every conv after BN folding, then after CLE (whose sets are printed):
// the spread that per-tensor weight quantization suffers from, and what CLE makes of it.
void print_ranges(nn::Graph& base, const std::vector<Tensor>& sample) {
  auto show = [](nn::Module& m, const char* when) {
    for (const char* layer : {"conv1", "dw1", "pw1", "dw2", "pw2"}) {
      const auto r = quant::ptq::out_channel_absmax(m.find(layer)->raw_param("weight"));
      const auto [lo, hi] = std::minmax_element(r.begin(), r.end());
      const double tmax = *hi;
      // Levels of the per-tensor symmetric 8-bit grid (step max/127) each channel's range spans.
      std::vector<double> levels;
      for (double v : r) levels.push_back(std::round(v / (tmax / 127.0)));
      std::sort(levels.begin(), levels.end());
      fmt::print("ranges {:<10} {:<5} min {:.4g} max {:.4g} max/min {:.1f}; 8-bit per-tensor levels per channel: "
                 "min {:.0f}, median {:.0f}\n", when, layer, *lo, tmax, *lo > 0 ? tmax / *lo : INFINITY, levels.front(),
                 levels[levels.size() / 2]);
      if (std::string(layer).rfind("dw", 0) == 0) {
        std::string line;
        for (double v : r) line += fmt::format(" {:.3g}", v);
        fmt::print("  {}\n", line);
      }
    }
  };
  // Where the widest depthwise channel comes from: its BN scale gamma/sqrt(var) and the BN + ReLU6 in
  // front of it (a channel that is (almost) constant after the previous ReLU6 has a tiny variance here).
  for (auto [dw, bn, prev] : {std::tuple{"dw1", "bn2", "bn1"}, std::tuple{"dw2", "bn4", "bn3"}}) {
    const auto r = quant::ptq::out_channel_absmax(base.find(dw)->raw_param("weight"));
    nn::Module& b = *base.find(bn);
    nn::Module& p = *base.find(prev);
    auto at = [](Tensor& t, size_t c) { return static_cast<double>(t.to_vector<float>()[c]); };
    const auto rf = [&] {
      auto f = nn::clone_model(base);
      quant::ptq::fold_all_batch_norms(*f, sample);
      return quant::ptq::out_channel_absmax(f->find(dw)->raw_param("weight"));
    }();
    const size_t c = static_cast<size_t>(std::max_element(rf.begin(), rf.end()) - rf.begin());
    fmt::print("widest {} channel {}: folded range {:.3g} = raw max|w| {:.3g} x {} gamma {:.3g} / sqrt(running_var {:.3g} + eps); "
               "input channel from {} with gamma {:.3g}, beta {:.3g}\n", dw, c, rf[c], r[c], bn, at(b.raw_param("weight"), c),
               at(b.buffer("running_var"), c), prev, at(p.raw_param("weight"), c), at(p.raw_param("bias"), c));
  }
  auto folded = nn::clone_model(base);
  quant::ptq::fold_all_batch_norms(*folded, sample);
  show(*folded, "BN folded");
  auto eq = nn::clone_model(base);
  const auto cle = quant::ptq::equalize_model(*eq, sample);
  for (size_t i = 0; i < cle.sets.size(); ++i) {
    // Equalised means, per channel: L1's output range = L2's (depthwise) range = L3's input range. A
    // later set that starts at this L3 rescales its outputs, which changes its input ranges again, so
    // L3 is checked only in the last set.
    const auto& set = cle.sets[i];
    const auto r1 = quant::ptq::out_channel_absmax(eq->find(set[0])->raw_param("weight"));
    const auto r2 = quant::ptq::out_channel_absmax(eq->find(set[1])->raw_param("weight"));
    double dev12 = 0, dev13 = 0;
    for (size_t c = 0; c < r1.size(); ++c) dev12 = std::max(dev12, std::fabs(r2[c] / r1[c] - 1.0));
    std::string l3 = "checked in the last set only";
    if (set.size() == 3 && i + 1 == cle.sets.size()) {
      const auto r3 = quant::ptq::in_channel_absmax(eq->find(set[2])->raw_param("weight"), false);
      for (size_t c = 0; c < r1.size(); ++c) dev13 = std::max(dev13, std::fabs(r3[c] / r1[c] - 1.0));
      l3 = fmt::format("{:.2g}", dev13);
    }
    fmt::print("CLE set: {}; per-channel ranges, max relative difference: L2 vs L1 {:.2g}, L3 inputs vs L1 {}\n",
               fmt::join(set, " -> "), dev12, l3);
  }
  show(*eq, "after CLE");
}

struct Row {
  std::string model, setting, method;
  double acc = 0, seconds = 0;
  int64_t flips = -1;  // test predictions that differ from FP32's (W8A8 rows); -1: not measured
};

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options o("qforge_bench_ptq", "PTQ accuracy rows on MNIST");
  o.add_options()("data", "data spec", cxxopts::value<std::string>()->default_value("mnist:/work/shared/data/mnist"))(
      "cache", "trained FP32 weights cache", cxxopts::value<std::string>()->default_value("/tmp/qforge_ptq_bench"))(
      "rows", "w8 and/or w4", cxxopts::value<std::string>()->default_value("w8,w4"))(
      "adaround-iters", "0: AIMET default", cxxopts::value<int64_t>()->default_value("0"))(
      "models", "models for the w4 rows", cxxopts::value<std::string>()->default_value("mnist-cnn,dw-cnn"))(
      "analyze", "also write an analyzer report (mnist-cnn, W8A8) into this directory", cxxopts::value<std::string>())(
      "auto", "also run the AutoQuant pipeline on dw-cnn W4A8 with this allowed drop", cxxopts::value<double>())(
      "dw-epochs", "dw-cnn training epochs", cxxopts::value<int64_t>()->default_value("30"))(
      "dw-opt", "dw-cnn optimizer (sgd|adam|adamw)", cxxopts::value<std::string>()->default_value("sgd"))(
      "dw-lr", "dw-cnn learning rate", cxxopts::value<double>()->default_value("0.05"))(
      "dw-momentum", "dw-cnn SGD momentum", cxxopts::value<double>()->default_value("0.9"))(
      "dw-wd", "dw-cnn weight decay", cxxopts::value<double>()->default_value("5e-4"))(
      "dw-decay-all", "dw-cnn: weight decay also on biases and BatchNorm gamma/beta (PyTorch's default; false: "
      "only on weights of 2+ dims)", cxxopts::value<bool>()->default_value("true"))(
      "dw-schedule", "dw-cnn lr schedule (train/schedule.hpp syntax)", cxxopts::value<std::string>()->default_value("cosine"))(
      "seeds", "dw-cnn seeds for the W8A8 rows (comma list; >1: per-seed rows and the mean)",
      cxxopts::value<std::string>()->default_value("0,1,2,3,4"))(
      "ranges", "print dw-cnn's per-output-channel max|w| after BN folding, before and after CLE")(
      "no-adaround", "w4 rows without the AdaRound rows")(
      "json", "print JSON rows");
  cxxopts::ParseResult a;
  if (const int rc = qforge::bench::parse_bench_args(o, argc, argv, a); rc >= 0) return rc;
  Recipe dw;
  dw.epochs = a["dw-epochs"].as<int64_t>();
  dw.optimizer = a["dw-opt"].as<std::string>();
  dw.lr = a["dw-lr"].as<double>();
  dw.momentum = a["dw-momentum"].as<double>();
  dw.weight_decay = a["dw-wd"].as<double>();
  dw.schedule = a["dw-schedule"].as<std::string>();
  dw.decay_all = a["dw-decay-all"].as<bool>();
  const Recipe cnn;  // mnist-cnn: 3 epochs SGD lr 0.02 momentum 0.9, seed 0
  auto recipe_of = [&](const std::string& name) { return name == "dw-cnn" ? dw : cnn; };
  std::vector<uint64_t> seeds;
  for (const auto& t : split_list(a["seeds"].as<std::string>())) seeds.push_back(std::stoull(t));
  const auto d = data::load_data(a["data"].as<std::string>());
  const fs::path cache = a["cache"].as<std::string>();
  const std::string rows = a["rows"].as<std::string>();
  const auto calib = batches_of(*d.train, 512, 64);
  const auto ada_data = batches_of(*d.train, 2000, 64);
  const std::vector<Tensor> sample{calib[0]};
  std::vector<Row> out;
  auto report = [&](const Row& r) {
    out.push_back(r);
    fmt::print("{:<10} {:<22} {:<34} {:7.2f}%{}{}\n", r.model, r.setting, r.method, r.acc,
               r.seconds > 0 ? fmt::format("   ({:.1f} s)", r.seconds) : "",
               r.flips >= 0 ? fmt::format("   ({} predictions differ from FP32)", r.flips) : "");
    std::fflush(stdout);
  };
  auto quantized_acc = [&](std::shared_ptr<nn::Graph> m, quant::QuantSimOptions so, const quant::ptq::AdaroundResult* ar) {
    quant::QuantSim sim(m, sample, so);
    if (ar) ar->apply_to(sim);
    sim.compute_encodings([&](nn::Module& mm) {
      for (const auto& b : calib) mm(std::vector<Tensor>{b});
    });
    return accuracy(sim.model(), d);
  };

  if (a.count("ranges")) {
    Recipe r = dw;
    r.seed = seeds.at(0);
    print_ranges(*trained("dw-cnn", r, d, cache), sample);
  }
  // Rows of one model and setting for each seed (the recipe's seed), then their mean when there are
  // several. `fn` adds (method, accuracy, seconds) rows after evaluating each variant; every row after
  // FP32 also counts the test predictions that differ from FP32's.
  using Add = std::function<void(const std::string&, double, double)>;
  auto rows_over_seeds = [&](const std::string& name, const std::string& setting, const std::vector<uint64_t>& ss,
                             const std::function<void(std::shared_ptr<nn::Graph>, const Add&)>& fn) {
    std::vector<std::string> methods;
    std::vector<std::vector<double>> accs, secs;  // [method][seed]
    for (uint64_t seed : ss) {
      Recipe r = recipe_of(name);
      r.seed = seed;
      auto base = trained(name, r, d, cache);
      std::vector<int> fp32_pred;
      size_t i = 0;
      const std::string st = ss.size() > 1 ? fmt::format("{} seed {}", setting, seed) : setting;
      auto add = [&](const std::string& method, double acc, double seconds) {
        if (i == 0) fp32_pred = g_last_predictions;
        if (methods.size() <= i) {
          methods.push_back(method);
          accs.emplace_back();
          secs.emplace_back();
        }
        accs[i].push_back(acc);
        secs[i].push_back(seconds);
        report({name, st, method, acc, seconds, i > 0 ? flips(fp32_pred, g_last_predictions) : int64_t{-1}});
        ++i;
      };
      add("FP32", accuracy(*base, d), 0);
      fn(base, add);
    }
    if (ss.size() > 1)
      for (size_t i = 0; i < methods.size(); ++i) {
        double mean = 0, mean_s = 0;
        for (size_t k = 0; k < accs[i].size(); ++k) {
          mean += accs[i][k] / static_cast<double>(accs[i].size());
          mean_s += secs[i][k] / static_cast<double>(accs[i].size());
        }
        report({name, fmt::format("{} mean of {}", setting, ss.size()), methods[i], mean, mean_s});
      }
  };

  if (rows.find("w8") != std::string::npos) {
    quant::QuantSimOptions so;  // tf, 8/8, default config (per-tensor)
    rows_over_seeds("dw-cnn", "W8A8 per-tensor tf", seeds, [&](std::shared_ptr<nn::Graph> base, const Add& add) {
      add("nearest", quantized_acc(nn::clone_model(*base), so, nullptr), 0);
      {
        auto m = nn::clone_model(*base);
        quant::ptq::equalize_model(*m, sample);
        add("CLE (FP32, ReLU6->ReLU)", accuracy(*m, d), 0);
        add("CLE", quantized_acc(m, so, nullptr), 0);
      }
      for (auto mode : {quant::ptq::BiasCorrectionMode::empirical, quant::ptq::BiasCorrectionMode::analytical}) {
        auto m = nn::clone_model(*base);
        auto cle = quant::ptq::equalize_model(*m, sample);
        quant::ptq::BiasCorrectionOptions bo;
        bo.mode = mode;
        bo.sim = so;
        bo.bn_folds = &cle.folds;
        quant::ptq::correct_bias(m, sample, calib, bo);
        add(fmt::format("CLE + bias correction ({})",
                        mode == quant::ptq::BiasCorrectionMode::empirical ? "empirical" : "analytical"),
            quantized_acc(m, so, nullptr), 0);
      }
      {
        auto m = nn::clone_model(*base);
        quant::ptq::BiasCorrectionOptions bo;
        bo.sim = so;
        quant::ptq::correct_bias(m, sample, calib, bo);
        add("bias correction (empirical) only", quantized_acc(m, so, nullptr), 0);
      }
    });
  }
  if (rows.find("w4") != std::string::npos) {
    quant::QuantSimOptions so;
    so.param_bw = 4;
    so.scheme = quant::QuantScheme::tf_enhanced;
    const bool no_adaround = a.count("no-adaround") > 0;
    for (const auto& name : split_list(a["models"].as<std::string>())) {
      const std::vector<uint64_t> ss = name == "dw-cnn" ? seeds : std::vector<uint64_t>{0};
      rows_over_seeds(name, "W4A8 per-tensor tfe", ss, [&](std::shared_ptr<nn::Graph> base, const Add& add) {
        add("nearest", quantized_acc(nn::clone_model(*base), so, nullptr), 0);
        if (name == "dw-cnn") {
          auto m = nn::clone_model(*base);
          auto cle = quant::ptq::equalize_model(*m, sample);
          add("CLE", quantized_acc(nn::clone_model(*m), so, nullptr), 0);
          quant::ptq::BiasCorrectionOptions bo;
          bo.sim = so;
          bo.bn_folds = &cle.folds;
          quant::ptq::correct_bias(m, sample, calib, bo);
          add("CLE + bias correction (empirical)", quantized_acc(m, so, nullptr), 0);
        }
        if (no_adaround) return;
        for (bool with_cle : {false, true}) {
          if (with_cle && name != "dw-cnn") continue;
          auto m = nn::clone_model(*base);
          if (with_cle) quant::ptq::equalize_model(*m, sample);
          quant::ptq::AdaroundOptions ao;
          ao.sim = so;
          ao.num_iterations = a["adaround-iters"].as<int64_t>();
          const auto t0 = std::chrono::steady_clock::now();
          auto ar = quant::ptq::apply_adaround(m, sample, ada_data, ao);
          const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          for (const auto& l : ar.layers)
            fmt::print(stderr, "  adaround {:<6} {:6.1f} s (cache {:.1f} s)  loss nearest {:.5g} -> adaround {:.5g}, "
                       "{:.1f}% rounded differently\n", l.name, l.seconds, l.cache_seconds, l.loss_nearest,
                       l.loss_adaround, 100 * l.changed);
          add(fmt::format("{}AdaRound ({} it/layer)", with_cle ? "CLE + " : "", ao.iterations()),
              quantized_acc(m, so, &ar), sec);
        }
      });
    }
  }
  if (a.count("analyze")) {
    auto m = trained("mnist-cnn", cnn, d, cache);
    quant::QuantSimOptions so;
    auto sim = quant::ptq::make_calibrated_sim(m, sample, calib, so, so.scheme);
    const auto t0 = std::chrono::steady_clock::now();
    const auto an = quant::ptq::analyze(*sim, calib, [&](nn::Module& mm) { return accuracy(mm, d); });
    an.write_report(a["analyze"].as<std::string>());
    fmt::print("analyzer (mnist-cnn W8A8): fp32 {:.2f}, weights only {:.2f}, activations only {:.2f}, quantized {:.2f} "
               "({:.1f} s) -> {}\n", an.fp32, an.weights_only, an.activations_only, an.quantized,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), a["analyze"].as<std::string>());
  }
  if (a.count("auto")) {
    Recipe rd = dw;
    rd.seed = seeds.at(0);
    auto m = nn::clone_model(*trained("dw-cnn", rd, d, cache));
    quant::ptq::AutoQuantOptions ao;
    ao.allowed_drop = a["auto"].as<double>();
    ao.sim.param_bw = 4;
    ao.adaround.num_iterations = a["adaround-iters"].as<int64_t>();
    ao.log = [](const std::string& s) { fmt::print("  auto: {}\n", s); };
    const auto r = quant::ptq::auto_quant(m, sample, ada_data, [&](nn::Module& mm) { return accuracy(mm, d); }, ao);
    fmt::print("auto_quant (dw-cnn W4A8, max drop {}): {}\n", ao.allowed_drop, r.message);
  }
  if (a.count("json")) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : out)
      j.push_back({{"model", r.model}, {"setting", r.setting}, {"method", r.method}, {"accuracy", r.acc}, {"seconds", r.seconds}, {"flips_vs_fp32", r.flips}});
    std::cout << j.dump(2) << "\n";
  }
  return 0;
}
