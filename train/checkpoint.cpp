#include "train/checkpoint.hpp"

#include "engine/file_io.hpp"

#include "nn/safetensors.hpp"

#include <bit>
#include <cstdio>
#include <fstream>
#include <unistd.h>

namespace qforge::train {

namespace fs = std::filesystem;

void atomic_write_text(const fs::path& path, const std::string& text) { write_file_atomic(path, text); }

nlohmann::json generator_to_json(const Generator& g) {
  const Generator::State st = g.state();
  return {{"s", std::vector<uint64_t>(st.s.begin(), st.s.end())},
          {"has_spare", st.has_spare},
          {"spare_bits", std::bit_cast<uint64_t>(st.spare)}};
}

void generator_from_json(Generator& g, const nlohmann::json& j) {
  Generator::State st{};
  const auto s = j.at("s").get<std::vector<uint64_t>>();
  if (s.size() != 4) throw InputError("generator state: expected 4 state words");
  for (int k = 0; k < 4; ++k) st.s[k] = s[k];
  st.has_spare = j.at("has_spare").get<bool>();
  st.spare = std::bit_cast<double>(j.at("spare_bits").get<uint64_t>());
  g.set_state(st);
}

void save_checkpoint(const fs::path& dir, int64_t step, const nn::Module& model, const Optimizer& optimizer,
                     const nlohmann::json& trainer_state) {
  fs::create_directories(dir);
  // Remember what the previous commit referenced, to delete it after this one.
  std::vector<fs::path> old_files;
  if (fs::exists(dir / "state.json")) {
    try {
      std::ifstream in(dir / "state.json");
      const auto j = nlohmann::json::parse(in);
      for (const char* k : {"model_file", "optimizer_file"}) old_files.push_back(dir / j.at(k).get<std::string>());
    } catch (...) {
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
    fs::remove(f, ec);
  }
}

bool has_checkpoint(const fs::path& dir) { return fs::exists(dir / "state.json"); }

nlohmann::json load_checkpoint(const fs::path& dir, nn::Module& model, Optimizer& optimizer) {
  const fs::path state_path = dir / "state.json";
  if (!fs::exists(state_path)) throw InputError(fmt::format("no checkpoint in {} (missing state.json)", dir.string()));
  nlohmann::json j;
  try {
    std::ifstream in(state_path);
    j = nlohmann::json::parse(in);
    if (j.at("format").get<std::string>() != "qforge-checkpoint")
      throw InputError(fmt::format("checkpoint {}: not a qforge checkpoint", state_path.string()));
    if (j.at("version").get<int>() != 1)
      throw InputError(fmt::format("checkpoint {}: unsupported version {}", state_path.string(), j.at("version").dump()));
    nn::load_weights(model, dir / j.at("model_file").get<std::string>(), true);
    const nn::TensorMap opt = nn::load_safetensors(dir / j.at("optimizer_file").get<std::string>());
    optimizer.load_state(j.at("optimizer"), opt);
    return j.at("trainer");
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("checkpoint {}: malformed ({})", state_path.string(), e.what()));
  } catch (const InputError& e) {
    const std::string msg = e.what();
    if (msg.find(dir.string()) != std::string::npos) throw;
    throw InputError(fmt::format("checkpoint {}: {}", dir.string(), msg));
  }
}

}  // namespace qforge::train
