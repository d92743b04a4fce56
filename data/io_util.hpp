// Small file helpers shared by the data readers (not part of the public API).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

namespace qforge::data {

// Largest (decompressed) data file read: 16 GiB, far above CIFAR-10/MNIST; a gzip bomb stops here.
inline constexpr size_t kMaxDataFileBytes = size_t{1} << 34;

// Whole file, decompressed if it is gzip (raw files pass through). Throws InputError naming the file when
// it is missing, unreadable, a truncated/corrupt gzip stream, or larger than `max_bytes` decompressed.
std::vector<uint8_t> read_file_maybe_gzip(const std::filesystem::path& path, size_t max_bytes = kMaxDataFileBytes);

}  // namespace qforge::data
