// Shared steps of the CLI commands that build or load models and data.
#pragma once

#include "apps/cli.hpp"
#include "data/data.hpp"
#include "nn/graph.hpp"
#include "nn/model_dir.hpp"

#include <filesystem>
#include <string>

namespace qforge::apps {

// A zoo name or a path to a spec file -> (spec JSON, name). char-lstm takes its vocabulary size from
// the data. InputError for unknown names / unreadable specs.
struct ModelChoice {
  std::string name;
  nlohmann::json spec;
};
ModelChoice choose_model(const std::string& model, const data::DataSplits& data);

// Loads the data spec; "synthetic" by default. Seed drives synthetic data.
data::DataSplits load_data_spec(const std::string& spec, uint64_t seed);

// The spec with its path made absolute ("mnist:../d" -> "mnist:/abs/d"), so a model directory's
// report names data that later commands find from any working directory.
std::string absolute_data_spec(const std::string& spec);

// Checks that a model's input matches the data (images vs tokens, classes vs outputs) before training,
// with a message naming both.
void check_model_fits_data(const std::string& model_name, const data::DataSplits& data);

// Refuses an output directory that already holds a different model (exit 2), unless resuming.
void check_out_dir(const std::filesystem::path& out, const nlohmann::json& spec, bool resume);

// Text models carry their vocabulary in report.json ("vocab": the byte values, in token order).
nlohmann::json vocabulary_to_json(const data::Vocabulary& v);
// When `report` records a vocabulary and `data` is text, re-encodes both splits with it: characters of
// the training split outside it are an InputError naming the directory (a different character set is
// never silently rebuilt); unseen validation characters map to token 0, as in training.
void apply_model_vocabulary(data::DataSplits& data, const nlohmann::json& report, const std::filesystem::path& dir);

// Resuming (train --resume DIR, finetune --resume) continues the run with the configuration stored in its
// checkpoint: returns stored[key] when present (else `given`); an option given explicitly on the command
// line that differs from the stored value is a UsageError naming both.
// A stored configuration's global batch size as this run's per-rank batch (data parallel, Note
// [Data-parallel resume]): the copy of `stored` has batch_size / ranks; InputError when it does not divide.
nlohmann::json per_rank_config(const nlohmann::json& stored, int ranks, const std::filesystem::path& out);

template <class T>
T resume_value(const cxxopts::ParseResult& r, const char* option, const nlohmann::json& stored, const char* key,
               const T& given, const std::filesystem::path& dir) {
  if (!stored.is_object() || !stored.contains(key) || stored.at(key).is_null()) return given;
  T have;
  try {
    have = stored.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw InputError(fmt::format("resuming {}: the checkpoint's stored \"{}\" is malformed", dir.string(), key));
  }
  if (r.count(option) && !(have == given))
    throw UsageError(fmt::format("--{} {} conflicts with the run in {} ({} {}); a resumed run continues with its own "
                                 "configuration (drop --{}, or start a new run)",
                                 option, nlohmann::json(given).dump(), dir.string(), option, nlohmann::json(have).dump(),
                                 option));
  return have;
}

// Adds the common --threads option handling: sets OpenMP/OpenBLAS threads when > 0.
void apply_threads(int threads);

}  // namespace qforge::apps
