// Whole-file I/O shared by every library: files written by qforge are written to a temporary name in
// the same directory and renamed into place, so a crash or an error never leaves a half-written file.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace qforge {

// Writes `bytes` to `path` atomically (temp file + fsync-free rename). Creates no directories.
// Throws InputError naming the path when it cannot be created (missing directory, no permission), Error
// on a failed write; the temporary file is removed.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// Reads a whole file; InputError naming the path when it cannot be read.
std::string read_file(const std::filesystem::path& path);

}  // namespace qforge
