#include "apps/eval_modes.hpp"

#include "apps/model_setup.hpp"
#include "apps/quant_setup.hpp"
#include "data/loader.hpp"
#include "engine/ops/ops.hpp"
#include "nn/model_dir.hpp"
#include "train/trainer.hpp"

namespace qforge::apps {

namespace fs = std::filesystem;

bool is_quantized_dir(const fs::path& dir) {
  return fs::exists(dir / "encodings.json") && fs::exists(dir / "quantsim.json");
}

data::DataSplits data_for_dir(const fs::path& dir, const std::string& data_spec) {
  nlohmann::json report = fs::exists(dir / "report.json") ? nn::read_json_file(dir / "report.json") : nlohmann::json::object();
  data::DataOptions opt;
  opt.seed = report.value("seed", uint64_t{0});
  opt.seq_len = report.value("seq_len", int64_t{100});
  std::string spec = data_spec.empty() ? report.value("data", std::string("synthetic")) : data_spec;
  return data::load_data(spec, opt);
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

}  // namespace

EvalOutcome run_eval(const EvalRequest& req) {
  const bool quantized = is_quantized_dir(req.dir);
  std::string mode = req.mode.empty() ? (quantized ? "sim" : "fp32") : req.mode;
  if (mode != "fp32" && mode != "sim" && mode != "exact" && mode != "int8")
    throw UsageError(fmt::format("--mode {}: expected fp32, sim, exact or int8", mode));
  if (mode != "fp32" && !quantized)
    throw UsageError(fmt::format("--mode {} needs a quantized model directory (from qforge quantize); {} has no "
                                 "encodings.json",
                                 mode, req.dir.string()));
  data::DataSplits data = data_for_dir(req.dir, req.data_spec);
  auto ds = req.split == "train" ? data.train : data.test;

  train::EvalOptions eo;
  eo.batch_size = req.batch_size;
  eo.keep_logits = req.keep_logits;
  train::EvalResult res;
  if (mode == "fp32") {
    // A quantized directory's FP32 model is its shadow weights (BatchNorm folded) without quantizers.
    nn::ModelDir md = nn::load_model_dir(req.dir);
    res = train::evaluate(*md.model, ds, eo);
  } else if (mode == "sim") {
    quant::QuantizedModel qm = quant::load_quantized_dir(req.dir, sample_batch(data.test));
    res = train::evaluate(qm.sim->model(), ds, eo);
  } else {
    throw UsageError(fmt::format("--mode {} is not available in this build", mode));
  }
  EvalOutcome out;
  out.summary = res.to_json();
  out.summary["mode"] = mode;
  out.summary["model_dir"] = req.dir.string();
  out.summary["data"] = data.spec;
  out.summary["split"] = req.split;
  if (req.keep_logits) {
    out.logits = res.logits;
    out.targets = all_targets(ds, req.batch_size);
  }
  return out;
}

}  // namespace qforge::apps
