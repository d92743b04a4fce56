// Model specs: building, writing back (round trip), references, and errors naming the node.
#include "engine/autograd.hpp"
#include "nn/layers.hpp"
#include "nn/spec.hpp"
#include "nn/zoo.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

using namespace qforge;
using namespace qforge::nn;
using json = nlohmann::json;

namespace {

json small_spec() {
  return json::parse(R"({
    "name": "small",
    "nodes": [
      {"name": "conv", "type": "Conv2d", "args": {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": 1}},
      {"name": "bn", "type": "BatchNorm2d", "args": {"num_features": 4, "momentum": null}},
      {"name": "act", "type": "LeakyReLU", "args": {"negative_slope": 0.2}},
      {"name": "skip", "type": "Conv2d", "args": {"in_channels": 2, "out_channels": 4, "kernel_size": 1, "bias": false},
       "inputs": ["input"]},
      {"name": "sum", "type": "Add", "inputs": ["act", "skip"]},
      {"name": "pool", "type": "AvgPool2d", "args": {"kernel_size": 2}},
      {"name": "flat", "type": "Flatten"},
      {"name": "drop", "type": "Dropout", "args": {"p": 0.25}},
      {"name": "fc", "type": "Linear", "args": {"in_features": 16, "out_features": 3}}
    ]
  })");
}

std::string error_of(const json& spec) {
  try {
    build_model(spec);
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no error>";
}

json one_node(const std::string& type, json args) {
  return {{"nodes", json::array({{{"name", "bad_node"}, {"type", type}, {"args", args}}})}};
}

}  // namespace

TEST_CASE("spec: builds a residual graph with default and explicit inputs") {
  auto g = build_model(small_spec(), {1});
  REQUIRE(g->nodes().size() == 9);
  CHECK(g->nodes()[1].inputs == std::vector<ValueRef>{{0, 0}});
  CHECK(g->nodes()[3].inputs == std::vector<ValueRef>{{ValueRef::kModelInput, 0}});
  CHECK(g->nodes()[4].inputs == std::vector<ValueRef>{{2, 0}, {3, 0}});
  CHECK(g->num_parameters() == 4 * 2 * 9 + 4 + 8 + 4 * 2 + 16 * 3 + 3);
  autograd::NoGradGuard ng;
  g->eval();
  Tensor y = (*g)(Tensor::ones({2, 2, 4, 4}));
  CHECK(y.shape() == Shape{2, 3});
  CHECK(g->to_string_graph().find("sum = Add(act, skip)") != std::string::npos);
  CHECK(g->to_string().find("(conv): Conv2d(2, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))") != std::string::npos);
}

TEST_CASE("spec: write_spec round-trips (same spec, same weights for the same seed, same outputs)") {
  auto a = build_model(small_spec(), {5});
  json w = write_spec(*a);
  auto b = build_model(w, {5});
  CHECK(write_spec(*b) == w);
  // every argument is written out explicitly
  CHECK(w["nodes"][0]["args"]["stride"] == json::array({1, 1}));
  CHECK(w["nodes"][1]["args"]["momentum"].is_null());
  CHECK(w["nodes"][4]["inputs"] == json::array({"act", "skip"}));
  auto sa = a->state_dict(), sb = b->state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    CHECK(sa[i].first == sb[i].first);
    CHECK(sa[i].second.to_vector<double>() == sb[i].second.to_vector<double>());
  }
  autograd::NoGradGuard ng;
  a->eval(), b->eval();
  Generator g(3);
  Tensor x = Tensor::rand({2, 2, 4, 4}, g);
  CHECK((*a)(x).to_vector<float>() == (*b)(x).to_vector<float>());
}

TEST_CASE("spec: every zoo model round-trips through write_spec") {
  for (const auto& name : zoo_names()) {
    CAPTURE(name);
    ZooOptions zo;
    zo.vocab = 13;
    auto m = build_zoo_model(name, zo);
    json w = write_spec(*m);
    auto m2 = build_model(w);
    CHECK(write_spec(*m2) == w);
    CHECK(m2->num_parameters() == m->num_parameters());
    CHECK(m2->state_dict().size() == m->state_dict().size());
  }
}

TEST_CASE("spec: output references select outputs of multi-output nodes") {
  json spec = json::parse(R"({
    "nodes": [
      {"name": "rnn", "type": "GRU", "args": {"input_size": 3, "hidden_size": 4, "batch_first": true}},
      {"name": "h", "type": "Identity", "inputs": ["rnn:1"]}
    ],
    "outputs": ["rnn", "h"]
  })");
  auto g = build_model(spec);
  auto out = (*g)(std::vector<Tensor>{Tensor::ones({2, 5, 3})});
  REQUIRE(out.size() == 2);
  CHECK(out[0].shape() == Shape{2, 5, 4});
  CHECK(out[1].shape() == Shape{1, 2, 4});
  json w = write_spec(*g);
  CHECK(w["nodes"][1]["inputs"] == json::array({"rnn:1"}));
  CHECK(w["outputs"] == json::array({"rnn", "h"}));
  CHECK(write_spec(*build_model(w)) == w);
}

TEST_CASE("spec: a Sequential model writes a chain spec; hand-written modules have none") {
  Generator g(1);
  Sequential s({std::make_shared<Linear>(4, 3, true, g), std::make_shared<ReLU>()});
  json w = write_spec(s);
  CHECK(w["nodes"].size() == 2);
  CHECK(w["nodes"][0]["name"] == "0");
  CHECK(w["nodes"][1]["inputs"] == json::array({"0"}));
  auto b = build_model(w);
  CHECK(b->state_dict().size() == 2);
  CHECK(b->state_dict()[0].first == "0.weight");
  struct Custom : Module {
    Custom() : Module("Custom") {}
  } c;
  CHECK_THROWS_WITH_AS(write_spec(c), doctest::Contains("Custom"), Error);
}

TEST_CASE("spec: bad specs are input errors naming the node") {
  {
    std::string e = error_of(one_node("Conv3d", json::object()));
    CHECK(e.find("bad_node") != std::string::npos);
    CHECK(e.find("unknown layer type 'Conv3d'") != std::string::npos);
  }
  {
    std::string e = error_of(one_node("Linear", {{"in_features", "8"}, {"out_features", 2}}));
    CHECK(e.find("bad_node") != std::string::npos);
    CHECK(e.find("'in_features' must be an integer") != std::string::npos);
  }
  {
    std::string e = error_of(one_node("Linear", {{"in_features", -8}, {"out_features", 2}}));
    CHECK(e.find("bad_node") != std::string::npos);
    CHECK(e.find("must be positive") != std::string::npos);
  }
  {
    std::string e = error_of(one_node("Linear", {{"in_features", 8}}));
    CHECK(e.find("missing argument 'out_features'") != std::string::npos);
  }
  {
    std::string e = error_of(one_node("Conv2d", {{"in_channels", 3}, {"out_channels", 4}, {"kernel_size", 3}, {"kernal", 3}}));
    CHECK(e.find("bad_node") != std::string::npos);
    CHECK(e.find("unknown argument 'kernal'") != std::string::npos);
  }
  {
    std::string e = error_of(one_node("Conv2d", {{"in_channels", 3}, {"out_channels", 4}, {"kernel_size", 3}, {"groups", 2}}));
    CHECK(e.find("bad_node") != std::string::npos);
    CHECK(e.find("divisible by groups=2") != std::string::npos);
  }
  {
    std::string e = error_of(one_node("Conv2d", {{"in_channels", 3}, {"out_channels", 4}, {"kernel_size", {3, 3, 3}}}));
    CHECK(e.find("'kernel_size' must be an integer or a list of two integers") != std::string::npos);
  }
  {
    std::string e = error_of(one_node("Dropout", {{"p", 1.5}}));
    CHECK(e.find("bad_node") != std::string::npos);
  }
  {
    std::string e = error_of(one_node("LSTM", {{"input_size", 3}, {"hidden_size", 0}}));
    CHECK(e.find("bad_node") != std::string::npos);
    CHECK(e.find("hidden_size") != std::string::npos);
  }
  {
    json s = json::parse(R"({"nodes": [{"name": "a", "type": "ReLU"}, {"name": "b", "type": "Add", "inputs": ["a", "ghost"]}]})");
    std::string e = error_of(s);
    CHECK(e.find("node 'b'") != std::string::npos);
    CHECK(e.find("'ghost'") != std::string::npos);
  }
  {
    json s = json::parse(R"({"nodes": [
      {"name": "a", "type": "ReLU", "inputs": ["c"]}, {"name": "b", "type": "ReLU"}, {"name": "c", "type": "ReLU"}]})");
    std::string e = error_of(s);
    CHECK(e.find("node 'a'") != std::string::npos);
    CHECK(e.find("cycle a -> c -> b -> a") != std::string::npos);
  }
  {
    json s = json::parse(R"({"nodes": [{"name": "a", "type": "ReLU", "inputs": ["a"]}]})");
    CHECK(error_of(s).find("cycle a -> a") != std::string::npos);
  }
  {
    json s = json::parse(R"({"nodes": [{"name": "a", "type": "ReLU", "inputs": ["b"]}, {"name": "b", "type": "ReLU", "inputs": ["input"]}]})");
    CHECK(error_of(s).find("defined after it") != std::string::npos);
  }
  {
    json s = json::parse(R"({"nodes": [{"name": "a", "type": "ReLU"}, {"name": "a", "type": "Tanh"}]})");
    CHECK(error_of(s).find("node 'a': duplicate") != std::string::npos);
  }
  {
    json s = json::parse(R"({"nodes": [{"name": "a", "type": "ReLU", "arg": {}}]})");
    CHECK(error_of(s).find("unknown field 'arg'") != std::string::npos);
  }
  CHECK(error_of(json::parse(R"({"nodes": []})")).find("non-empty") != std::string::npos);
  CHECK(error_of(json::parse(R"([1, 2])")).find("object") != std::string::npos);
}

TEST_CASE("spec: files are saved atomically and load errors name the file") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "qforge_test_spec";
  fs::create_directories(dir);
  const std::string path = (dir / "model.json").string();
  auto a = build_zoo_model("dw-cnn");
  save_model_spec(*a, path);
  CHECK_FALSE(fs::exists(path + ".tmp"));
  auto b = load_model_spec(path);
  CHECK(write_spec(*b) == write_spec(*a));
  {
    std::ofstream f(dir / "broken.json");
    f << "{\"nodes\": [";
  }
  CHECK_THROWS_WITH_AS(load_model_spec((dir / "broken.json").string()), doctest::Contains("broken.json"), InputError);
  {
    std::ofstream f(dir / "bad.json");
    f << R"({"nodes": [{"name": "x", "type": "Nope"}]})";
  }
  try {
    load_model_spec((dir / "bad.json").string());
    FAIL("expected an error");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("bad.json") != std::string::npos);
    CHECK(std::string(e.what()).find("node 'x'") != std::string::npos);
  }
  CHECK_THROWS_WITH_AS(load_model_spec((dir / "missing.json").string()), doctest::Contains("missing.json"), InputError);
  fs::remove_all(dir);
}

TEST_CASE("spec: clone_model deep-copies weights, buffers and modes") {
  auto a = build_zoo_model("resnet-tiny", {}, {1});
  Generator g(2);
  a->train();
  (*a)(Tensor::rand({2, 1, 28, 28}, g));  // moves BN running stats away from their initial values
  a->find("block1.bn1")->eval();
  auto b = clone_model(*a);
  auto sa = a->state_dict(), sb = b->state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    CHECK(sa[i].first == sb[i].first);
    CHECK(sa[i].second.to_vector<double>() == sb[i].second.to_vector<double>());
    CHECK_FALSE(sa[i].second.storage() == sb[i].second.storage());
  }
  CHECK(b->is_training());
  CHECK_FALSE(b->find("block1.bn1")->is_training());
  CHECK(b->find("block1.bn2")->is_training());
  a->eval(), b->eval();
  Tensor x = Tensor::rand({2, 1, 28, 28}, g);
  autograd::NoGradGuard ng;
  CHECK((*a)(x).to_vector<float>() == (*b)(x).to_vector<float>());
}
