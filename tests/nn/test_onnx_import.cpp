// ONNX import (nn/onnx/import.hpp): every fixture of tests/fixtures/onnx (tools/gen_fixtures_onnx.py,
// exported by torch.onnx) imported and run in FP32 against PyTorch's outputs; hostile files refused with
// an InputError naming the problem; tensor names and a flexible batch size through a model directory.
// Hand-made small cases come from tools/gen_fixtures_onnx_unit.py (tests/fixtures/onnx_unit/).
#include "data/npy.hpp"
#include "engine/autograd.hpp"
#include "engine/random.hpp"
#include "nn/model_dir.hpp"
#include "nn/onnx/import.hpp"
#include "nn/safetensors.hpp"
#include "nn/spec.hpp"
#include "tests/support/fixtures.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <sstream>

using namespace qforge;
namespace fs = std::filesystem;
namespace oi = qforge::nn::onnx_import;

namespace {

fs::path onnx_fixture(const std::string& name) { return testing::fixture_path("onnx/" + name); }
fs::path unit_fixture(const std::string& name) { return testing::fixture_path("onnx_unit/" + name); }

// max |a - b| / max |b|
double relative_error(const Tensor& actual, const Tensor& expected) {
  const auto a = actual.to_vector<double>(), e = expected.to_vector<double>();
  REQUIRE(a.size() == e.size());
  double diff = 0, mag = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - e[i])), mag = std::max(mag, std::abs(e[i]));
  return diff / std::max(mag, 1e-30);
}

std::vector<Tensor> run_fp32(nn::Graph& model, const data::NpyArrays& inputs) {
  std::vector<Tensor> ins;
  for (const auto& name : model.input_names()) {
    auto it = inputs.find(name);
    REQUIRE_MESSAGE(it != inputs.end(), "no input array " << name);
    ins.push_back(it->second.tensor);
  }
  autograd::NoGradGuard ng;
  model.eval();
  return model(ins);
}

std::string import_error(const fs::path& p, const oi::ImportOptions& opt = {}) {
  try {
    oi::import_onnx(p, opt);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// The rows of a fixture .tsv file (comment lines skipped), split at tabs.
std::vector<std::vector<std::string>> tsv_rows(const fs::path& p) {
  std::ifstream f(p);
  REQUIRE_MESSAGE(f, p.string());
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(f, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    std::stringstream ls(line);
    for (std::string col; std::getline(ls, col, '\t');) cols.push_back(col);
    rows.push_back(cols);
  }
  return rows;
}

TEST_CASE("onnx import: every fixture runs in FP32 within its tolerance of PyTorch's outputs") {
  // cases.tsv: case, file, inputs, expected, tolerance, calib, quantize, zoo, outputs (ONNX names, ",")
  int checked = 0;
  for (const auto& c : tsv_rows(onnx_fixture("cases.tsv"))) {
    REQUIRE(c.size() >= 9);
    CAPTURE(c[0]);
    oi::ImportResult r = oi::import_onnx(onnx_fixture(c[1]));
    const auto inputs = data::read_npz(onnx_fixture(c[2]));
    const auto expected = data::read_npz(onnx_fixture(c[3]));
    const std::vector<Tensor> outs = run_fp32(*r.model, inputs);
    std::vector<std::string> names;
    std::stringstream ns(c[8]);
    for (std::string n; std::getline(ns, n, ',');) names.push_back(n);
    REQUIRE(outs.size() >= names.size());
    for (size_t k = 0; k < names.size(); ++k) {
      CAPTURE(names[k]);
      CHECK(relative_error(outs[k], expected.at(names[k]).tensor) <= std::stod(c[4]));
    }
    CHECK(r.report["ops"].is_object());
    CHECK(r.report["nodes_folded"].get<int64_t>() >= 0);
    ++checked;
  }
  CHECK(checked >= 15);
}

TEST_CASE("onnx import: hostile files are InputErrors naming the problem") {
  int checked = 0;
  for (const auto& cols : tsv_rows(onnx_fixture("hostile.tsv"))) {
    if (cols.size() < 4 || cols[2] != "import") continue;
    CAPTURE(cols[0]);
    const std::string msg = import_error(onnx_fixture(cols[1]));
    CHECK_MESSAGE(msg.find(cols[3]) != std::string::npos, msg);
    ++checked;
  }
  CHECK(checked >= 6);
}

TEST_CASE("onnx import: unsupported attributes, bad tensors and escaping external data name node or tensor") {
  struct Case {
    const char* file;
    std::vector<std::string> words;
  };
  const std::vector<Case> cases = {
      {"gru_lbr0.onnx", {"gru_lbr0", "linear_before_reset"}},
      {"avgpool_ceil.onnx", {"pool_ceil", "ceil_mode"}},
      {"raw_data_short.onnx", {"short_weight", "raw_data"}},
      {"external_escape.onnx", {"ext_weight", "leaves the model's directory"}},
      {"external_absolute.onnx", {"ext_weight", "absolute"}},
      {"external_past_end.onnx", {"ext_weight", "past the end"}},
      {"bad_opset.onnx", {"opset 9"}},
      {"dyn_hw.onnx", {"--input-shape"}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.file);
    const std::string msg = import_error(unit_fixture(c.file));
    REQUIRE_MESSAGE(!msg.empty(), "no InputError");
    for (const auto& w : c.words) CHECK_MESSAGE(msg.find(w) != std::string::npos, msg);
  }
}

TEST_CASE("onnx import: truncated or corrupted files never crash") {
  std::ifstream f(onnx_fixture("zoo_mnist_cnn.onnx"), std::ios::binary);
  REQUIRE(f);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string bytes = ss.str();
  const fs::path dir = testing::temp_dir("onnx-hostile");
  const fs::path p = dir / "m.onnx";
  Generator gen(3);
  int refused = 0;
  for (int i = 0; i < 60; ++i) {
    std::string b = bytes;
    if (i < 30) {
      b.resize(size_t(gen.next_u64() % b.size()));
    } else {
      for (int k = 0; k < 4; ++k) b[size_t(gen.next_u64() % b.size())] = char(gen.next_u64() & 0xff);
    }
    std::ofstream(p, std::ios::binary | std::ios::trunc) << b;
    try {
      oi::import_onnx(p);
    } catch (const InputError&) {
      ++refused;
    }
  }
  CHECK(refused >= 30);  // every truncation at least (a flipped weight byte may still import)
  fs::remove_all(dir);
}

TEST_CASE("onnx import: asymmetric conv pads become a Pad node and match the numpy reference") {
  oi::ImportResult r = oi::import_onnx(unit_fixture("asym_pad_conv.onnx"));
  bool has_pad = false;
  for (const auto& n : r.model->nodes()) has_pad = has_pad || n.module->type_name() == "Pad";
  CHECK(has_pad);
  const auto ref = data::read_npz(unit_fixture("asym_pad_conv.expected.npz"));
  const auto outs = run_fp32(*r.model, ref);
  CHECK(relative_error(outs[0], ref.at("y").tensor) < 1e-5);
}

TEST_CASE("onnx import: --input-shape resolves dynamic dimensions, and the folded flatten keeps the batch flexible") {
  oi::ImportOptions opt;
  opt.input_shapes["x"] = {2, 3, 4, 5};
  oi::ImportResult r = oi::import_onnx(unit_fixture("dyn_hw.onnx"), opt);
  REQUIRE(r.model->nodes().size() == 1);
  CHECK(r.model->nodes()[0].module->type_name() == "Flatten");
  Generator g(1);
  autograd::NoGradGuard ng;
  const Tensor y = (*r.model)(Tensor::randn({7, 3, 4, 5}, g));  // another batch size
  CHECK(y.shape() == Shape{7, 60});
  CHECK_THROWS_AS(oi::parse_input_shape("x=1,-3"), InputError);
  CHECK_THROWS_AS(oi::parse_input_shape("nodims"), InputError);
  opt.input_shapes = {{"nosuch", {1}}};
  CHECK(import_error(unit_fixture("dyn_hw.onnx"), opt).find("nosuch") != std::string::npos);
}

TEST_CASE("onnx import: a model directory keeps the ONNX initializer names and runs at other batch sizes") {
  oi::ImportResult r = oi::import_onnx(unit_fixture("onnx_names.onnx"));
  REQUIRE(r.model->nodes().size() == 1);
  CHECK(r.model->nodes()[0].name == "fc");  // from the initializer "fc.bias" / scope "/fc/Gemm"
  CHECK(r.model->tensor_names().at("fc.weight") == "onnx::Gemm_7");
  const fs::path dir = testing::temp_dir("onnx-names");
  nn::save_model_dir(dir, *r.model, r.report);
  const nn::TensorMap stored = nn::load_safetensors(dir / "weights.safetensors");
  CHECK(stored.count("onnx::Gemm_7"));
  CHECK(stored.count("fc.bias"));
  CHECK(!stored.count("fc.weight"));
  nn::ModelDir md = nn::load_model_dir(dir);
  CHECK(md.model->tensor_names() == r.model->tensor_names());
  const auto a = md.model->state_dict(), b = r.model->state_dict();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].second.to_vector<float>() == b[i].second.to_vector<float>());
  // A copy (clone_model goes through the spec) keeps them too; a bad map is refused by name.
  CHECK(nn::clone_model(*md.model)->tensor_names() == r.model->tensor_names());
  nlohmann::json spec = nn::write_spec(*md.model);
  spec["tensor_names"]["fc.bias"] = "onnx::Gemm_7";
  CHECK_THROWS_WITH_AS(nn::build_model(spec), doctest::Contains("both stored as"), InputError);
  spec["tensor_names"] = {{"fc.nosuch", "x"}};
  CHECK_THROWS_WITH_AS(nn::build_model(spec), doctest::Contains("fc.nosuch"), InputError);
  fs::remove_all(dir);

  // resnet18 (fused conv+BN weights named onnx::Conv_*) at a batch size other than the exported one.
  oi::ImportResult rn = oi::import_onnx(onnx_fixture("resnet18.onnx"));
  CHECK(rn.model->node_index("layer1.0.conv1") >= 0);
  CHECK(rn.model->tensor_names().size() > 10);
  const auto inputs = data::read_npz(onnx_fixture("resnet18.inputs.npz"));
  const auto expected = data::read_npz(onnx_fixture("resnet18.expected.npz"));
  const Tensor x = inputs.begin()->second.tensor;
  autograd::NoGradGuard ng;
  const Tensor one = (*rn.model)(x.narrow(0, 1, 1).contiguous());
  CHECK(relative_error(one, expected.at("output").tensor.narrow(0, 1, 1).contiguous()) < 1e-4);
}
