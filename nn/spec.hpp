// Model specs: a small JSON description of a model's architecture (DESIGN.md §5).
//
//   {
//     "name": "mnist-cnn",                       (optional)
//     "inputs": ["input"],                       (optional; the model's input names, default ["input"])
//     "nodes": [
//       {"name": "conv1", "type": "Conv2d",
//        "args": {"in_channels": 1, "out_channels": 16, "kernel_size": 3, "padding": 1},
//        "inputs": ["input"]},                   (optional; default: the previous node, or the first
//                                                 model input for the first node)
//       {"name": "bn1", "type": "BatchNorm2d", "args": {"num_features": 16}},
//       ...
//     ],
//     "outputs": ["fc"],                         (optional; default: every output of the last node)
//     "tensor_names": {"conv1.weight": "onnx::Conv_193"}  (optional; names in the weights file,
//                                                 Note [Tensor names] in nn/graph.hpp)
//   }
//
// An input reference is a model input name, a node name (its first output) or "node:k" (output k, e.g.
// "lstm:1" is an LSTM's h_n). Nodes must be listed in evaluation order. Layer types and arguments
// (defaults as PyTorch's constructors; pairs may be written as one integer):
//   Linear        in_features, out_features, bias=true
//   Conv2d        in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=true
//   BatchNorm1d/2d num_features, eps=1e-5, momentum=0.1 (null: cumulative), affine=true
//   ReLU, ReLU6, Hardswish, Sigmoid, Tanh, Identity, Add (two inputs), ImageAsSequence  (no arguments)
//   LeakyReLU     negative_slope=0.01
//   MaxPool2d     kernel_size, stride=kernel_size, padding=0
//   AvgPool2d     kernel_size, stride=kernel_size, padding=0, count_include_pad=true
//   AdaptiveAvgPool2d output_size=1
//   Flatten       start_dim=1, end_dim=-1
//   Dropout       p=0.5 (its generator is seeded from the build seed)
//   Embedding     num_embeddings, embedding_dim
//   LastTimeStep  batch_first=true
//   RNN/LSTM/GRU  input_size, hidden_size, num_layers=1, bidirectional=false, batch_first=false, ...
//                 (built by nn/recurrent.hpp's make_recurrent)
// The ONNX node types (Note [ONNX layers] in nn/layers.hpp; ONNX semantics, dims count the batch):
//   Sub, Mul, Div (two inputs, broadcasting like Add)                        (no arguments)
//   Constant      shape (no inputs: "inputs" may be omitted; its buffer "value" comes from the weights)
//   Concat        dim (one or more inputs)
//   Split         dim, split_sizes (outputs "node:0", "node:1", ...)
//   Slice         starts, ends, axes=[0, 1, ...], steps=[1, ...] (huge ends such as INT64_MAX accepted)
//   Transpose     perm=[] (empty: reverse)
//   Reshape       shape (0 copies the input dimension, one -1 is inferred)
//   Squeeze       dims=[] (empty: every size-1 dimension);  Unsqueeze  dims (positions in the output)
//   Pad           pads ([x1_begin, x2_begin, ..., x1_end, ...], 2 per input dimension), value=0
//   Softmax, LogSoftmax dim=-1;  ReduceMean  dims=[] (empty: all), keepdim=false
//   HardSigmoid   alpha=0.2, beta=0.5;  Hardtanh  min_val=-1, max_val=1
// Building draws every layer's initial parameters, in node order, from one Generator seeded by
// BuildOptions::seed. Errors (InputError) name the node: unknown layer type, unknown or ill-typed
// argument, bad value, a size past the limits below, dangling input, cycle, duplicate name. Spec files are
// parsed with engine/json_util.hpp's depth limit.
#pragma once

#include "nn/graph.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace qforge::nn {

// Size limits of a spec (checked with overflow-safe arithmetic before anything is allocated): integer
// arguments |v| ≤ kMaxSpecInteger, one layer's parameter tensor ≤ kMaxLayerParameters elements, the whole
// model ≤ BuildOptions::max_parameters elements (parameters and buffers).
inline constexpr int64_t kMaxSpecInteger = int64_t{1} << 31;
inline constexpr uint64_t kMaxLayerParameters = uint64_t{1} << 28;

struct BuildOptions {
  uint64_t seed = 0;
  uint64_t max_parameters = uint64_t{1} << 31;
};

// Builds a Graph from a spec (a JSON object as above).
std::shared_ptr<Graph> build_model(const nlohmann::json& spec, const BuildOptions& opt = {});
// Reads and builds a spec file; errors name the file.
std::shared_ptr<Graph> load_model_spec(const std::string& path, const BuildOptions& opt = {});

// The spec of a built model: a Graph, or a Sequential (one node per child, named by the child's name).
// Every argument is written out explicitly. Throws Error for other modules (hand-written C++ models
// have no spec).
nlohmann::json write_spec(const Module& model);
void save_model_spec(const Module& model, const std::string& path);  // atomic (temp file + rename)

// A deep copy of a spec-expressible model (Graph or Sequential): same architecture, a copy of every
// parameter and buffer, the same training flags; no hooks or parameter transforms. Returned as a Graph.
std::shared_ptr<Graph> clone_model(Module& model);

// Layer types build_model knows.
std::vector<std::string> spec_layer_types();

}  // namespace qforge::nn
