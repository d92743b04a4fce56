// AIMET encodings 2.0.0 / 2.1.0 (quant/encodings_io_2x.cpp) and the blockwise/LPBQ entries of 1.0.0:
// entry shapes, y_zero_point = -offset, round trips through files and quantized directories (identical
// logits), and hostile files (mismatched block counts, LPBQ multipliers out of range, bad fields).
#include <doctest/doctest.h>

#include "engine/autograd.hpp"
#include "quant/blockwise_sim.hpp"
#include "quant/encodings_io.hpp"
#include "quant/quant_dir.hpp"
#include "quant/runtime/exact.hpp"
#include "tests/quant/runtime/helpers.hpp"
#include "tests/support/fixtures.hpp"

#include <cmath>

using namespace qforge;
using namespace qforge::quant;
using nlohmann::json;
using qforge::testing::error_of;

namespace {

EncodingsFile sample_file() {
  EncodingsFile f;
  GridSpec sym8{8, true}, asym8{8, false}, sym4{4, true};
  f.activations["conv1.output"] = {compute_encoding(-1.0, 3.0, asym8)};
  f.params["conv1.weight"] = {compute_encoding(-0.5, 0.5, sym8), compute_encoding(-0.25, 0.2, sym8)};
  f.params["conv1.bias"] = {encoding_from_scale_offset(1e-5, -2147483648.0, GridSpec{32, true})};
  // blockwise fc: 2 channels x 3 blocks of 4
  std::vector<Encoding> blocks;
  for (int i = 0; i < 6; ++i) blocks.push_back(compute_encoding(-0.1 * (i + 1), 0.1 * (i + 1), sym4));
  f.params["fc1.weight"] = blocks;
  f.blocks["fc1.weight"] = BlockEntry{{4, 0}, {}};
  // LPBQ fc2: 2 channels x 2 blocks
  LpbqScales l{{0.01, 0.02}, {16, 3, 7, 16}};
  f.params["fc2.weight"] = lpbq_block_encodings(l, 4);
  f.blocks["fc2.weight"] = BlockEntry{{8, 8}, l};
  return f;
}

const json& entry(const json& j, const std::string& name) {
  for (const auto& e : j["encodings"])
    if (e["name"] == name) return e;
  FAIL("no entry " << name);
  static json none;
  return none;
}

std::string read_error(const json& j) {
  return error_of([&] { encodings_from_json(j, "t.json"); });
}

// A 2.1.0 file with one LPBQ entry (2 channels) whose multipliers/channel scales are given.
json lpbq_210(const json& x, const json& x_scale) {
  return {{"version", "2.1.0"},
          {"encodings",
           {{{"name", "fc.weight"}, {"output_dtype", "int4"}, {"axis", 1}, {"block_size", 8},
             {"y_scale", {{"x", x}, {"x_scale", x_scale}, {"axis", 0}}}}}}};
}

}  // namespace

TEST_CASE("encodings 2.x: entries are QuantizeLinear's fields; y_zero_point = -offset; LPBQ per version") {
  const EncodingsFile f = sample_file();
  for (const std::string v : {"2.0.0", "2.1.0"}) {
    CAPTURE(v);
    const json j = encodings_to_json(f, v);
    CHECK(j["version"] == v);
    const json& a = entry(j, "conv1.output");
    CHECK(a["output_dtype"] == "uint8");
    CHECK(a["y_zero_point"] == -static_cast<int64_t>(f.activations.at("conv1.output")[0].offset));
    CHECK(a["y_zero_point"] == 64);
    const json& w = entry(j, "conv1.weight");
    CHECK(w["output_dtype"] == "int8");
    CHECK(w["axis"] == 0);
    CHECK(!w.contains("y_zero_point"));
    CHECK(entry(j, "conv1.bias")["output_dtype"] == "int32");
    const json& b = entry(j, "fc1.weight");
    CHECK(b["output_dtype"] == "int4");
    CHECK(b["axis"] == 1);
    CHECK(b["block_size"] == 4);
    CHECK(b["y_scale"].size() == 6);
    const json& l = entry(j, "fc2.weight");
    CHECK(l["output_dtype"] == "int4");
    CHECK(l["block_size"] == 8);
    if (v == "2.0.0") {
      CHECK(l["per_block_int_scale"] == json({16, 3, 7, 16}));
      CHECK(l["per_channel_float_scale"] == json({0.01, 0.02}));
      CHECK(!l.contains("y_scale"));
    } else {
      CHECK(l["y_scale"]["x"] == json({16, 3, 7, 16}));
      CHECK(l["y_scale"]["x_scale"] == json({0.01, 0.02}));
      CHECK(l["y_scale"]["axis"] == 0);
    }
  }
  const json j1 = encodings_to_json(f, "1.0.0");
  bool seen_lpbq = false;
  for (const auto& e : j1["param_encodings"])
    if (e["name"] == "fc2.weight") {
      seen_lpbq = true;
      CHECK(e["enc_type"] == "LPBQ");
      CHECK(e["bw"] == 8);
      CHECK(e["compressed_bw"] == 4);
      CHECK(e["offset"] == json({-128, -128}));
    } else if (e["name"] == "fc1.weight") {
      CHECK(e["enc_type"] == "PER_BLOCK");
    }
  CHECK(seen_lpbq);
  CHECK(error_of([&] { encodings_to_json(f, "0.6.1"); }).find("fc1.weight") != std::string::npos);
}

TEST_CASE("encodings 1.0.0/2.0.0/2.1.0: written and read back to the same encodings and blocks") {
  const EncodingsFile f = sample_file();
  for (const std::string v : {"1.0.0", "2.0.0", "2.1.0"}) {
    CAPTURE(v);
    const EncodingsFile g = encodings_from_json(json::parse(encodings_to_json(f, v).dump()), "rt.json");
    CHECK(g.activations == f.activations);
    CHECK(g.blocks == f.blocks);
    REQUIRE(g.params.size() == f.params.size());
    for (const auto& [k, es] : f.params) {
      CAPTURE(k);
      REQUIRE(g.params.count(k));
      REQUIRE(g.params.at(k).size() == es.size());
      for (size_t i = 0; i < es.size(); ++i) {
        CHECK(g.params.at(k)[i].delta == es[i].delta);
        CHECK(g.params.at(k)[i].offset == es[i].offset);
        CHECK(g.params.at(k)[i].bitwidth == es[i].bitwidth);
      }
    }
  }
}

TEST_CASE("encodings 2.1.0: an LPBQ model written, reloaded and re-evaluated gives identical logits") {
  QuantSimOptions opt;
  opt.config = "per_channel";
  opt.param_bw = 4;
  auto f = qforge::testing::make_sim("mnist-cnn", opt);
  BlockwiseOptions bo;
  bo.block_size = 16;
  bo.lpbq = true;
  apply_blockwise(*f.sim, bo);
  const Tensor x = qforge::testing::images(8, 3);
  Tensor before, before_exact;
  {
    NoGradGuard ng;
    before = f.sim->forward({x})[0];
    before_exact = runtime::exact_forward(*f.sim, x);
  }
  for (const std::string v : {"2.1.0", "2.0.0", "1.0.0"}) {
    CAPTURE(v);
    const auto dir = qforge::testing::temp_dir("enc2x_" + v);
    save_quantized_dir(dir, *f.sim, json::object(), v);
    CHECK(read_encodings(dir / "encodings.json").version == v);
    QuantizedModel q = load_quantized_dir(dir, {x});
    CHECK(q.sim->quantizer("fc.weight").settings().block.lpbq());
    CHECK(q.sim->quantizer("fc.weight").lpbq() == f.sim->quantizer("fc.weight").lpbq());
    NoGradGuard ng;
    CHECK(q.sim->forward({x})[0].to_vector<float>() == before.to_vector<float>());
    CHECK(runtime::exact_forward(*q.sim, x).to_vector<float>() == before_exact.to_vector<float>());
  }
}

TEST_CASE("encodings 2.x hostile: block counts, LPBQ multipliers and fields are checked, naming tensor and field") {
  // mismatched block counts: 5 multipliers for 2 channels
  std::string m = read_error(lpbq_210({16, 1, 2, 3, 4}, {0.1, 0.2}));
  CHECK(m.find("fc.weight") != std::string::npos);
  CHECK(m.find("mismatched block counts") != std::string::npos);
  // multiplier out of range (int4 -> [1, 16])
  m = read_error(lpbq_210({16, 17, 2, 3}, {0.1, 0.2}));
  CHECK(m.find("fc.weight") != std::string::npos);
  CHECK(m.find("/y_scale/x/1") != std::string::npos);
  CHECK(m.find("outside [1, 16]") != std::string::npos);
  CHECK(read_error(lpbq_210({16, 0, 2, 3}, {0.1, 0.2})).find("outside [1, 16]") != std::string::npos);
  CHECK(read_error(lpbq_210({16, 1.5, 2, 3}, {0.1, 0.2})).find("expected an integer") != std::string::npos);
  CHECK(read_error(lpbq_210({16, 1, 2, 3}, {0.1, -0.2})).find("not a positive normal float32") != std::string::npos);
  // a meta encoding in a 2.0.0 file
  json j = lpbq_210({16, 1, 2, 3}, {0.1, 0.2});
  j["version"] = "2.0.0";
  CHECK(read_error(j).find("needs version 2.1.0") != std::string::npos);
  // 2.0.0 LPBQ fields
  json l200 = {{"version", "2.0.0"},
               {"encodings",
                {{{"name", "fc.weight"}, {"output_dtype", "int4"}, {"axis", 1}, {"block_size", 8},
                  {"per_block_int_scale", {16, 1, 99}}, {"per_channel_float_scale", {0.1}}}}}};
  m = read_error(l200);
  CHECK(m.find("/per_block_int_scale/2") != std::string::npos);
  // other fields
  auto one = [](json e) { return json{{"version", "2.0.0"}, {"encodings", json::array({e})}}; };
  CHECK(read_error(one({{"name", "a"}, {"output_dtype", "int3"}, {"y_scale", 0.1}})).find("output_dtype") != std::string::npos);
  CHECK(read_error(one({{"name", "a"}, {"output_dtype", "float8e4m3fn"}, {"y_scale", 0.1}})).find("unsupported") !=
        std::string::npos);
  CHECK(read_error(one({{"name", "a"}, {"output_dtype", "uint8"}, {"y_scale", 0.1}, {"y_zero_point", 300}}))
            .find("y_zero_point") != std::string::npos);
  CHECK(read_error(one({{"name", "w.weight"}, {"output_dtype", "int8"}, {"y_scale", {0.1, 0.2}}})).find("/axis") !=
        std::string::npos);
  CHECK(read_error(one({{"name", "w.weight"}, {"output_dtype", "int8"}, {"y_scale", {0.1, 0.2}}, {"axis", 0},
                        {"y_zero_point", {0}}}))
            .find("1 zero points for 2 scales") != std::string::npos);
  CHECK(read_error(one({{"name", "w.weight"}, {"output_dtype", "int4"}, {"y_scale", {0.1, 0.2}}, {"axis", 1},
                        {"block_size", 0}}))
            .find("/block_size") != std::string::npos);
  CHECK(read_error(one({{"name", "a"}, {"output_dtype", "int8"}, {"y_scale", "x"}})).find("/y_scale") != std::string::npos);
  CHECK(read_error(json{{"version", "2.0.0"}, {"encodings", {{{"name", "a"}, {"output_dtype", "int8"}, {"y_scale", 0.1}},
                                                             {{"name", "a"}, {"output_dtype", "int8"}, {"y_scale", 0.1}}}}})
            .find("a second entry") != std::string::npos);
  // 1.0.0 LPBQ: multiplier above 2^(bw - compressed_bw)
  json l100 = {{"version", "1.0.0"},
               {"param_encodings",
                {{{"name", "fc.weight"}, {"dtype", "INT"}, {"enc_type", "LPBQ"}, {"bw", 8}, {"compressed_bw", 4},
                  {"is_sym", true}, {"block_size", 8}, {"scale", {0.1}}, {"offset", {-128}},
                  {"per_block_int_scale", {16, 32}}}}}};
  CHECK(read_error(l100).find("outside [1, 16]") != std::string::npos);
}

TEST_CASE("encodings 2.x: a file whose block counts do not fit the model is refused on load, naming the tensor") {
  auto f = qforge::testing::make_sim("mnist-cnn");
  // fc.weight is [10, 1568]: block 16 gives 10 x 98 blocks; this file has 10 x 2.
  EncodingsFile e;
  LpbqScales l;
  l.channel_scale.assign(10, 0.01);
  l.multiplier.assign(20, 16);
  e.params["fc.weight"] = lpbq_block_encodings(l, 4);
  e.blocks["fc.weight"] = BlockEntry{{16, 8}, l};
  LoadEncodingsOptions lo;
  lo.partial = true;
  const std::string m = error_of([&] { f.sim->load_encodings(e, lo); });
  CHECK(m.find("fc.weight") != std::string::npos);
  CHECK(m.find("mismatched block counts") != std::string::npos);
  // block size 48 does not divide 1568
  e.blocks["fc.weight"].spec.block_size = 48;
  CHECK(error_of([&] { f.sim->load_encodings(e, lo); }).find("does not divide") != std::string::npos);
}
