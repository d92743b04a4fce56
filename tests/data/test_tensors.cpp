// --data tensors:FILE: the user's own arrays (.npz fixtures from tools/gen_fixtures_npy.py, .safetensors
// written here) as datasets, and the refusals that name the file and the array.
#include "data/data.hpp"
#include "nn/safetensors.hpp"
#include "tests/support/fixtures.hpp"

#include <doctest/doctest.h>

#include <filesystem>

using namespace qforge;
using testing::error_of;
using namespace qforge::data;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return testing::fixture_path("npy/" + name).string(); }

Batch all_of(const Dataset& ds) {
  std::vector<int64_t> idx(static_cast<size_t>(ds.size()));
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  return ds.get_batch(idx, nullptr);
}

}  // namespace

TEST_CASE("tensors: an .npz with input and label serves both splits, inputs and labels as stored") {
  const DataSplits d = load_data("tensors:" + fixture("stored.npz"));
  CHECK(d.kind == "tensors");
  CHECK(d.train == d.test);
  CHECK(d.train->size() == 6);
  CHECK(d.train->example_shape() == Shape{4});
  CHECK(d.train->num_classes() == 3);
  CHECK(d.train->kind() == TaskKind::classification);
  const NpyArrays raw = read_npz(fixture("stored.npz"));
  const Batch b = all_of(*d.train);
  CHECK(b.inputs.dtype() == DType::f32);
  CHECK(b.inputs.to_vector<float>() == raw.at("input").tensor.to_vector<float>());
  CHECK(b.targets.to_vector<int32_t>() == std::vector<int32_t>{0, 2, 1, 2, 0, 1});
  // picked examples, in the order asked
  const std::vector<int64_t> idx = {5, 0};
  const Batch p = d.train->get_batch(idx, nullptr);
  CHECK(p.inputs.at({0, 3}) == raw.at("input").tensor.at({5, 3}));
  CHECK(p.targets.to_vector<int32_t>() == std::vector<int32_t>{1, 0});
}

TEST_CASE("tensors: uint8 inputs become float32 unchanged (0..255); test_input/test_label form the test split") {
  const DataSplits d = load_data("tensors:" + fixture("images_u8.npz"));
  const NpyArrays raw = read_npz(fixture("images_u8.npz"));
  REQUIRE(d.train != d.test);
  CHECK(d.train->size() == 5);
  CHECK(d.test->size() == 2);
  CHECK(d.train->example_shape() == Shape{1, 3, 3});
  CHECK(d.train->num_classes() == 4);  // the largest label of either split + 1
  const Batch t = all_of(*d.test);
  const std::vector<float> want = raw.at("test_input").tensor.to(DType::f32).to_vector<float>();
  CHECK(t.inputs.to_vector<float>() == want);
  CHECK(t.targets.to_vector<int32_t>() == std::vector<int32_t>{3, 0});
}

TEST_CASE("tensors: without labels every target is ignore_index (-100); float64 inputs become float32") {
  const DataSplits d = load_data("tensors:" + fixture("unlabelled.npz"));
  CHECK(d.train->num_classes() == 0);
  CHECK(d.train->example_shape() == Shape{20});
  const Batch b = all_of(*d.train);
  CHECK(b.inputs.dtype() == DType::f32);
  CHECK(b.targets.to_vector<int32_t>() == std::vector<int32_t>(4, kNoLabel));
  CHECK(d.train->description().find("unlabelled") != std::string::npos);
}

TEST_CASE("tensors: a .safetensors file (int64 labels) through the loader") {
  const fs::path dir = testing::temp_dir("tensors-st");
  Generator gen(3);
  const Tensor x = Tensor::randn({10, 20}, gen);
  const Tensor y = Tensor::from_vector(std::vector<int32_t>{0, 1, 2, 3, 4, 0, 1, 2, 3, 4}, {10});
  nn::save_safetensors(dir / "d.safetensors", {{"input", x}, {"label", y}});
  const DataSplits d = load_data("tensors:" + (dir / "d.safetensors").string());
  CHECK(d.train->num_classes() == 5);
  DataLoader loader(d.train, {.batch_size = 4, .shuffle = false, .prefetch = false});
  loader.start_epoch(0);
  int64_t seen = 0;
  while (auto b = loader.next()) {
    CHECK(b->inputs.size(1) == 20);
    seen += b->size();
  }
  CHECK(seen == 10);
  const NamedArrays arrays = read_named_arrays(dir / "d.safetensors");
  CHECK(arrays.at("label").stored_dtype == "I64");
  fs::remove_all(dir);
}

TEST_CASE("tensors: bad files are InputErrors naming the file, the array and the reason") {
  auto err = [](const std::string& name) { return error_of([&] { load_data("tensors:" + fixture(name)); }); };
  CHECK(err("bad_label_dtype.npz").find("array 'label' has dtype '<f4'; labels must be integers") != std::string::npos);
  CHECK(err("bad_label_length.npz").find("array 'label' has shape [5]; expected [6]") != std::string::npos);
  CHECK(err("bad_test_shape.npz").find("array 'test_input' has examples of shape [5], 'input' of shape [4]") !=
        std::string::npos);
  CHECK(err("bad_name.npz").find("unexpected array 'labels'") != std::string::npos);
  CHECK(err("bad_ragged.npz").find("array 'input'") != std::string::npos);
  CHECK(err("bad_name.npz").find("bad_name.npz") != std::string::npos);
  CHECK(error_of([] { load_data("tensors:"); }).find("needs a .safetensors or .npz") != std::string::npos);
  CHECK(error_of([] { load_data("tensors:" + fixture("f4_2x3.npy")); }).find("expected a .safetensors or .npz") !=
        std::string::npos);

  NamedArrays a;
  a["input"] = {Tensor::zeros({3, 2}), "<f4"};
  a["label"] = {Tensor::from_vector(std::vector<int32_t>{0, -1, 2}, {3}), "<i8"};
  CHECK(error_of([&] { make_tensor_splits(a, "m.npz"); }).find("m.npz: array 'label': label -1 of example 1 is negative") !=
        std::string::npos);
  a.erase("label");
  a["test_input"] = {Tensor::zeros({2, 2}), "<f4"};
  a["test_label"] = {Tensor::zeros({2}, DType::i32), "<i4"};
  CHECK(error_of([&] { make_tensor_splits(a, "m.npz"); }).find("'test_label' is given but 'label' is missing") !=
        std::string::npos);
  a.erase("test_label");
  a["input"] = {Tensor::zeros({3, 2}, DType::i32), "<i4"};
  CHECK(error_of([&] { make_tensor_splits(a, "m.npz"); }).find("array 'input' has dtype '<i4'; expected float32") !=
        std::string::npos);
  a["input"] = {Tensor::scalar(1), "<f4"};
  CHECK(error_of([&] { make_tensor_splits(a, "m.npz"); }).find("array 'input' is 0-d") != std::string::npos);
  a.erase("input");
  CHECK(error_of([&] { make_tensor_splits(a, "m.npz"); }).find("no array 'input'") != std::string::npos);
}
