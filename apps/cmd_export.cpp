// qforge export: a quantized model leaves qforge in one of three forms.
//   --format bundle     (default) a self-contained deployment bundle for qforge's integer runtime
//                       (program.json + program.bin: int8 weights, int32 biases, multipliers, shifts, zero
//                       points). The runtime loads it without the FP32 model; the bundle is verified by
//                       running it beside the in-memory program before it is kept.
//   --format onnx       a QDQ ONNX model for ONNX Runtime (quant/export/onnx_export.hpp, Note [QDQ layout]),
//                       written from the same integer program.
//   --format onnx-fp32  the float model as plain ONNX (any model directory, quantized or not).
// Bundles are directories published with OutputDir; ONNX files are single files written atomically, with
// the AIMET encodings of a quantized model beside them (<out>.encodings, schema 2.0.0 by default).
#include "apps/cli.hpp"
#include "apps/eval_modes.hpp"
#include "apps/quant_setup.hpp"
#include "nn/model_dir.hpp"
#include "quant/encodings_io.hpp"
#include "quant/export/onnx_export.hpp"
#include "quant/runtime/lower.hpp"
#include "quant/runtime/runtime.hpp"
#include "train/output.hpp"

#include <iostream>

namespace qforge::apps {

namespace fs = std::filesystem;

namespace {

nlohmann::json export_bundle(const fs::path& dir, const fs::path& out, const Tensor& sample, bool force) {
  // Note [Publishing outputs] (train/output.hpp): checks --out, takes its lock, stages in a temporary.
  train::OutputDir od(out, "bundle", {force, {dir}});
  quant::runtime::Program program = quant::runtime::lower_model_dir(dir, sample);
  // Build in the staging directory, check that the loaded bundle computes the same integers, then
  // publish with one rename: a failure never leaves a half-written bundle at --out.
  const fs::path tmp = od.staging();
  quant::runtime::save_bundle(program, tmp);
  quant::runtime::Runtime a(program), b(quant::runtime::load_bundle(tmp));
  const Tensor ca = a.run_codes(sample), cb = b.run_codes(sample);
  if (ca.to_vector<int32_t>() != cb.to_vector<int32_t>())
    throw Error("export: the reloaded bundle does not reproduce the program's output codes");
  od.publish();
  int64_t bytes = 0;
  for (const auto& e : fs::directory_iterator(out))
    if (e.is_regular_file()) bytes += static_cast<int64_t>(e.file_size());
  return {{"out", out.string()}, {"format", "bundle"}, {"bytes", bytes}, {"verified", true}};
}

// The ONNX forms write one file: an existing regular file is replaced only with --force, and never a
// directory, a symbolic link or a special file.
void check_onnx_target(const fs::path& out, bool force) {
  train::check_single_file_target("--out", out);
  if (fs::exists(out) && !force)
    throw UsageError(fmt::format("--out {}: exists; pass --force to replace it", out.string()));
}

// The encodings beside an ONNX file (AIMET's <name>.encodings), naming the exported graph's tensors:
// fp32: the quantized directory's encodings renamed through the exporter's tensor map, in any schema;
// qdq: the QuantizeLinear/DequantizeLinear inputs of the graph, schema 2.0.0.
void write_onnx_encodings(const fs::path& dir, const fs::path& path, const quant::exporter::OnnxExportResult& res,
                          bool fp32, const std::string& version) {
  if (!fp32) {
    nn::write_json_file(path, {{"version", "2.0.0"}, {"encodings", res.encodings_200}});
    return;
  }
  const quant::EncodingsFile src = quant::read_encodings(dir / "encodings.json");
  quant::EncodingsFile renamed = src;
  renamed.activations.clear();
  renamed.params.clear();
  auto rename = [&](const std::map<std::string, std::vector<quant::Encoding>>& from,
                    std::map<std::string, std::vector<quant::Encoding>>& to) {
    for (const auto& [name, es] : from) {
      auto it = res.tensor_of.find(name);
      to[it == res.tensor_of.end() ? name : it->second] = es;
    }
  };
  rename(src.activations, renamed.activations);
  rename(src.params, renamed.params);
  quant::write_encodings(path, renamed, version);
}

nlohmann::json export_onnx(const fs::path& dir, const fs::path& out, const Tensor& sample, bool fp32,
                           const std::string& encodings_version, bool force) {
  nn::ModelDir md = nn::load_model_dir(dir);
  const bool quantized = fs::exists(dir / "encodings.json");
  const fs::path enc_path = fs::path(out).replace_extension(".encodings");
  if (quantized) check_onnx_target(enc_path, force);
  quant::exporter::OnnxExportResult res;
  if (fp32) {
    res = quant::exporter::export_onnx_fp32(*md.model, {sample}, out);
  } else {
    quant::exporter::QdqExportOptions opt;
    opt.tensor_names = md.model->tensor_names();
    if (!md.model->input_names().empty()) opt.input_name = md.model->input_names()[0];
    // The output is named like qforge run names it (the spec's output, else the last node), its codes "<name>_q".
    const nn::Graph& g = *md.model;
    if (!g.outputs().empty()) opt.output_name = g.ref_name(g.outputs()[0]);
    else if (!g.nodes().empty()) opt.output_name = g.nodes().back().name;
    res = quant::exporter::export_onnx_qdq(quant::runtime::lower_model_dir(dir, sample), out, opt);
  }
  nlohmann::json j = res.to_json();
  if (quantized) {
    write_onnx_encodings(dir, enc_path, res, fp32, encodings_version);
    j["encodings"] = {{"path", enc_path.string()}, {"version", encodings_version}};
  }
  j["out"] = out.string();
  j["format"] = fp32 ? "onnx-fp32" : "onnx";
  j["bytes"] = static_cast<int64_t>(fs::file_size(out));
  return j;
}

}  // namespace

int cmd_export(int argc, char** argv) {
  cxxopts::Options opts("qforge export", "Write a deployment bundle (default), a QDQ ONNX model or a float ONNX model.");
  opts.add_options()
      ("model-dir", "model directory (quantized, except for --format onnx-fp32)", cxxopts::value<std::string>())
      ("out", "bundle directory (bundle) or .onnx file to write", cxxopts::value<std::string>())
      ("format", "bundle | onnx (QDQ for ONNX Runtime) | onnx-fp32", cxxopts::value<std::string>()->default_value("bundle"))
      ("encodings-version", "AIMET encodings schema written beside an ONNX file (<out>.encodings): 2.0.0, or for "
       "onnx-fp32 also 1.0.0 / 0.6.1", cxxopts::value<std::string>()->default_value("2.0.0"))
      ("data", "data spec used to trace the model (default: the model's)", cxxopts::value<std::string>())
      ("force", "replace --out when it holds a previous qforge output of the same kind")
      ("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  const fs::path dir = required(r, "model-dir"), out = required(r, "out");
  const std::string format = r["format"].as<std::string>();
  if (format != "bundle" && format != "onnx" && format != "onnx-fp32")
    throw UsageError(fmt::format("--format {}: expected bundle, onnx or onnx-fp32", format));
  const bool force = r.count("force") > 0;
  const std::string enc_version = r["encodings-version"].as<std::string>();
  if (enc_version != "2.0.0" && (format != "onnx-fp32" || (enc_version != "1.0.0" && enc_version != "0.6.1")))
    throw UsageError(fmt::format("--encodings-version {}: expected 2.0.0{}", enc_version,
                                 format == "onnx-fp32" ? ", 1.0.0 or 0.6.1" : " (a QDQ graph's encodings are its QuantizeLinear inputs)"));
  if (format != "onnx-fp32") require_quantized_dir("model-dir", dir);
  if (format != "bundle") {
    if (!quant::exporter::onnx_export_available())
      throw Error("export --format " + format + ": this qforge was built without ONNX support (libonnx-dev)");
    check_onnx_target(out, force);
  }
  data::DataSplits data = data_for_dir(dir, r.count("data") ? r["data"].as<std::string>() : "");
  const Tensor sample = sample_batch(data.test, 16)[0];
  const nlohmann::json summary =
      format == "bundle" ? export_bundle(dir, out, sample, force)
                         : export_onnx(dir, out, sample, format == "onnx-fp32", enc_version, force);
  print_result(r, summary);
  return 0;
}

}  // namespace qforge::apps
