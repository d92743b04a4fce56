// QuantSim -> integer Program. See lower.hpp.
#include "quant/runtime/lower.hpp"

#include "engine/autograd.hpp"
#include "nn/layers.hpp"
#include "nn/recurrent.hpp"
#include "quant/quant_dir.hpp"
#include "quant/runtime/program16.hpp"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <set>

namespace qforge::quant::runtime {

namespace kn = qforge::kernels;

QParams qparams_of(const Encoding& e, const std::string& who) {
  if (e.is_float)
    throw Error(fmt::format("{}: float (fp16) quantizer; the integer runtime needs int8 activations", who));
  if (e.bitwidth > 16)
    throw Error(fmt::format("{}: activation bitwidth {} is not supported by the integer runtime (need <= 16)", who,
                            e.bitwidth));
  const AffineParams a = affine_params(e);
  if (!(a.scale > 0.0f) || !std::isfinite(a.scale))
    throw Error(fmt::format("{}: encoding has a non-positive scale {}", who, a.scale));
  const auto n = e.steps();
  const double off = e.offset;
  if (off != std::round(off) || off > 0 || off < -n)
    throw Error(fmt::format("{}: encoding offset {} is not an integer in [-{}, 0]", who, off, n));
  const std::int64_t base = e.bitwidth > 8 ? -32768 : -128;  // program16.hpp Note [16-bit codes]
  QParams q;
  q.scale = a.scale;
  q.zero_point = static_cast<std::int32_t>(base - static_cast<std::int64_t>(off));
  q.qmin = static_cast<std::int32_t>(base);
  q.qmax = static_cast<std::int32_t>(base + n);
  return q;
}

namespace {

using nn::TraceNode;

std::vector<std::int64_t> per_sample(const Shape& s) { return std::vector<std::int64_t>(s.begin() + 1, s.end()); }

// Symmetric int8 weights of one layer, exactly the sim's grid points.
struct QWeights {
  std::vector<std::int8_t> w;
  std::vector<float> scale;  // one per row (expanded when per tensor)
  bool per_channel = false;
};

// LPBQ weights (quant/blockwise.hpp Note [LPBQ]): the `bw`-bit code v of block (o, b) is the int8 code
// v·m[o,b] at the per-channel scale c[o], so the layer runs as an ordinary per-channel int8 layer and exact
// mode (which evaluates this same program) equals the runtime bit for bit. Plain blockwise weights
// (independent float block scales) have no such form and are refused.
QWeights lpbq_weights(Quantizer* q, const Tensor& raw, const std::string& layer, const std::string& what) {
  const BlockSpec& b = q->settings().block;
  if (!b.lpbq())
    throw Error(fmt::format("layer {}: {} is blockwise with independent block scales (block size {}); the int8 runtime "
                            "and exact mode run blockwise weights only in LPBQ form (per-channel scale x integer block "
                            "multiplier: qforge quantize --lpbq)",
                            layer, what, b.block_size));
  if (b.decompressed_bw > 8)
    throw Error(fmt::format("layer {}: {} is LPBQ with a {}-bit decompressed grid; the int8 runtime needs at most 8",
                            layer, what, b.decompressed_bw));
  const std::int64_t rows = raw.size(0), inner = raw.numel() / rows;
  const std::int64_t nb = blocks_per_channel(raw.shape(), b.block_size, fmt::format("layer {}: {}", layer, what));
  Tensor fq;
  {
    NoGradGuard ng;
    fq = q->forward(raw.detach()).contiguous().to(DType::f32);
  }
  const auto& encs = q->encodings();
  const LpbqScales& s = q->lpbq();
  if (static_cast<std::int64_t>(encs.size()) != rows * nb || static_cast<std::int64_t>(s.channel_scale.size()) != rows)
    throw Error(fmt::format("layer {}: {} has {} block encodings and {} channel scales for {} channels x {} blocks", layer,
                            what, encs.size(), s.channel_scale.size(), rows, nb));
  const float* src = fq.data<float>();
  const std::int64_t per_block = inner / nb;
  QWeights out;
  out.per_channel = true;
  out.w.resize(static_cast<std::size_t>(raw.numel()));
  out.scale.resize(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    out.scale[r] = static_cast<float>(s.channel_scale[r]);
    for (std::int64_t blk = 0; blk < nb; ++blk) {
      const AffineParams a = affine_params(encs[r * nb + blk]);
      const std::int32_t m = s.multiplier[r * nb + blk];
      for (std::int64_t k = blk * per_block; k < (blk + 1) * per_block; ++k) {
        const float y = src[r * inner + k] * a.inv_scale;
        const float v = std::nearbyint(y);
        if (!(std::fabs(v - y) < 1e-2f) || v < a.lo || v > a.hi)
          throw Error(fmt::format("layer {}: {} value {} is not on its LPBQ block grid (scale {})", layer, what,
                                  src[r * inner + k], a.scale));
        const std::int32_t code = static_cast<std::int32_t>(v) * m;
        if (code < -128 || code > 127)
          throw Error(fmt::format("layer {}: {} LPBQ code {} x {} leaves int8", layer, what, v, m));
        out.w[r * inner + k] = static_cast<std::int8_t>(code);
      }
    }
  }
  return out;
}

QWeights quantize_weights(Quantizer* q, const Tensor& raw, const std::string& layer, const std::string& what) {
  if (q != nullptr && q->enabled() && q->has_encoding() && q->settings().block.blockwise())
    return lpbq_weights(q, raw, layer, what);
  if (q == nullptr || !q->enabled() || !q->has_encoding())
    throw Error(fmt::format("layer {}: {} is not quantized (quantizer disabled or not calibrated); the int8 runtime "
                            "needs int8 weights",
                            layer, what));
  if (q->settings().rounding != RoundingMode::nearest)
    throw Error(fmt::format("layer {}: {} uses stochastic rounding, which has no deterministic integer form", layer, what));
  const auto& encs = q->encodings();
  const std::int64_t rows = raw.size(0), inner = raw.numel() / rows;
  if (encs.size() != 1 && static_cast<std::int64_t>(encs.size()) != rows)
    throw Error(fmt::format("layer {}: {} has {} encodings for {} output channels", layer, what, encs.size(), rows));
  for (const auto& e : encs) {
    if (e.is_float) throw Error(fmt::format("layer {}: {} uses a float (fp16) quantizer", layer, what));
    // Weights of 2..8 bits: their symmetric codes [−2^(bw−1), 2^(bw−1) − 1] are int8 values, which every
    // kernel takes as they are (and 7 bits or fewer can never saturate ORT's vpmaddubsw, quant/export).
    if (e.bitwidth > 8 || e.bitwidth < 2)
      throw Error(fmt::format("layer {}: {} bitwidth {} is not supported (the int8 runtime needs 2- to 8-bit weights)",
                              layer, what, e.bitwidth));
    const double half = std::ldexp(1.0, e.bitwidth - 1);
    const bool sym = e.symmetric && (e.offset == -half || (e.strict && e.offset == -half + 1));
    if (!sym)
      throw Error(fmt::format("layer {}: {} has an asymmetric encoding (offset {}); the int8 runtime needs symmetric "
                              "weights (zero point 0)",
                              layer, what, e.offset));
  }
  Tensor fq;
  {
    NoGradGuard ng;
    fq = q->forward(raw.detach()).contiguous().to(DType::f32);
  }
  const float* src = fq.data<float>();
  QWeights out;
  out.per_channel = encs.size() > 1;
  out.w.resize(static_cast<std::size_t>(raw.numel()));
  out.scale.resize(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    const AffineParams a = affine_params(encs[out.per_channel ? r : 0]);
    out.scale[r] = a.scale;
    for (std::int64_t k = 0; k < inner; ++k) {
      const float y = src[r * inner + k] * a.inv_scale;
      const float v = std::nearbyint(y);
      if (!(std::fabs(v - y) < 1e-2f) || v < a.lo || v > a.hi)
        throw Error(fmt::format("layer {}: {} value {} is not on its quantization grid (scale {})", layer, what,
                                src[r * inner + k], a.scale));
      out.w[r * inner + k] = static_cast<std::int8_t>(v);
    }
  }
  return out;
}

kn::ActivationRange clamp_range(kn::ArithProfile profile, kn::FusedAct act, const QParams& q) {
  if (is_16bit(q)) {  // requant.hpp activation_range over the 16-bit code range (dsp profile only)
    kn::ActivationRange r{q.qmin, q.qmax};
    if (act != kn::FusedAct::none) r.min = std::max(r.min, q.zero_point);
    if (act == kn::FusedAct::relu6) {
      const auto six = static_cast<std::int64_t>(std::round(6.0f / q.scale)) + q.zero_point;
      if (six < r.max) r.max = static_cast<std::int32_t>(std::max<std::int64_t>(six, r.min));
    }
    return r;
  }
  kn::ActivationRange r = kn::profile_activation_range(profile, act, q.scale, q.zero_point, kn::ActType::s8);
  r.min = std::max(r.min, q.qmin);
  r.max = std::min(r.max, q.qmax);
  if (r.max < r.min) r.max = r.min;
  return r;
}

const char* act_name(kn::FusedAct a) { return a == kn::FusedAct::relu ? "relu" : (a == kn::FusedAct::relu6 ? "relu6" : "none"); }

class Lowerer {
public:
  Lowerer(QuantSim& sim, const LowerOptions& opt) : sim_(sim), opt_(opt), g_(sim.graph()) {
    p_.profile = sim.options().target;  // the arithmetic chosen at quantize time (arith_profile.hpp)
    for (const auto& [layer, bn] : sim.folded_bn())
      for (int id : g_.find(bn)) folded_bn_.insert(id);
  }

  Program run() {
    if (g_.num_model_inputs() != 1)
      throw Error(fmt::format("lowering: the model has {} inputs; the int8 runtime supports one", g_.num_model_inputs()));
    for (const auto& n : g_.nodes()) lower_node(n);
    if (g_.model_outputs().empty()) throw Error("lowering: the model has no outputs");
    const auto& src = g_.model_outputs()[0].source();
    auto it = val_.find({src.node, src.index});
    if (it == val_.end()) throw Error("lowering: the model output does not come from a lowered layer");
    p_.output = it->second;
    if (input_value_ < 0) throw Error("lowering: no layer reads the model input");
    p_.input = input_value_;
    check_activation_widths();
    return std::move(p_);
  }

private:
  // program16.hpp Note [16-bit codes]: all activations 8-bit or all 16-bit, and 16-bit under dsp only.
  void check_activation_widths() const {
    if (!is_16bit_program(p_)) return;
    if (p_.profile != kn::ArithProfile::dsp)
      throw Error(fmt::format("lowering: 16-bit activations need the dsp arithmetic profile (the sim targets '{}')",
                              kn::profile_name(p_.profile)));
    for (const Value& v : p_.values)
      if (!is_16bit(v.q))
        throw Error(fmt::format("lowering: value '{}' (module '{}') has an 8-bit encoding in a program with 16-bit "
                                "activations; mixed 8/16-bit activation programs are not supported",
                                v.name, v.module));
  }

  std::string prefix(const TraceNode& n) const { return n.name.empty() ? n.type : n.name; }
  std::string lname(const TraceNode& n) const { return n.name.empty() ? n.type : n.name; }

  Quantizer* enabled_q(const std::string& name) {
    if (!sim_.has_quantizer(name)) return nullptr;
    Quantizer& q = sim_.quantizer(name);
    return q.enabled() ? &q : nullptr;
  }

  QParams act_q(Quantizer* q, const std::string& who) {
    if (!q->has_encoding())
      throw Error(fmt::format("{}: quantizer is enabled but has no encoding (calibrate with compute_encodings first)", who));
    if (q->settings().rounding != RoundingMode::nearest)
      throw Error(fmt::format("{}: stochastic rounding has no deterministic integer form", who));
    const auto& e = q->encodings();
    if (e.size() != 1) throw Error(fmt::format("{}: per-channel activation encodings are not supported", who));
    return qparams_of(e[0], who);
  }

  int new_value(const std::string& name, const std::string& module, std::vector<std::int64_t> shape, QParams q) {
    p_.values.push_back({name, module, std::move(shape), q});
    return static_cast<int>(p_.values.size()) - 1;
  }

  int emit(Op op, const std::string& vname, const std::string& module, std::vector<std::int64_t> shape, QParams q) {
    op.output = new_value(vname, module, std::move(shape), q);
    p_.ops.push_back(std::move(op));
    return p_.ops.back().output;
  }

  // Codes of value v re-expressed in encoding `to` (v itself when equal).
  int requant_to(int v, const QParams& to, const std::string& name, const std::string& module,
                 kn::FusedAct act = kn::FusedAct::none) {
    const QParams from = p_.values[v].q;
    if (from == to && act == kn::FusedAct::none) return v;
    Op op;
    op.kind = OpKind::requant;
    op.name = name;
    op.inputs = {v};
    op.identity = from.scale == to.scale && from.zero_point == to.zero_point;
    op.m = kn::quantize_multiplier(static_cast<double>(from.scale) / static_cast<double>(to.scale));
    op.range = clamp_range(p_.profile, act, to);
    op.act = act_name(act);
    return emit(std::move(op), name, module, p_.values[v].shape, to);
  }

  // The value feeding input `slot` of node n, after n's input quantizer (if enabled).
  // A recurrent layer that reads the model input has no ".input" quantizer; its input_l0 quantizer
  // (model_input_q) then says how the model input is quantized.
  int input_value(const TraceNode& n, int slot, bool allow_input_quantizer = true, const char* model_input_q = nullptr) {
    const std::string who = fmt::format("layer {}", lname(n));
    if (slot >= static_cast<int>(n.inputs.size())) throw Error(fmt::format("{}: missing input {}", who, slot));
    const auto& in = n.inputs[slot];
    if (in.sources.size() != 1)
      throw Error(fmt::format("{}: input {} has {} traced sources; only module graphs can be lowered", who, slot,
                              in.sources.size()));
    const auto& src = in.sources[0];
    std::string qname = prefix(n) + (slot == 0 ? ".input" : fmt::format(".input{}", slot));
    Quantizer* iq = allow_input_quantizer ? enabled_q(qname) : nullptr;
    if (src.node == nn::TraceSource::kModelInput) {
      if (iq == nullptr && model_input_q != nullptr) {
        qname = prefix(n) + model_input_q;
        iq = enabled_q(qname);
      }
      if (iq == nullptr)
        throw Error(fmt::format("{}: the model input it reads is not quantized (enable model_input quantization); the "
                                "int8 program starts from int8 codes",
                                who));
      const QParams q = act_q(iq, qname);
      if (input_value_ < 0) {
        input_value_ = new_value("input", "", per_sample(in.shape), q);
        return input_value_;
      }
      return requant_to(input_value_, q, qname, "");
    }
    if (!src.direct)
      throw Error(fmt::format("{}: input {} is computed by functional ops between modules; only module graphs can be "
                              "lowered",
                              who, slot));
    auto it = val_.find({src.node, src.index});
    if (it == val_.end())
      throw Error(fmt::format("{}: its input comes from output {} of layer {}, which the int8 program does not produce",
                              who, src.index, lname(g_.node(src.node))));
    if (iq == nullptr) return it->second;
    return requant_to(it->second, act_q(iq, qname), qname, "");
  }

  // Consumers of a node, looking through folded BatchNorms (as QuantSim's placement does).
  std::vector<int> consumers(int id) const {
    std::vector<int> out;
    std::vector<std::pair<int, int>> stack = g_.consumers(id);
    while (!stack.empty()) {
      auto c = stack.back();
      stack.pop_back();
      if (folded_bn_.count(c.first)) {
        for (auto cc : g_.consumers(c.first)) stack.push_back(cc);
      } else {
        out.push_back(c.first);
      }
    }
    return out;
  }

  struct OutSpec {
    QParams q;
    kn::FusedAct act = kn::FusedAct::none;
    std::string module;  // the module whose quantized output the value equals
    std::string name;    // op name
  };

  // Output encoding of a compute op: its own output quantizer, or the next ReLU/ReLU6's (supergroup).
  OutSpec out_spec(const TraceNode& n) {
    const std::string oq = prefix(n) + ".output";
    if (Quantizer* q = enabled_q(oq)) return {act_q(q, oq), kn::FusedAct::none, n.name, lname(n)};
    const auto cons = consumers(n.id);
    if (cons.size() == 1 && !g_.feeds_model_output(n.id)) {
      const TraceNode& c = g_.node(cons[0]);
      if ((c.type == "ReLU" || c.type == "ReLU6") && enabled_q(prefix(c) + ".input") == nullptr) {
        if (Quantizer* q = enabled_q(prefix(c) + ".output")) {
          absorbed_.insert(c.id);
          return {act_q(q, prefix(c) + ".output"), c.type == "ReLU" ? kn::FusedAct::relu : kn::FusedAct::relu6, c.name,
                  lname(n) + "+" + lname(c)};
        }
      }
    }
    throw Error(fmt::format("layer {}: its output is not quantized (no output quantizer and no quantized ReLU/ReLU6 "
                            "after it); the int8 runtime needs an encoding for every layer output",
                            lname(n)));
  }

  // Applies n's output quantizer (if any) to a value produced in its input's encoding, records it.
  void finish(const TraceNode& n, int v, int out_index = 0) {
    const std::string oq = prefix(n) + (out_index == 0 ? ".output" : fmt::format(".output{}", out_index));
    if (Quantizer* q = enabled_q(oq)) v = requant_to(v, act_q(q, oq), lname(n) + ".output", n.name);
    if (p_.values[v].module.empty() || v != input_value_) p_.values[v].module = n.name;
    val_[{n.id, out_index}] = v;
  }

  // A layer type the integer program has no op for: the user's model cannot run in int8 or exact mode.
  [[noreturn]] void unsupported(const TraceNode& n) const {
    throw InputError(fmt::format("layer {} ({}): no integer kernel for this layer type in the int8 runtime, so the "
                                 "model cannot be lowered to int8 or run in exact mode (evaluate it in fp32 or sim mode)",
                                 lname(n), n.type));
  }

  void lower_node(const TraceNode& n) {
    const std::string& t = n.type;
    if (folded_bn_.count(n.id)) {
      val_[{n.id, 0}] = input_value(n, 0, false);
      return;
    }
    if (absorbed_.count(n.id)) {
      val_[{n.id, 0}] = input_value(n, 0, false);
      return;
    }
    if (t == "Conv2d" || t == "Linear") return lower_dense(n);
    if (t == "Add") return lower_add(n);
    if (t == "LSTM" || t == "GRU") return lower_recurrent(n);
    if (t == "BatchNorm1d" || t == "BatchNorm2d")
      throw Error(fmt::format("layer {}: BatchNorm is not folded into a preceding Conv2d/Linear (fold_bn off or not "
                              "foldable); the int8 runtime has no BatchNorm kernel",
                              lname(n)));
    if (n.inputs.empty()) unsupported(n);  // a Constant: the program starts from the model input only
    const int x = input_value(n, 0);
    const auto& xs = p_.values[x].shape;
    const auto out_shape = per_sample(n.output_shapes.at(0));
    Op op;
    op.name = lname(n);
    op.inputs = {x};
    const QParams qin = p_.values[x].q;
    if (t == "Identity" || t == "Dropout") {
      finish(n, x);
    } else if (t == "ReLU" || t == "ReLU6") {
      const auto act = t == "ReLU" ? kn::FusedAct::relu : kn::FusedAct::relu6;
      const std::string oq = prefix(n) + ".output";
      Quantizer* q = enabled_q(oq);
      const int v = requant_to(x, q ? act_q(q, oq) : qin, lname(n), n.name, act);
      p_.values[v].module = n.name;
      val_[{n.id, 0}] = v;
    } else if (t == "MaxPool2d" || t == "AvgPool2d") {
      const auto a = n.module->spec_args();
      op.kind = t == "MaxPool2d" ? OpKind::maxpool2d : OpKind::avgpool2d;
      op.kh = a.at("kernel_size")[0];
      op.kw = a.at("kernel_size")[1];
      op.stride_h = a.at("stride")[0];
      op.stride_w = a.at("stride")[1];
      op.pad_h = a.at("padding")[0];
      op.pad_w = a.at("padding")[1];
      op.count_include_pad = a.value("count_include_pad", true);
      op.in_c = op.out_c = xs.at(0);
      const std::string oq = prefix(n) + ".output";
      Quantizer* q = enabled_q(oq);
      if (op.kind == OpKind::avgpool2d && p_.profile == kn::ArithProfile::onnxruntime && q != nullptr) {
        // QLinearAveragePool requantizes to the output encoding itself (arith_profile.hpp).
        const int v = emit(std::move(op), lname(n), n.name, out_shape, act_q(q, oq));
        val_[{n.id, 0}] = v;
      } else {
        finish(n, emit(std::move(op), lname(n), "", out_shape, qin));
      }
    } else if (t == "AdaptiveAvgPool2d") {
      const auto a = n.module->spec_args();
      if (a.at("output_size")[0] != 1 || a.at("output_size")[1] != 1)
        throw Error(fmt::format("layer {}: AdaptiveAvgPool2d with output size other than 1 has no integer kernel", lname(n)));
      const std::string oq = prefix(n) + ".output";
      Quantizer* q = enabled_q(oq);
      const QParams qo = q ? act_q(q, oq) : qin;
      op.kind = OpKind::global_avgpool;
      op.in_c = op.out_c = xs.at(0);
      op.m = kn::global_average_multiplier(p_.profile, qin.scale, qo.scale, xs.at(1) * xs.at(2));
      op.range = {qo.qmin, qo.qmax};
      const int v = emit(std::move(op), lname(n), n.name, out_shape, qo);
      val_[{n.id, 0}] = v;
    } else if (t == "Flatten") {
      const auto a = n.module->spec_args();
      if (a.at("start_dim") != 1 || (a.at("end_dim") != -1 && a.at("end_dim") != static_cast<int>(xs.size())))
        throw Error(fmt::format("layer {}: only Flatten(start_dim=1, end_dim=-1) is supported", lname(n)));
      if (xs.size() == 1) {
        finish(n, x);
      } else {
        if (xs.size() != 3) throw Error(fmt::format("layer {}: Flatten of a {}-d sample is not supported", lname(n), xs.size()));
        op.kind = OpKind::flatten;
        finish(n, emit(std::move(op), lname(n), "", out_shape, qin));
      }
    } else if (t == "ImageAsSequence") {
      op.kind = OpKind::image_as_sequence;
      finish(n, emit(std::move(op), lname(n), "", out_shape, qin));
    } else if (t == "LastTimeStep") {
      if (!n.module->spec_args().value("batch_first", true))
        throw Error(fmt::format("layer {}: only batch_first LastTimeStep is supported", lname(n)));
      op.kind = OpKind::last_step;
      finish(n, emit(std::move(op), lname(n), "", out_shape, qin));
    } else {
      unsupported(n);
    }
  }

  void lower_dense(const TraceNode& n) {
    const bool conv = n.type == "Conv2d";
    const int x = input_value(n, 0);
    const QParams qin = p_.values[x].q;
    nn::Module& m = *n.module;
    const QWeights w = quantize_weights(enabled_q(prefix(n) + ".weight"), m.raw_param("weight"), lname(n), "weight");
    const OutSpec os = out_spec(n);
    Op op;
    op.kind = conv ? OpKind::conv2d : OpKind::linear;
    op.name = os.name;
    op.inputs = {x};
    const Tensor& wt = m.raw_param("weight");
    op.out_c = wt.size(0);
    if (conv) {
      const auto& o = static_cast<nn::Conv2d&>(m).options();
      op.in_c = o.in_channels;
      op.kh = o.kernel_size[0];
      op.kw = o.kernel_size[1];
      op.stride_h = o.stride[0];
      op.stride_w = o.stride[1];
      op.pad_h = o.padding[0];
      op.pad_w = o.padding[1];
      op.dilation_h = o.dilation[0];
      op.dilation_w = o.dilation[1];
      op.groups = o.groups;
      if (p_.values[x].shape.size() != 3)
        throw Error(fmt::format("layer {}: Conv2d input must be [C,H,W] per sample", lname(n)));
    } else {
      op.in_c = wt.size(1);
    }
    op.per_channel = w.per_channel;
    op.weights = w.w;
    op.w_scale.assign(w.scale.begin(), w.scale.end());
    Tensor b;
    if (m.has_param("bias")) {
      Quantizer* bq = enabled_q(prefix(n) + ".bias");
      NoGradGuard ng;
      b = bq ? bq->forward(m.raw_param("bias").detach()) : m.raw_param("bias");
      b = b.contiguous().to(DType::f64);
    }
    op.bias.assign(static_cast<std::size_t>(op.out_c), 0);
    op.mult.resize(static_cast<std::size_t>(op.out_c));
    for (std::int64_t c = 0; c < op.out_c; ++c) {
      const double s_acc = static_cast<double>(qin.scale) * static_cast<double>(w.scale[c]);
      if (b.defined()) op.bias[c] = kn::quantize_bias(b.data<double>()[c], s_acc);
      op.mult[c] = kn::layer_multiplier(p_.profile, qin.scale, w.scale[c], os.q.scale);
    }
    op.range = clamp_range(p_.profile, os.act, os.q);
    op.act = act_name(os.act);
    const int v = emit(std::move(op), os.name, os.module, per_sample(n.output_shapes.at(0)), os.q);
    val_[{n.id, 0}] = v;
  }

  void lower_add(const TraceNode& n) {
    if (n.inputs.size() != 2) throw Error(fmt::format("layer {}: Add with {} inputs is not supported", lname(n), n.inputs.size()));
    const int a = input_value(n, 0), b = input_value(n, 1);
    if (p_.values[a].shape != p_.values[b].shape)
      throw Error(fmt::format("layer {}: Add with broadcasting is not supported", lname(n)));
    const OutSpec os = out_spec(n);
    const QParams qa = p_.values[a].q, qb = p_.values[b].q;
    Op op;
    op.kind = OpKind::add;
    op.name = os.name;
    op.inputs = {a, b};
    op.range = clamp_range(p_.profile, os.act, os.q);
    op.act = act_name(os.act);
    op.add = kn::profile_add_params(p_.profile, qa.scale, qa.zero_point, qb.scale, qb.zero_point, os.q.scale,
                                    os.q.zero_point, op.range, kn::ActType::s8);
    const int v = emit(std::move(op), os.name, os.module, p_.values[a].shape, os.q);
    val_[{n.id, 0}] = v;
  }

  void lower_recurrent(const TraceNode& n) {
    auto& rnn = static_cast<nn::RNNBase&>(*n.module);
    const auto& o = rnn.options();
    const std::string who = fmt::format("layer {}", lname(n));
    if (o.num_layers != 1 || o.bidirectional || !o.batch_first)
      throw Error(fmt::format("{}: only one-layer, unidirectional, batch_first recurrent layers are supported", who));
    if (n.inputs.size() != 1) throw Error(fmt::format("{}: initial states (h0/c0) are not supported", who));
    const bool lstm = n.type == "LSTM";
    const std::string pre = prefix(n);
    for (const char* s : {".cell_l0", ".gates_l0"})
      if (enabled_q(pre + s))
        throw Error(fmt::format("{}: quantizer {}{} is enabled; the integer recurrent cell keeps its own int16 cell "
                                "state and Q3.12 gates (quantize_cell_state/quantize_gates must be off)",
                                who, pre, s));
    Quantizer* iq = enabled_q(pre + ".input_l0");
    Quantizer* hq = enabled_q(pre + ".hidden_l0");
    if (!iq || !hq) throw Error(fmt::format("{}: input_l0 and hidden_l0 quantizers must be enabled", who));
    int x = input_value(n, 0, true, ".input_l0");
    if (p_.values[x].shape.size() != 2) throw Error(fmt::format("{}: input must be [T, F] per sample", who));
    x = requant_to(x, act_q(iq, pre + ".input_l0"), pre + ".input_l0", "");
    const QParams qx = p_.values[x].q, qh = act_q(hq, pre + ".hidden_l0");
    const QWeights wi = quantize_weights(enabled_q(pre + ".W_l0"), rnn.raw_param("weight_ih_l0"), lname(n), "W_l0 (weight_ih_l0)");
    const QWeights wh = quantize_weights(enabled_q(pre + ".R_l0"), rnn.raw_param("weight_hh_l0"), lname(n), "R_l0 (weight_hh_l0)");
    const std::int64_t H = o.hidden_size, GH = rnn.raw_param("weight_ih_l0").size(0);
    Op op;
    op.kind = lstm ? OpKind::lstm : OpKind::gru;
    op.name = lname(n);
    op.inputs = {x};
    op.in_c = o.input_size;
    op.out_c = GH;
    op.hidden = H;
    op.per_channel = wi.per_channel || wh.per_channel;
    op.weights = wi.w;
    op.weights_hh = wh.w;
    op.w_scale.assign(wi.scale.begin(), wi.scale.end());
    op.w_scale_hh.assign(wh.scale.begin(), wh.scale.end());
    std::vector<double> b_ih(GH, 0.0), b_hh(GH, 0.0);
    if (o.bias) {
      Quantizer* bq = enabled_q(pre + ".bias_l0");
      NoGradGuard ng;
      auto get = [&](const char* nm) {
        Tensor t = rnn.raw_param(nm).detach();
        return (bq ? bq->forward(t) : t).contiguous().to(DType::f64).to_vector<double>();
      };
      b_ih = get("bias_ih_l0");
      b_hh = get("bias_hh_l0");
    }
    op.bias.resize(GH);
    op.mult.resize(GH);
    op.mult_hh.resize(GH);
    if (!lstm) op.bias_hh.resize(GH);
    for (std::int64_t r = 0; r < GH; ++r) {
      const double sx = static_cast<double>(qx.scale) * wi.scale[r], sh = static_cast<double>(qh.scale) * wh.scale[r];
      if (lstm) {
        op.bias[r] = kn::quantize_bias(b_ih[r] + b_hh[r], sx);
      } else {
        op.bias[r] = kn::quantize_bias(b_ih[r], sx);
        op.bias_hh[r] = kn::quantize_bias(b_hh[r], sh);
      }
      op.mult[r] = kn::quantize_multiplier(sx * 4096.0);
      op.mult_hh[r] = kn::quantize_multiplier(sh * 4096.0);
    }
    op.cell.cell_exp = opt_.cell_exp;
    op.cell.cell_clip = 0;
    op.cell.hidden = kn::quantize_multiplier(std::ldexp(1.0 / static_cast<double>(qh.scale), -30));
    op.cell.hidden_zero_point = qh.zero_point;
    op.cell.hidden_min = qh.qmin;
    op.cell.hidden_max = qh.qmax;
    op.range = {qh.qmin, qh.qmax};
    const int v = emit(std::move(op), lname(n), n.name, per_sample(n.output_shapes.at(0)), qh);
    val_[{n.id, 0}] = v;
  }

  QuantSim& sim_;
  const LowerOptions& opt_;
  const nn::TracedGraph& g_;
  Program p_;
  std::map<std::pair<int, int>, int> val_;
  std::set<int> folded_bn_, absorbed_;
  int input_value_ = -1;
};

}  // namespace

Program lower(QuantSim& sim, const LowerOptions& opt) {
  if (opt.cell_exp < -15 || opt.cell_exp > -1)
    throw Error(fmt::format("lowering: cell_exp {} outside [-15, -1]", opt.cell_exp));
  Program p = Lowerer(sim, opt).run();
  p.model = sim.model().type_name();
  return p;
}

Program lower_model_dir(const std::filesystem::path& dir, const Tensor& sample_input, const LowerOptions& opt) {
  QuantizedModel qm = load_quantized_dir(dir, {sample_input});
  Program p = lower(*qm.sim, opt);
  p.model = qm.dir.report.value("model", p.model);
  return p;
}

}  // namespace qforge::quant::runtime
