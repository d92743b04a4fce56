#include "train/checkpoint.hpp"

#include "engine/file_io.hpp"

#include "engine/json_util.hpp"
#include "nn/safetensors.hpp"

#include <bit>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <unistd.h>

namespace qforge::train {

namespace fs = std::filesystem;

void atomic_write_text(const fs::path& path, const std::string& text) { write_file_atomic(path, text); }

namespace {

// state.json must be a regular file of a sane size (a FIFO or device would block or never end).
std::string read_state_file(const fs::path& p) {
  std::error_code ec;
  const auto st = fs::status(p, ec);
  if (ec || !fs::is_regular_file(st)) throw InputError(fmt::format("checkpoint {}: not a regular file", p.string()));
  if (fs::file_size(p, ec) > (uintmax_t{64} << 20))
    throw InputError(fmt::format("checkpoint {}: larger than 64 MiB", p.string()));
  return read_file(p);
}

}  // namespace

nlohmann::json generator_to_json(const Generator& g) {
  const Generator::State st = g.state();
  return {{"s", std::vector<uint64_t>(st.s.begin(), st.s.end())},
          {"has_spare", st.has_spare},
          {"spare_bits", std::bit_cast<uint64_t>(st.spare)}};
}

void generator_from_json(Generator& g, const nlohmann::json& j) {
  Generator::State st{};
  const JsonView v(j, "generator state");  // typed reads: a float or negative word is an InputError
  const JsonView s = v["s"].list(4);
  for (std::size_t k = 0; k < 4; ++k) st.s[k] = s[k].uinteger();
  st.has_spare = v["has_spare"].boolean();
  st.spare = std::bit_cast<double>(v["spare_bits"].uinteger());
  g.set_state(st);
}

bool is_checkpoint_file_name(const std::string& name, const std::string& prefix) {
  const std::string head = prefix + "-", tail = ".safetensors";
  if (name.size() <= head.size() + tail.size() || name.size() > 64) return false;
  if (name.compare(0, head.size(), head) != 0 || name.compare(name.size() - tail.size(), tail.size(), tail) != 0)
    return false;
  for (size_t i = head.size(); i < name.size() - tail.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  return true;
}

CheckpointState parse_checkpoint_state(const std::string& json_text, const fs::path& dir) {
  const fs::path state_path = dir / "state.json";
  CheckpointState st;
  try {
    const nlohmann::json j = parse_json(json_text, state_path.string());
    if (!j.is_object() || !j.contains("format") || !j["format"].is_string() ||
        j["format"].get<std::string>() != "qforge-checkpoint")
      throw InputError(fmt::format("checkpoint {}: not a qforge checkpoint", state_path.string()));
    if (!j.at("version").is_number_integer() || j.at("version").get<int64_t>() != 1)
      throw InputError(fmt::format("checkpoint {}: unsupported version {}", state_path.string(), j.at("version").dump()));
    // JsonView::integer refuses floats and out-of-range values (a float step of 1e21 used to reach an
    // undefined float-to-int64 conversion: tests/fuzz/findings/checkpoint_state).
    st.step = JsonView(j, state_path.string())["step"].integer(0);
    st.model_file = j.at("model_file").get<std::string>();
    st.optimizer_file = j.at("optimizer_file").get<std::string>();
    for (const auto& [name, prefix] : {std::pair{st.model_file, "model"}, std::pair{st.optimizer_file, "optimizer"}})
      if (!is_checkpoint_file_name(name, prefix))
        throw InputError(fmt::format("checkpoint {}: file name '{}' is not a checkpoint file of this directory "
                                     "(expected {}-<step>.safetensors)",
                                     state_path.string(), name, prefix));
    st.optimizer = j.at("optimizer");
    st.trainer = j.at("trainer");
    if (!st.optimizer.is_object() || !st.trainer.is_object())
      throw InputError(fmt::format("checkpoint {}: \"optimizer\" and \"trainer\" must be objects", state_path.string()));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("checkpoint {}: malformed ({})", state_path.string(), e.what()));
  }
  return st;
}

void save_checkpoint(const fs::path& dir, int64_t step, const nn::Module& model, const Optimizer& optimizer,
                     const nlohmann::json& trainer_state) {
  fs::create_directories(dir);
  // Remember what the previous commit referenced, to delete it after this one. Only names this function
  // writes are ever deleted (Note at the top of checkpoint.hpp).
  std::vector<fs::path> old_files;
  if (fs::exists(dir / "state.json")) {
    try {
      const CheckpointState old = parse_checkpoint_state(read_state_file(dir / "state.json"), dir);
      old_files = {dir / old.model_file, dir / old.optimizer_file};
    } catch (const std::exception&) {
    }
  }
  const std::string model_file = fmt::format("model-{}.safetensors", step);
  const std::string opt_file = fmt::format("optimizer-{}.safetensors", step);
  nn::save_weights(model, dir / model_file);
  nn::TensorMap opt_tensors;
  for (auto& [name, t] : optimizer.state_tensors()) opt_tensors[name] = t;
  nn::save_safetensors(dir / opt_file, opt_tensors);
  nlohmann::json j = {{"format", "qforge-checkpoint"}, {"version", 1},           {"step", step},
                      {"model_file", model_file},       {"optimizer_file", opt_file}, {"optimizer", optimizer.state_json()},
                      {"trainer", trainer_state}};
  atomic_write_text(dir / "state.json", j.dump(1));
  for (const auto& f : old_files) {
    if (f.filename() == model_file || f.filename() == opt_file) continue;
    std::error_code ec;
    if (fs::is_regular_file(fs::symlink_status(f, ec))) fs::remove(f, ec);
  }
}

bool has_checkpoint(const fs::path& dir) { return fs::exists(dir / "state.json"); }

nlohmann::json read_checkpoint_trainer_state(const fs::path& dir) {
  const fs::path state_path = dir / "state.json";
  if (!fs::exists(state_path)) throw InputError(fmt::format("no checkpoint in {} (missing state.json)", dir.string()));
  return parse_checkpoint_state(read_state_file(state_path), dir).trainer;
}

namespace {

// Optimizer buffers must be finite, like weights (nn::load_weights refuses non-finite tensors).
void check_finite(const nn::TensorMap& m, const fs::path& file) {
  for (const auto& [name, t] : m) {
    if (t.dtype() != DType::f32 && t.dtype() != DType::f64) continue;
    for (double v : t.to_vector<double>())
      if (!std::isfinite(v))
        throw InputError(fmt::format("{}: tensor '{}' holds a non-finite value ({})", file.string(), name, v));
  }
}

}  // namespace

nlohmann::json load_checkpoint(const fs::path& dir, nn::Module& model, Optimizer& optimizer) {
  const fs::path state_path = dir / "state.json";
  if (!fs::exists(state_path)) throw InputError(fmt::format("no checkpoint in {} (missing state.json)", dir.string()));
  try {
    const CheckpointState st = parse_checkpoint_state(read_state_file(state_path), dir);
    nn::load_weights(model, dir / st.model_file, true);
    const nn::TensorMap opt = nn::load_safetensors(dir / st.optimizer_file);
    check_finite(opt, dir / st.optimizer_file);
    optimizer.load_state(st.optimizer, opt);
    return st.trainer;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("checkpoint {}: malformed ({})", state_path.string(), e.what()));
  } catch (const InputError& e) {
    const std::string msg = e.what();
    if (msg.find(dir.string()) != std::string::npos) throw;
    throw InputError(fmt::format("checkpoint {}: {}", dir.string(), msg));
  } catch (const Error& e) {  // optimizer state that does not fit the model
    throw InputError(fmt::format("checkpoint {}: {}", dir.string(), e.what()));
  }
}

}  // namespace qforge::train
