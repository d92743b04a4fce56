#include "nn/model_dir.hpp"

#include "engine/file_io.hpp"
#include "engine/json_util.hpp"
#include "nn/safetensors.hpp"
#include "nn/spec.hpp"

namespace qforge::nn {

namespace fs = std::filesystem;

nlohmann::json read_json_file(const fs::path& path) {
  // Only regular files of a sane size: a FIFO or device (e.g. /dev/zero) would block or never end.
  constexpr uintmax_t kMaxJsonBytes = uintmax_t{256} << 20;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw InputError(fmt::format("{}: cannot open file (does not exist)", path.string()));
  if (!fs::is_regular_file(st)) throw InputError(fmt::format("{}: not a regular file", path.string()));
  if (fs::file_size(path, ec) > kMaxJsonBytes)
    throw InputError(fmt::format("{}: larger than {} MiB; not a qforge JSON file", path.string(), kMaxJsonBytes >> 20));
  return parse_json(read_file(path), path.string());  // depth-limited; syntax errors name the file
}

void write_json_file(const fs::path& path, const nlohmann::json& j) { write_file_atomic(path, j.dump(2) + "\n"); }

ModelDir load_model_dir(const fs::path& dir, bool with_weights) {
  if (!fs::is_directory(dir))
    throw InputError(fmt::format("{}: not a model directory ({})", dir.string(),
                                 fs::exists(dir) ? "not a directory" : "does not exist"));
  const fs::path spec_path = dir / "model.json";
  if (!fs::exists(spec_path))
    throw InputError(fmt::format("{}: not a model directory (no model.json)", dir.string()));
  ModelDir md;
  md.path = dir;
  md.spec = read_json_file(spec_path);
  if (fs::exists(dir / "report.json")) md.report = read_json_file(dir / "report.json");
  if (!md.report.is_object()) md.report = nlohmann::json::object();
  try {
    md.model = build_model(md.spec);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: {}", spec_path.string(), e.what()));
  }
  if (with_weights) {
    const fs::path w = dir / "weights.safetensors";
    if (!fs::exists(w)) throw InputError(fmt::format("{}: missing weights.safetensors", dir.string()));
    load_weights(*md.model, w, true);
  }
  return md;
}

void save_model_dir(const fs::path& dir, const Module& model, const nlohmann::json& report) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("cannot create directory {}: {}", dir.string(), ec.message()));
  write_json_file(dir / "model.json", write_spec(model));
  save_weights(model, dir / "weights.safetensors");
  write_json_file(dir / "report.json", report);
}

}  // namespace qforge::nn
