#include <doctest/doctest.h>

#include "engine/random.hpp"
#include "nn/safetensors.hpp"
#include "tests/support/fixtures.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace qforge;
namespace fs = std::filesystem;

namespace {

// A file image from a header string and raw data bytes.
std::vector<char> make_file(const std::string& header, const std::vector<char>& data) {
  std::vector<char> out(8 + header.size() + data.size());
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::copy(header.begin(), header.end(), out.begin() + 8);
  std::copy(data.begin(), data.end(), out.begin() + 8 + long(header.size()));
  return out;
}

std::vector<char> f32_bytes(const std::vector<float>& v) {
  std::vector<char> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// The message of the InputError thrown by parsing `img`, or "" if it parsed.
std::string parse_error(const std::vector<char>& img, const std::string& source = "t.safetensors") {
  try {
    nn::parse_safetensors(img.data(), img.size(), source);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), size_t(ca.numel()) * dtype_size(ca.dtype())) == 0;
}

using testing::temp_dir;

nn::TensorMap sample_map() {
  Generator g(7);
  nn::TensorMap m;
  m["layer.weight"] = Tensor::randn({3, 4}, g);
  m["layer.bias"] = Tensor::randn({3}, g);
  m["f64"] = Tensor::randn({2, 2}, g, DType::f64);
  m["bn.num_batches_tracked"] = Tensor::full({}, 12345, DType::i32);
  Tensor mask = Tensor::empty({3}, DType::boolean);
  mask.set({0}, 1);
  mask.set({2}, 1);
  m["mask"] = mask;
  m["empty"] = Tensor::empty({0, 5});
  // A non-contiguous view is written in logical order.
  m["view"] = Tensor::randn({4, 3}, g).transpose(0, 1);
  return m;
}

}  // namespace

TEST_CASE("safetensors: write then read round-trips every tensor bit-exactly, with metadata") {
  const fs::path dir = temp_dir("st-roundtrip");
  const fs::path p = dir / "w.safetensors";
  const nn::TensorMap m = sample_map();
  nn::save_safetensors(p, m, {{"format", "pt"}, {"note", "hello"}});
  const auto back = nn::read_safetensors(p);
  REQUIRE(back.tensors.size() == m.size());
  for (const auto& [k, v] : m) {
    INFO(k);
    REQUIRE(back.tensors.count(k) == 1);
    CHECK(bit_equal(back.tensors.at(k), v.contiguous()));
  }
  CHECK(back.metadata.at("format") == "pt");
  CHECK(back.metadata.at("note") == "hello");
  CHECK(back.file_dtypes.at("bn.num_batches_tracked") == "I64");  // PyTorch's integer buffers are int64
  CHECK(back.file_dtypes.at("layer.weight") == "F32");
  // The data buffer starts 8-byte aligned, and no temporary file is left behind.
  std::ifstream in(p, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  CHECK(n % 8 == 0);
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  CHECK(files == 1);
  // Writing again replaces the file atomically with the new contents.
  nn::save_safetensors(p, {{"only", Tensor::ones({2})}});
  CHECK(nn::load_safetensors(p).size() == 1);
  fs::remove_all(dir);
}

TEST_CASE("safetensors: serialize is deterministic and parse(serialize(x)) == x") {
  const nn::TensorMap m = sample_map();
  const auto a = nn::serialize_safetensors(m), b = nn::serialize_safetensors(m);
  CHECK(a == b);
  const auto back = nn::parse_safetensors(a.data(), a.size(), "mem");
  for (const auto& [k, v] : m) CHECK(bit_equal(back.tensors.at(k), v.contiguous()));
}

TEST_CASE("safetensors: F16 and BF16 widen to f32 exactly, I64 narrows to i32") {
  // f16: 1.0 = 0x3c00, -2.5 = 0xc100, 65504 = 0x7bff, smallest subnormal 2^-24 = 0x0001, 0x0200 = 2^-15.
  const std::vector<uint16_t> h = {0x3c00, 0xc100, 0x7bff, 0x0001, 0x0200, 0x8000};
  // bf16: 1.0 = 0x3f80, -3.0 = 0xc040, 2^-126 * 1.5 = 0x00c0 (normal) and a subnormal 0x0001.
  const std::vector<uint16_t> bf = {0x3f80, 0xc040, 0x00c0, 0x0001};
  const std::vector<int64_t> iv = {-5, 0, 2147483647, -2147483648LL};
  std::vector<char> data(h.size() * 2 + bf.size() * 2 + iv.size() * 8);
  std::memcpy(data.data(), h.data(), h.size() * 2);
  std::memcpy(data.data() + 12, bf.data(), bf.size() * 2);
  std::memcpy(data.data() + 20, iv.data(), iv.size() * 8);
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[12,20]},)"
      R"("i":{"dtype":"I64","shape":[4],"data_offsets":[20,52]}})";
  const auto img = make_file(header, data);
  const auto c = nn::parse_safetensors(img.data(), img.size(), "mem");
  const auto hv = c.tensors.at("h").to_vector<float>();
  CHECK(c.tensors.at("h").shape() == Shape{2, 3});
  CHECK(hv == std::vector<float>{1.0f, -2.5f, 65504.0f, std::ldexp(1.0f, -24), std::ldexp(1.0f, -15), -0.0f});
  CHECK(std::signbit(hv[5]));
  const auto bv = c.tensors.at("b").to_vector<float>();
  CHECK(bv == std::vector<float>{1.0f, -3.0f, 1.5f * std::ldexp(1.0f, -126), std::ldexp(1.0f, -133)});
  CHECK(c.tensors.at("i").dtype() == DType::i32);
  CHECK(c.tensors.at("i").to_vector<int32_t>() == std::vector<int32_t>{-5, 0, 2147483647, -2147483647 - 1});
}

TEST_CASE("safetensors: an I64 value outside the i32 range is rejected naming the tensor") {
  const int64_t big = int64_t(1) << 40;
  std::vector<char> data(8);
  std::memcpy(data.data(), &big, 8);
  const auto msg = parse_error(make_file(R"({"steps":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})", data));
  CHECK(msg.find("t.safetensors") != std::string::npos);
  CHECK(msg.find("steps") != std::string::npos);
}

TEST_CASE("safetensors: headers that lie are rejected with the file and tensor named") {
  const auto data = f32_bytes({1, 2, 3, 4});  // 16 bytes
  struct Case {
    const char* what;
    std::string header;
    std::string needle;  // must appear in the message
  };
  const std::vector<Case> cases = {
      {"out of bounds", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}})", "'w'"},
      {"size vs shape", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", "'w'"},
      {"overlap", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", "'b'"},
      {"hole", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", "'b'"},
      {"not covering", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "cover"},
      {"reversed", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}})", "'w'"},
      {"negative", R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", "'w'"},
      {"huge shape", R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})", "'w'"},
      {"unsupported dtype", R"({"w":{"dtype":"F8_E4M3","shape":[16],"data_offsets":[0,16]}})", "F8_E4M3"},
      {"bad dtype type", R"({"w":{"dtype":4,"shape":[4],"data_offsets":[0,16]}})", "'w'"},
      {"missing offsets", R"({"w":{"dtype":"F32","shape":[4]}})", "data_offsets"},
      {"entry not object", R"({"w":[1,2]})", "'w'"},
      {"not an object", R"([1,2,3])", "object"},
      {"bad json", R"({"w":{"dtype":"F32",)", "JSON"},
      {"bad metadata", R"({"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", "__metadata__"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const std::string msg = parse_error(make_file(c.header, data), "model.safetensors");
    REQUIRE(!msg.empty());
    CHECK(msg.find("model.safetensors") != std::string::npos);
    CHECK_MESSAGE(msg.find(c.needle) != std::string::npos, msg);
  }
  // A header length larger than the file.
  auto img = make_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data);
  const uint64_t lie = 1u << 20;
  std::memcpy(img.data(), &lie, 8);
  CHECK(parse_error(img).find("header length") != std::string::npos);
  CHECK(parse_error(std::vector<char>(5, 0)).find("too short") != std::string::npos);
}

TEST_CASE("safetensors: every truncation of a valid file is rejected, and byte flips never crash") {
  const auto img = nn::serialize_safetensors(sample_map(), {{"k", "v"}});
  for (size_t len = 0; len < img.size(); ++len) {
    INFO("length " << len);
    std::vector<char> cut(img.begin(), img.begin() + long(len));
    CHECK_THROWS_AS(nn::parse_safetensors(cut.data(), cut.size(), "cut"), InputError);
  }
  // Flipping bytes anywhere: either the file still parses (data bytes) or it throws InputError.
  Generator g(99);
  int parsed = 0, rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<char> bad = img;
    const int flips = 1 + int(g.below(3));
    for (int f = 0; f < flips; ++f) bad[g.below(bad.size())] ^= char(1 + g.below(255));
    try {
      nn::parse_safetensors(bad.data(), bad.size(), "fuzz");
      ++parsed;
    } catch (const InputError&) {
      ++rejected;
    }
  }
  CHECK(parsed > 0);
  CHECK(rejected > 0);
}

TEST_CASE("safetensors: reading a missing file is an InputError naming it") {
  try {
    nn::read_safetensors("/nonexistent/dir/w.safetensors");
    FAIL("no throw");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("/nonexistent/dir/w.safetensors") != std::string::npos);
  }
  CHECK_THROWS_AS(nn::save_safetensors("/nonexistent/dir/w.safetensors", sample_map()), InputError);
}
