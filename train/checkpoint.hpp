// Checkpoints: everything needed to continue training bit-identically.
//
// A checkpoint directory holds
//   model-<step>.safetensors      the model's state_dict (parameters and buffers, PyTorch names)
//   optimizer-<step>.safetensors  the optimizer's buffers ("g<group>.p<index>.<slot>")
//   state.json                    {"format": "qforge-checkpoint", "version": 1, "step": ..., "model_file": ...,
//                                  "optimizer_file": ..., "optimizer": {...}, "trainer": {...}}
// Every file is written to a temporary name and renamed. state.json is written last and is the commit
// point: it names the tensor files it belongs to, so a crash at any moment leaves either the previous
// complete checkpoint or the new one; files of older steps are deleted only after the commit.
// File names read from state.json are confined to the checkpoint directory: only plain names of the form
// model-<step>.safetensors / optimizer-<step>.safetensors are accepted (parse_checkpoint_state), and
// rotation deletes only such names, so a crafted state.json can neither read nor delete files elsewhere.
// The "trainer" object is opaque here (the Trainer stores epoch/batch position, RNG states, running
// metrics and best-model tracking in it).
#pragma once

#include "engine/random.hpp"
#include "nn/module.hpp"
#include "train/optimizer.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace qforge::train {

// The parsed and validated state.json of a checkpoint in `dir`.
struct CheckpointState {
  int64_t step = 0;
  std::string model_file, optimizer_file;  // plain file names inside `dir`
  nlohmann::json optimizer;                // Optimizer::state_json()
  nlohmann::json trainer;                  // the Trainer's state (an object)
};

// Pure: parses `json_text` (the content of dir/state.json) and validates its fields. InputError naming
// the file for malformed JSON, a wrong format/version, a negative step, or a file name that is not a
// plain "model-<step>.safetensors" / "optimizer-<step>.safetensors" name (absolute paths, "..", other
// names). Suitable for fuzzing: it touches no file.
CheckpointState parse_checkpoint_state(const std::string& json_text, const std::filesystem::path& dir);

// True when `name` is a file name save_checkpoint writes for `prefix` ("model" or "optimizer").
bool is_checkpoint_file_name(const std::string& name, const std::string& prefix);

void save_checkpoint(const std::filesystem::path& dir, int64_t step, const nn::Module& model,
                     const Optimizer& optimizer, const nlohmann::json& trainer_state);

bool has_checkpoint(const std::filesystem::path& dir);

// The trainer state of the checkpoint in `dir` without loading any tensor (e.g. its stored configuration).
nlohmann::json read_checkpoint_trainer_state(const std::filesystem::path& dir);

// Loads weights into `model`, state into `optimizer`; returns the trainer state. Missing or inconsistent
// files throw InputError naming the file.
nlohmann::json load_checkpoint(const std::filesystem::path& dir, nn::Module& model, Optimizer& optimizer);

// Writes `text` to `path` atomically (temporary file in the same directory, then rename).
void atomic_write_text(const std::filesystem::path& path, const std::string& text);

// Generator state as JSON (the spare normal's bits are kept exactly).
nlohmann::json generator_to_json(const Generator& g);
void generator_from_json(Generator& g, const nlohmann::json& j);

}  // namespace qforge::train
