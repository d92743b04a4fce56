// Small file helpers shared by the data readers (not part of the public API).
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace qforge::data {

// Whole file, decompressed if it is gzip (raw files pass through). Throws InputError naming the file when
// it is missing, unreadable, or a truncated/corrupt gzip stream.
std::vector<uint8_t> read_file_maybe_gzip(const std::filesystem::path& path);

}  // namespace qforge::data
