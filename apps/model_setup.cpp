#include "apps/model_setup.hpp"

#include "nn/spec.hpp"
#include "nn/zoo.hpp"
#include "train/threads.hpp"

namespace qforge::apps {

namespace fs = std::filesystem;

data::DataSplits load_data_spec(const std::string& spec, uint64_t seed) {
  data::DataOptions opt;
  opt.seed = seed;
  return data::load_data(spec.empty() ? "synthetic" : spec, opt);
}

std::string absolute_data_spec(const std::string& spec) {
  const auto colon = spec.find(':');
  if (colon == std::string::npos) return spec;
  const std::string kind = spec.substr(0, colon), path = spec.substr(colon + 1);
  if (kind == "synthetic" || path.empty()) return spec;
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  return ec ? spec : kind + ":" + abs.lexically_normal().string();
}

ModelChoice choose_model(const std::string& model, const data::DataSplits& data) {
  ModelChoice c;
  if (nn::is_zoo_model(model)) {
    nn::ZooOptions zo;
    if (data.vocab) zo.vocab = data.train->num_classes();
    if (model == "char-lstm" && !data.vocab)
      throw UsageError("model char-lstm needs text data (--data text:FILE)");
    c.name = model;
    c.spec = nn::zoo_spec(model, zo);
    return c;
  }
  if (fs::exists(model)) {
    c.spec = nn::read_json_file(model);
    if (!c.spec.is_object()) throw InputError(fmt::format("{}: a model spec must be a JSON object", model));
    if (c.spec.contains("name") && !c.spec["name"].is_string())
      throw InputError(fmt::format("{}: /name: expected a string", model));
    c.name = c.spec.value("name", fs::path(model).stem().string());
    return c;
  }
  std::string names;
  for (const auto& n : nn::zoo_names()) names += (names.empty() ? "" : ", ") + n;
  throw UsageError(fmt::format("unknown model '{}' (zoo models: {}; or a path to a spec .json file)", model, names));
}

void check_model_fits_data(const std::string& model_name, const data::DataSplits& data) {
  const bool text = data.train->kind() == data::TaskKind::language_model;
  if (model_name == "char-lstm" && !text) throw UsageError("model char-lstm needs text data (--data text:FILE)");
  if (nn::is_zoo_model(model_name) && model_name != "char-lstm" && text)
    throw UsageError(fmt::format("model {} takes images; data '{}' is text", model_name, data.spec));
  if (nn::is_zoo_model(model_name) && model_name != "char-lstm") {
    const Shape ex = data.train->example_shape();
    if (ex != Shape{1, 28, 28})
      throw UsageError(fmt::format("model {} takes 1x28x28 images; data '{}' has examples of shape {}", model_name,
                                   data.spec, shape_str(ex)));
  }
}

void check_out_dir(const fs::path& out, const nlohmann::json& spec, bool resume) {
  if (out.empty()) throw UsageError("--out is required");
  if (fs::exists(out) && !fs::is_directory(out))
    throw UsageError(fmt::format("--out {}: exists and is not a directory", out.string()));
  const fs::path existing = out / "model.json";
  if (!fs::exists(existing)) return;
  nlohmann::json have = nn::read_json_file(existing);
  // Compare architectures by their built specs (names, types and arguments), ignoring the name field.
  auto normalized = [](nlohmann::json s) {
    s.erase("name");
    return nn::write_spec(*nn::build_model(s)).dump();
  };
  std::string a, b;
  try {
    a = normalized(have);
  } catch (const std::exception&) {
    throw UsageError(fmt::format("--out {}: holds an unreadable model.json; choose another directory", out.string()));
  }
  b = normalized(spec);
  if (a != b)
    throw UsageError(fmt::format("--out {}: holds a different model; choose another directory or delete it",
                                 out.string()));
  (void)resume;
}

nlohmann::json vocabulary_to_json(const data::Vocabulary& v) {
  nlohmann::json a = nlohmann::json::array();
  for (char c : v.chars()) a.push_back(static_cast<int>(static_cast<uint8_t>(c)));
  return a;
}

void apply_model_vocabulary(data::DataSplits& data, const nlohmann::json& report, const fs::path& dir) {
  if (!report.is_object() || !report.contains("vocab") || !data.vocab) return;
  std::string chars;
  try {
    for (const auto& b : report.at("vocab")) {
      if (!b.is_number_integer()) throw InputError("a byte is not an integer");  // no float-to-int conversion
      const int64_t v = b.get<int64_t>();
      if (v < 0 || v > 255) throw InputError("byte out of range");
      chars.push_back(static_cast<char>(v));
    }
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: report.json has a malformed \"vocab\" ({})", (dir / "report.json").string(), e.what()));
  }
  const data::Vocabulary model_vocab = data::Vocabulary::from_chars(chars);
  auto train = std::dynamic_pointer_cast<data::TextDataset>(data.train);
  auto test = std::dynamic_pointer_cast<data::TextDataset>(data.test);
  if (!train || !test) return;
  try {
    data.train = data::reencode(*train, model_vocab, false);
    data.test = data::reencode(*test, model_vocab, true);
  } catch (const InputError& e) {
    throw InputError(fmt::format("data '{}' does not fit the model in {}: {}", data.spec, dir.string(), e.what()));
  }
  data.vocab = model_vocab;
}

void apply_threads(int threads) {
  if (threads < 0 || threads > train::kMaxThreads)
    throw UsageError(fmt::format("--threads {}: expected 0 (all cores) or 1-{}", threads, train::kMaxThreads));
  if (threads > 0) train::set_num_threads(threads);
}

nlohmann::json per_rank_config(const nlohmann::json& stored, int ranks, const std::filesystem::path& out) {
  nlohmann::json c = stored;
  if (ranks <= 1 || !c.is_object() || !c.contains("batch_size") || !c["batch_size"].is_number_integer()) return c;
  const int64_t global = c["batch_size"].get<int64_t>();
  if (global % ranks != 0)
    throw InputError(fmt::format("--resume {}: its global batch size {} cannot be shared equally by {} ranks", out.string(),
                                 global, ranks));
  c["batch_size"] = global / ranks;
  return c;
}

}  // namespace qforge::apps
