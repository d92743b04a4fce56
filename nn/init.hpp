// Parameter initialisation with PyTorch's default distributions, driven by an explicit Generator.
//
// PyTorch defaults reproduced here (same distributions, not the same random stream):
//   Linear / Conv2d weight: kaiming_uniform_(a = sqrt(5))  ==  U(-1/sqrt(fan_in), 1/sqrt(fan_in))
//   Linear / Conv2d bias:   U(-1/sqrt(fan_in), 1/sqrt(fan_in))      (fan_in of the weight)
//   RNN/LSTM/GRU:           every tensor U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))
//   BatchNorm:              weight 1, bias 0, running_mean 0, running_var 1
//   Embedding:              N(0, 1)
// fan_in/fan_out follow torch.nn.init._calculate_fan_in_and_fan_out: for a weight [out, in, k...],
// fan_in = in * prod(k), fan_out = out * prod(k). All fills are in place, outside the tape.
#pragma once

#include "engine/random.hpp"
#include "engine/tensor.hpp"

#include <utility>

namespace qforge::nn::init {

// (fan_in, fan_out) of a weight shape (at least 2-D; throws otherwise).
std::pair<int64_t, int64_t> fan_in_out(const Shape& shape);

void uniform_(Tensor& t, double lo, double hi, Generator& gen);
void normal_(Tensor& t, double mean, double std, Generator& gen);
void constant_(Tensor& t, double value);

// kaiming_uniform_(t, a): U(-b, b), b = sqrt(3) * gain / sqrt(fan_in), gain = sqrt(2 / (1 + a^2)).
void kaiming_uniform_(Tensor& t, double a, Generator& gen);
// PyTorch's default for Linear/Conv weights: kaiming_uniform_(a = sqrt(5)).
void default_weight_(Tensor& t, Generator& gen);
// PyTorch's default for Linear/Conv biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); 0 bound if fan_in is 0.
void default_bias_(Tensor& bias, int64_t fan_in, Generator& gen);

}  // namespace qforge::nn::init
