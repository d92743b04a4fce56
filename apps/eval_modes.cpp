#include "apps/eval_modes.hpp"

#include "apps/model_setup.hpp"
#include "apps/quant_setup.hpp"
#include "data/loader.hpp"
#include "engine/ops/ops.hpp"
#include "nn/model_dir.hpp"
#include "quant/runtime/exact.hpp"
#include "quant/runtime/lower.hpp"
#include "quant/runtime/runtime.hpp"
#include "train/metrics.hpp"
#include "train/trainer.hpp"

#include <chrono>

namespace qforge::apps {

namespace fs = std::filesystem;

data::DataSplits data_for_dir(const fs::path& dir, const std::string& data_spec) {
  nlohmann::json report = fs::exists(dir / "report.json") ? nn::read_json_file(dir / "report.json") : nlohmann::json::object();
  data::DataOptions opt;
  std::string spec = data_spec;
  try {
    if (!report.is_object()) throw InputError("not a JSON object");
    opt.seed = report.value("seed", uint64_t{0});
    opt.seq_len = report.value("seq_len", int64_t{100});
    if (spec.empty()) spec = report.value("data", std::string("synthetic"));
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: malformed ({})", (dir / "report.json").string(), e.what()));
  }
  data::DataSplits data = data::load_data(spec, opt);
  apply_model_vocabulary(data, report, dir);  // text: the model's vocabulary, never the file's rebuilt one
  return data;
}

namespace {

Tensor all_targets(const std::shared_ptr<const data::Dataset>& ds, int64_t batch) {
  data::LoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle = false;
  lo.augment = false;
  lo.prefetch = false;
  data::DataLoader loader(ds, lo);
  loader.start_epoch(0);
  std::vector<Tensor> parts;
  while (auto b = loader.next()) parts.push_back(b->targets);
  return ops::concat(parts, 0);
}

// Evaluates a logits function (exact simulation or the int8 runtime) over every example of `ds`, in
// order, with the same loss and accuracy as train::evaluate.
train::EvalResult evaluate_logits_fn(const std::shared_ptr<const data::Dataset>& ds, int64_t batch, bool keep_logits,
                                     const std::function<Tensor(const Tensor&)>& fn) {
  data::LoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle = false;
  lo.augment = false;
  lo.prefetch = false;
  data::DataLoader loader(ds, lo);
  loader.start_epoch(0);
  train::EvalResult res;
  res.language_model = ds->kind() == data::TaskKind::language_model;
  std::vector<Tensor> all;
  const auto t0 = std::chrono::steady_clock::now();
  NoGradGuard no_grad;
  while (auto b = loader.next()) {
    Tensor logits = fn(b->inputs);
    const int64_t classes = logits.size(-1);
    Tensor flat = logits.reshape({-1, classes});
    Tensor targets = b->targets.reshape({-1});
    const double loss = ops::cross_entropy(flat, targets).item();
    res.metrics.add(loss, train::count_correct(flat, targets), targets.numel(), b->size());
    if (keep_logits) all.push_back(logits);
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (keep_logits && !all.empty()) res.logits = ops::concat(all, 0);
  return res;
}

// The summary (and logits/targets when asked) of one evaluation; `dir_key` names what req.dir is.
EvalOutcome outcome(const EvalRequest& req, const train::EvalResult& res, const std::string& mode,
                    const char* dir_key, const std::string& data_spec, const std::shared_ptr<const data::Dataset>& ds) {
  EvalOutcome out;
  out.summary = res.to_json();
  out.summary["mode"] = mode;
  out.summary[dir_key] = req.dir.string();
  out.summary["data"] = data_spec;
  out.summary["split"] = req.split;
  if (req.keep_logits) {
    out.logits = res.logits;
    out.targets = all_targets(ds, req.batch_size);
  }
  return out;
}

}  // namespace

EvalOutcome run_eval(const EvalRequest& req) {
  if (fs::exists(req.dir / "program.json") && !fs::exists(req.dir / "model.json")) {
    // A deployment bundle (qforge export): the integer runtime alone, no FP32 model.
    if (!req.mode.empty() && req.mode != "int8")
      throw UsageError(fmt::format("{} is a deployment bundle: only --mode int8 applies", req.dir.string()));
    if (req.data_spec.empty()) throw UsageError("evaluating a deployment bundle needs --data");
    data::DataSplits data = data::load_data(req.data_spec);
    auto ds = req.split == "train" ? data.train : data.test;
    quant::runtime::Runtime rt(quant::runtime::load_bundle(req.dir));
    train::EvalResult res = evaluate_logits_fn(ds, req.batch_size, req.keep_logits, [&](const Tensor& x) { return rt.run(x); });
    return outcome(req, res, "int8", "bundle", data.spec, ds);
  }
  const std::string mode = resolve_mode(req.dir, req.mode);
  data::DataSplits data = data_for_dir(req.dir, req.data_spec);
  auto ds = req.split == "train" ? data.train : data.test;

  train::EvalOptions eo;
  eo.batch_size = req.batch_size;
  eo.keep_logits = req.keep_logits;
  train::EvalResult res;
  ModeModel model(req.dir, mode, mode == "fp32" ? std::vector<Tensor>{} : sample_batch(data.test));
  if (!model.integer()) {
    res = train::evaluate(model.module(), ds, eo);
  } else {
    res = evaluate_logits_fn(ds, req.batch_size, req.keep_logits, [&](const Tensor& x) { return model.logits(x); });
  }
  return outcome(req, res, mode, "model_dir", data.spec, ds);
}

std::string resolve_mode(const fs::path& dir, const std::string& requested) {
  const bool quantized = quant::is_quantized_dir(dir);
  std::string mode = requested.empty() ? (quantized ? "sim" : "fp32") : requested;
  if (mode != "fp32" && mode != "sim" && mode != "exact" && mode != "int8")
    throw UsageError(fmt::format("--mode {}: expected fp32, sim, exact or int8", mode));
  if (mode != "fp32" && !quantized)
    throw UsageError(fmt::format("--mode {} needs a quantized model directory (from qforge quantize); {} has no "
                                 "encodings.json",
                                 mode, dir.string()));
  return mode;
}

struct ModeModel::State {
  std::string mode;
  nn::ModelDir fp32;                          // fp32
  std::unique_ptr<quant::QuantizedModel> qm;  // sim, exact, int8
  std::unique_ptr<quant::runtime::Program> program;  // exact
  std::unique_ptr<quant::runtime::Runtime> runtime;  // int8
};

ModeModel::ModeModel(const fs::path& dir, const std::string& mode, const std::vector<Tensor>& sample_inputs)
    : s_(std::make_unique<State>()) {
  s_->mode = resolve_mode(dir, mode);
  if (s_->mode == "fp32") {
    // A quantized directory's FP32 model is its shadow weights (BatchNorm folded) without quantizers.
    s_->fp32 = nn::load_model_dir(dir);
    return;
  }
  s_->qm = std::make_unique<quant::QuantizedModel>(quant::load_quantized_dir(dir, sample_inputs));
  if (s_->mode == "sim") return;
  // exact and int8 both run the integer program lowered from the quantized directory: the same
  // integers by construction (exact: simulation arithmetic; int8: the packed SIMD kernels).
  quant::runtime::Program program = quant::runtime::lower(*s_->qm->sim);
  if (s_->mode == "exact") s_->program = std::make_unique<quant::runtime::Program>(std::move(program));
  else s_->runtime = std::make_unique<quant::runtime::Runtime>(std::move(program));
}

ModeModel::~ModeModel() = default;

const std::string& ModeModel::mode() const { return s_->mode; }
bool ModeModel::integer() const { return s_->program || s_->runtime; }

nn::Graph& ModeModel::graph() { return s_->qm ? *s_->qm->dir.model : *s_->fp32.model; }

nn::Module& ModeModel::module() {
  QFORGE_ASSERT(!integer());
  return s_->qm ? s_->qm->sim->model() : *s_->fp32.model;
}

Tensor ModeModel::logits(const Tensor& x) {
  QFORGE_ASSERT(integer());
  return s_->program ? quant::runtime::execute_exact(*s_->program, x) : s_->runtime->run(x);
}

Tensor ModeModel::codes(const Tensor& x) {
  QFORGE_ASSERT(integer());
  return s_->program ? quant::runtime::execute_exact_codes(*s_->program, x) : s_->runtime->run_codes(x);
}

quant::runtime::QParams ModeModel::output_qparams() const {
  QFORGE_ASSERT(integer());
  return (s_->program ? *s_->program : s_->runtime->program()).output_value().q;
}

}  // namespace qforge::apps
