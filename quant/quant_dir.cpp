#include "quant/quant_dir.hpp"

#include "engine/file_io.hpp"
#include "engine/json_util.hpp"
#include "nn/spec.hpp"

namespace qforge::quant {

namespace fs = std::filesystem;

QuantSimOptions options_from_quantsim_json(const nlohmann::json& qs_json, const fs::path& dir) {
  const JsonView qs(qs_json, (dir / "quantsim.json").string());
  if (!qs.is_object() || qs.str_or("format", "") != "qforge-quantsim")
    throw InputError(fmt::format("{}: not a qforge quantsim.json", qs.source()));
  QuantSimOptions o;
  // parse_scheme / parse_range_learning name the bad value; say where it is.
  try {
    o.scheme = parse_scheme(qs.str_or("scheme", "tf"));
  } catch (const Error& e) {
    qs["scheme"].fail(e.what());
  }
  try {
    o.range_learning = parse_range_learning(qs.str_or("range_learning", "none"));
  } catch (const Error& e) {
    qs["range_learning"].fail(e.what());
  }
  o.act_bw = static_cast<int>(qs.int_or("act_bw", 8, 1, 32));
  o.param_bw = static_cast<int>(qs.int_or("param_bw", 8, 1, 32));
  o.bias_bw = static_cast<int>(qs.int_or("bias_bw", 32, 1, 32));
  o.fold_bn = qs.bool_or("fold_bn", true);
  // The arithmetic profile (directories of older versions: dsp).
  if (const std::string target = qs.str_or("target", "dsp"); !kernels::parse_profile(target, &o.target))
    qs["target"].fail(fmt::format("unknown target '{}' (dsp or onnxruntime)", target));
  o.quantize_cell_state = qs.bool_or("quantize_cell_state", false);
  o.quantize_gates = qs.bool_or("quantize_gates", false);
  // The config is the directory's own config.json; without one, only a built-in name is accepted: a
  // path read from quantsim.json is never followed (paths read from files stay inside their directory).
  const fs::path cfg = dir / "config.json";
  if (fs::exists(cfg)) {
    o.config = cfg.string();
  } else {
    const std::string name = qs.str_or("config", "default");
    if (name == "default" || name == "per_channel")
      o.config = name;
    else if (name.rfind("<builtin:", 0) == 0)
      o.config = name.find("per_channel") != std::string::npos ? "per_channel" : "default";
    else
      qs["config"].fail(fmt::format("names '{}', but only a built-in config or the directory's own config.json is "
                                    "used (config.json is missing)",
                                    name));
  }
  return o;
}

std::vector<std::pair<std::string, bool>> quantizer_flags_from_quantsim_json(const nlohmann::json& qs_json,
                                                                            const fs::path& dir) {
  const JsonView qs(qs_json, (dir / "quantsim.json").string());
  std::vector<std::pair<std::string, bool>> out;
  if (const auto list = qs.find("quantizers"))
    for (std::size_t i = 0; i < list->size(); ++i) {
      const JsonView e = (*list)[i];
      out.emplace_back(e["name"].str(), e.bool_or("enabled", true));
    }
  return out;
}

bool is_quantized_dir(const fs::path& dir) {
  return fs::exists(dir / "encodings.json") && fs::exists(dir / "quantsim.json");
}

QuantizedModel load_quantized_dir(const fs::path& dir, const std::vector<Tensor>& sample_inputs) {
  QuantizedModel q;
  q.dir = nn::load_model_dir(dir);
  const fs::path qs_path = dir / "quantsim.json";
  if (!fs::exists(qs_path)) throw InputError(fmt::format("{}: not a quantized model directory (no quantsim.json)", dir.string()));
  const nlohmann::json qs = parse_json(read_file(qs_path), qs_path.string());
  QuantSimOptions opt = options_from_quantsim_json(qs, dir);
  q.sim = std::make_unique<QuantSim>(q.dir.model, sample_inputs, opt);
  // Per-quantizer enabled flags as saved (the analyzer and users may have changed them).
  for (const auto& [name, enabled] : quantizer_flags_from_quantsim_json(qs, dir))
    if (q.sim->has_quantizer(name)) q.sim->set_enabled(name, enabled);
  LoadEncodingsOptions lo;
  lo.strict = true;
  lo.partial = true;  // disabled quantizers have no entry
  q.sim->load_encodings(dir / "encodings.json", lo);
  if (opt.range_learning != RangeLearning::none) q.sim->set_range_learning(opt.range_learning);
  return q;
}

void save_quantized_dir(const fs::path& dir, QuantSim& sim, const nlohmann::json& report,
                        const std::string& encodings_version) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("cannot create directory {}: {}", dir.string(), ec.message()));
  // The config first, so quantsim.json never names a config that is not there.
  const std::string& src = sim.options().config;
  const fs::path cfg_out = dir / "config.json";
  if (src == "default" || src.empty()) {
    write_file_atomic(cfg_out, default_config_json());
  } else if (src == "per_channel") {
    write_file_atomic(cfg_out, per_channel_config_json());
  } else if (!(fs::exists(cfg_out) && fs::equivalent(src, cfg_out, ec))) {
    write_file_atomic(cfg_out, read_file(src));
  }
  nn::write_json_file(dir / "model.json", nn::write_spec(sim.model()));
  sim.export_dir(dir, encodings_version);
  nn::write_json_file(dir / "report.json", report);
}

}  // namespace qforge::quant
