// QuantSim: calibration, quantizer access, listing, encodings export/import. See quantsim.hpp.
#include "quant/quantsim.hpp"

#include "quant/blockwise_sim.hpp"

#include "engine/autograd.hpp"
#include "nn/safetensors.hpp"
#include "nn/spec.hpp"

#include <algorithm>
#include <set>
#include <sstream>

namespace qforge::quant {

int QuantSim::compute_encodings(const std::function<void(nn::Module&)>& forward_pass) {
  const bool was_training = model_->is_training();
  model_->eval();
  for (auto& q : owned_)
    if (q->enabled()) q->start_calibration();
  try {
    NoGradGuard ng;
    forward_pass(*model_);
  } catch (...) {
    for (auto& q : owned_) q->cancel_calibration();
    model_->train(was_training);
    throw;
  }
  int n = 0;
  for (auto& q : owned_)
    if (q->calibrating() || q->frozen()) n += q->compute_encoding() ? 1 : 0;
  model_->train(was_training);
  return n;
}

bool QuantSim::has_quantizer(const std::string& name) const { return by_name_.count(name) != 0; }

Quantizer& QuantSim::quantizer(const std::string& name) {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    std::string close;
    const std::string head = name.substr(0, name.find('.'));
    for (const auto& i : infos_)
      if (i.name.rfind(head, 0) == 0) close += (close.empty() ? "" : ", ") + i.name;
    throw Error(fmt::format("QuantSim: no quantizer named '{}'{}", name,
                            close.empty() ? "" : fmt::format(" (quantizers of '{}': {})", head, close)));
  }
  return *infos_[it->second].quantizer;
}

void QuantSim::set_enabled(const std::string& name, bool on) { quantizer(name).set_enabled(on); }

void QuantSim::freeze(const std::string& name) {
  if (!name.empty()) return quantizer(name).freeze();
  for (auto& q : owned_) q->freeze();
}

void QuantSim::unfreeze(const std::string& name) {
  if (!name.empty()) return quantizer(name).unfreeze();
  for (auto& q : owned_) q->unfreeze();
}

void QuantSim::set_range_learning(RangeLearning r) {
  for (auto& q : owned_) q->set_range_learning(r);
  opt_.range_learning = r;
}

std::vector<Tensor> QuantSim::range_parameters() const {
  std::vector<Tensor> v;
  for (const auto& q : owned_)
    if (q->enabled())
      for (auto& t : q->parameters()) v.push_back(t);
  return v;
}

int QuantSim::num_enabled() const {
  int n = 0;
  for (const auto& q : owned_) n += q->enabled() ? 1 : 0;
  return n;
}

std::string QuantSim::listing() const {
  std::string s = fmt::format("QuantSim: {} quantizers ({} enabled), config {}, scheme {}, W{}A{}{}\n", infos_.size(),
                              num_enabled(), cfg_.source, scheme_name(opt_.scheme), opt_.param_bw, opt_.act_bw,
                              folds_.empty() ? "" : fmt::format(", {} BN folded", folds_.size()));
  for (const auto& [c, b] : folds_) s += fmt::format("  folded {} into {}\n", b, c);
  for (const auto& i : infos_) s += fmt::format("  [{:<9}] {}\n", i.kind, i.quantizer->describe());
  return s;
}

nlohmann::json QuantSim::settings_json() const {
  nlohmann::json qs = nlohmann::json::array();
  for (const auto& i : infos_) {
    const auto& s = i.quantizer->settings();
    nlohmann::json e = {{"name", i.name},
                        {"kind", i.kind},
                        {"module", i.module},
                        {"enabled", s.enabled},
                        {"bitwidth", s.grid.bitwidth},
                        {"dtype", s.grid.is_float ? "float" : "int"},
                        {"symmetric", s.grid.symmetric},
                        {"strict_symmetric", s.grid.strict_symmetric},
                        {"unsigned_symmetric", s.grid.unsigned_symmetric},
                        {"per_channel", s.per_channel},
                        {"scheme", scheme_name(s.scheme)},
                        {"rounding", s.rounding == RoundingMode::nearest ? "nearest" : "stochastic"},
                        {"range_learning", range_learning_name(s.range_learning)},
                        {"frozen", i.quantizer->frozen()},
                        {"has_encoding", i.quantizer->has_encoding()}};
    if (s.per_channel) e["axis"] = s.axis;
    if (s.constraint_min) e["constraint_min"] = *s.constraint_min;
    if (s.constraint_max) e["constraint_max"] = *s.constraint_max;
    if (i.kind == "param") e["params"] = i.export_key;
    qs.push_back(e);
  }
  nlohmann::json folds = nlohmann::json::array();
  for (const auto& [c, b] : folds_) folds.push_back({{"layer", c}, {"batchnorm", b}});
  return {{"format", "qforge-quantsim"},
          {"version", 1},
          {"config", cfg_.source},
          {"config_notes", cfg_.notes},
          {"scheme", scheme_name(opt_.scheme)},
          {"act_bw", opt_.act_bw},
          {"param_bw", opt_.param_bw},
          {"bias_bw", opt_.bias_bw},
          {"range_learning", range_learning_name(opt_.range_learning)},
          {"fold_bn", opt_.fold_bn},
          {"target", kernels::profile_name(opt_.target)},
          {"folded_bn", folds},
          {"quantizers", qs}};
}

namespace {
std::vector<std::string> split_keys(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string k;
  while (std::getline(ss, k, ','))
    if (!k.empty()) out.push_back(k);
  return out;
}
}  // namespace

EncodingsFile QuantSim::encodings() const {
  EncodingsFile f;
  for (const auto& i : infos_) {
    const Quantizer& q = *i.quantizer;
    if (!q.enabled() || !q.has_encoding()) continue;
    if (i.kind == "param") {
      const auto block = q.block_entry();  // blockwise/LPBQ layout (quant/blockwise.hpp)
      for (const auto& k : split_keys(i.export_key)) {
        f.params[k] = q.encodings();
        if (block) f.blocks[k] = *block;
      }
    } else {
      f.activations[i.name] = q.encodings();
    }
  }
  f.args.activation_bitwidth = opt_.act_bw;
  f.args.param_bitwidth = opt_.param_bw;
  f.args.is_symmetric = cfg_.param_defaults.is_symmetric.value_or(false);
  f.args.per_channel_quantization = cfg_.per_channel;
  f.args.quant_scheme = opt_.range_learning != RangeLearning::none
                            ? (opt_.scheme == QuantScheme::tf_enhanced ? "training_range_learning_with_tf_enhanced_init"
                                                                        : "training_range_learning_with_tf_init")
                            : aimet_scheme_name(opt_.scheme);
  return f;
}

void QuantSim::export_encodings(const std::filesystem::path& path, const std::string& version) const {
  write_encodings(path, encodings(), version);
}

void QuantSim::load_encodings(const std::filesystem::path& path, const LoadEncodingsOptions& opt) {
  load_encodings(read_encodings(path), opt);
}

void QuantSim::load_encodings(const EncodingsFile& f, const LoadEncodingsOptions& opt) {
  // 1. match names (nothing is applied before everything is validated)
  std::map<std::string, const QuantizerInfo*> act, par;
  for (const auto& i : infos_) {
    if (i.kind == "param") {
      for (const auto& k : split_keys(i.export_key)) par[k] = &i;
    } else {
      act[i.name] = &i;
    }
  }
  std::vector<std::string> unexpected, missing;
  if (!opt.params_only)
    for (const auto& [k, v] : f.activations)
      if (!act.count(k)) unexpected.push_back(k);
  for (const auto& [k, v] : f.params)
    if (!par.count(k)) unexpected.push_back(k);
  std::set<const QuantizerInfo*> covered;
  if (!opt.params_only)
    for (const auto& [k, v] : f.activations)
      if (act.count(k)) covered.insert(act[k]);
  for (const auto& [k, v] : f.params)
    if (par.count(k)) covered.insert(par[k]);
  for (const auto& i : infos_) {
    if (opt.params_only && i.kind != "param") continue;
    if (i.quantizer->enabled() && !covered.count(&i)) missing.push_back(i.name);
  }
  std::string err;
  if (opt.strict && !unexpected.empty())
    err += fmt::format("\n  unexpected (not in the model): {}", fmt::join(unexpected, ", "));
  if (!opt.partial && !missing.empty())
    err += fmt::format("\n  missing (enabled quantizers without an encoding): {}", fmt::join(missing, ", "));
  if (!err.empty()) throw InputError("load_encodings: names do not match the model:" + err);

  // 2. validate shapes, 3. apply
  struct Pending {
    Quantizer* q;
    std::vector<Encoding> e;
    const BlockEntry* block = nullptr;
  };
  std::map<std::string, Shape> shapes;  // blockwise entries are checked against their weight's shape
  for (auto& [k, t] : model_->named_parameters()) shapes[k] = t.shape();
  std::vector<Pending> todo;
  auto check = [&](const QuantizerInfo& i, const std::string& key, const std::vector<Encoding>& e) {
    const Quantizer& q = *i.quantizer;
    if (e.size() > 1 && !q.settings().per_channel && i.kind != "param")
      throw InputError(fmt::format("load_encodings: {} has {} per-channel encodings for a per-tensor activation quantizer",
                                   key, e.size()));
    for (const auto& x : e)
      if (x.bitwidth == 32 && !q.settings().allow_32)
        throw InputError(fmt::format("load_encodings: {}: bitwidth 32 is only supported for biases", key));
    auto b = f.blocks.find(key);
    const BlockEntry* block = b == f.blocks.end() ? nullptr : &b->second;
    if (block != nullptr) check_block_entry(key, shapes.count(key) ? shapes[key] : Shape{}, e.size(), *block);
    todo.push_back({i.quantizer, e, block});
  };
  if (!opt.params_only)
    for (const auto& [k, v] : f.activations)
      if (act.count(k)) check(*act[k], k, v);
  std::set<Quantizer*> done;
  for (const auto& [k, v] : f.params)
    if (par.count(k) && !done.count(par[k]->quantizer)) {
      check(*par[k], k, v);
      done.insert(par[k]->quantizer);
    }
  for (auto& p : todo) {
    p.q->unfreeze();
    p.q->assign(p.e, p.block);  // per-channel when more than one, blockwise with a block entry
    p.q->set_enabled(true);
    if (opt.freeze) p.q->freeze();
  }
  if (opt.partial && opt.disable_missing)
    for (const auto& n : missing) quantizer(n).set_enabled(false);
}

void QuantSim::export_dir(const std::filesystem::path& dir, const std::string& version) const {
  std::filesystem::create_directories(dir);
  // Schema 0.6.1 cannot hold blockwise/LPBQ entries: a directory with such weights gets 1.0.0 (which every
  // reader of quantized directories accepts) instead of an error after the work is done.
  const EncodingsFile f = encodings();
  write_encodings(dir / "encodings.json", f, version == "0.6.1" && !f.blocks.empty() ? "1.0.0" : version);
  write_file_atomic(dir / "quantsim.json", settings_json().dump(2) + "\n");
  nn::save_weights(*model_, dir / "weights.safetensors");
}

}  // namespace qforge::quant
