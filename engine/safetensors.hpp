// Tensor files in the safetensors format (https://github.com/huggingface/safetensors), the format PyTorch
// users exchange state_dicts in, so weights move between qforge and PyTorch without conversion.
//
// File layout: an 8-byte little-endian u64 N, then N bytes of JSON header, then the raw data buffer.
// The header maps each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}
// (offsets relative to the start of the data buffer), plus an optional "__metadata__" string->string
// map. Data is little-endian, row-major, and the tensors must tile the buffer exactly (no holes, no
// overlaps) — the rules of the reference implementation, which we enforce on read.
//
// Reading converts to engine dtypes: F32, F16, BF16 -> f32; F64 -> f64; I64, I32 -> i32 (an I64 value
// outside the i32 range is an error); I16, I8, U8, BOOL as themselves. Writing stores f32 as F32, f64 as
// F64 and i32 as I64 (PyTorch's integer buffers, e.g. BatchNorm's num_batches_tracked, are int64).
//
// Every problem with a file (truncated, malformed JSON, a header that lies about sizes or offsets, an
// unsupported dtype, a missing/unexpected key, a shape mismatch) throws qforge::InputError naming the
// file and, where there is one, the tensor. Writes go to a temporary file in the same directory that is
// renamed over the target, so a crash never leaves a half-written file.
#pragma once

#include "engine/tensor.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace qforge {

using TensorMap = std::map<std::string, Tensor>;  // sorted by name, like the files we write
using Metadata = std::map<std::string, std::string>;

struct SafetensorsContents {
  TensorMap tensors;
  Metadata metadata;
  std::map<std::string, std::string> file_dtypes;  // name -> dtype as stored ("F16", "I64", ...)
};

// Parse a complete file image. `source` names the file in error messages.
SafetensorsContents parse_safetensors(const void* data, size_t size, const std::string& source);
SafetensorsContents read_safetensors(const std::filesystem::path& path);
TensorMap load_safetensors(const std::filesystem::path& path);  // tensors only

// The file image for `tensors` (any defined tensors; views are made contiguous).
std::vector<char> serialize_safetensors(const TensorMap& tensors, const Metadata& metadata = {});
// Atomic write (temporary file in the same directory + rename).
void save_safetensors(const std::filesystem::path& path, const TensorMap& tensors, const Metadata& metadata = {});

}  // namespace qforge
