// The layers an imported ONNX graph is made of (Note [ONNX layers] in nn/layers.hpp): ONNX semantics of
// each forward, gradients against finite differences, spec round trips, and errors that name the node.
#include "engine/autograd.hpp"
#include "nn/layers.hpp"
#include "nn/spec.hpp"
#include "tests/support/gradcheck.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <map>

using namespace qforge;
using namespace qforge::nn;
using nlohmann::json;
using qforge::testing::gradcheck;
using qforge::testing::rand_input;

namespace {

// Gradcheck of an input-only layer (no parameters) over all its inputs; several outputs are joined
// (flattened, concatenated) so that each one's gradient is checked.
std::string layer_gradcheck(Module& m, const std::vector<Shape>& shapes, uint64_t seed, double lo = -1, double hi = 1) {
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < shapes.size(); ++i) inputs.push_back(rand_input(shapes[i], seed + i, lo, hi));
  return gradcheck(
      [&](const std::vector<Tensor>& in) {
        std::vector<Tensor> outs = m(in);
        if (outs.size() == 1) return outs[0];
        std::vector<Tensor> flat;
        for (const Tensor& o : outs) flat.push_back(o.reshape({-1}));
        return ops::concat(flat, 0);
      },
      inputs);
}

std::vector<float> values(const Tensor& t) { return t.contiguous().to_vector<float>(); }

Tensor iota(const Shape& shape) {
  return Tensor::arange(0, static_cast<double>(shape_numel(shape))).reshape(shape);
}

json node(const std::string& name, const std::string& type, json args, std::vector<std::string> inputs) {
  return {{"name", name}, {"type", type}, {"args", std::move(args)}, {"inputs", std::move(inputs)}};
}

std::string build_error(const json& n) {
  json spec = {{"inputs", {"input"}}, {"nodes", json::array({n})}};
  try {
    build_model(spec);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("onnx layers: Add/Sub/Mul/Div broadcast like NumPy and backpropagate to both inputs") {
  Mul mul;
  CHECK(mul(std::vector<Tensor>{Tensor::full({2, 3, 1, 1}, 2.0), Tensor::ones({2, 3, 4, 5})})[0].shape() ==
        Shape{2, 3, 4, 5});
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{2, 3, 1, 1}, {2, 3, 4, 5}}, {{2, 3, 4}, {4}}, {{3, 1}, {1, 5}}, {{2, 3}, {2, 3}}, {{}, {2, 2}}};
  uint64_t seed = 100;
  for (const auto& [a, b] : cases) {
    CAPTURE(shape_str(a));
    CAPTURE(shape_str(b));
    Add add;
    Sub sub;
    CHECK(layer_gradcheck(add, {a, b}, seed++).empty());
    CHECK(layer_gradcheck(sub, {a, b}, seed++).empty());
    CHECK(layer_gradcheck(mul, {a, b}, seed++).empty());
    Div div;
    CHECK(layer_gradcheck(div, {a, b}, seed++, 0.5, 2.0).empty());  // away from 0
  }
  const Tensor a = Tensor::from_vector<float>({6, 8}, {2, 1}), b = Tensor::from_vector<float>({2, 4}, {1, 2});
  Sub sub;
  Div div;
  CHECK(values(sub(std::vector<Tensor>{a, b})[0]) == std::vector<float>{4, 2, 6, 4});
  CHECK(values(div(std::vector<Tensor>{a, b})[0]) == std::vector<float>{3, 1.5, 4, 2});
  CHECK_THROWS_WITH_AS(mul(std::vector<Tensor>{Tensor::ones({2, 3}), Tensor::ones({4})}),
                       doctest::Contains("Mul: shapes [2, 3] and [4] do not broadcast"), Error);
  CHECK_THROWS_WITH_AS(mul(std::vector<Tensor>{Tensor::ones({2, 3})}), doctest::Contains("Mul: expects 2 inputs, got 1"),
                       Error);
}

TEST_CASE("onnx layers: Constant outputs its buffer 'value', takes no inputs and is not trained") {
  auto spec = json{{"inputs", {"input"}},
                   {"nodes", json::array({node("scale", "Constant", {{"shape", {1, 3, 1, 1}}}, {}),
                                          node("mul", "Mul", json::object(), {"input", "scale"})})}};
  spec["nodes"][0].erase("inputs");  // a Constant without "inputs" has none (not the previous node)
  auto g = build_model(spec);
  const auto sd = g->state_dict();
  REQUIRE(sd.size() == 1);
  CHECK(sd[0].first == "scale.value");
  CHECK(sd[0].second.shape() == Shape{1, 3, 1, 1});
  CHECK(g->parameters().empty());
  g->load_state_dict(std::map<std::string, Tensor>{{"scale.value", Tensor::from_vector<float>({1, 2, 3}, {1, 3, 1, 1})}});
  const Tensor y = (*g)(Tensor::ones({2, 3, 1, 2}));
  CHECK(values(y) == std::vector<float>{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3});
  CHECK(write_spec(*g)["nodes"][0]["inputs"] == json::array());
  CHECK(write_spec(*g)["nodes"][0]["args"] == json{{"shape", {1, 3, 1, 1}}});
  Constant c({2});
  CHECK_THROWS_WITH_AS(c(Tensor::ones({2})), doctest::Contains("Constant: takes no inputs"), Error);
  CHECK(build_error(node("c", "Constant", {{"shape", {2, -1}}}, {})).find("node 'c' (Constant): argument 'shape' has "
                                                                         "a negative dimension -1") != std::string::npos);
}

TEST_CASE("onnx layers: Concat and Split move data along a dimension and backpropagate") {
  Concat cat(1);
  const Tensor a = iota({2, 1, 2}), b = iota({2, 2, 2});
  CHECK(values(cat(std::vector<Tensor>{a, b})[0]) == std::vector<float>{0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 6, 7});
  CHECK(layer_gradcheck(cat, {{2, 1, 3}, {2, 2, 3}, {2, 3, 3}}, 200).empty());
  Concat neg(-1);
  CHECK(neg(std::vector<Tensor>{a, b.slice(1, 0, 1)})[0].shape() == Shape{2, 1, 4});
  CHECK_THROWS_WITH_AS(cat(std::vector<Tensor>{a, Tensor::ones({3, 1, 2})}),
                       doctest::Contains("Concat: input 1 of shape [3, 1, 2]"), Error);

  Split split(-1, {1, 3, 2});
  const auto parts = split(std::vector<Tensor>{iota({2, 6})});
  REQUIRE(parts.size() == 3);
  CHECK(values(parts[0]) == std::vector<float>{0, 6});
  CHECK(values(parts[1]) == std::vector<float>{1, 2, 3, 7, 8, 9});
  CHECK(values(parts[2]) == std::vector<float>{4, 5, 10, 11});
  CHECK(layer_gradcheck(split, {{3, 6}}, 201).empty());
  CHECK_THROWS_WITH_AS(split(iota({2, 5})), doctest::Contains("Split: split_sizes [1, 3, 2] add up to 6"), Error);
}

TEST_CASE("onnx layers: Slice follows ONNX (negative and clamped indices, steps, reversal)") {
  const Tensor x = iota({2, 6});
  constexpr int64_t kBig = std::numeric_limits<int32_t>::max();
  Slice tail({-2}, {kBig}, {1});  // last two columns
  CHECK(values(tail(x)) == std::vector<float>{4, 5, 10, 11});
  Slice stepped({1, -100}, {100, -1}, {-1, 0}, {2, 1});  // columns 1, 3, 5 of rows 0 (clamped start)
  CHECK(values(stepped(x)) == std::vector<float>{1, 3, 5});
  Slice empty({4}, {2}, {1});
  CHECK(empty(x).shape() == Shape{2, 0});
  Slice reversed({-1}, {-kBig}, {1}, {-1});  // ONNX's reversal idiom
  CHECK(values(reversed(x)) == std::vector<float>{5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6});
  Slice rev2({4}, {0}, {1}, {-2});  // 4, 2
  CHECK(values(rev2(x)) == std::vector<float>{4, 2, 10, 8});
  CHECK(layer_gradcheck(stepped, {{3, 7}}, 300).empty());
  CHECK(layer_gradcheck(rev2, {{3, 6, 2}}, 301).empty());
  Slice bad_axis({0}, {1}, {2});
  CHECK_THROWS_WITH_AS(bad_axis(x), doctest::Contains("Slice: axis 2 out of range for an input of shape [2, 6]"), Error);
  // Spec: INT64_MAX ends (as torch.onnx writes them) are accepted and mean "to the end".
  json spec = {{"nodes", json::array({node("s", "Slice",
                                             {{"starts", {1}},
                                              {"ends", {std::numeric_limits<int64_t>::max()}},
                                              {"axes", {1}}},
                                             {"input"})})}};
  CHECK(values((*build_model(spec))(x)) == std::vector<float>{1, 2, 3, 4, 5, 7, 8, 9, 10, 11});
  CHECK(build_error(node("s", "Slice", {{"starts", {0}}, {"ends", {1}}, {"steps", {0}}}, {"input"}))
            .find("node 's' (Slice): a step is 0") != std::string::npos);
  CHECK(build_error(node("s", "Slice", {{"starts", {0, 1}}, {"ends", {1}}}, {"input"})).find("must be non-empty and of "
                                                                                            "one length") != std::string::npos);
}

TEST_CASE("onnx layers: Transpose, Reshape, Squeeze and Unsqueeze reshape like ONNX and backpropagate") {
  Transpose t({0, 2, 3, 1});  // NCHW -> NHWC
  CHECK(t(iota({2, 3, 4, 5})).shape() == Shape{2, 4, 5, 3});
  Transpose rev;
  CHECK(rev(iota({2, 3, 4})).shape() == Shape{4, 3, 2});
  CHECK(values(rev(iota({2, 3}))) == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(layer_gradcheck(t, {{2, 3, 2, 2}}, 400).empty());
  CHECK_THROWS_WITH_AS(t(iota({2, 3})), doctest::Contains("Transpose: perm [0, 2, 3, 1] for an input of shape [2, 3]"),
                       Error);

  Reshape r({0, -1});  // ONNX flatten: keep N, infer the rest
  CHECK(r(iota({2, 3, 4})).shape() == Shape{2, 12});
  Reshape r2({0, 0, 2, -1});
  CHECK(r2(iota({2, 3, 4, 1})).shape() == Shape{2, 3, 2, 2});
  CHECK(layer_gradcheck(r2, {{2, 3, 2, 2}}, 401).empty());
  CHECK(layer_gradcheck(r, {{2, 3, 4}}, 402).empty());
  Reshape r3({5, -1});
  CHECK_THROWS_WITH_AS(r3(iota({2, 3})), doctest::Contains("Reshape: cannot reshape [2, 3] (6 elements) to [5, -1]"),
                       Error);

  Squeeze sq({2, -1});
  CHECK(sq(iota({2, 3, 1, 1})).shape() == Shape{2, 3});
  Squeeze all;
  CHECK(all(iota({1, 3, 1, 2})).shape() == Shape{3, 2});
  CHECK(layer_gradcheck(sq, {{2, 3, 1, 1}}, 403).empty());
  CHECK_THROWS_WITH_AS(sq(iota({2, 3, 2, 1})), doctest::Contains("Squeeze: dimension 2 of the input [2, 3, 2, 1] has "
                                                                 "size 2, not 1"),
                       Error);

  Unsqueeze un({0, 2});
  CHECK(un(iota({3, 4})).shape() == Shape{1, 3, 1, 4});
  Unsqueeze un_neg({-1, -2});  // counted in the output: [2, 3] -> [2, 3, 1, 1]
  CHECK(un_neg(iota({2, 3})).shape() == Shape{2, 3, 1, 1});
  CHECK(layer_gradcheck(un, {{3, 2}}, 404).empty());
  Unsqueeze un_bad({4});
  CHECK_THROWS_WITH_AS(un_bad(iota({2, 3})), doctest::Contains("Unsqueeze: dimension 4 out of range for an output of 3"),
                       Error);
}

TEST_CASE("onnx layers: Pad takes ONNX's [begins..., ends...] order, crops with negative pads") {
  Pad p({0, 0, 1, 0, 0, 0, 0, 2}, -1.0);  // [N, C, H, W]: one row before H, two columns after W
  const Tensor x = iota({1, 1, 2, 2});
  const Tensor y = p(x);
  CHECK(y.shape() == Shape{1, 1, 3, 4});
  CHECK(values(y) == std::vector<float>{-1, -1, -1, -1, 0, 1, -1, -1, 2, 3, -1, -1});
  Pad crop({0, 0, 0, -1, 0, 0, 1, 0});
  CHECK(values(crop(x)) == std::vector<float>{1, 3, 0});  // first column cropped, a zero row appended
  CHECK(layer_gradcheck(p, {{2, 2, 3, 2}}, 500).empty());
  CHECK(layer_gradcheck(crop, {{2, 2, 3, 2}}, 501).empty());
  CHECK_THROWS_WITH_AS(p(iota({2, 2})), doctest::Contains("Pad: pads [0, 0, 1, 0, 0, 0, 0, 2] are for 4 dimensions, "
                                                          "the input [2, 2] has 2"),
                       Error);
  CHECK(build_error(node("p", "Pad", {{"pads", {1, 2, 3}}}, {"input"})).find("node 'p' (Pad): argument 'pads' needs a "
                                                                             "begin and an end") != std::string::npos);
}

TEST_CASE("onnx layers: Softmax, LogSoftmax, ReduceMean, HardSigmoid and Hardtanh") {
  Softmax sm(1);
  const Tensor s = sm(Tensor::zeros({2, 4, 3}));
  CHECK(values(s)[0] == doctest::Approx(0.25));
  CHECK(layer_gradcheck(sm, {{2, 4, 3}}, 600).empty());
  LogSoftmax lsm;
  CHECK(layer_gradcheck(lsm, {{3, 5}}, 601).empty());
  CHECK_THROWS_WITH_AS(sm(Tensor::zeros({3})), doctest::Contains("Softmax: dimension 1 out of range for an input of "
                                                                 "shape [3]"),
                       Error);

  ReduceMean gap({2, 3}, true);
  CHECK(gap(iota({2, 3, 2, 2})).shape() == Shape{2, 3, 1, 1});
  CHECK(values(gap(iota({1, 1, 2, 2}))) == std::vector<float>{1.5});
  ReduceMean all;
  CHECK(all(iota({2, 3})).shape() == Shape{});
  CHECK(layer_gradcheck(gap, {{2, 3, 2, 2}}, 602).empty());
  ReduceMean neg({-1});
  CHECK(neg(iota({2, 3})).shape() == Shape{2});

  HardSigmoid hs;  // ONNX defaults 0.2, 0.5
  const auto hv = values(hs(Tensor::from_vector<float>({-5, 0, 1, 5}, {4})));
  CHECK(hv[0] == 0);
  CHECK(hv[1] == 0.5);
  CHECK(hv[2] == doctest::Approx(0.7));
  CHECK(hv[3] == 1);
  HardSigmoid torch_hs(1.0 / 6, 0.5);
  CHECK(values(torch_hs(Tensor::from_vector<float>({-3, 3, 1.5f}, {3})))[2] == doctest::Approx(0.75));
  CHECK(layer_gradcheck(hs, {{3, 7}}, 603, -4, 4).empty());

  Hardtanh ht(-0.5, 0.5);
  CHECK(values(ht(Tensor::from_vector<float>({-1, 0.25f, 2}, {3}))) == std::vector<float>{-0.5, 0.25, 0.5});
  CHECK(layer_gradcheck(ht, {{4, 5}}, 604).empty());
  CHECK(build_error(node("h", "Hardtanh", {{"min_val", 1}, {"max_val", 0}}, {"input"})).find("node 'h' (Hardtanh): "
                                                                                             "min_val 1 is above") !=
        std::string::npos);
}

TEST_CASE("onnx layers: a graph of every new type round-trips through write_spec/build_model and trains") {
  json spec = {
      {"inputs", {"input"}},
      {"nodes",
       json::array({
           node("conv", "Conv2d", {{"in_channels", 2}, {"out_channels", 4}, {"kernel_size", 3}, {"padding", 1}}, {"input"}),
           node("gate_pool", "ReduceMean", {{"dims", {2, 3}}, {"keepdim", true}}, {"conv"}),
           node("gate", "HardSigmoid", {{"alpha", 1.0 / 6}, {"beta", 0.5}}, {"gate_pool"}),
           node("scaled", "Mul", json::object(), {"gate", "conv"}),
           node("offset", "Constant", {{"shape", {4, 1, 1}}}, {}),
           node("shifted", "Sub", json::object(), {"scaled", "offset"}),
           node("halves", "Split", {{"dim", 1}, {"split_sizes", {1, 3}}}, {"shifted"}),
           node("joined", "Concat", {{"dim", 1}}, {"halves:1", "halves"}),
           node("padded", "Pad", {{"pads", {0, 0, 1, 1, 0, 0, 1, 1}}, {"value", 0.5}}, {"joined"}),
           node("cropped", "Slice", {{"starts", {1, 1}}, {"ends", {-1, -1}}, {"axes", {2, 3}}}, {"padded"}),
           node("nhwc", "Transpose", {{"perm", {0, 2, 3, 1}}}, {"cropped"}),
           node("clipped", "Hardtanh", {{"min_val", -2}, {"max_val", 2}}, {"nhwc"}),
           node("flat", "Reshape", {{"shape", {0, -1}}}, {"clipped"}),
           node("wide", "Unsqueeze", {{"dims", {1}}}, {"flat"}),
           node("narrow", "Squeeze", {{"dims", {1}}}, {"wide"}),
           node("fc", "Linear", {{"in_features", 4 * 3 * 3}, {"out_features", 5}}, {"narrow"}),
           node("halved", "Div", json::object(), {"fc", "offset"}),
           node("probs", "LogSoftmax", {{"dim", -1}}, {"fc"}),
           node("sm", "Softmax", {{"dim", 1}}, {"probs"}),
       })},
      {"outputs", {"sm"}}};
  spec["nodes"][16]["inputs"] = {"fc", "fc"};  // Div: a binary node fed twice by one value
  auto g = build_model(spec, {.seed = 3});
  Generator gen(9);
  {
    NoGradGuard ng;
    g->find("offset")->buffer("value").copy_(Tensor::randn({4, 1, 1}, gen));
  }
  const Tensor x = Tensor::randn({2, 2, 3, 3}, gen);
  const Tensor y = (*g)(x);
  CHECK(y.shape() == Shape{2, 5});
  const json written = write_spec(*g);
  auto copy = build_model(written);
  CHECK(write_spec(*copy) == written);
  copy->load_state_dict(g->state_dict());
  CHECK(testing::max_abs_diff((*copy)(x), y) == 0.0);

  // One SGD step changes the weights (the gradient flows through every layer), not the Constant.
  const Tensor w0 = g->find("conv")->raw_param("weight").clone();
  const Tensor c0 = g->find("offset")->buffer("value").clone();
  const Tensor loss = ops::cross_entropy((*g)(x), Tensor::from_vector<int32_t>({1, 3}, {2}));
  loss.backward();
  {
    NoGradGuard ng;
    for (auto& p : g->parameters()) {
      REQUIRE(p.grad().defined());
      p.copy_(ops::add(p, ops::mul(p.grad(), -0.5)));
    }
  }
  CHECK(testing::max_abs_diff(g->find("conv")->raw_param("weight"), w0) > 0.0);
  CHECK(testing::max_abs_diff(g->find("offset")->buffer("value"), c0) == 0.0);
}

TEST_CASE("onnx layers: a shape mismatch at forward names the node, its type and the shapes") {
  json spec = {{"inputs", {"a", "b"}},
               {"nodes", json::array({node("prod", "Mul", json::object(), {"a", "b"})})}};
  auto g = build_model(spec);
  CHECK_THROWS_WITH_AS((*g)(std::vector<Tensor>{Tensor::ones({2, 3}), Tensor::ones({2, 4})}),
                       doctest::Contains("node 'prod' (Mul): Mul: shapes [2, 3] and [2, 4] do not broadcast"), Error);
  // Sizes whose products overflow int64 are refused, not wrapped around.
  constexpr int64_t kBig = int64_t{1} << 31;
  Reshape huge({kBig, kBig, kBig});
  CHECK_THROWS_WITH_AS(huge(iota({2, 3})), doctest::Contains("Reshape: cannot reshape [2, 3]"), Error);
  Pad wide({kBig, kBig, kBig, kBig, kBig, kBig});
  CHECK_THROWS_WITH_AS(wide(iota({1, 1, 1})), doctest::Contains("Pad: output shape"), Error);
  CHECK(build_error(node("r", "Reshape", {{"shape", {-1, -1}}}, {"input"})).find("node 'r' (Reshape): argument 'shape' "
                                                                                "has more than one -1") != std::string::npos);
  CHECK(build_error(node("t", "Transpose", {{"perm", {0, 0}}}, {"input"})).find("node 't' (Transpose): argument 'perm' "
                                                                               "[0, 0] is not a permutation") !=
        std::string::npos);
  CHECK(build_error(node("c", "Concat", {{"dim", "x"}}, {"input"})).find("node 'c' (Concat): argument 'dim' must be an "
                                                                        "integer") != std::string::npos);
  CHECK(build_error(node("s", "Split", {{"dim", 0}}, {"input"})).find("node 's' (Split): missing argument "
                                                                     "'split_sizes'") != std::string::npos);
  CHECK(build_error(node("u", "Unsqueeze", {{"dims", json::array()}}, {"input"})).find("node 'u' (Unsqueeze): "
                                                                                      "argument 'dims' is empty") !=
        std::string::npos);
  CHECK(build_error(node("m", "ReduceMean", {{"dims", {1}}, {"keep", true}}, {"input"})).find("node 'm' (ReduceMean): "
                                                                                             "unknown argument 'keep'") !=
        std::string::npos);
  for (const char* t : {"Constant", "Mul", "Sub", "Div", "Concat", "Split", "Slice", "Transpose", "Reshape", "Squeeze",
                        "Unsqueeze", "Pad", "Softmax", "LogSoftmax", "ReduceMean", "HardSigmoid", "Hardtanh"}) {
    const auto types = spec_layer_types();
    CHECK_MESSAGE(std::find(types.begin(), types.end(), t) != types.end(), t);
  }
}
