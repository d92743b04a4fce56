// numpy .npz reader (npy.hpp): a zip archive of .npy entries. Only what numpy's savez and
// savez_compressed (and other zip writers) produce for such archives is read: one disk, stored or deflated
// entries, zip64 extra fields; everything is checked against the file's size before it is used.
#include "data/npy.hpp"

#include "data/io_util.hpp"
#include "engine/error.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

namespace qforge::data {

namespace fs = std::filesystem;

std::vector<uint8_t> read_regular_file(const fs::path& path, size_t max_bytes) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw InputError(fmt::format("{}: file does not exist", path.string()));
  if (!fs::is_regular_file(st))
    throw InputError(fmt::format("{}: not a regular file (a directory, FIFO or device is not read)", path.string()));
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) throw InputError(fmt::format("{}: cannot read its size", path.string()));
  if (size > max_bytes) throw InputError(fmt::format("{}: {} bytes is larger than the limit of {}", path.string(), size, max_bytes));
  std::vector<uint8_t> out(static_cast<size_t>(size));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open file", path.string()));
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
  if (static_cast<size_t>(in.gcount()) != out.size())
    throw InputError(fmt::format("{}: read error (the file changed while being read?)", path.string()));
  return out;
}

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;
constexpr uint32_t k32Max = 0xFFFFFFFFu;

// Note [inflate bound]: deflate's densest code (a length-258 match in 1 bit plus a 1-bit distance) yields
// at most 1032 output bytes per input byte, so a deflated entry whose declared size exceeds 1032 x its
// compressed size (+ a block header's slack) is a lie. Checking
// this before allocating bounds the output buffer by 1032 x the file size, whatever the header claims.
constexpr uint64_t kMaxDeflateRatio = 1032;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw InputError(fmt::format("{}: {}", source, what));
}

// Bounds-checked little-endian reads from the file image.
struct Bytes {
  const uint8_t* p;
  size_t size;
  const std::string& source;

  void need(uint64_t off, uint64_t n, const char* what) const {
    if (off > size || n > size - off)
      fail(source, fmt::format("truncated or corrupt zip: {} at offset {} ({} bytes) runs past the end of the {}-byte file",
                               what, off, n, size));
  }
  uint64_t le(uint64_t off, int n) const {
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | p[off + static_cast<uint64_t>(k)];
    return v;
  }
  uint16_t u16(uint64_t off) const { return static_cast<uint16_t>(le(off, 2)); }
  uint32_t u32(uint64_t off) const { return static_cast<uint32_t>(le(off, 4)); }
  uint64_t u64(uint64_t off) const { return le(off, 8); }
};

struct Entry {
  std::string name;
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0;
  uint64_t compressed = 0, uncompressed = 0, local_offset = 0;
  uint64_t data_begin = 0;  // after the local header
};

// Replaces the 32-bit fields that hold 0xFFFFFFFF by the zip64 extra field's 64-bit values, in the
// order the zip specification gives (uncompressed, compressed, local header offset).
void apply_zip64_extra(const Bytes& b, uint64_t extra, uint64_t extra_len, Entry& e, bool with_offset,
                       const std::string& who) {
  const bool need_u = e.uncompressed == k32Max, need_c = e.compressed == k32Max,
             need_o = with_offset && e.local_offset == k32Max;
  uint64_t k = 0;
  bool found = false;
  while (k + 4 <= extra_len) {
    const uint16_t id = b.u16(extra + k), len = b.u16(extra + k + 2);
    if (k + 4 + len > extra_len) fail(b.source, fmt::format("{}: an extra field runs past the header", who));
    if (id == 0x0001) {
      found = true;
      uint64_t f = extra + k + 4, end = f + len;
      auto next = [&](uint64_t& v) {
        if (f + 8 > end) fail(b.source, fmt::format("{}: zip64 extra field too short", who));
        v = b.u64(f);
        f += 8;
      };
      if (need_u) next(e.uncompressed);
      if (need_c) next(e.compressed);
      if (need_o) next(e.local_offset);
    }
    k += 4 + len;
  }
  if ((need_u || need_c || need_o) && !found)
    fail(b.source, fmt::format("{}: sizes of 0xFFFFFFFF without a zip64 extra field", who));
}

// The central directory: where it is and how many entries it has (EOCD, or the zip64 EOCD it points to).
struct Directory {
  uint64_t offset = 0, size = 0, entries = 0, end = 0;  // end: where the directory must stop
};

Directory find_directory(const Bytes& b) {
  if (b.size < 22) fail(b.source, "not a zip (.npz) file: too short for an end of central directory record");
  // The EOCD record is the last 22 bytes plus a comment of up to 65535 bytes; take the last signature
  // whose comment length reaches exactly the end of the file.
  uint64_t eocd = std::numeric_limits<uint64_t>::max();
  const uint64_t lowest = b.size >= 22 + 65535 ? b.size - 22 - 65535 : 0;
  for (uint64_t off = b.size - 22 + 1; off-- > lowest;) {
    if (b.u32(off) == kEndSig && off + 22 + b.u16(off + 20) == b.size) {
      eocd = off;
      break;
    }
  }
  if (eocd == std::numeric_limits<uint64_t>::max())
    fail(b.source, "not a zip (.npz) file: no end of central directory record");
  Directory d;
  const uint16_t disk = b.u16(eocd + 4), cd_disk = b.u16(eocd + 6);
  const uint16_t on_disk = b.u16(eocd + 8);
  d.entries = b.u16(eocd + 10);
  d.size = b.u32(eocd + 12);
  d.offset = b.u32(eocd + 16);
  d.end = eocd;
  if (disk != 0 || cd_disk != 0 || on_disk != d.entries) fail(b.source, "multi-disk zip archives are not supported");
  if (d.entries == 0xFFFF || d.size == k32Max || d.offset == k32Max) {
    if (eocd < 20 || b.u32(eocd - 20) != kZip64LocatorSig)
      fail(b.source, "zip64 archive without a zip64 end of central directory locator");
    const uint64_t z = b.u64(eocd - 20 + 8);
    if (b.u32(eocd - 20 + 4) != 0 || b.u32(eocd - 20 + 16) > 1) fail(b.source, "multi-disk zip archives are not supported");
    b.need(z, 56, "the zip64 end of central directory record");
    if (z + 56 > eocd - 20 || b.u32(z) != kZip64EndSig)
      fail(b.source, "corrupt zip: no zip64 end of central directory record where the locator points");
    if (b.u32(z + 16) != 0 || b.u32(z + 20) != 0 || b.u64(z + 24) != b.u64(z + 32))
      fail(b.source, "multi-disk zip archives are not supported");
    d.entries = b.u64(z + 32);
    d.size = b.u64(z + 40);
    d.offset = b.u64(z + 48);
    d.end = z;
  }
  if (d.offset > d.end || d.size > d.end - d.offset)
    fail(b.source, fmt::format("corrupt zip: the central directory (offset {}, {} bytes) is not inside the file",
                               d.offset, d.size));
  // Each central header has at least 46 bytes: the count is bounded by the directory's size.
  if (d.entries > d.size / 46 || d.entries > kMaxNpzEntries)
    fail(b.source, fmt::format("corrupt zip: {} entries do not fit a central directory of {} bytes (limit {} entries)",
                               d.entries, d.size, kMaxNpzEntries));
  return d;
}

std::vector<Entry> read_entries(const Bytes& b, const Directory& d) {
  std::vector<Entry> entries;
  uint64_t off = d.offset;
  const uint64_t dir_end = d.offset + d.size;
  for (uint64_t i = 0; i < d.entries; ++i) {
    if (off + 46 > dir_end || b.u32(off) != kCentralSig)
      fail(b.source, fmt::format("corrupt zip: central directory entry {} is missing or malformed", i));
    Entry e;
    e.flags = b.u16(off + 8);
    e.method = b.u16(off + 10);
    e.crc = b.u32(off + 16);
    e.compressed = b.u32(off + 20);
    e.uncompressed = b.u32(off + 24);
    const uint64_t name_len = b.u16(off + 28), extra_len = b.u16(off + 30), comment_len = b.u16(off + 32);
    e.local_offset = b.u32(off + 42);
    if (off + 46 + name_len + extra_len + comment_len > dir_end)
      fail(b.source, fmt::format("corrupt zip: central directory entry {} runs past the directory", i));
    e.name.assign(reinterpret_cast<const char*>(b.p + off + 46), name_len);
    const std::string who = fmt::format("zip entry '{}'", e.name);
    apply_zip64_extra(b, off + 46 + name_len, extra_len, e, true, who);
    if (b.u16(off + 34) != 0 && b.u16(off + 34) != 0xFFFF) fail(b.source, "multi-disk zip archives are not supported");
    entries.push_back(std::move(e));
    off += 46 + name_len + extra_len + comment_len;
  }
  return entries;
}

// Checks the local header against the central directory and finds where the entry's data starts.
void check_local_header(const Bytes& b, Entry& e, uint64_t data_limit, const std::string& who) {
  if (e.local_offset > data_limit || 30 > data_limit - e.local_offset || b.u32(e.local_offset) != kLocalSig)
    fail(b.source, fmt::format("{}: no local header at offset {}", who, e.local_offset));
  const uint64_t h = e.local_offset;
  const uint64_t name_len = b.u16(h + 26), extra_len = b.u16(h + 28);
  b.need(h + 30, name_len + extra_len, "a local header");
  if (std::string_view(reinterpret_cast<const char*>(b.p + h + 30), name_len) != e.name)
    fail(b.source, fmt::format("{}: the local header names a different file", who));
  if (((b.u16(h + 6) ^ e.flags) & 0x0041) != 0)
    fail(b.source, fmt::format("{}: local and central encryption flags differ", who));
  if (b.u16(h + 8) != e.method) fail(b.source, fmt::format("{}: local and central compression methods differ", who));
  Entry local;
  local.compressed = b.u32(h + 18);
  local.uncompressed = b.u32(h + 22);
  apply_zip64_extra(b, h + 30 + name_len, extra_len, local, false, who);
  if (!(e.flags & 0x0008)) {  // without a data descriptor the local header repeats CRC and sizes
    if (b.u32(h + 14) != e.crc) fail(b.source, fmt::format("{}: local and central CRC-32 differ", who));
    if (local.compressed != e.compressed || local.uncompressed != e.uncompressed)
      fail(b.source, fmt::format("{}: local sizes ({} / {}) differ from the central directory's ({} / {})", who,
                                 local.compressed, local.uncompressed, e.compressed, e.uncompressed));
  }
  e.data_begin = h + 30 + name_len + extra_len;
  if (e.data_begin > data_limit || e.compressed > data_limit - e.data_begin)
    fail(b.source, fmt::format("{}: {} compressed bytes at offset {} run past the entries' area (truncated file?)", who,
                               e.compressed, e.data_begin));
}

uint32_t crc32_of(const uint8_t* p, uint64_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<uint64_t>(n, uint64_t{1} << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

// Raw inflate of e.uncompressed bytes (Note [inflate bound] has been checked). The buffer has one spare
// byte, so a stream longer than its declared size shows itself by filling it.
std::vector<uint8_t> inflate_entry(const Bytes& b, const Entry& e, const std::string& who) {
  std::vector<uint8_t> out(static_cast<size_t>(e.uncompressed) + 1);
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw Error(fmt::format("{}: {}: zlib inflateInit2 failed", b.source, who));
  const uint8_t* in = b.p + e.data_begin;
  uint64_t in_left = e.compressed, out_done = 0;
  int ret = Z_OK;
  for (;;) {
    if (zs.avail_in == 0 && in_left > 0) {
      zs.next_in = const_cast<Bytef*>(in);
      zs.avail_in = static_cast<uInt>(std::min<uint64_t>(in_left, uint64_t{1} << 30));
      in += zs.avail_in;
      in_left -= zs.avail_in;
    }
    zs.next_out = out.data() + out_done;
    zs.avail_out = static_cast<uInt>(std::min<uint64_t>(out.size() - out_done, uint64_t{1} << 30));
    const uInt room = zs.avail_out;
    ret = inflate(&zs, Z_NO_FLUSH);
    out_done += room - zs.avail_out;
    if (ret != Z_OK || out_done > e.uncompressed) break;  // Z_OK: progress was made, go on
  }
  const std::string msg = zs.msg ? zs.msg : "";
  inflateEnd(&zs);
  if (out_done > e.uncompressed)
    fail(b.source, fmt::format("{}: the deflate stream holds more than the {} bytes the directory declares", who,
                               e.uncompressed));
  if (ret == Z_STREAM_END) {
    if (out_done != e.uncompressed)
      fail(b.source, fmt::format("{}: inflated to {} bytes, the directory says {}", who, out_done, e.uncompressed));
    out.pop_back();
    return out;
  }
  if (ret == Z_BUF_ERROR)  // no progress possible: the input ran out before the end of the stream
    fail(b.source, fmt::format("{}: truncated deflate data ({} of {} bytes)", who, out_done, e.uncompressed));
  fail(b.source, fmt::format("{}: corrupt deflate data ({})", who, msg.empty() ? "zlib error" : msg));
}

}  // namespace

NpyArrays parse_npz(const void* data, size_t size, const std::string& source) {
  const Bytes b{static_cast<const uint8_t*>(data), size, source};
  const Directory d = find_directory(b);
  std::vector<Entry> entries = read_entries(b, d);
  // Entries live before the central directory and must not overlap (a zip bomb's trick).
  for (Entry& e : entries) check_local_header(b, e, d.offset, fmt::format("zip entry '{}'", e.name));
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* c) { return a->local_offset < c->local_offset; });
  for (size_t k = 1; k < by_offset.size(); ++k)
    if (by_offset[k - 1]->data_begin + by_offset[k - 1]->compressed > by_offset[k]->local_offset)
      fail(source, fmt::format("corrupt zip: entries '{}' and '{}' overlap", by_offset[k - 1]->name, by_offset[k]->name));

  NpyArrays out;
  uint64_t total = 0;
  for (const Entry& e : entries) {
    if (!e.name.empty() && e.name.back() == '/' && e.uncompressed == 0) continue;  // a directory
    if (e.name.size() <= 4 || e.name.compare(e.name.size() - 4, 4, ".npy") != 0)
      fail(source, fmt::format("zip entry '{}' is not a .npy array (an .npz holds only NAME.npy entries)", e.name));
    const std::string name = e.name.substr(0, e.name.size() - 4);
    const std::string array_who = fmt::format("array '{}'", name);
    if (e.flags & 0x0041) fail(source, fmt::format("{}: encrypted zip entries are not supported", array_who));
    if (e.method != 0 && e.method != 8)
      fail(source, fmt::format("{}: zip compression method {} is not supported (only stored and deflated)", array_who,
                               e.method));
    if (out.count(name)) fail(source, fmt::format("{}: appears twice in the archive", array_who));
    if (e.method == 0 && e.compressed != e.uncompressed)
      fail(source, fmt::format("{}: a stored entry whose sizes differ ({} / {})", array_who, e.compressed, e.uncompressed));
    if (e.method == 8 && e.uncompressed > e.compressed * kMaxDeflateRatio + 64)
      fail(source, fmt::format("{}: declares {} bytes from {} deflated bytes, more than deflate can produce", array_who,
                               e.uncompressed, e.compressed));
    total += e.uncompressed;
    if (total > kMaxDataFileBytes)
      fail(source, fmt::format("the arrays hold more than {} bytes in all", kMaxDataFileBytes));
    const std::string array_source = fmt::format("{}: {}", source, array_who);
    if (e.method == 0) {
      if (crc32_of(b.p + e.data_begin, e.compressed) != e.crc)
        fail(source, fmt::format("{}: CRC-32 mismatch (corrupt file)", array_who));
      out.emplace(name, parse_npy(b.p + e.data_begin, static_cast<size_t>(e.compressed), array_source));
    } else {
      const std::vector<uint8_t> raw = inflate_entry(b, e, array_who);
      if (crc32_of(raw.data(), raw.size()) != e.crc) fail(source, fmt::format("{}: CRC-32 mismatch (corrupt file)", array_who));
      out.emplace(name, parse_npy(raw.data(), raw.size(), array_source));
    }
  }
  return out;
}

NpyArrays read_npz(const fs::path& path) {
  const std::vector<uint8_t> bytes = read_regular_file(path, kMaxDataFileBytes);
  return parse_npz(bytes.data(), bytes.size(), path.string());
}

}  // namespace qforge::data
