// Module state_dicts in safetensors files (the format itself: engine/safetensors.hpp), the way PyTorch users
// exchange weights, so they move between qforge and PyTorch without conversion.
#pragma once

#include "engine/safetensors.hpp"
#include "nn/module.hpp"

#include <filesystem>

namespace qforge::nn {

// The format's names, also spelled nn:: (they lived here before the format moved down to engine/).
using qforge::Metadata;
using qforge::TensorMap;
using qforge::SafetensorsContents;
using qforge::load_safetensors;
using qforge::parse_safetensors;
using qforge::read_safetensors;
using qforge::save_safetensors;
using qforge::serialize_safetensors;

// ---- Module state_dicts ------------------------------------------------------------------------
// save: the module's state_dict (parameters and buffers under their dotted names).
void save_weights(const Module& module, const std::filesystem::path& path, const Metadata& metadata = {});
// load: copies every tensor into the module's parameter/buffer of the same name (converting dtype).
// strict: a key in the module missing from the file, or a file key the module does not have, is an
// error; non-strict ignores both (and returns them). A shape mismatch is always an error. Errors are
// InputErrors naming the file and the tensor. Integer buffers (i32) are written as I64, like PyTorch.
LoadResult load_weights(Module& module, const std::filesystem::path& path, bool strict = true);

}  // namespace qforge::nn
