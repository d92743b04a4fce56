// safetensors reading/writing. See safetensors.hpp for the format and the validation rules.
#include "engine/safetensors.hpp"

#include "engine/file_io.hpp"
#include "engine/half.hpp"
#include "engine/json_util.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <system_error>
#include <unistd.h>

namespace qforge {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

static_assert(std::endian::native == std::endian::little, "qforge assumes a little-endian host");

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit

template <class... Args>
[[noreturn]] void fail(const std::string& source, fmt::format_string<Args...> f, Args&&... args) {
  throw InputError(fmt::format("safetensors {}: {}", source, fmt::format(f, std::forward<Args>(args)...)));
}

struct FileDType {
  const char* name;
  size_t size;     // bytes per element in the file
  DType engine;    // what we convert to
};

// Supported dtypes (the file's names). F16/BF16 widen to f32, I64 narrows (checked) to i32.
constexpr FileDType kFileDTypes[] = {
    {"F32", 4, DType::f32}, {"F16", 2, DType::f32}, {"BF16", 2, DType::f32}, {"F64", 8, DType::f64},
    {"I64", 8, DType::i32}, {"I32", 4, DType::i32}, {"I16", 2, DType::i16}, {"I8", 1, DType::i8},
    {"U8", 1, DType::u8},   {"BOOL", 1, DType::boolean},
};

const FileDType* find_file_dtype(const std::string& name) {
  for (const auto& d : kFileDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

// Converts `n` elements of file dtype `fd` at `src` into `dst` (engine dtype fd.engine).
void convert_in(const FileDType& fd, const char* src, int64_t n, void* dst, const std::string& source,
                const std::string& tensor) {
  const std::string name = fd.name;
  if (name == "F16" || name == "BF16") {
    float* out = static_cast<float*>(dst);
    const bool bf = name == "BF16";
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = bf ? bf16_to_float(h) : half_to_float(h);
    }
  } else if (name == "I64") {
    int32_t* out = static_cast<int32_t*>(dst);
    for (int64_t i = 0; i < n; ++i) {
      int64_t v;
      std::memcpy(&v, src + 8 * i, 8);
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
        fail(source, "tensor '{}': I64 value {} at element {} does not fit the engine's i32", tensor, v, i);
      out[i] = static_cast<int32_t>(v);
    }
  } else if (name == "BOOL") {
    bool* out = static_cast<bool*>(dst);
    for (int64_t i = 0; i < n; ++i) {
      const auto b = static_cast<unsigned char>(src[i]);
      if (b > 1) fail(source, "tensor '{}': BOOL byte {} at element {} is not 0 or 1", tensor, unsigned(b), i);
      out[i] = b != 0;
    }
  } else {  // same representation
    if (n > 0) std::memcpy(dst, src, size_t(n) * fd.size);
  }
}

struct Entry {
  std::string name;
  const FileDType* dtype;
  Shape shape;
  uint64_t begin, end;
};

uint64_t get_u64(const json& j, const std::string& source, const std::string& tensor, const char* what) {
  if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0))
    fail(source, "tensor '{}': {} must be a non-negative integer, got {}", tensor, what, json_excerpt(j));
  return j.get<uint64_t>();
}

Entry parse_entry(const std::string& name, const json& j, uint64_t buffer_size, const std::string& source) {
  if (!j.is_object()) fail(source, "tensor '{}': header entry must be an object, got {}", name, json_excerpt(j));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!j.contains(key)) fail(source, "tensor '{}': header entry has no '{}'", name, key);
  Entry e;
  e.name = name;
  if (!j["dtype"].is_string()) fail(source, "tensor '{}': dtype must be a string", name);
  const std::string dt = j["dtype"].get<std::string>();
  e.dtype = find_file_dtype(dt);
  if (!e.dtype) fail(source, "tensor '{}': unsupported dtype '{}'", name, dt);
  const json& shape = j["shape"];
  if (!shape.is_array()) fail(source, "tensor '{}': shape must be an array", name);
  if (shape.size() > 16) fail(source, "tensor '{}': {} dimensions is too many", name, shape.size());
  // numel * element size, guarding against overflow (a lying header must not wrap around).
  uint64_t bytes = e.dtype->size;
  bool overflow = false;
  // The product of the non-zero dimensions too (at most 2^48): a shape [0, 2^40, 2^40] holds no data but
  // its strides, in bytes, would overflow int64.
  uint64_t nonzero = 1;
  for (const auto& d : shape) {
    const uint64_t v = get_u64(d, source, name, "a shape entry");
    if (v > uint64_t(std::numeric_limits<int64_t>::max())) overflow = true;
    e.shape.push_back(static_cast<int64_t>(std::min<uint64_t>(v, std::numeric_limits<int64_t>::max())));
    if (v != 0 && bytes > std::numeric_limits<uint64_t>::max() / v) overflow = true;
    else bytes *= v;
    if (v != 0) {
      const auto p = checked_mul(nonzero, v, uint64_t{1} << 48);
      if (!p) fail(source, "tensor '{}': shape {} has too many elements", name, json_excerpt(shape));
      nonzero = *p;
    }
  }
  const json& off = j["data_offsets"];
  if (!off.is_array() || off.size() != 2) fail(source, "tensor '{}': data_offsets must be [begin, end]", name);
  e.begin = get_u64(off[0], source, name, "data_offsets[0]");
  e.end = get_u64(off[1], source, name, "data_offsets[1]");
  if (e.begin > e.end) fail(source, "tensor '{}': data_offsets [{}, {}] are reversed", name, e.begin, e.end);
  if (e.end > buffer_size)
    fail(source, "tensor '{}': data_offsets [{}, {}] run past the {}-byte data buffer (file truncated?)", name,
         e.begin, e.end, buffer_size);
  if (overflow || bytes != e.end - e.begin)
    fail(source, "tensor '{}': shape {} of {} needs {} bytes but data_offsets [{}, {}] span {}", name,
         shape_str(e.shape), dt, overflow ? std::string("too many") : std::to_string(bytes), e.begin, e.end,
         e.end - e.begin);
  return e;
}

}  // namespace

SafetensorsContents parse_safetensors(const void* data, size_t size, const std::string& source) {
  const char* bytes = static_cast<const char*>(data);
  if (size < 8) fail(source, "file is {} bytes, too short for the 8-byte header length (truncated?)", size);
  uint64_t n;
  std::memcpy(&n, bytes, 8);
  if (n > kMaxHeaderBytes) fail(source, "header length {} exceeds the {}-byte limit (corrupt file?)", n, kMaxHeaderBytes);
  if (n > size - 8) fail(source, "header length {} runs past the end of the {}-byte file (truncated?)", n, size);
  json header;
  try {
    header = parse_json(std::string_view(bytes + 8, n), "header");
  } catch (const InputError& e) {
    fail(source, "{}", e.what());
  }
  if (!header.is_object()) fail(source, "header must be a JSON object, got {}", header.type_name());
  const uint64_t buffer_size = size - 8 - n;
  const char* buffer = bytes + 8 + n;

  SafetensorsContents out;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) fail(source, "__metadata__ must be an object of strings");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) fail(source, "__metadata__ entry '{}' is not a string", m.key());
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(it.key(), it.value(), buffer_size, source));
  }
  // The tensors must tile the data buffer: sorted by offset, each starts where the previous ended.
  std::vector<const Entry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(),
            [](const Entry* a, const Entry* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  uint64_t pos = 0;
  for (const Entry* e : order) {
    if (e->begin < pos) fail(source, "tensor '{}': data_offsets [{}, {}] overlap the previous tensor (ends at {})",
                             e->name, e->begin, e->end, pos);
    if (e->begin > pos) fail(source, "tensor '{}': data_offsets start at {} leaving a hole after byte {}", e->name,
                             e->begin, pos);
    pos = e->end;
  }
  if (pos != buffer_size)
    fail(source, "tensors cover {} bytes but the data buffer has {} (header lies about sizes?)", pos, buffer_size);

  for (const auto& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype->engine);
    convert_in(*e.dtype, buffer + e.begin, t.numel(), t.raw_data(), source, e.name);
    out.tensors[e.name] = std::move(t);
    out.file_dtypes[e.name] = e.dtype->name;
  }
  return out;
}

SafetensorsContents read_safetensors(const fs::path& path) {
  const std::string source = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("safetensors {}: cannot open file", source));
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) throw InputError(fmt::format("safetensors {}: cannot stat file: {}", source, ec.message()));
  std::vector<char> buf(size);
  if (size > 0 && !in.read(buf.data(), static_cast<std::streamsize>(size)))
    throw InputError(fmt::format("safetensors {}: read error", source));
  return parse_safetensors(buf.data(), buf.size(), source);
}

TensorMap load_safetensors(const fs::path& path) { return read_safetensors(path).tensors; }

std::vector<char> serialize_safetensors(const TensorMap& tensors, const Metadata& metadata) {
  // Header first (offsets in name order), then the data in the same order.
  json header = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  std::vector<Tensor> contiguous;
  std::vector<std::string> file_dtype;
  uint64_t offset = 0;
  for (const auto& [name, t0] : tensors) {
    QFORGE_CHECK(t0.defined(), "save_safetensors: tensor '{}' is undefined", name);
    Tensor t = t0.detach().contiguous();
    std::string dt;
    size_t esize;
    switch (t.dtype()) {
      case DType::f32: dt = "F32"; esize = 4; break;
      case DType::f64: dt = "F64"; esize = 8; break;
      case DType::i32: dt = "I64"; esize = 8; break;  // PyTorch integer buffers are int64
      case DType::i16: dt = "I16"; esize = 2; break;
      case DType::i8: dt = "I8"; esize = 1; break;
      case DType::u8: dt = "U8"; esize = 1; break;
      case DType::boolean: dt = "BOOL"; esize = 1; break;
      default: throw Error(fmt::format("save_safetensors: tensor '{}' has unsupported dtype", name));
    }
    const uint64_t nbytes = uint64_t(t.numel()) * esize;
    header[name] = {{"dtype", dt}, {"shape", t.shape()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous.push_back(t);
    file_dtype.push_back(dt);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // align the data buffer, as the reference writer does
  std::vector<char> out(8 + h.size() + offset);
  const uint64_t hn = h.size();
  std::memcpy(out.data(), &hn, 8);
  std::memcpy(out.data() + 8, h.data(), h.size());
  char* p = out.data() + 8 + h.size();
  for (size_t i = 0; i < contiguous.size(); ++i) {
    const Tensor& t = contiguous[i];
    const int64_t n = t.numel();
    if (file_dtype[i] == "I64") {
      const int32_t* src = t.data<int32_t>();
      for (int64_t k = 0; k < n; ++k) {
        const int64_t v = src[k];
        std::memcpy(p + 8 * k, &v, 8);
      }
      p += 8 * n;
    } else {
      const size_t nb = size_t(n) * dtype_size(t.dtype());
      if (nb) std::memcpy(p, t.raw_data(), nb);
      p += nb;
    }
  }
  return out;
}

void save_safetensors(const fs::path& path, const TensorMap& tensors, const Metadata& metadata) {
  const std::vector<char> bytes = serialize_safetensors(tensors, metadata);
  write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));
}

}  // namespace qforge
