#include "nn/zoo.hpp"

namespace qforge::nn {

using json = nlohmann::json;

namespace {

json node(const std::string& name, const std::string& type, json args = json::object(), json inputs = nullptr) {
  json n = {{"name", name}, {"type", type}, {"args", std::move(args)}};
  if (!inputs.is_null()) n["inputs"] = std::move(inputs);
  return n;
}

json conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, int64_t groups = 1, bool bias = true) {
  return {{"in_channels", in}, {"out_channels", out}, {"kernel_size", k}, {"stride", stride},
          {"padding", pad},    {"groups", groups},    {"bias", bias}};
}
json bn(int64_t c) { return {{"num_features", c}}; }
json linear(int64_t in, int64_t out) { return {{"in_features", in}, {"out_features", out}}; }

json mlp() {
  return json::array({node("flatten", "Flatten"), node("fc1", "Linear", linear(784, 256)), node("relu", "ReLU"),
                      node("fc2", "Linear", linear(256, 10))});
}

json mnist_cnn() {
  return json::array({
      node("conv1", "Conv2d", conv(1, 16, 3, 1, 1)), node("bn1", "BatchNorm2d", bn(16)), node("relu1", "ReLU"),
      node("pool1", "MaxPool2d", {{"kernel_size", 2}}), node("conv2", "Conv2d", conv(16, 32, 3, 1, 1)),
      node("bn2", "BatchNorm2d", bn(32)), node("relu2", "ReLU"), node("pool2", "MaxPool2d", {{"kernel_size", 2}}),
      node("flatten", "Flatten"), node("fc", "Linear", linear(1568, 10)),
  });
}

json dw_cnn() {
  return json::array({
      node("conv1", "Conv2d", conv(1, 16, 3, 1, 1)), node("bn1", "BatchNorm2d", bn(16)), node("relu1", "ReLU6"),
      node("dw1", "Conv2d", conv(16, 16, 3, 2, 1, 16)), node("bn2", "BatchNorm2d", bn(16)), node("relu2", "ReLU6"),
      node("pw1", "Conv2d", conv(16, 32, 1, 1, 0)), node("bn3", "BatchNorm2d", bn(32)), node("relu3", "ReLU6"),
      node("dw2", "Conv2d", conv(32, 32, 3, 2, 1, 32)), node("bn4", "BatchNorm2d", bn(32)), node("relu4", "ReLU6"),
      node("pw2", "Conv2d", conv(32, 64, 1, 1, 0)), node("bn5", "BatchNorm2d", bn(64)), node("relu5", "ReLU6"),
      node("pool", "AdaptiveAvgPool2d", {{"output_size", 1}}), node("flatten", "Flatten"),
      node("fc", "Linear", linear(64, 10)),
  });
}

json resnet_tiny() {
  const bool nb = false;
  return json::array({
      node("stem.conv", "Conv2d", conv(1, 16, 3, 1, 1, 1, nb)),
      node("stem.bn", "BatchNorm2d", bn(16)),
      node("stem.relu", "ReLU"),
      node("block1.conv1", "Conv2d", conv(16, 16, 3, 1, 1, 1, nb)),
      node("block1.bn1", "BatchNorm2d", bn(16)),
      node("block1.relu1", "ReLU"),
      node("block1.conv2", "Conv2d", conv(16, 16, 3, 1, 1, 1, nb)),
      node("block1.bn2", "BatchNorm2d", bn(16)),
      node("block1.add", "Add", json::object(), {"block1.bn2", "stem.relu"}),
      node("block1.relu2", "ReLU"),
      node("block2.conv1", "Conv2d", conv(16, 32, 3, 2, 1, 1, nb)),
      node("block2.bn1", "BatchNorm2d", bn(32)),
      node("block2.relu1", "ReLU"),
      node("block2.conv2", "Conv2d", conv(32, 32, 3, 1, 1, 1, nb)),
      node("block2.bn2", "BatchNorm2d", bn(32)),
      node("block2.proj.conv", "Conv2d", conv(16, 32, 1, 2, 0, 1, nb), {"block1.relu2"}),
      node("block2.proj.bn", "BatchNorm2d", bn(32)),
      node("block2.add", "Add", json::object(), {"block2.bn2", "block2.proj.bn"}),
      node("block2.relu2", "ReLU"),
      node("pool", "AdaptiveAvgPool2d", {{"output_size", 1}}),
      node("flatten", "Flatten"),
      node("fc", "Linear", linear(32, 10)),
  });
}

json rnn_rows(const std::string& name, const std::string& type) {
  json rnn = {{"input_size", 28}, {"hidden_size", 128}, {"num_layers", 1}, {"bidirectional", false}, {"batch_first", true}};
  return json::array({
      node("rows", "ImageAsSequence"), node(name, type, rnn), node("last", "LastTimeStep", {{"batch_first", true}}),
      node("fc", "Linear", linear(128, 10)),
  });
}

json char_lstm(int64_t vocab) {
  json rnn = {{"input_size", 64}, {"hidden_size", 256}, {"num_layers", 1}, {"bidirectional", false}, {"batch_first", true}};
  return json::array({
      node("embed", "Embedding", {{"num_embeddings", vocab}, {"embedding_dim", 64}}),
      node("lstm", "LSTM", rnn),
      node("fc", "Linear", linear(256, vocab), {"lstm:0"}),
  });
}

const std::vector<std::pair<std::string, std::string>>& table() {
  static const std::vector<std::pair<std::string, std::string>> kTable = {
      {"mlp", "784-256-10 multilayer perceptron (MNIST)"},
      {"mnist-cnn", "two conv+BN+ReLU+maxpool stages, linear head (MNIST)"},
      {"dw-cnn", "MobileNet-style depthwise-separable CNN with ReLU6 (MNIST)"},
      {"resnet-tiny", "stem + two residual blocks (identity and 1x1 projection), linear head (MNIST)"},
      {"lstm", "image rows as a 28-step sequence, LSTM(28,128), linear head (MNIST)"},
      {"gru", "image rows as a 28-step sequence, GRU(28,128), linear head (MNIST)"},
      {"char-lstm", "Embedding(vocab,64) -> LSTM(64,256) -> Linear(256,vocab), next-character prediction"},
  };
  return kTable;
}

}  // namespace

std::vector<std::string> zoo_names() {
  std::vector<std::string> out;
  for (const auto& [n, d] : table()) out.push_back(n);
  return out;
}

bool is_zoo_model(const std::string& name) {
  for (const auto& [n, d] : table())
    if (n == name) return true;
  return false;
}

std::string zoo_description(const std::string& name) {
  for (const auto& [n, d] : table())
    if (n == name) return d;
  throw InputError(fmt::format("unknown zoo model '{}' (known: {})", name, fmt::join(zoo_names(), ", ")));
}

json zoo_spec(const std::string& name, const ZooOptions& opt) {
  json nodes;
  if (name == "mlp") nodes = mlp();
  else if (name == "mnist-cnn") nodes = mnist_cnn();
  else if (name == "dw-cnn") nodes = dw_cnn();
  else if (name == "resnet-tiny") nodes = resnet_tiny();
  else if (name == "lstm") nodes = rnn_rows("lstm", "LSTM");
  else if (name == "gru") nodes = rnn_rows("gru", "GRU");
  else if (name == "char-lstm") {
    if (opt.vocab <= 0)
      throw InputError(fmt::format("zoo model 'char-lstm' needs a vocabulary size > 0, got {}", opt.vocab));
    nodes = char_lstm(opt.vocab);
  } else {
    throw InputError(fmt::format("unknown zoo model '{}' (known: {})", name, fmt::join(zoo_names(), ", ")));
  }
  return {{"name", name}, {"inputs", {"input"}}, {"nodes", nodes}};
}

std::shared_ptr<Graph> build_zoo_model(const std::string& name, const ZooOptions& opt, const BuildOptions& build) {
  return build_model(zoo_spec(name, opt), build);
}

Shape zoo_input_shape(const std::string& name, int64_t batch) {
  if (name == "char-lstm") return {batch, 32};
  if (!is_zoo_model(name)) zoo_description(name);  // throws
  return {batch, 1, 28, 28};
}

}  // namespace qforge::nn
