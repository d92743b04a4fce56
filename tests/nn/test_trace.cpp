// Tracing: module-level graphs of spec-built and hand-written models.
#include "engine/autograd.hpp"
#include "nn/layers.hpp"
#include "nn/trace.hpp"
#include "nn/zoo.hpp"

#include <doctest/doctest.h>

using namespace qforge;
using namespace qforge::nn;

namespace {

std::vector<std::string> node_names(const TracedGraph& g) {
  std::vector<std::string> out;
  for (const auto& n : g.nodes()) out.push_back(n.name);
  return out;
}

std::vector<std::string> names_of(const TracedGraph& g, const std::vector<std::pair<int, int>>& ids) {
  std::vector<std::string> out;
  for (auto [id, slot] : ids) out.push_back(g.node(id).name);
  return out;
}

// A hand-written model: functional ops between modules, a residual add done with a module and one done
// functionally, and a module called twice.
struct HandNet : Module {
  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm2d> bn;
  std::shared_ptr<ReLU> act;
  std::shared_ptr<Add> add;
  std::shared_ptr<Linear> fc;
  explicit HandNet(Generator& g) : Module("HandNet") {
    Conv2dOptions o;
    o.in_channels = 2, o.out_channels = 2, o.padding = {1, 1};
    conv = register_module("conv", std::make_shared<Conv2d>(o, g));
    bn = register_module("bn", std::make_shared<BatchNorm2d>(2));
    act = register_module("act", std::make_shared<ReLU>());
    add = register_module("add", std::make_shared<Add>());
    fc = register_module("head.fc", std::make_shared<Linear>(2 * 4 * 4, 3, true, g));
  }
  Tensor forward_tensor(const Tensor& x) override {
    Tensor y = (*act)((*bn)((*conv)(x)));
    Tensor z = (*add)({y, x})[0];                   // residual through a module
    Tensor w = ops::add(ops::mul(z, 0.5), y);       // functional: sources add(z) and act(y)
    Tensor v = (*act)(w);                           // act called a second time
    return (*fc)(v.flatten(1));                     // functional flatten (a view)
  }
};

}  // namespace

TEST_CASE("trace: mnist-cnn records every leaf in order with producers and consumers") {
  auto m = build_zoo_model("mnist-cnn");
  auto g = trace(*m, {Tensor::zeros({2, 1, 28, 28})});
  CHECK(node_names(g) == std::vector<std::string>{"conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2", "pool2",
                                                  "flatten", "fc"});
  const int conv1 = g.find_one("conv1");
  CHECK(g.node(conv1).type == "Conv2d");
  CHECK(g.node(conv1).module.get() == m->find("conv1").get());
  CHECK(g.node(conv1).inputs[0].source().node == TraceSource::kModelInput);
  CHECK(g.node(conv1).output_shapes[0] == Shape{2, 16, 28, 28});
  CHECK(names_of(g, g.consumers(conv1)) == std::vector<std::string>{"bn1"});
  CHECK(g.producers(g.find_one("bn2")) == std::vector<int>{g.find_one("conv2")});
  CHECK(g.nodes_of_type("BatchNorm2d").size() == 2);
  REQUIRE(g.model_outputs().size() == 1);
  CHECK(g.model_outputs()[0].source().node == g.find_one("fc"));
  CHECK(g.feeds_model_output(g.find_one("fc")));
  CHECK_FALSE(g.feeds_model_output(conv1));
  CHECK(g.node(g.find_one("fc")).inputs[0].source().direct);
}

TEST_CASE("trace: resnet-tiny shows the residual joins and the projection shortcut") {
  auto m = build_zoo_model("resnet-tiny");
  auto g = trace(*m, {Tensor::zeros({1, 1, 28, 28})});
  CHECK(g.size() == 22);
  const auto& add1 = g.node(g.find_one("block1.add"));
  REQUIRE(add1.inputs.size() == 2);
  CHECK(add1.inputs[0].source().node == g.find_one("block1.bn2"));
  CHECK(add1.inputs[1].source().node == g.find_one("stem.relu"));
  CHECK(names_of(g, g.consumers(g.find_one("block1.relu2"))) ==
        std::vector<std::string>{"block2.conv1", "block2.proj.conv"});
  CHECK(names_of(g, g.consumers(g.find_one("stem.relu"))) == std::vector<std::string>{"block1.conv1", "block1.add"});
  const auto& add2 = g.node(g.find_one("block2.add"));
  CHECK(add2.inputs[1].source().node == g.find_one("block2.proj.bn"));
  CHECK(g.node(g.find_one("block2.proj.conv")).output_shapes[0] == Shape{1, 32, 14, 14});
  CHECK(g.to_string().find("block2.proj.conv Conv2d") != std::string::npos);
}

TEST_CASE("trace: recurrent zoo models record the recurrent layer as one node with all its outputs") {
  auto m = build_zoo_model("lstm");
  auto g = trace(*m, {Tensor::zeros({2, 1, 28, 28})});
  CHECK(node_names(g) == std::vector<std::string>{"rows", "lstm", "last", "fc"});
  const auto& lstm = g.node(g.find_one("lstm"));
  CHECK(lstm.type == "LSTM");
  CHECK(lstm.output_shapes.size() == 3);
  CHECK(lstm.output_shapes[0] == Shape{2, 28, 128});
  const auto& last = g.node(g.find_one("last"));
  CHECK(last.inputs[0].source().node == lstm.id);
  CHECK(last.inputs[0].source().index == 0);

  ZooOptions zo;
  zo.vocab = 7;
  auto c = build_zoo_model("char-lstm", zo);
  auto gc = trace(*c, {Tensor::zeros({2, 5}, DType::i32)});
  CHECK(node_names(gc) == std::vector<std::string>{"embed", "lstm", "fc"});
  CHECK(gc.node(0).inputs[0].source().node == TraceSource::kModelInput);
  CHECK(gc.node(0).inputs[0].dtype == DType::i32);
}

TEST_CASE("trace: hand-written modules are traced through functional ops, views and repeated calls") {
  Generator gen(4);
  auto net = std::make_shared<HandNet>(gen);
  auto g = trace(*net, {Tensor::ones({2, 2, 4, 4})});
  CHECK(node_names(g) == std::vector<std::string>{"conv", "bn", "act", "add", "act", "head.fc"});
  const auto& act2 = g.node(4);
  CHECK(act2.call == 1);
  CHECK(g.node(2).call == 0);
  CHECK(g.find("act").size() == 2);
  // act#2's input came from add and act#1 through functional mul/add
  REQUIRE(act2.inputs[0].sources.size() == 2);
  CHECK(act2.inputs[0].sources[0].node == 2);
  CHECK(act2.inputs[0].sources[1].node == 3);
  CHECK_FALSE(act2.inputs[0].sources[0].direct);
  CHECK_THROWS_AS(act2.inputs[0].source(), Error);
  // the module Add joins act and the model input
  CHECK(g.node(3).inputs[1].source().node == TraceSource::kModelInput);
  // fc sees act#2's output through a flatten view
  const auto& fc = g.node(5);
  CHECK(fc.inputs[0].source().node == 4);
  CHECK_FALSE(fc.inputs[0].source().direct);
  CHECK(g.producers(5) == std::vector<int>{4});
  CHECK(names_of(g, g.consumers(2)) == std::vector<std::string>{"add", "act"});
}

TEST_CASE("trace: leaves model state and modes untouched, sees through hooks") {
  auto m = build_zoo_model("mnist-cnn");
  m->train();
  m->find("bn2")->eval();
  auto bn1 = m->find("bn1");
  const auto before = bn1->buffer("running_mean").to_vector<float>();
  Generator gen(1);
  // an output hook that replaces conv1's output (like an output quantizer) keeps the data flow
  m->find("conv1")->add_forward_hook(
      [](Module&, const std::vector<Tensor>&, std::vector<Tensor>& out) { out[0] = ops::mul(out[0], 1.0); });
  auto g = trace(*m, {Tensor::rand({2, 1, 28, 28}, gen)});
  CHECK(bn1->buffer("running_mean").to_vector<float>() == before);
  CHECK(bn1->buffer("num_batches_tracked").item() == 0);
  CHECK(m->is_training());
  CHECK(bn1->is_training());
  CHECK_FALSE(m->find("bn2")->is_training());
  CHECK(g.node(g.find_one("bn1")).inputs[0].source().node == g.find_one("conv1"));
  CHECK(g.node(g.find_one("bn1")).inputs[0].source().direct);
}

TEST_CASE("trace: a single layer traced on its own is one node") {
  Generator gen(2);
  auto owned = std::make_shared<Linear>(3, 2, true, gen);
  auto g = trace(*owned, {Tensor::ones({1, 3})});
  REQUIRE(g.size() == 1);
  CHECK(g.node(0).name == "");
  CHECK(g.model_outputs()[0].source().node == 0);
}

TEST_CASE("trace: a module returning its input unchanged is still the producer of what follows") {
  Generator gen(3);
  auto seq = std::make_shared<Sequential>(std::vector<ModulePtr>{
      std::make_shared<Linear>(4, 4, true, gen), std::make_shared<Dropout>(0.5, 1), std::make_shared<Identity>(),
      std::make_shared<Linear>(4, 2, true, gen)});
  auto g = trace(*seq, {Tensor::ones({3, 4})});
  REQUIRE(g.size() == 4);
  CHECK(g.node(0).name == "0");
  CHECK(g.node(1).inputs[0].source().node == 0);
  CHECK(g.node(2).inputs[0].source().node == 1);
  CHECK(g.node(3).inputs[0].source().node == 2);
  CHECK(g.model_outputs()[0].source().node == 3);
}
