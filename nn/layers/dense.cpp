// Linear, Conv2d, Embedding.
#include "engine/autograd.hpp"
#include "nn/init.hpp"
#include "nn/layers.hpp"

#include <nlohmann/json.hpp>

namespace qforge::nn {

namespace {
const char* py_bool(bool b) { return b ? "True" : "False"; }
std::string py_pair(const Pair& p) { return fmt::format("({}, {})", p[0], p[1]); }
}  // namespace

// ---- Linear ---------------------------------------------------------------------------------------

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen)
    : Module("Linear"), in_(in_features), out_(out_features) {
  QFORGE_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in={} out={}",
               in_features, out_features);
  Tensor w = Tensor::empty({out_, in_});
  init::default_weight_(w, gen);
  register_parameter("weight", w);
  if (bias) {
    Tensor b = Tensor::empty({out_});
    init::default_bias_(b, in_, gen);
    register_parameter("bias", b);
  }
}

Tensor Linear::forward_tensor(const Tensor& x) {
  QFORGE_CHECK(x.dim() >= 1 && x.size(-1) == in_, "Linear(in_features={}): input {} has {} features", in_,
               shape_str(x.shape()), x.dim() >= 1 ? x.size(-1) : 0);
  return ops::linear(x, param("weight"), maybe_param("bias"));
}

std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_, out_, py_bool(has_param("bias")));
}

nlohmann::json Linear::spec_args() const {
  return {{"in_features", in_}, {"out_features", out_}, {"bias", has_param("bias")}};
}

// ---- Conv2d ---------------------------------------------------------------------------------------

Conv2d::Conv2d(const Conv2dOptions& opt, Generator& gen) : Module("Conv2d"), opt_(opt) {
  const auto& o = opt_;
  QFORGE_CHECK(o.in_channels > 0 && o.out_channels > 0 && o.groups > 0,
               "Conv2d: channels and groups must be positive, got in={} out={} groups={}", o.in_channels,
               o.out_channels, o.groups);
  QFORGE_CHECK(o.in_channels % o.groups == 0 && o.out_channels % o.groups == 0,
               "Conv2d: in_channels={} and out_channels={} must be divisible by groups={}", o.in_channels,
               o.out_channels, o.groups);
  for (int i = 0; i < 2; ++i)
    QFORGE_CHECK(o.kernel_size[i] > 0 && o.stride[i] > 0 && o.dilation[i] > 0 && o.padding[i] >= 0,
                 "Conv2d: bad geometry kernel_size={} stride={} padding={} dilation={}", py_pair(o.kernel_size),
                 py_pair(o.stride), py_pair(o.padding), py_pair(o.dilation));
  Tensor w = Tensor::empty({o.out_channels, o.in_channels / o.groups, o.kernel_size[0], o.kernel_size[1]});
  init::default_weight_(w, gen);
  register_parameter("weight", w);
  if (o.bias) {
    Tensor b = Tensor::empty({o.out_channels});
    init::default_bias_(b, init::fan_in_out(w.shape()).first, gen);
    register_parameter("bias", b);
  }
}

Tensor Conv2d::forward_tensor(const Tensor& x) {
  QFORGE_CHECK(x.dim() == 4 && x.size(1) == opt_.in_channels, "Conv2d(in_channels={}): expected input [N, {}, H, W], got {}",
               opt_.in_channels, opt_.in_channels, shape_str(x.shape()));
  ops::Conv2dParams p;
  p.stride = opt_.stride;
  p.padding = opt_.padding;
  p.dilation = opt_.dilation;
  p.groups = opt_.groups;
  return ops::conv2d(x, param("weight"), maybe_param("bias"), p);
}

std::string Conv2d::extra_repr() const {
  const auto& o = opt_;
  std::string s = fmt::format("{}, {}, kernel_size={}, stride={}", o.in_channels, o.out_channels,
                              py_pair(o.kernel_size), py_pair(o.stride));
  if (o.padding != Pair{0, 0}) s += ", padding=" + py_pair(o.padding);
  if (o.dilation != Pair{1, 1}) s += ", dilation=" + py_pair(o.dilation);
  if (o.groups != 1) s += fmt::format(", groups={}", o.groups);
  if (!has_param("bias")) s += ", bias=False";
  return s;
}

nlohmann::json Conv2d::spec_args() const {
  const auto& o = opt_;
  auto pj = [](const Pair& p) { return nlohmann::json::array({p[0], p[1]}); };
  return {{"in_channels", o.in_channels}, {"out_channels", o.out_channels}, {"kernel_size", pj(o.kernel_size)},
          {"stride", pj(o.stride)},       {"padding", pj(o.padding)},       {"dilation", pj(o.dilation)},
          {"groups", o.groups},           {"bias", has_param("bias")}};
}

// ---- Embedding ------------------------------------------------------------------------------------

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator& gen)
    : Module("Embedding"), num_(num_embeddings), dim_(embedding_dim) {
  QFORGE_CHECK(num_ > 0 && dim_ > 0, "Embedding: sizes must be positive, got num_embeddings={} embedding_dim={}",
               num_, dim_);
  Tensor w = Tensor::empty({num_, dim_});
  init::normal_(w, 0.0, 1.0, gen);
  register_parameter("weight", w);
}

Tensor Embedding::forward_tensor(const Tensor& indices) {
  return ops::embedding(param("weight"), indices);
}

std::string Embedding::extra_repr() const { return fmt::format("{}, {}", num_, dim_); }

nlohmann::json Embedding::spec_args() const { return {{"num_embeddings", num_}, {"embedding_dim", dim_}}; }

}  // namespace qforge::nn
