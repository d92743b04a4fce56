#include "data/io_util.hpp"

#include "engine/error.hpp"

#include <zlib.h>

#include <cerrno>
#include <cstring>

namespace qforge::data {

std::vector<uint8_t> read_file_maybe_gzip(const std::filesystem::path& path, size_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw InputError(fmt::format("data file {} does not exist", path.string()));
  if (std::filesystem::is_directory(path, ec))
    throw InputError(fmt::format("data file {} is a directory", path.string()));
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr)
    throw InputError(fmt::format("cannot open data file {}: {}", path.string(), std::strerror(errno)));
  std::vector<uint8_t> out;
  std::vector<uint8_t> chunk(1 << 20);
  for (;;) {
    const int n = gzread(f, chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n < 0) {
      int errnum = 0;
      const std::string msg = gzerror(f, &errnum);
      gzclose(f);
      throw InputError(fmt::format("cannot read data file {}: {} (corrupt or truncated gzip?)", path.string(), msg));
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      gzclose(f);
      throw InputError(fmt::format("data file {} is larger than {} bytes{}", path.string(), max_bytes,
                                   " (decompressed; a corrupt or hostile gzip stream?)"));
    }
    out.insert(out.end(), chunk.data(), chunk.data() + n);
  }
  // gzread reports a truncated gzip stream as end of file with Z_BUF_ERROR set.
  int errnum = 0;
  const char* msg = gzerror(f, &errnum);
  const std::string m = msg ? msg : "";
  gzclose(f);
  if (errnum != Z_OK && errnum != Z_STREAM_END)
    throw InputError(fmt::format("cannot read data file {}: {} (corrupt or truncated gzip)", path.string(), m));
  return out;
}

}  // namespace qforge::data
