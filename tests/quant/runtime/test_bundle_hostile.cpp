// Hostile int8 bundles (issue 12): every field of program.json that disagrees with the arrays or the op's
// geometry is an InputError naming program.json and the JSON path (Note [bundle validation]); nothing is
// indexed before it is checked. Regression inputs found by fuzzing live in tests/fuzz/regressions/bundle/
// and are replayed by the fuzz replay driver.
#include <doctest/doctest.h>

#include "engine/file_io.hpp"
#include "quant/runtime/exact.hpp"
#include "quant/runtime/lower.hpp"
#include "quant/runtime/runtime.hpp"
#include "tests/quant/runtime/helpers.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>

using namespace qforge;
using namespace qforge::quant;
using namespace qforge::quant::runtime;
using qforge::testing::images;
using qforge::testing::make_sim;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Bundle {
  fs::path dir;
  json desc;
};

Bundle saved(const std::string& model) {
  static std::map<std::string, Bundle> cache;
  auto it = cache.find(model);
  if (it == cache.end()) {
    auto f = make_sim(model);
    Bundle b;
    b.dir = fs::temp_directory_path() / ("qforge_hostile_bundle_" + model);
    fs::remove_all(b.dir);
    save_bundle(lower(*f.sim), b.dir);
    b.desc = json::parse(read_file(b.dir / "program.json"));
    it = cache.emplace(model, b).first;
  }
  return it->second;
}

int find_op(const json& desc, const std::string& kind) {
  for (std::size_t i = 0; i < desc["ops"].size(); ++i)
    if (desc["ops"][i]["kind"] == kind) return static_cast<int>(i);
  FAIL("no op of kind " << kind);
  return -1;
}

// Applies `edit` to the saved description, writes it next to the blob and returns load_bundle's message
// (empty when it loads).
std::string load_edited(const std::string& model, const std::function<void(json&)>& edit) {
  Bundle b = saved(model);
  const fs::path dir = b.dir.string() + "_edited";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(b.dir / "program.bin", dir / "program.bin");
  json d = b.desc;
  edit(d);
  write_file_atomic(dir / "program.json", d.dump());
  std::string msg;
  try {
    load_bundle(dir);
  } catch (const InputError& e) {
    msg = e.what();
  }
  fs::remove_all(dir);
  return msg;
}

#define CHECK_REFUSED(model, needle, ...)                                 \
  do {                                                                    \
    const std::string m_ = load_edited(model, __VA_ARGS__);                      \
    CAPTURE(m_);                                                          \
    CHECK(m_.find("program.json") != std::string::npos);                  \
    CHECK(m_.find(needle) != std::string::npos);                          \
  } while (0)

}  // namespace

TEST_CASE("bundle validation: every zoo model's program passes and round-trips") {
  for (const std::string name : {"mlp", "mnist-cnn", "dw-cnn", "resnet-tiny", "lstm", "gru"}) {
    CAPTURE(name);
    auto f = make_sim(name);
    const Program p = lower(*f.sim);
    CHECK_NOTHROW(validate_program(p, name));
    CHECK(load_edited(name, [](json&) {}).empty());
  }
}

TEST_CASE("bundle validation: zero or negative kernel sizes, strides, dilations and groups are refused") {
  const int c = find_op(saved("mnist-cnn").desc, "conv2d");
  const std::string at = fmt::format("/ops/{}/", c);
  CHECK_REFUSED("mnist-cnn", at + "groups", [&](json& d) { d["ops"][c]["groups"] = 0; });
  CHECK_REFUSED("mnist-cnn", at + "stride/0", [&](json& d) { d["ops"][c]["stride"][0] = 0; });
  CHECK_REFUSED("mnist-cnn", at + "stride/1", [&](json& d) { d["ops"][c]["stride"][1] = -2; });
  CHECK_REFUSED("mnist-cnn", at + "kernel/0", [&](json& d) { d["ops"][c]["kernel"][0] = 0; });
  CHECK_REFUSED("mnist-cnn", at + "dilation/1", [&](json& d) { d["ops"][c]["dilation"][1] = 0; });
  CHECK_REFUSED("mnist-cnn", at + "padding/0", [&](json& d) { d["ops"][c]["padding"][0] = -1; });
  const int p = find_op(saved("mnist-cnn").desc, "maxpool2d");
  CHECK_REFUSED("mnist-cnn", fmt::format("/ops/{}/stride/0", p), [&](json& d) { d["ops"][p]["stride"][0] = 0; });
  CHECK_REFUSED("mnist-cnn", "exceeds half the window", [&](json& d) { d["ops"][p]["padding"] = {5, 5}; });
}

TEST_CASE("bundle validation: channel counts, groups and kernel sizes that disagree with the values or arrays") {
  const json& desc = saved("mnist-cnn").desc;
  const int c = find_op(desc, "conv2d");
  CHECK_REFUSED("mnist-cnn", "in_c", [&](json& d) { d["ops"][c]["in_c"] = 2; });
  CHECK_REFUSED("mnist-cnn", "groups", [&](json& d) { d["ops"][c]["groups"] = 3; });
  CHECK_REFUSED("mnist-cnn", "the op produces", [&](json& d) { d["ops"][c]["kernel"] = {5, 5}; });
  CHECK_REFUSED("mnist-cnn", "the op produces", [&](json& d) { d["ops"][c]["stride"] = {2, 2}; });
  CHECK_REFUSED("mnist-cnn", "the op produces", [&](json& d) { d["ops"][c]["out_c"] = 8; });
  CHECK_REFUSED("mnist-cnn", "does not fit", [&](json& d) { d["ops"][c]["kernel"] = {1000, 1000}; });
  CHECK_REFUSED("mnist-cnn", "weights has", [&](json& d) {
    auto& w = d["ops"][c]["arrays"]["weights"]["count"];
    w = w.get<std::uint64_t>() - 1;
  });
  CHECK_REFUSED("mnist-cnn", "bias has", [&](json& d) { d["ops"][c]["arrays"]["bias"]["count"] = 1; });
  CHECK_REFUSED("mnist-cnn", "multipliers", [&](json& d) {
    d["ops"][c]["arrays"]["mult_q"]["count"] = 1;
    d["ops"][c]["arrays"]["mult_shift"]["count"] = 1;
  });
  CHECK_REFUSED("mnist-cnn", "multipliers but", [&](json& d) { d["ops"][c]["arrays"]["mult_q"]["count"] = 1; });
  const int l = find_op(desc, "linear");
  CHECK_REFUSED("mnist-cnn", "in_c", [&](json& d) { d["ops"][l]["in_c"] = 7; });
  CHECK_REFUSED("mnist-cnn", "the op produces", [&](json& d) { d["ops"][l]["out_c"] = 11; });
  const int r = find_op(saved("lstm").desc, "lstm");
  CHECK_REFUSED("lstm", "hidden", [&](json& d) { d["ops"][r]["hidden"] = 0; });
  CHECK_REFUSED("lstm", "out_c", [&](json& d) { d["ops"][r]["hidden"] = 7; });
  CHECK_REFUSED("lstm", "weights_hh", [&](json& d) { d["ops"][r]["arrays"]["weights_hh"]["count"] = 4; });
  CHECK_REFUSED("lstm", "cell_exp", [&](json& d) { d["ops"][r]["cell"][0] = 0; });
}

TEST_CASE("bundle validation: multipliers, shifts, zero points and ranges outside their domains") {
  const json& desc = saved("resnet-tiny").desc;
  const int a = find_op(desc, "add");
  CHECK_REFUSED("resnet-tiny", fmt::format("/ops/{}/add/5", a), [&](json& d) { d["ops"][a]["add"][5] = 40; });
  CHECK_REFUSED("resnet-tiny", "add shift 0", [&](json& d) { d["ops"][a]["add"][5] = 0; });
  CHECK_REFUSED("resnet-tiny", fmt::format("/ops/{}/add/3", a), [&](json& d) { d["ops"][a]["add"][3] = 1 << 20; });
  CHECK_REFUSED("resnet-tiny", "zero points", [&](json& d) {
    d["ops"][a]["add"][0] = d["ops"][a]["add"][0].get<int>() == 5 ? 6 : 5;
  });
  CHECK_REFUSED("resnet-tiny", "/values/0/q/zero_point", [&](json& d) { d["values"][0]["q"]["zero_point"] = 300; });
  CHECK_REFUSED("resnet-tiny", "/values/0/q/scale", [&](json& d) { d["values"][0]["q"]["scale"] = 1e300; });
  CHECK_REFUSED("resnet-tiny", "scale 0", [&](json& d) { d["values"][0]["q"]["scale"] = 0; });
  CHECK_REFUSED("resnet-tiny", "code range", [&](json& d) {
    d["values"][0]["q"]["qmin"] = 10;
    d["values"][0]["q"]["qmax"] = 0;
  });
  const int c = find_op(desc, "conv2d");
  CHECK_REFUSED("resnet-tiny", fmt::format("/ops/{}/range/1", c), [&](json& d) { d["ops"][c]["range"][1] = 1000; });
  CHECK_REFUSED("resnet-tiny", "output clamp", [&](json& d) { d["ops"][c]["range"] = {100, -100}; });
  CHECK_REFUSED("resnet-tiny", "/ops/", [&](json& d) { d["ops"][c]["m"] = {-5, 0}; });
  // A shift of 31 or more would make the requantization shift by a negative amount.
  CHECK_REFUSED("lstm", "cell/3", [&](json& d) { d["ops"][find_op(d, "lstm")]["cell"][3] = 31; });
}

TEST_CASE("bundle validation: value references, shapes and element counts") {
  CHECK_REFUSED("mlp", "reads value", [&](json& d) { d["ops"][0]["inputs"] = {99}; });
  CHECK_REFUSED("mlp", "/ops/0/inputs/0", [&](json& d) { d["ops"][0]["inputs"] = {-1}; });
  CHECK_REFUSED("mlp", "before any op writes it", [&](json& d) {
    d["ops"][0]["inputs"] = {d["ops"].back()["output"]};
  });
  CHECK_REFUSED("mlp", "already defined", [&](json& d) { d["ops"][0]["output"] = d["input"]; });
  CHECK_REFUSED("mlp", "output value", [&](json& d) { d["output"] = 1000; });
  CHECK_REFUSED("mlp", "takes 1 input", [&](json& d) { d["ops"][0]["inputs"].push_back(0); });
  // Element counts that overflow: 2^62 per dimension, or a product past the limit.
  CHECK_REFUSED("mlp", "/values/0/shape/0", [&](json& d) { d["values"][0]["shape"] = {std::int64_t{1} << 62}; });
  CHECK_REFUSED("mlp", "elements", [&](json& d) { d["values"][0]["shape"] = {1 << 24, 1 << 24, 1 << 24}; });
  CHECK_REFUSED("mlp", "dimensions", [&](json& d) { d["values"][0]["shape"] = json::array(); });
  CHECK_REFUSED("mlp", "/values/0/shape/0", [&](json& d) { d["values"][0]["shape"] = {0}; });
}

TEST_CASE("bundle validation: arrays outside the blob and a blob that is not program.bin") {
  CHECK_REFUSED("mlp", "lies outside program.bin", [&](json& d) {
    d["ops"][0]["arrays"]["weights"]["offset"] = std::uint64_t{1} << 63;
  });
  CHECK_REFUSED("mlp", "lies outside program.bin", [&](json& d) {
    d["ops"][0]["arrays"]["bias"]["count"] = std::uint64_t(-1) / 2;
  });
  CHECK_REFUSED("mlp", "/blob", [&](json& d) { d["blob"] = "../../../etc/passwd"; });
  CHECK_REFUSED("mlp", "/blob_bytes", [&](json& d) { d["blob_bytes"] = 5; });
}

TEST_CASE("bundle validation: fields of the wrong type name the JSON path (no library type errors)") {
  CHECK_REFUSED("mnist-cnn", "/ops/0/groups: expected an integer", [&](json& d) { d["ops"][0]["groups"] = "1"; });
  CHECK_REFUSED("mnist-cnn", "/ops/0/kernel: expected a list", [&](json& d) { d["ops"][0]["kernel"] = 3; });
  CHECK_REFUSED("mnist-cnn", "/ops/0/kernel: expected a list of 2", [&](json& d) { d["ops"][0]["kernel"] = {3}; });
  CHECK_REFUSED("mnist-cnn", "/values: expected a list", [&](json& d) { d["values"] = json::object(); });
  CHECK_REFUSED("mnist-cnn", "/ops/0/name: expected a string", [&](json& d) { d["ops"][0]["name"] = 5; });
  CHECK_REFUSED("mnist-cnn", "/ops/0/per_channel", [&](json& d) { d["ops"][0]["per_channel"] = 1; });
  CHECK_REFUSED("mnist-cnn", "/ops/0/arrays/weights/offset", [&](json& d) { d["ops"][0]["arrays"]["weights"]["offset"] = -8; });
  CHECK_REFUSED("mnist-cnn", "missing required field 'arrays'", [&](json& d) { d["ops"][0].erase("arrays"); });
  CHECK_REFUSED("mnist-cnn", "/version", [&](json& d) { d["version"] = 2; });
  CHECK_REFUSED("mnist-cnn", "unknown op kind", [&](json& d) { d["ops"][0]["kind"] = "conv3d"; });
  CHECK_REFUSED("mnist-cnn", "/: expected an object", [&](json& d) { d = json::array(); });
  CHECK_REFUSED("mnist-cnn", "not a qforge int8 bundle", [&](json& d) { d["format"] = "onnx"; });
}

TEST_CASE("bundle validation: deeply nested program.json is refused without recursion") {
  const fs::path dir = fs::temp_directory_path() / "qforge_hostile_bundle_deep";
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_file_atomic(dir / "program.json", "{\"format\": " + std::string(200000, '[') + std::string(200000, ']') + "}");
  CHECK_THROWS_WITH_AS(load_bundle(dir), doctest::Contains("nested deeper"), InputError);
  write_file_atomic(dir / "program.json", "{\"x\": \"[[[[\", \"format\": " + std::string(40, '[') + std::string(40, ']') + "}");
  CHECK_THROWS_WITH_AS(load_bundle(dir), doctest::Contains("/format: expected a string"), InputError);
  fs::remove_all(dir);
}

TEST_CASE("bundle validation: a bundle that passes validation runs on the runtime and the exact simulation") {
  // Geometry edits that stay consistent (stride 2 on the last maxpool with the output shape adjusted) are
  // legitimate programs: they must run, not be refused.
  const fs::path dir = fs::temp_directory_path() / "qforge_hostile_bundle_consistent";
  fs::remove_all(dir);
  auto f = make_sim("dw-cnn");
  Program p = lower(*f.sim);
  save_bundle(p, dir);
  const Program q = load_bundle(dir);
  const Tensor x = images(2, 3);
  Runtime rt(q, {1});
  CHECK(rt.run_codes(x).to_vector<int>() == execute_exact_codes(q, x).to_vector<int>());
  fs::remove_all(dir);
}
