// numpy .npy reader (npy.hpp): magic and version, the header dict literal, the descriptor, then the
// elements converted to an engine dtype. The .npz container is in npz.cpp.
#include "data/npy.hpp"

#include "data/io_util.hpp"
#include "engine/error.hpp"
#include "engine/half.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string_view>

namespace qforge::data {

namespace {

// Largest dimension and element count accepted (2^40: far above any in-memory array).
constexpr uint64_t kMaxNpyElements = uint64_t{1} << 40;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw InputError(fmt::format("{}: {}", source, what));
}

struct Header {
  std::string descr;
  bool fortran_order = false;
  Shape shape;
};

// The header is a Python dict literal with exactly the keys 'descr' (a string), 'fortran_order' (True or
// False) and 'shape' (a tuple of non-negative integers), as numpy's write_array produces; anything else
// (a list descriptor = a structured dtype, unknown or repeated keys, trailing text) is refused.
class HeaderParser {
public:
  HeaderParser(std::string_view text, const std::string& source) : s_(text), src_(source) {}

  Header parse() {
    Header h;
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    expect('{');
    for (;;) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = string_literal();
      expect(':');
      skip_ws();
      auto once = [&](bool& seen) {
        if (seen) bad(fmt::format("key '{}' appears twice", key));
        seen = true;
      };
      if (key == "descr") {
        once(seen_descr);
        if (peek() == '[') bad("a structured dtype (a list 'descr') is not supported; save plain arrays");
        h.descr = string_literal();
      } else if (key == "fortran_order") {
        once(seen_fortran);
        h.fortran_order = boolean_literal();
      } else if (key == "shape") {
        once(seen_shape);
        h.shape = shape_tuple();
      } else {
        bad(fmt::format("unexpected key '{}' (expected descr, fortran_order, shape)", key));
      }
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != '}') bad("expected ',' or '}'");
    }
    ++i_;
    for (; i_ < s_.size(); ++i_)
      if (!is_space(s_[i_])) bad("text after the closing '}'");
    if (!seen_descr || !seen_fortran || !seen_shape)
      bad(fmt::format("missing key '{}'", !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape"));
    return h;
  }

private:
  static bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && is_space(s_[i_])) ++i_;
  }
  [[noreturn]] void bad(const std::string& what) const {
    fail(src_, fmt::format("malformed .npy header at character {}: {}", i_, what));
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) bad(fmt::format("expected '{}'", c));
    ++i_;
  }
  std::string string_literal() {
    skip_ws();
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string");
    const size_t start = ++i_;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') bad("escapes in header strings are not supported");
      ++i_;
    }
    if (i_ >= s_.size()) bad("unterminated string");
    return std::string(s_.substr(start, i_++ - start));
  }
  bool boolean_literal() {
    if (s_.substr(i_, 4) == "True") return i_ += 4, true;
    if (s_.substr(i_, 5) == "False") return i_ += 5, false;
    bad("expected True or False");
  }
  int64_t integer() {
    skip_ws();
    if (peek() < '0' || peek() > '9') bad("expected a non-negative integer dimension");
    uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + static_cast<uint64_t>(peek() - '0');
      if (v > kMaxNpyElements) bad(fmt::format("a dimension larger than {}", kMaxNpyElements));
      ++i_;
    }
    if (peek() == 'L') ++i_;  // Python 2 long literal
    return static_cast<int64_t>(v);
  }
  Shape shape_tuple() {
    expect('(');
    Shape shape;
    for (;;) {
      skip_ws();
      if (peek() == ')') break;
      if (static_cast<int>(shape.size()) >= kMaxNpyDims) bad(fmt::format("more than {} dimensions", kMaxNpyDims));
      shape.push_back(integer());
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != ')') bad("expected ',' or ')' in the shape");
    }
    ++i_;
    return shape;
  }

  std::string_view s_;
  const std::string& src_;
  size_t i_ = 0;
};

// A numpy descriptor: byte order, kind, item size.
struct Descr {
  bool big_endian = false;
  char kind = 0;  // 'b', 'i', 'u', 'f'
  int size = 0;
  DType dtype = DType::f32;
};

Descr parse_descr(const std::string& d, const std::string& source) {
  auto unsupported = [&]() -> Descr {
    fail(source, fmt::format("unsupported dtype '{}' (expected bool, int8-64, uint8-64, float16/32/64)", d));
  };
  if (d.size() != 3) return unsupported();
  Descr r;
  r.kind = d[1];
  r.size = d[2] - '0';
  const char order = d[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') return unsupported();
  if (r.size > 1 && order == '|') return unsupported();  // byte order "not applicable" only for one-byte types
  if (r.size > 1 && order == '=')
    fail(source, fmt::format("dtype '{}': native byte order '=' does not say which order the file has", d));
  r.big_endian = order == '>';
  switch (r.kind) {
    case 'b':
      if (r.size != 1) return unsupported();
      r.dtype = DType::boolean;
      break;
    case 'i':
      if (r.size == 1) r.dtype = DType::i8;
      else if (r.size == 2) r.dtype = DType::i16;
      else if (r.size == 4 || r.size == 8) r.dtype = DType::i32;
      else return unsupported();
      break;
    case 'u':
      if (r.size == 1) r.dtype = DType::u8;
      else if (r.size == 2 || r.size == 4 || r.size == 8) r.dtype = DType::i32;
      else return unsupported();
      break;
    case 'f':
      if (r.size == 2 || r.size == 4) r.dtype = DType::f32;
      else if (r.size == 8) r.dtype = DType::f64;
      else return unsupported();
      break;
    default:
      return unsupported();
  }
  return r;
}

// One element's bytes as an unsigned integer in the host's order.
uint64_t load_bits(const uint8_t* p, int size, bool big_endian) {
  uint64_t v = 0;
  if (big_endian) {
    for (int k = 0; k < size; ++k) v = (v << 8) | p[k];
  } else {
    for (int k = size - 1; k >= 0; --k) v = (v << 8) | p[k];
  }
  return v;
}

// Converts n elements of descriptor `d` at `src` into `t` (contiguous, dtype d.dtype).
void convert(const Descr& d, const uint8_t* src, int64_t n, Tensor& t, const std::string& source) {
  const bool same_order = d.size == 1 || (d.big_endian == (std::endian::native == std::endian::big));
  if (same_order && dtype_size(d.dtype) == static_cast<size_t>(d.size) && d.kind != 'b' &&
      !(d.kind == 'u' && d.size > 1)) {
    if (n > 0) std::memcpy(t.raw_data(), src, static_cast<size_t>(n) * static_cast<size_t>(d.size));
    return;
  }
  for (int64_t k = 0; k < n; ++k) {
    const uint64_t bits = load_bits(src + k * d.size, d.size, d.big_endian);
    switch (d.dtype) {
      case DType::boolean: t.data<bool>()[k] = bits != 0; break;
      case DType::i8: t.data<int8_t>()[k] = static_cast<int8_t>(bits); break;
      case DType::u8: t.data<uint8_t>()[k] = static_cast<uint8_t>(bits); break;
      case DType::i16: t.data<int16_t>()[k] = static_cast<int16_t>(bits); break;
      case DType::f32:
        if (d.size == 2) t.data<float>()[k] = half_to_float(static_cast<uint16_t>(bits));
        else t.data<float>()[k] = std::bit_cast<float>(static_cast<uint32_t>(bits));
        break;
      case DType::f64: t.data<double>()[k] = std::bit_cast<double>(bits); break;
      case DType::i32: {
        int64_t v;
        if (d.kind == 'u') {
          if (bits > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
            fail(source, fmt::format("element {} = {} is outside the int32 range (qforge keeps integers as int32)", k, bits));
          v = static_cast<int64_t>(bits);
        } else if (d.size == 8) {
          v = std::bit_cast<int64_t>(bits);
        } else {
          v = static_cast<int32_t>(static_cast<uint32_t>(bits));
        }
        if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
          fail(source, fmt::format("element {} = {} is outside the int32 range (qforge keeps integers as int32)", k, v));
        t.data<int32_t>()[k] = static_cast<int32_t>(v);
        break;
      }
    }
  }
}

}  // namespace

NpyArray parse_npy(const void* data, size_t size, const std::string& source) {
  const auto* p = static_cast<const uint8_t*>(data);
  static constexpr uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(p, kMagic, 6) != 0) fail(source, "not a .npy file (no \\x93NUMPY magic)");
  const int major = p[6], minor = p[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    fail(source, fmt::format(".npy format version {}.{} is not supported (expected 1.0, 2.0 or 3.0)", major, minor));
  size_t prefix = major == 1 ? 10 : 12;
  if (size < prefix) fail(source, "truncated .npy header");
  const size_t header_len = major == 1 ? (size_t{p[8]} | size_t{p[9]} << 8)
                                       : (size_t{p[8]} | size_t{p[9]} << 8 | size_t{p[10]} << 16 | size_t{p[11]} << 24);
  if (header_len > kMaxNpyHeaderBytes)
    fail(source, fmt::format(".npy header of {} bytes is larger than the limit of {}", header_len, kMaxNpyHeaderBytes));
  if (header_len > size - prefix)
    fail(source, fmt::format("truncated .npy header: {} bytes declared, {} present", header_len, size - prefix));
  const std::string_view text(reinterpret_cast<const char*>(p + prefix), header_len);
  const Header h = HeaderParser(text, source).parse();
  const Descr d = parse_descr(h.descr, source);

  // The product of the non-zero dimensions is bounded too: a shape [0, 2^40, 2^40] holds no data, but its
  // row-major strides would overflow int64.
  uint64_t numel = 1, nonzero = 1;
  for (int64_t dim : h.shape) {
    const uint64_t d = static_cast<uint64_t>(std::max<int64_t>(dim, 1));
    if (nonzero > kMaxNpyElements / d)
      fail(source, fmt::format("shape {} has more than {} elements", shape_str(h.shape), kMaxNpyElements));
    nonzero *= d;
    numel *= static_cast<uint64_t>(dim);
  }
  const uint64_t bytes = numel * static_cast<uint64_t>(d.size);  // < 2^43: no overflow
  const size_t have = size - prefix - header_len;
  if (bytes > have)
    fail(source, fmt::format("truncated data: shape {} of dtype '{}' needs {} bytes, the file has {}", shape_str(h.shape),
                             h.descr, bytes, have));
  if (bytes < have)
    fail(source, fmt::format("{} bytes after the data of shape {} (dtype '{}'): not one .npy array", have - bytes,
                             shape_str(h.shape), h.descr));

  NpyArray out;
  out.descr = h.descr;
  out.fortran_order = h.fortran_order;
  const uint8_t* src = p + prefix + header_len;
  if (!h.fortran_order) {
    out.tensor = Tensor::uninitialized(h.shape, d.dtype);
    convert(d, src, static_cast<int64_t>(numel), out.tensor, source);
    return out;
  }
  // Fortran order: the data is the C-order array of the reversed shape; view it with column-major
  // strides and copy into row-major.
  Tensor col = Tensor::uninitialized({static_cast<int64_t>(numel)}, d.dtype);
  convert(d, src, static_cast<int64_t>(numel), col, source);
  Shape strides(h.shape.size());
  int64_t s = 1;
  for (size_t k = 0; k < h.shape.size(); ++k) {
    strides[k] = s;
    s *= std::max<int64_t>(h.shape[k], 1);
  }
  out.tensor = Tensor::make_view(col, h.shape, strides, 0).clone();
  return out;
}

NpyArray read_npy(const std::filesystem::path& path) {
  const std::vector<uint8_t> bytes = read_regular_file(path, kMaxDataFileBytes);
  return parse_npy(bytes.data(), bytes.size(), path.string());
}

}  // namespace qforge::data
