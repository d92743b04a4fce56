// Internal to the encodings readers (encodings_io.cpp, encodings_io_2x.cpp): field access that throws
// InputError naming the file and the JSON path.
#pragma once

#include "engine/json_util.hpp"
#include "quant/blockwise.hpp"
#include "quant/encodings_io.hpp"

#include <cmath>
#include <limits>
#include <optional>

namespace qforge::quant::detail {

using nlohmann::json;

struct Reader {
  std::string source;
  [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
    throw InputError(fmt::format("encodings {}: {}: {}", source, path, msg));
  }
  const json& at(const json& j, const char* key, const std::string& path) const {
    if (!j.is_object() || !j.contains(key)) fail(path + "/" + key, "missing");
    return j[key];
  }
  double num(const json& j, const char* key, const std::string& path) const {
    const json& v = at(j, key, path);
    if (!v.is_number()) fail(path + "/" + key, fmt::format("expected a number, got {}", v.type_name()));
    return v.get<double>();
  }
  int bitwidth(const json& v, const std::string& path, bool is_float) const {
    if (!v.is_number_integer()) fail(path, "expected an integer bitwidth");
    if (v.is_number_unsigned() ? v.get<std::uint64_t>() > 64 : (v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > 64))
      fail(path, fmt::format("bitwidth {} is out of range", json_excerpt(v)));
    const int bw = static_cast<int>(v.get<std::int64_t>());
    try {
      check_bitwidth(bw, true, is_float, "encoding");
    } catch (const Error& e) {
      fail(path, e.what());
    }
    return bw;
  }
  // A scale a float32 holds (as a normal number) and an integer offset within ±2^bw (AIMET writes
  // offsets in [−(2^bw − 1), 0]; anything far outside is a corrupt file and would overflow integer casts).
  void check_scale_offset(double scale, double offset, int bw, const std::string& path) const {
    if (!(scale >= static_cast<double>(std::numeric_limits<float>::min())) ||
        !(scale <= static_cast<double>(std::numeric_limits<float>::max())))
      fail(path, fmt::format("scale {} is not a positive normal float32", scale));
    if (offset != std::round(offset) || std::fabs(offset) > std::ldexp(1.0, bw))
      fail(path, fmt::format("offset {} is not an integer within ±2^{}", offset, bw));
  }
  int64_t block_size(const json& e, const std::string& p) const {
    const json& v = at(e, "block_size", p);
    if (!v.is_number_integer() || v.get<std::int64_t>() <= 0 || v.get<std::int64_t>() > (std::int64_t{1} << 30))
      fail(p + "/block_size", fmt::format("expected a positive integer, got {}", json_excerpt(v)));
    return v.get<std::int64_t>();
  }
  // A list of numbers (`what` names it in errors).
  std::vector<double> numbers(const json& v, const std::string& p) const {
    if (!v.is_array() || v.empty()) fail(p, "expected a non-empty list of numbers");
    std::vector<double> out;
    out.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_number()) fail(fmt::format("{}/{}", p, i), fmt::format("expected a number, got {}", json_excerpt(v[i])));
      out.push_back(v[i].get<double>());
    }
    return out;
  }
  // LPBQ per-block integer scales: integers within [1, 2^(dbw - bw)] (Note [LPBQ]).
  std::vector<int32_t> multipliers(const json& v, const std::string& p, int bw, int dbw) const {
    if (!v.is_array() || v.empty()) fail(p, "expected a non-empty list of integers");
    const std::int64_t top = std::int64_t{1} << (dbw - bw);
    std::vector<int32_t> out;
    out.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      const json& m = v[i];
      const bool integral = m.is_number_integer() || (m.is_number_float() && m.get<double>() == std::floor(m.get<double>()));
      if (!integral) fail(fmt::format("{}/{}", p, i), fmt::format("expected an integer, got {}", json_excerpt(m)));
      const double d = m.get<double>();
      if (d < 1 || d > static_cast<double>(top))
        fail(fmt::format("{}/{}", p, i), fmt::format("LPBQ multiplier {} is outside [1, {}] (2^({} - {}))", json_excerpt(m),
                                                    top, dbw, bw));
      out.push_back(static_cast<int32_t>(d));
    }
    return out;
  }
  // LPBQ: per-channel scales and multipliers -> block encodings, with the block counts checked.
  std::vector<Encoding> lpbq_entry(const std::vector<double>& cs, const std::vector<int32_t>& mult, int64_t bsize,
                                   int bw, int dbw, const std::string& p, std::optional<BlockEntry>* block) const {
    if (mult.size() % cs.size() != 0)
      fail(p, fmt::format("mismatched block counts: {} per-block scales for {} channels (not a whole number of blocks "
                          "per channel)",
                          mult.size(), cs.size()));
    for (size_t i = 0; i < cs.size(); ++i) check_scale_offset(cs[i], 0, bw, fmt::format("{}/channel {}", p, i));
    BlockEntry b;
    b.spec.block_size = bsize;
    b.spec.decompressed_bw = dbw;
    b.lpbq.channel_scale = cs;
    b.lpbq.multiplier = mult;
    *block = b;
    return lpbq_block_encodings(b.lpbq, bw);
  }

  std::vector<Encoding> block_100(const json& e, const std::string& p, GridSpec g, bool lpbq,
                                  std::optional<BlockEntry>* block) const {
    const int64_t bs = block_size(e, p);
    const json& sym = at(e, "is_sym", p);
    if (!sym.is_boolean()) fail(p + "/is_sym", "expected a JSON boolean");
    if (!lpbq) {
      g.symmetric = sym.get<bool>();
      const auto sc = numbers(at(e, "scale", p), p + "/scale");
      const auto of = numbers(at(e, "offset", p), p + "/offset");
      if (sc.size() != of.size())
        fail(p, fmt::format("mismatched block counts: {} scales and {} offsets", sc.size(), of.size()));
      std::vector<Encoding> out;
      for (size_t i = 0; i < sc.size(); ++i) {
        check_scale_offset(sc[i], of[i], g.bitwidth, fmt::format("{}/{}", p, i));
        g.strict_symmetric = strict_of(g.symmetric, g.bitwidth, of[i]);
        out.push_back(encoding_from_scale_offset(sc[i], of[i], g));
      }
      BlockEntry b;
      b.spec.block_size = bs;
      *block = b;
      return out;
    }
    // LPBQ: bw is the decompressed width, compressed_bw the weights' (aimet-compat.md §3.3).
    if (!sym.get<bool>()) fail(p + "/is_sym", "LPBQ encodings are symmetric");
    const int dbw = g.bitwidth;
    const int bw = bitwidth(at(e, "compressed_bw", p), p + "/compressed_bw", false);
    if (bw >= dbw || bw > 8) fail(p + "/compressed_bw", fmt::format("{} must be at most 8 and below bw {}", bw, dbw));
    const auto cs = numbers(at(e, "scale", p), p + "/scale");
    const auto mult = multipliers(at(e, "per_block_int_scale", p), p + "/per_block_int_scale", bw, dbw);
    return lpbq_entry(cs, mult, bs, bw, dbw, p, block);
  }

  bool strict_of(bool sym, int bw, double offset) const {
    return sym && offset == -static_cast<double>((int64_t(1) << (bw - 1)) - 1);
  }

  Encoding from_061(const json& e, const std::string& p) const {
    const json& dt = at(e, "dtype", p);
    const bool is_float = dt.is_string() && dt.get<std::string>() == "float";
    if (!is_float && !(dt.is_string() && dt.get<std::string>() == "int")) fail(p + "/dtype", "expected \"int\" or \"float\"");
    GridSpec g;
    g.is_float = is_float;
    g.bitwidth = bitwidth(at(e, "bitwidth", p), p + "/bitwidth", is_float);
    if (is_float) return compute_encoding(0, 0, g);
    const json& sym = at(e, "is_symmetric", p);
    if (!sym.is_string() || (sym != "True" && sym != "False"))
      fail(p + "/is_symmetric", "expected the string \"True\" or \"False\"");
    g.symmetric = sym == "True";
    const double scale = num(e, "scale", p), offset = num(e, "offset", p);
    check_scale_offset(scale, offset, g.bitwidth, p);
    g.strict_symmetric = strict_of(g.symmetric, g.bitwidth, offset);
    Encoding enc = encoding_from_scale_offset(scale, offset, g);
    enc.min = num(e, "min", p);  // keep the file's exact min/max
    enc.max = num(e, "max", p);
    return enc;
  }

  // Block entries (PER_BLOCK, LPBQ) also fill *block.
  std::vector<Encoding> from_100(const json& e, const std::string& p, std::optional<BlockEntry>* block) const {
    const json& dt = at(e, "dtype", p);
    if (!dt.is_string() || (dt != "INT" && dt != "FLOAT")) fail(p + "/dtype", "expected \"INT\" or \"FLOAT\"");
    GridSpec g;
    g.is_float = dt == "FLOAT";
    g.bitwidth = bitwidth(at(e, "bw", p), p + "/bw", g.is_float);
    if (g.is_float) return {compute_encoding(0, 0, g)};
    const json& et = at(e, "enc_type", p);
    if (!et.is_string() || (et != "PER_TENSOR" && et != "PER_CHANNEL" && et != "PER_BLOCK" && et != "LPBQ"))
      fail(p + "/enc_type", "expected PER_TENSOR, PER_CHANNEL, PER_BLOCK or LPBQ (VECTOR is not supported)");
    if (et == "PER_BLOCK" || et == "LPBQ") return block_100(e, p, g, et == "LPBQ", block);
    const json& sym = at(e, "is_sym", p);
    if (!sym.is_boolean()) fail(p + "/is_sym", "expected a JSON boolean");
    g.symmetric = sym.get<bool>();
    const json& sc = at(e, "scale", p);
    const json& of = at(e, "offset", p);
    if (!sc.is_array() || !of.is_array() || sc.size() != of.size() || sc.empty())
      fail(p, "scale and offset must be non-empty lists of equal length");
    std::vector<Encoding> out;
    for (size_t i = 0; i < sc.size(); ++i) {
      if (!sc[i].is_number() || !of[i].is_number()) fail(fmt::format("{}/scale/{}", p, i), "expected numbers");
      const double s = sc[i].get<double>(), o = of[i].get<double>();
      check_scale_offset(s, o, g.bitwidth, fmt::format("{}/{}", p, i));
      g.strict_symmetric = strict_of(g.symmetric, g.bitwidth, o);
      out.push_back(encoding_from_scale_offset(s, o, g));
    }
    return out;
  }
};


// Schema 2.0.0 / 2.1.0 (encodings_io_2x.cpp).
json encodings_to_json_2x(const EncodingsFile& f, const std::string& version);
EncodingsFile encodings_from_json_2x(const json& j, const Reader& r, const std::string& version);

}  // namespace qforge::quant::detail
