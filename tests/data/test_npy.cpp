// numpy .npy / .npz readers against files numpy wrote (tools/gen_fixtures_npy.py -> tests/fixtures/npy/,
// with manifest.json holding each array's shape and values as numpy sees them), and hostile inputs.
#include "data/npy.hpp"
#include "tests/support/fixtures.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>

using namespace qforge;
using testing::error_of;
using namespace qforge::data;
namespace fs = std::filesystem;

namespace {

fs::path fixture(const std::string& name) { return testing::fixture_path("npy/" + name); }

std::vector<uint8_t> bytes_of(const std::string& name) {
  std::ifstream in(fixture(name), std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The array equals numpy's view of it in the manifest: shape, stored descriptor and every value.
void check_against_manifest(const NpyArray& a, const nlohmann::json& m, const std::string& key) {
  INFO(key);
  CHECK(a.tensor.shape() == m.at("shape").get<Shape>());
  CHECK(a.descr == m.at("descr").get<std::string>());
  CHECK(a.tensor.is_contiguous());
  const auto& vals = m.at("values");
  REQUIRE(static_cast<int64_t>(vals.size()) == a.tensor.numel());
  const std::vector<double> got = a.tensor.to_vector<double>();
  for (size_t i = 0; i < vals.size(); ++i) {
    const double want = vals[i].get<double>();
    if (a.tensor.dtype() == DType::f32) CHECK(got[i] == static_cast<double>(static_cast<float>(want)));
    else CHECK(got[i] == want);
  }
}

}  // namespace

TEST_CASE("npy: every fixture numpy wrote reads back with numpy's shape, dtype and values") {
  const nlohmann::json manifest = testing::load_fixture("npy/manifest.json");
  int npy_files = 0;
  for (const auto& [key, m] : manifest.items()) {
    if (key.find(':') != std::string::npos) continue;
    check_against_manifest(read_npy(fixture(key)), m, key);
    ++npy_files;
  }
  CHECK(npy_files >= 18);
}

TEST_CASE("npy: engine dtypes of the numpy descriptors (int64 -> i32, float16 -> f32, bool)") {
  CHECK(read_npy(fixture("i8.npy")).tensor.dtype() == DType::i32);
  CHECK(read_npy(fixture("u2_be.npy")).tensor.dtype() == DType::i32);
  CHECK(read_npy(fixture("f2.npy")).tensor.dtype() == DType::f32);
  CHECK(read_npy(fixture("f8_be.npy")).tensor.dtype() == DType::f64);
  CHECK(read_npy(fixture("u1.npy")).tensor.dtype() == DType::u8);
  CHECK(read_npy(fixture("i1.npy")).tensor.dtype() == DType::i8);
  CHECK(read_npy(fixture("b1.npy")).tensor.dtype() == DType::boolean);
  const NpyArray s = read_npy(fixture("scalar_0d.npy"));
  CHECK(s.tensor.dim() == 0);
  CHECK(s.tensor.item() == 3.25);
  const NpyArray f = read_npy(fixture("fortran_2x3x2.npy"));
  CHECK(f.fortran_order);
  CHECK(f.tensor.at({1, 2, 0}) == 10);  // numpy's a[1, 2, 0] of arange(12).reshape(2, 3, 2)
}

TEST_CASE("npz: stored, deflated and zip64-ended archives read every array like numpy") {
  const nlohmann::json manifest = testing::load_fixture("npy/manifest.json");
  for (const char* file : {"stored.npz", "deflated.npz"}) {
    const NpyArrays arrays = read_npz(fixture(file));
    int n = 0;
    for (const auto& [key, m] : manifest.items()) {
      if (key.rfind(std::string(file) + ":", 0) != 0) continue;
      const std::string name = key.substr(key.find(':') + 1);
      REQUIRE(arrays.count(name));
      check_against_manifest(arrays.at(name), m, key);
      ++n;
    }
    CHECK(n == static_cast<int>(arrays.size()));
  }
  const NpyArrays z = read_npz(fixture("zip64_end.npz"));
  REQUIRE(z.size() == 3);
  CHECK(z.at("big_be").tensor.at({99, 2}) == 299);
}

TEST_CASE("npy: unsupported dtypes and out-of-range int64 are InputErrors naming the file and the dtype") {
  CHECK(error_of([] { read_npy(fixture("bad_unicode.npy")); }).find("unsupported dtype '<U2'") != std::string::npos);
  CHECK(error_of([] { read_npy(fixture("bad_complex.npy")); }).find("'<c8'") != std::string::npos);
  CHECK(error_of([] { read_npy(fixture("bad_structured.npy")); }).find("structured dtype") != std::string::npos);
  const std::string e = error_of([] { read_npy(fixture("bad_i8_range.npy")); });
  CHECK(e.find("bad_i8_range.npy") != std::string::npos);
  CHECK(e.find("int32 range") != std::string::npos);
  // a ragged list is an object array (pickled): refused, naming the archive and the array
  const std::string r = error_of([] { read_npz(fixture("bad_ragged.npz")); });
  CHECK(r.find("bad_ragged.npz: array 'input'") != std::string::npos);
  CHECK(r.find("'|O'") != std::string::npos);
}

TEST_CASE("npy: hostile headers and truncated data are InputErrors, checked before allocating") {
  auto header = [](const std::string& dict, size_t data_bytes = 0) {
    std::string h = dict;
    while ((10 + h.size() + 1) % 64 != 0) h += ' ';
    h += '\n';
    std::string f = std::string("\x93NUMPY\x01\x00", 8);
    f += static_cast<char>(h.size() & 0xFF);
    f += static_cast<char>(h.size() >> 8);
    return f + h + std::string(data_bytes, '\0');
  };
  auto err = [](const std::string& file) { return error_of([&] { parse_npy(file.data(), file.size(), "x.npy"); }); };
  CHECK(err(header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 16)).empty());
  CHECK(err(header("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }"))
            .find("more than") != std::string::npos);
  CHECK(err(header("{'descr': '<f4', 'fortran_order': True, 'shape': (0, 1099511627776, 1099511627776), }"))
            .find("more than") != std::string::npos);  // no data, but strides past int64
  CHECK(err(header("{'descr': '<f4', 'fortran_order': True, 'shape': (0, 3), }")).empty());
  CHECK(err(header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }"))
            .find("dimension larger") != std::string::npos);
  CHECK(err(header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }", 4)).find("truncated data") !=
        std::string::npos);
  CHECK(err(header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 8)).find("4 bytes after") !=
        std::string::npos);
  CHECK(err(header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }")).find("non-negative") != std::string::npos);
  CHECK(err(header("{'descr': '<f4', 'fortran_order': False, }")).find("missing key 'shape'") != std::string::npos);
  CHECK(err(header("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4)).find("twice") !=
        std::string::npos);
  CHECK(err(header("{'descr': '<f4', 'fortran_order': 0, 'shape': (), }", 4)).find("True or False") != std::string::npos);
  CHECK(err(header("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", 4)).find("unexpected key") !=
        std::string::npos);
  CHECK(err(header("{'descr': '=f4', 'fortran_order': False, 'shape': (), }", 4)).find("native byte order") !=
        std::string::npos);
  CHECK(err(header("{'descr': '<f4', 'fortran_order': False, 'shape': ((),), }")).find("x.npy: malformed") !=
        std::string::npos);
  CHECK(err(std::string("\x93NUMPY\x04\x00\x00\x00", 10)).find("version 4.0") != std::string::npos);
  CHECK(err("NUMPY").find("not a .npy file") != std::string::npos);
  // A 2.0 header that claims 4 GiB is refused by the header limit, not allocated.
  const std::string big = std::string("\x93NUMPY\x02\x00\xff\xff\xff\xff", 12) + "{}";
  CHECK(err(big).find("larger than the limit") != std::string::npos);
  // Every truncation of every fixture is refused with an InputError (never another exception or a crash).
  for (const char* name : {"f4_2x3.npy", "fortran_2x3x2.npy", "v3.npy", "i8_be.npy"}) {
    const std::vector<uint8_t> b = bytes_of(name);
    for (size_t n = 0; n < b.size(); ++n) CHECK_THROWS_AS(parse_npy(b.data(), n, name), InputError);
  }
}

TEST_CASE("npz: truncated, corrupted and forged archives are InputErrors naming the archive and the array") {
  for (const char* name : {"stored.npz", "deflated.npz", "zip64_end.npz"}) {
    INFO(name);
    const std::vector<uint8_t> b = bytes_of(name);
    for (size_t n = 0; n < b.size(); ++n) CHECK_THROWS_AS(parse_npz(b.data(), n, name), InputError);
    // Every single-byte corruption is either still readable or an InputError.
    for (size_t i = 0; i < b.size(); ++i) {
      std::vector<uint8_t> c = b;
      c[i] ^= 0x5A;
      try {
        parse_npz(c.data(), c.size(), name);
      } catch (const InputError&) {
      }
    }
  }
  const std::vector<uint8_t> stored = bytes_of("stored.npz");
  auto central = [](const std::vector<uint8_t>& b) {
    for (size_t i = 0; i + 4 <= b.size(); ++i)
      if (b[i] == 'P' && b[i + 1] == 'K' && b[i + 2] == 1 && b[i + 3] == 2) return i;
    FAIL("no central directory");
    return size_t{0};
  };
  auto err = [](const std::vector<uint8_t>& b) { return error_of([&] { parse_npz(b.data(), b.size(), "t.npz"); }); };
  const size_t cd = central(stored);
  {  // a flipped data byte: the CRC check
    std::vector<uint8_t> c = stored;
    c[200] ^= 1;
    CHECK(err(c).find("t.npz: array 'input': CRC-32 mismatch") != std::string::npos);
  }
  {  // central directory and local header disagree
    std::vector<uint8_t> c = stored;
    c[cd + 16] ^= 1;
    CHECK(err(c).find("local and central CRC-32 differ") != std::string::npos);
  }
  {  // encrypted (flag bit 0 in both headers)
    std::vector<uint8_t> c = stored;
    c[6] |= 1;
    c[cd + 8] |= 1;
    CHECK(err(c).find("array 'input': encrypted") != std::string::npos);
  }
  {  // another compression method (bzip2 = 12)
    std::vector<uint8_t> c = stored;
    c[8] = 12;
    c[cd + 10] = 12;
    CHECK(err(c).find("compression method 12 is not supported") != std::string::npos);
  }
  {  // a deflated entry claiming 2 GiB from a few hundred bytes: refused before allocating
    std::vector<uint8_t> c = bytes_of("deflated.npz");
    const size_t d = central(c);
    for (size_t off : {size_t{22}, d + 24}) c[off + 3] = 0x7F;
    CHECK(err(c).find("more than deflate can produce") != std::string::npos);
  }
  CHECK(err({}).find("not a zip") != std::string::npos);
  const std::vector<uint8_t> npy = bytes_of("f4_2x3.npy");
  CHECK(err(npy).find("not a zip") != std::string::npos);
}

TEST_CASE("npy/npz files: a directory, a FIFO or a missing path is refused without reading it") {
  const fs::path dir = testing::temp_dir("npy-files");
  CHECK(error_of([&] { read_npy(dir); }).find("not a regular file") != std::string::npos);
  CHECK(error_of([&] { read_npz(dir / "missing.npz"); }).find("does not exist") != std::string::npos);
  const fs::path fifo = dir / "fifo.npz";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(error_of([&] { read_npz(fifo); }).find("not a regular file") != std::string::npos);
  fs::remove_all(dir);
}
