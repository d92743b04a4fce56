// The built-in model zoo: model specs shipped inside the program (`qforge models` lists them).
//
//   mlp          flatten -> fc1 Linear(784,256) -> ReLU -> fc2 Linear(256,10)                   [N,1,28,28]
//   mnist-cnn    conv1 Conv2d(1,16,3,p1) -> bn1 -> ReLU -> MaxPool 2 -> conv2 Conv2d(16,32,3,p1) -> bn2 ->
//                ReLU -> MaxPool 2 -> flatten -> fc Linear(1568,10)                                [N,1,28,28]
//   dw-cnn       MobileNet-style: conv1/bn1, dw1/bn2 (stride 2, groups 16), pw1/bn3, dw2/bn4 (stride 2,
//                groups 32), pw2/bn5, each followed by ReLU6; global average pool -> fc Linear(64,10)
//   resnet-tiny  stem.conv/stem.bn, block1 (identity shortcut), block2 (stride 2, proj.conv/proj.bn
//                shortcut), global average pool -> fc Linear(32,10)
//   lstm, gru    image read row by row (28 steps of 28) -> lstm/gru (28 -> 128) -> last step -> fc(128,10)
//   char-lstm    embed Embedding(vocab,64) -> lstm LSTM(64,256) -> fc Linear(256,vocab), per position
// Parameter/buffer names equal the state_dict of the corresponding PyTorch model
// (tools/gen_fixtures_nn.py builds those), e.g. "block2.proj.conv.weight". Recurrent layers are
// batch_first: lstm/gru take [N,1,28,28]; char-lstm takes i32 indices [N, T] and returns [N, T, vocab].
#pragma once

#include "engine/tensor.hpp"
#include "nn/spec.hpp"

#include <string>
#include <vector>

namespace qforge::nn {

struct ZooOptions {
  int64_t vocab = 0;  // char-lstm: number of distinct characters (required, > 0)
};

std::vector<std::string> zoo_names();
bool is_zoo_model(const std::string& name);
// The spec of a zoo model; InputError for an unknown name or missing options.
nlohmann::json zoo_spec(const std::string& name, const ZooOptions& opt = {});
std::shared_ptr<Graph> build_zoo_model(const std::string& name, const ZooOptions& opt = {},
                                       const BuildOptions& build = {});
// A typical input shape for one batch (char-lstm: [batch, 32] indices), for benchmarks and tests.
Shape zoo_input_shape(const std::string& name, int64_t batch);
// One-line description for `qforge models`.
std::string zoo_description(const std::string& name);

}  // namespace qforge::nn
