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
// (Sequential, Add).
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

// Element-wise a + b of its two inputs (broadcasting) — the residual add, a module so that it can carry
// an output quantizer.
class Add : public Module {
public:
  Add() : Module("Add") {}

protected:
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) override;
};

}  // namespace qforge::nn
