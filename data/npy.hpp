// numpy's array files: `.npy` (one array) and `.npz` (a zip archive of `.npy` entries), the format numpy
// users keep their data and model inputs in (np.save / np.savez / np.savez_compressed).
//
// .npy (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html): the magic "\x93NUMPY",
// a major and minor version byte (1.0: u16 header length; 2.0 and 3.0: u32; 3.0's header is UTF-8), then
// the header — a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } padded
// with spaces and a newline — then the raw elements. Read here: the descriptors b1, i1, u1, i2, u2, i4,
// u4, i8, u8, f2, f4, f8 in either byte order ('<', '>', '|', '='), any number of dimensions (0-d
// included), C order or Fortran order (fortran_order=True is transposed into row-major on read). Engine
// dtypes (engine/dtype.hpp) have no 64-bit integers, so — like engine/safetensors.hpp — i8/u4/u8 become i32
// (a value outside the i32 range is an error), u2 becomes i32, f2 becomes f32; the stored descriptor is
// kept in NpyArray::descr. Structured, string, object and complex arrays are refused.
//
// .npz: a zip archive whose entries are NAME.npy (np.savez stores them, np.savez_compressed deflates
// them). Read here: stored (method 0) and deflated (method 8, raw inflate via zlib) entries, zip64 sizes
// and offsets (numpy always writes zip64 extra fields in the local headers), the central directory as the
// authority checked against every local header (name, method, CRC-32 and sizes), the CRC-32 of every
// decompressed entry. Refused: encrypted entries, other compression methods, multi-disk archives,
// overlapping or out-of-file entries, duplicate names, entries that are not .npy files (directories are
// skipped).
//
// Every size in a file is checked with overflow-safe arithmetic against the file and the limits below
// before anything is allocated; a deflated entry may not claim more than deflate can produce from its
// compressed bytes (Note [inflate bound]). Every problem is an InputError naming the file, the array
// (entry) where there is one, and the reason.
#pragma once

#include "engine/tensor.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace qforge::data {

// Limits of the readers (numpy's own header limit is 10000 bytes; the data limits are io_util.hpp's).
inline constexpr size_t kMaxNpyHeaderBytes = size_t{1} << 16;
inline constexpr int kMaxNpyDims = 32;
inline constexpr size_t kMaxNpzEntries = size_t{1} << 16;

struct NpyArray {
  Tensor tensor;      // contiguous, row-major, engine dtype (see top of file)
  std::string descr;  // the stored numpy descriptor, e.g. "<f4", ">i8", "|u1"
  bool fortran_order = false;
};

using NpyArrays = std::map<std::string, NpyArray>;  // sorted by name

// A whole input file: InputError naming it when it is missing, not a regular file (a directory, FIFO or
// device is refused, never read), unreadable, or larger than `max_bytes`.
std::vector<uint8_t> read_regular_file(const std::filesystem::path& path, size_t max_bytes);

// One .npy file image. `source` names it in errors ("x.npy", or "data.npz: array 'input'").
NpyArray parse_npy(const void* data, size_t size, const std::string& source);
NpyArray read_npy(const std::filesystem::path& path);

// One .npz file image: entry "NAME.npy" becomes array NAME.
NpyArrays parse_npz(const void* data, size_t size, const std::string& source);
NpyArrays read_npz(const std::filesystem::path& path);

}  // namespace qforge::data
