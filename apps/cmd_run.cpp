// qforge run: a model directory on the user's own input tensors, its named outputs saved to a
// .safetensors file — how users and tests compare qforge with other runtimes (PyTorch, ONNX Runtime).
//
//   --inputs IN   .safetensors, .npz or .npy (data/tensors.hpp read_named_arrays): one array per model
//                 input, named like it (model.json "inputs"); a single-input model takes a file's only
//                 array whatever its name. Floats become float32, uint8 float32 (0..255 unchanged), other
//                 integers int32 (token ids). Arrays no input uses are ignored (listed in the result).
//   --mode        fp32 | sim | exact | int8 (eval_modes.hpp ModeModel: the model exactly as eval runs it)
//   --out         every model output as float32, named like the spec's outputs ("fc", "lstm:1"; by default
//                 the last node's name, "NODE:k" when it has several); exact and int8 also save the
//                 output codes as "<output>.int8" (int8) with "<output>.int8.scale" and
//                 "<output>.int8.zero_point" in the file's metadata.
// Bad arrays (missing, wrong dtype, a shape the model cannot take) exit 2 naming the array, before
// anything is written; --out is replaced only when it is a file qforge run wrote (temp + rename).
#include "apps/cli.hpp"
#include "apps/eval_modes.hpp"
#include "apps/model_setup.hpp"
#include "data/tensors.hpp"
#include "engine/ops/ops.hpp"
#include "nn/model_dir.hpp"
#include "nn/safetensors.hpp"
#include "train/output.hpp"

#include <algorithm>
#include <chrono>

namespace qforge::apps {

namespace fs = std::filesystem;

namespace {

constexpr const char* kProducer = "qforge run";

// --out: a .safetensors path that is absent or a file this command wrote (never a link or special file).
void check_out_target(const fs::path& out) {
  if (out.extension() != ".safetensors") throw UsageError(fmt::format("--out {}: expected a .safetensors file", out.string()));
  train::check_single_file_target("--out", out);
  if (!fs::exists(out)) return;
  bool ours = false;
  try {
    const nn::Metadata m = nn::read_safetensors(out).metadata;
    ours = m.count("producer") && m.at("producer") == kProducer;
  } catch (const std::exception&) {
  }
  if (!ours)
    throw UsageError(fmt::format("--out {}: exists and is not an output file of qforge run; refusing to replace it",
                                 out.string()));
}

// The model's input names: model.json "inputs" (default ["input"], nn/spec.hpp), read without building it.
std::vector<std::string> model_input_names(const fs::path& dir) {
  const fs::path spec_file = dir / "model.json";
  if (!fs::is_regular_file(spec_file))
    throw InputError(fmt::format("--model-dir {}: no model.json (not a model directory)", dir.string()));
  const nlohmann::json spec = nn::read_json_file(spec_file);
  if (!spec.is_object() || !spec.contains("inputs")) return {"input"};
  std::vector<std::string> names;
  if (spec["inputs"].is_array())
    for (const auto& n : spec["inputs"])
      if (n.is_string()) names.push_back(n.get<std::string>());
  if (names.empty() || names.size() != spec["inputs"].size())
    throw InputError(fmt::format("{}: /inputs: expected a non-empty list of names", spec_file.string()));
  return names;
}

// The arrays of `in` for the model's inputs, as the dtypes the model takes.
std::vector<Tensor> model_inputs(const data::NamedArrays& arrays, const std::vector<std::string>& names,
                                 const fs::path& in, std::vector<std::string>& used) {
  std::vector<Tensor> out;
  for (const std::string& name : names) {
    std::string key = name;
    if (!arrays.count(name)) {
      if (names.size() == 1 && arrays.size() == 1) {
        key = arrays.begin()->first;
      } else {
        std::string have;
        for (const auto& [k, a] : arrays) have += (have.empty() ? "" : ", ") + k;
        throw InputError(fmt::format("{}: no array '{}' for the model's input '{}' (the file has: {})", in.string(), name,
                                     name, have.empty() ? "nothing" : have));
      }
    }
    const data::NamedArray& a = arrays.at(key);
    const Tensor& t = a.tensor;
    if (t.dim() < 1 || t.size(0) == 0)
      throw InputError(fmt::format("{}: array '{}' has shape {}; expected [N, ...] with N >= 1 examples", in.string(), key,
                                   shape_str(t.shape())));
    if (t.dtype() == DType::boolean)
      throw InputError(fmt::format("{}: array '{}' has dtype '{}'; expected floats or integers", in.string(), key,
                                   a.stored_dtype));
    if (!out.empty() && t.size(0) != out[0].size(0))
      throw InputError(fmt::format("{}: array '{}' has {} examples, '{}' {}", in.string(), key, t.size(0), used[0],
                                   out[0].size(0)));
    const bool is_int = t.dtype() == DType::i32 || t.dtype() == DType::i16 || t.dtype() == DType::i8;
    out.push_back(is_int ? t.to(DType::i32).contiguous() : t.to(DType::f32).contiguous());
    used.push_back(key);
  }
  return out;
}

// Output names: the spec's outputs, or the last node's outputs ("NODE", or "NODE:k" for several).
std::vector<std::string> output_names(const nn::Graph& g, size_t count) {
  std::vector<std::string> names;
  for (const auto& r : g.outputs()) names.push_back(g.ref_name(r));
  if (names.empty() && !g.nodes().empty()) {
    const std::string last = g.nodes().back().name;
    for (size_t k = 0; k < count; ++k) names.push_back(count == 1 ? last : fmt::format("{}:{}", last, k));
  }
  QFORGE_CHECK(names.size() == count, "run: the model returned {} outputs for {} names", count, names.size());
  return names;
}

// Runs `f` on the inputs (tracing, lowering, running); an engine error there — a shape or dtype the model
// cannot take, or a layer the integer program cannot lower — is an InputError naming the arrays and their
// shapes with the layer's own message.
template <class F> auto on_inputs(const fs::path& in, const std::vector<std::string>& used, const std::vector<Tensor>& x,
                                  F&& f) {
  try {
    return f();
  } catch (const InputError&) {
    throw;
  } catch (const Error& e) {
    std::string what;
    for (size_t k = 0; k < used.size(); ++k)
      what += fmt::format("{}'{}' {} {}", k ? ", " : "", used[k], dtype_name(x[k].dtype()), shape_str(x[k].shape()));
    throw InputError(fmt::format("{}: the model does not run on {}: {}", in.string(), what, e.what()));
  }
}

}  // namespace

int cmd_run(int argc, char** argv) {
  cxxopts::Options opts("qforge run",
                        "Run a model directory on input tensors (.safetensors, .npz, .npy) and save its named outputs.");
  opts.add_options()
      ("model-dir", "model directory (from train, quantize, finetune or import)", cxxopts::value<std::string>())
      ("inputs", "input arrays: .safetensors, .npz or .npy, named like the model's inputs", cxxopts::value<std::string>())
      ("out", "output .safetensors file (float32 outputs; exact/int8 also <output>.int8 codes)", cxxopts::value<std::string>())
      ("mode", "fp32 | sim | exact | int8 (default: sim for quantized directories, else fp32)", cxxopts::value<std::string>())
      ("threads", "threads (OpenMP + OpenBLAS); 0: all cores", cxxopts::value<int>()->default_value("0"))
      ("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  apply_threads(r["threads"].as<int>());
  const fs::path dir = required(r, "model-dir");
  const fs::path in = required(r, "inputs");
  const fs::path out = required(r, "out");
  if (!fs::is_directory(dir)) throw UsageError(fmt::format("--model-dir {}: not a directory", dir.string()));
  const std::string mode = resolve_mode(dir, r.count("mode") ? r["mode"].as<std::string>() : "");
  check_out_target(out);

  const data::NamedArrays arrays = data::read_named_arrays(in);
  const std::vector<std::string> input_names = model_input_names(dir);
  std::vector<std::string> used;
  const std::vector<Tensor> x = model_inputs(arrays, input_names, in, used);

  const auto t0 = std::chrono::steady_clock::now();
  NoGradGuard no_grad;
  nn::TensorMap saved;
  nn::Metadata meta = {{"producer", kProducer}, {"mode", mode}, {"model_dir", fs::absolute(dir).string()}};
  // Quantized directories are traced with the first examples of the inputs themselves.
  std::vector<Tensor> sample;
  for (const Tensor& t : x) sample.push_back(t.narrow(0, 0, std::min<int64_t>(8, t.size(0))).contiguous());
  ModeModel model = on_inputs(in, used, x, [&] { return ModeModel(dir, mode, sample); });
  if (!model.integer()) {
    model.module().eval();
    const std::vector<Tensor> y = on_inputs(in, used, x, [&] { return model.module()(x); });
    const std::vector<std::string> names = output_names(model.graph(), y.size());
    for (size_t k = 0; k < y.size(); ++k) saved[names[k]] = y[k].detach().to(DType::f32).contiguous();
  } else {
    if (x.size() != 1)
      throw UsageError(fmt::format("--mode {} runs single-input models; this one has {} inputs", mode, x.size()));
    const Tensor logits = on_inputs(in, used, x, [&] { return model.logits(x[0]); });
    const Tensor codes = on_inputs(in, used, x, [&] { return model.codes(x[0]); });
    // The integer program computes the model's first output.
    const nn::Graph& g = model.graph();
    const std::string name = !g.outputs().empty() ? g.ref_name(g.outputs()[0]) : output_names(g, 1)[0];
    const quant::runtime::QParams q = model.output_qparams();
    saved[name] = logits.contiguous();
    saved[name + ".int8"] = codes.contiguous();
    meta[name + ".int8.scale"] = fmt::format("{}", q.scale);
    meta[name + ".int8.zero_point"] = fmt::format("{}", q.zero_point);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  check_out_target(out);  // again: it may have changed meanwhile
  nn::save_safetensors(out, saved, meta);

  Json summary = {{"mode", mode}, {"model_dir", dir.string()}, {"inputs", in.string()}, {"out", out.string()},
                  {"samples", x[0].size(0)}, {"seconds", seconds}};
  Json outputs = Json::object();
  for (const auto& [name, t] : saved) outputs[name] = {{"shape", t.shape()}, {"dtype", std::string(dtype_name(t.dtype()))}};
  summary["outputs"] = outputs;
  Json ignored = Json::array();
  for (const auto& [name, a] : arrays)
    if (std::find(used.begin(), used.end(), name) == used.end()) ignored.push_back(name);
  if (!ignored.empty()) {
    summary["ignored_arrays"] = ignored;
    say(fmt::format("qforge run: arrays not used by the model's inputs: {}", ignored.dump()));
  }
  print_result(r, summary);
  return 0;
}

}  // namespace qforge::apps
