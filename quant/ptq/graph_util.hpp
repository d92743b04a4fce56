// Helpers shared by the PTQ passes: the weight-only QuantSim they start from, which traced nodes are layers, how to walk from a layer to the next
// one through "transparent" nodes, and raw per-channel access to conv/linear weights.
//
// Layers are Conv2d and Linear leaves called exactly once (a module called twice shares its weights
// between two places, so no pass may rewrite it for one of them). A folded BatchNorm (statistics reset
// to the identity by fold_all_batch_norms) is transparent: it computes y = x in eval mode.
#pragma once

#include "nn/layers.hpp"
#include "quant/quantsim.hpp"
#include "nn/trace.hpp"

#include <map>
#include <string>
#include <vector>

namespace qforge::quant::ptq {

// Leaves only the parameter quantizers of `sim` enabled and computes their encodings from one pass over
// sample_inputs: the weight-only quantization that AdaRound and bias correction compare with FP32.
void calibrate_weights_only(QuantSim& sim, const std::vector<Tensor>& sample_inputs);

// Sets and freezes parameter encodings chosen by a pass ("<module>.weight" -> encodings, e.g. SeqMSE's),
// so later calibration keeps them. InputError (naming `who`) when a key has no parameter quantizer or
// the encodings do not fit it (per-channel vs per-tensor, bitwidth).
void set_frozen_param_encodings(QuantSim& sim, const std::map<std::string, std::vector<Encoding>>& enc, const char* who);

// The layers the weight passes (AdaRound, SeqMSE, bias correction) work on, in graph order: Conv2d/Linear
// nodes whose module is called once, not named in `ignore`, whose weight has an enabled quantizer with an
// encoding. Each pass applies its own further conditions (integer grid, axis).
struct QuantizedWeightLayer {
  int id;
  std::string name;
  Quantizer* weight;
};
std::vector<QuantizedWeightLayer> quantized_weight_layers(QuantSim& sim, const std::vector<std::string>& ignore);

bool is_conv(const nn::TraceNode& n);
bool is_linear(const nn::TraceNode& n);
bool is_bn(const nn::TraceNode& n);
bool is_relu_like(const nn::TraceNode& n);  // ReLU or ReLU6
// Conv2d with groups == in_channels == out_channels.
bool is_depthwise(const nn::Module& conv);
int64_t conv_groups(const nn::Module& conv);

// A BatchNorm whose statistics are the identity (mean 0, var 1 - eps, gamma 1, beta 0): already folded.
bool is_identity_bn(const nn::Module& bn);
// Resets a BatchNorm to the identity (in eval mode) as a fold leaves it.
void set_identity_bn(nn::BatchNorm& bn);

// How many times each module was called in the trace.
std::vector<int> call_counts(const nn::TracedGraph& g);  // indexed by node id: calls of that node's module

// The only consumer of node `id` (its only output), or -1 when there are zero or several consumers or
// the node feeds a model output.
int sole_consumer(const nn::TracedGraph& g, int id);
// The only direct source node of node `id`'s only input, or -1.
int sole_producer(const nn::TracedGraph& g, int id);

struct Hop {
  int node = -1;            // the next layer (-1: none)
  std::vector<int> passed;  // transparent nodes between
  std::string activation;   // "", "ReLU" or "ReLU6" if one sits between
};
// From node `id`, follows sole consumers through identity BNs, Identity/Dropout and at most one
// ReLU/ReLU6 (when allow_activation) up to the next non-transparent node.
Hop next_node(const nn::TracedGraph& g, int id, bool allow_activation);

// Dotted name used in messages and parameter keys ("conv1"; the type if the root itself).
std::string node_label(const nn::TraceNode& n);

// Replaces the module named `name` (a Graph node or a child of a Sequential/hand-written parent).
void replace_module(nn::Module& root, const std::string& name, nn::ModulePtr replacement);

// ---- per-channel weight access (f32 weights, contiguous) ----
// Weight viewed as [out, rest]: the largest |w| of each output channel.
std::vector<double> out_channel_absmax(const Tensor& w);
// The largest |w| of each input channel (for depthwise convs: of each channel's kernel).
std::vector<double> in_channel_absmax(const Tensor& w, bool depthwise);
void scale_out_channels(Tensor& w, Tensor* bias, const std::vector<double>& factor);  // w[c] *= f[c]
void scale_in_channels(Tensor& w, const std::vector<double>& factor, bool depthwise);  // w[:, c] *= f[c]
// sum over spatial dims of w[o, i] (conv: [out, in/groups]; linear: w itself), in double.
std::vector<double> spatial_sum(const Tensor& w);

}  // namespace qforge::quant::ptq
