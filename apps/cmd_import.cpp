// qforge import: an ONNX model (e.g. exported by torch.onnx) -> an ordinary qforge model directory
// (model.json + weights.safetensors with the ONNX initializer names + report.json with the op census),
// usable by eval, quantize, finetune, compare, analyze and export like a trained one (nn/onnx/import.hpp).
#include "apps/cli.hpp"
#include "nn/model_dir.hpp"
#include "nn/onnx/import.hpp"
#include "nn/spec.hpp"
#include "train/output.hpp"

#include <chrono>
#include <iostream>

namespace qforge::apps {

namespace fs = std::filesystem;

int cmd_import(int argc, char** argv) {
  cxxopts::Options opts("qforge import",
                        "Import an ONNX model (opsets 11-17) as a qforge model directory: model.json, "
                        "weights.safetensors (ONNX initializer names kept), report.json (op census).");
  opts.add_options()
      ("model", "the .onnx file (external-data files next to it are read as well)", cxxopts::value<std::string>())
      ("out", "output model directory", cxxopts::value<std::string>())
      ("input-shape", "NAME=D0,D1,... fixes an input's shape for import (dynamic dims; repeatable)",
       cxxopts::value<std::vector<std::string>>())
      ("force", "replace --out when it holds a previous qforge model directory (anything else is never replaced)")
      ("json", "print one JSON result object as the last line of stdout");
  opts.parse_positional({"model"});
  opts.positional_help("MODEL.onnx");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  const fs::path src = required(r, "model");
  const fs::path out = required(r, "out");
  nn::onnx_import::ImportOptions io;
  std::vector<std::string> shape_args;  // cxxopts splits vector values at commas: "input=1,3" -> "input=1", "3"
  if (r.count("input-shape"))
    for (const auto& part : r["input-shape"].as<std::vector<std::string>>()) {
      if (part.find('=') == std::string::npos && !shape_args.empty()) shape_args.back() += "," + part;
      else shape_args.push_back(part);
    }
  for (const auto& s : shape_args) {
    auto [name, dims] = nn::onnx_import::parse_input_shape(s);
    if (io.input_shapes.count(name)) throw UsageError(fmt::format("--input-shape {}: given twice", name));
    io.input_shapes[name] = dims;
  }
  if (!fs::is_regular_file(src)) throw UsageError(fmt::format("{}: not an ONNX file (no such regular file)", src.string()));

  // Note [Publishing outputs] (train/output.hpp): built in a temporary sibling, published with one rename;
  // on any error nothing appears at --out.
  train::OutputDir od(out, "model", {r.count("force") > 0, {src}});
  const auto t0 = std::chrono::steady_clock::now();
  nn::onnx_import::ImportResult res = nn::onnx_import::import_onnx(src, io);
  nlohmann::json spec = nn::write_spec(*res.model);
  spec["name"] = res.spec.value("name", std::string("model"));
  nn::write_json_file(od.staging() / "model.json", spec);
  nn::save_weights(*res.model, od.staging() / "weights.safetensors");
  res.report["seconds_total"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nn::write_json_file(od.staging() / "report.json", res.report);
  od.publish();

  say(fmt::format("imported {} (opset {}, {} ONNX nodes: {} folded, {} removed) -> {} qforge nodes, {} parameters, {:.2f} s",
                  src.string(), res.report["onnx"]["opset"].get<int64_t>(), res.report["onnx"]["nodes"].get<int64_t>(),
                  res.report["nodes_folded"].get<int64_t>(), res.report["nodes_removed"].get<int64_t>(),
                  res.report["qforge_nodes"].get<int64_t>(), res.report["parameters"].get<int64_t>(),
                  res.report["seconds_total"].get<double>()));
  for (const auto& n : res.report["notes"]) say("note: " + n.get<std::string>());
  nlohmann::json summary = {{"out", out.string()},
                            {"inputs", res.report["inputs"]},
                            {"outputs", res.report["outputs"]},
                            {"ops", res.report["ops"]},
                            {"nodes_folded", res.report["nodes_folded"]},
                            {"qforge_nodes", res.report["qforge_nodes"]},
                            {"parameters", res.report["parameters"]},
                            {"seconds", res.report["seconds_total"]}};
  print_result(r, summary);
  return 0;
}

}  // namespace qforge::apps
