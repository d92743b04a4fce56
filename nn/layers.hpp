// The standard layers (like torch.nn), as Modules over the functional ops in engine/ops/ops.hpp.
//
// Parameter and buffer names, shapes and layouts are PyTorch's (Linear weight [out, in], Conv2d weight
// OIHW, BatchNorm weight/bias/running_mean/running_var/num_batches_tracked), so state_dicts move between
// the two unchanged. Constructors initialise with PyTorch's default distributions (nn/init.hpp) from the
// Generator they are given. Layers read parameters through Module::param() so a parameter transform
// (fake-quantisation, BN folding) applies (Note [Parameter transform] in module.hpp); a bias is read
// with maybe_param("bias"), so a pass may add one to a bias-free conv.
//
// Files: layers/dense.cpp (Linear, Conv2d, Embedding), layers/norm.cpp (BatchNorm1d/2d, Dropout),
// layers/pool.cpp (pools, Flatten, sequence reshapes, LeakyReLU repr), layers/container.cpp
// (Sequential), layers/elementwise.cpp (Constant, Add/Sub/Mul/Div), layers/shape.cpp (Concat, Split,
// Slice, Transpose, Reshape, Squeeze, Unsqueeze, Pad), layers/activation.cpp (Softmax, LogSoftmax,
// ReduceMean, HardSigmoid, Hardtanh).
//
// Note [ONNX layers]
// The layers of the second group (Constant ... Hardtanh) exist so that an imported ONNX graph becomes
// ordinary qforge layers (DESIGN.md §7): each is one ONNX node type with ONNX's semantics where they
// differ from PyTorch's (Slice's clamped negative indices, Reshape's 0 = "copy this dimension", Pad's
// [x1_begin, x2_begin, ..., x1_end, ...] order, Unsqueeze's axes counted in the output) and PyTorch's
// argument names otherwise. Every one is differentiable (the ops it calls record backward), so an
// imported model trains, and each is a leaf of the trace with its own ONNX op type (quant/quantsim.cpp's
// onnx_type), so QuantSim places quantizers on it by the AIMET config rules. Shapes are checked at
// forward; a mismatch names the layer type and the shapes. Dimensions count the batch dimension, as in
// ONNX (dim 1 of an NCHW tensor is C).
#pragma once

#include "engine/ops/ops.hpp"
#include "engine/random.hpp"
#include "nn/module.hpp"

#include <array>
#include <optional>

namespace qforge::nn {

using Pair = std::array<int64_t, 2>;

// ---- dense -----------------------------------------------------------------------------------------

// y = x W^T + b over the last dimension; weight [out_features, in_features], bias [out_features].
class Linear : public Module {
public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen);
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  int64_t in_, out_;
};

struct Conv2dOptions {
  int64_t in_channels = 1;
  int64_t out_channels = 1;
  Pair kernel_size{3, 3};
  Pair stride{1, 1};
  Pair padding{0, 0};
  Pair dilation{1, 1};
  int64_t groups = 1;
  bool bias = true;
};

// 2-D convolution, NCHW input, weight [out, in/groups, kh, kw], bias [out].
class Conv2d : public Module {
public:
  Conv2d(const Conv2dOptions& opt, Generator& gen);
  const Conv2dOptions& options() const { return opt_; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  Conv2dOptions opt_;
};

// Lookup table: indices (i32, any shape) -> [..., embedding_dim]; weight [num_embeddings, dim] ~ N(0,1).
class Embedding : public Module {
public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator& gen);
  int64_t num_embeddings() const { return num_; }
  int64_t embedding_dim() const { return dim_; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& indices) override;

private:
  int64_t num_, dim_;
};

// ---- normalisation and regularisation ----------------------------------------------------------------

// BatchNorm over channel dim 1. dims = 1: input [N, C] or [N, C, L] (BatchNorm1d); dims = 2: [N, C, H, W].
// momentum nullopt = cumulative moving average (factor 1/num_batches_tracked), as PyTorch's None.
// Buffers: running_mean (0), running_var (1), num_batches_tracked (i32 scalar; int64 in safetensors).
class BatchNorm : public Module {
public:
  BatchNorm(int dims, int64_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
            bool affine = true);
  int64_t num_features() const { return c_; }
  double eps() const { return eps_; }
  std::optional<double> momentum() const { return momentum_; }
  bool affine() const { return affine_; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  int dims_;
  int64_t c_;
  double eps_;
  std::optional<double> momentum_;
  bool affine_;
};

class BatchNorm1d : public BatchNorm {
public:
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                       bool affine = true)
      : BatchNorm(1, num_features, eps, momentum, affine) {}
};
class BatchNorm2d : public BatchNorm {
public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                       bool affine = true)
      : BatchNorm(2, num_features, eps, momentum, affine) {}
};

// Zeroes elements with probability p in training (scaling the rest by 1/(1-p)); identity in eval.
// Owns its Generator, seeded explicitly.
class Dropout : public Module {
public:
  explicit Dropout(double p = 0.5, uint64_t seed = 0);
  double p() const { return p_; }
  Generator& generator() { return gen_; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  double p_;
  Generator gen_;
};

// ---- activations (no parameters) -------------------------------------------------------------------

class ReLU : public Module {
public:
  ReLU() : Module("ReLU") {}

protected:
  Tensor forward_tensor(const Tensor& x) override { return ops::relu(x); }
};
class ReLU6 : public Module {
public:
  ReLU6() : Module("ReLU6") {}

protected:
  Tensor forward_tensor(const Tensor& x) override { return ops::relu6(x); }
};
class LeakyReLU : public Module {
public:
  explicit LeakyReLU(double negative_slope = 0.01) : Module("LeakyReLU"), slope_(negative_slope) {}
  double negative_slope() const { return slope_; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override { return ops::leaky_relu(x, slope_); }

private:
  double slope_;
};
class Hardswish : public Module {
public:
  Hardswish() : Module("Hardswish") {}

protected:
  Tensor forward_tensor(const Tensor& x) override { return ops::hardswish(x); }
};
class Sigmoid : public Module {
public:
  Sigmoid() : Module("Sigmoid") {}

protected:
  Tensor forward_tensor(const Tensor& x) override { return ops::sigmoid(x); }
};
class Tanh : public Module {
public:
  Tanh() : Module("Tanh") {}

protected:
  Tensor forward_tensor(const Tensor& x) override { return ops::tanh(x); }
};
class Identity : public Module {
public:
  Identity() : Module("Identity") {}

protected:
  Tensor forward_tensor(const Tensor& x) override { return x; }
};

// ---- pooling and reshapes --------------------------------------------------------------------------

// stride defaults to kernel_size (PyTorch's stride=None).
class MaxPool2d : public Module {
public:
  explicit MaxPool2d(Pair kernel_size, std::optional<Pair> stride = std::nullopt, Pair padding = {0, 0});
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  ops::Pool2dParams p_;
};

class AvgPool2d : public Module {
public:
  explicit AvgPool2d(Pair kernel_size, std::optional<Pair> stride = std::nullopt, Pair padding = {0, 0},
                     bool count_include_pad = true);
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  ops::Pool2dParams p_;
};

// [N, C, H, W] -> [N, C, oh, ow]; (1, 1) is global average pooling.
class AdaptiveAvgPool2d : public Module {
public:
  explicit AdaptiveAvgPool2d(Pair output_size = {1, 1});
  Pair output_size() const { return out_; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  Pair out_;
};

class Flatten : public Module {
public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1);
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  int64_t start_, end_;
};

// An image read row by row as a sequence: [N, C, H, W] -> [N, H, C*W] (batch first; H time steps).
class ImageAsSequence : public Module {
public:
  ImageAsSequence() : Module("ImageAsSequence") {}

protected:
  Tensor forward_tensor(const Tensor& x) override;
};

// The last time step of a sequence: [N, T, F] -> [N, F] (batch_first) or [T, N, F] -> [N, F].
// With several inputs (a recurrent layer's {output, h_n, ...}), only the first is used.
class LastTimeStep : public Module {
public:
  explicit LastTimeStep(bool batch_first = true) : Module("LastTimeStep"), batch_first_(batch_first) {}
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) override;

private:
  bool batch_first_;
};

// ---- containers and combiners ------------------------------------------------------------------

// Children "0", "1", ...; each child's outputs are the next child's inputs.
class Sequential : public Module {
public:
  Sequential() : Module("Sequential") {}
  explicit Sequential(const std::vector<ModulePtr>& mods);
  Sequential& push_back(ModulePtr m);
  Sequential& push_back(const std::string& name, ModulePtr m);  // named child (like an OrderedDict)
  size_t size() const { return children().size(); }

protected:
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) override;
};

// ---- element-wise binary ops and constants (Note [ONNX layers]) ------------------------------------

// f(a, b) of its two inputs with NumPy/ONNX broadcasting ([N,C,1,1] * [N,C,H,W], [C] + [N,C], ...).
class BroadcastBinary : public Module {
public:
  using Fn = Tensor (*)(const Tensor&, const Tensor&);

protected:
  BroadcastBinary(std::string type, Fn fn) : Module(std::move(type)), fn_(fn) {}
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) override;

private:
  Fn fn_;
};

// a + b — also the residual add, a module so that it can carry an output quantizer.
class Add : public BroadcastBinary {
public:
  Add();
};
class Sub : public BroadcastBinary {
public:
  Sub();
};
class Mul : public BroadcastBinary {
public:
  Mul();
};
class Div : public BroadcastBinary {
public:
  Div();
};

// A node without inputs whose output is its buffer "value" (state_dict "<node>.value"): an ONNX
// initializer or Constant used as an operand (a Mul's scale, an Add's offset). Built as zeros of
// `shape`; the weights file fills it. Not a parameter: training leaves it unchanged.
class Constant : public Module {
public:
  explicit Constant(const Shape& shape);
  const Shape& shape() const { return shape_; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) override;

private:
  Shape shape_;
};

// ---- shape and data movement (Note [ONNX layers]) --------------------------------------------------

// Joins its inputs (one or more) along `dim`; every other dimension must agree.
class Concat : public Module {
public:
  explicit Concat(int64_t dim);
  int64_t dim() const { return dim_; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) override;

private:
  int64_t dim_;
};

// Cuts its input along `dim` into pieces of `split_sizes` (which must add up to that dimension);
// output k is piece k, referenced in a spec as "node:k".
class Split : public Module {
public:
  Split(int64_t dim, std::vector<int64_t> split_sizes);
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) override;

private:
  int64_t dim_;
  std::vector<int64_t> sizes_;
};

// ONNX Slice: for each i, elements starts[i], starts[i] + steps[i], ... before ends[i] along axes[i].
// Negative starts/ends count from the end; both are then clamped to [0, size] (so INT64_MAX means "to
// the end"). axes default to 0, 1, ...; steps to 1. Steps must be positive (reversal is not supported).
class Slice : public Module {
public:
  Slice(std::vector<int64_t> starts, std::vector<int64_t> ends, std::vector<int64_t> axes = {},
        std::vector<int64_t> steps = {});
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  std::vector<int64_t> starts_, ends_, axes_, steps_;
};

// Permutes dimensions: output dim i is input dim perm[i]; empty perm reverses them (ONNX's default).
class Transpose : public Module {
public:
  explicit Transpose(std::vector<int64_t> perm = {});
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  std::vector<int64_t> perm_;
};

// ONNX Reshape (allowzero = 0): the target shape includes the batch dimension; 0 copies the input's
// dimension at the same position, one -1 is inferred from the element count.
class Reshape : public Module {
public:
  explicit Reshape(std::vector<int64_t> shape);
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  std::vector<int64_t> shape_;
};

// Removes the listed dimensions, each of which must have size 1; empty: every size-1 dimension.
class Squeeze : public Module {
public:
  explicit Squeeze(std::vector<int64_t> dims = {});
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  std::vector<int64_t> dims_;
};

// Inserts size-1 dimensions at `dims`, positions in the OUTPUT (ONNX's rule; negative counts from the
// output's end), so Unsqueeze{[0, 2]} of [3, 4] is [1, 3, 1, 4].
class Unsqueeze : public Module {
public:
  explicit Unsqueeze(std::vector<int64_t> dims);
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  std::vector<int64_t> dims_;
};

// Constant padding with ONNX's pad order [x1_begin, x2_begin, ..., x1_end, x2_end, ...]: one begin and
// one end per input dimension (2·rank values); negative pads crop.
class Pad : public Module {
public:
  explicit Pad(std::vector<int64_t> pads, double value = 0);
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  std::vector<int64_t> pads_;
  double value_;
};

// ---- normalising activations and reductions (Note [ONNX layers]) -----------------------------------

class Softmax : public Module {
public:
  explicit Softmax(int64_t dim = -1) : Module("Softmax"), dim_(dim) {}
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  int64_t dim_;
};

class LogSoftmax : public Module {
public:
  explicit LogSoftmax(int64_t dim = -1) : Module("LogSoftmax"), dim_(dim) {}
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  int64_t dim_;
};

// Mean over `dims` (empty: all), keeping them as size 1 when keepdim (ONNX ReduceMean, torch.mean).
class ReduceMean : public Module {
public:
  explicit ReduceMean(std::vector<int64_t> dims = {}, bool keepdim = false);
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  std::vector<int64_t> dims_;
  bool keepdim_;
};

// y = clamp(alpha·x + beta, 0, 1). ONNX's defaults alpha 0.2, beta 0.5; PyTorch's Hardsigmoid is
// alpha 1/6, beta 1/2.
class HardSigmoid : public Module {
public:
  explicit HardSigmoid(double alpha = 0.2, double beta = 0.5);
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  double alpha_, beta_;
};

// y = clamp(x, min_val, max_val) (ONNX Clip with constant bounds; ReLU6 is Hardtanh(0, 6)).
class Hardtanh : public Module {
public:
  explicit Hardtanh(double min_val = -1, double max_val = 1);
  double min_val() const { return min_; }
  double max_val() const { return max_; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  Tensor forward_tensor(const Tensor& x) override;

private:
  double min_, max_;
};

}  // namespace qforge::nn
