// Quantizer and its fused autograd op. See quantizer.hpp.
#include "quant/quantizer.hpp"

#include "engine/autograd.hpp"
#include "engine/ops/op.hpp"
#include "quant/qdq_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qforge::quant {

RangeLearning parse_range_learning(const std::string& s) {
  if (s == "none") return RangeLearning::none;
  if (s == "aimet") return RangeLearning::aimet;
  if (s == "lsq") return RangeLearning::lsq;
  throw InputError(fmt::format("unknown range learning '{}' (expected none, aimet or lsq)", s));
}

const char* range_learning_name(RangeLearning r) {
  switch (r) {
    case RangeLearning::none: return "none";
    case RangeLearning::aimet: return "aimet";
    case RangeLearning::lsq: return "lsq";
  }
  return "?";
}

namespace {

using ops::OpBase;
using ops::SavedTensor;
using detail::Tie;

struct Layout {
  int64_t outer = 1, channels = 1, inner = 1;
};

Layout layout_of(const Shape& shape, bool per_channel, int64_t axis) {
  Layout l;
  if (!per_channel) {
    l.inner = shape_numel(shape);
    return l;
  }
  for (int64_t d = 0; d < axis; ++d) l.outer *= shape[d];
  l.channels = shape[axis];
  for (size_t d = axis + 1; d < shape.size(); ++d) l.inner *= shape[d];
  return l;
}

// Work items: contiguous pieces of at most kChunk elements of one channel block. The loops are
// memory-bound and vectorised; threads only pay off for very large tensors (measured: on a loaded
// 2-core machine an OpenMP region around an 800K-element QDQ made it 7x slower). Per-item partial sums
// are combined in item order, so results do not depend on the thread count.
constexpr int64_t kChunk = 16384;
struct Item {
  int64_t c, off, len;
};

// Blockwise tensors are per-channel tensors of O*nb "channels" of B*K contiguous elements
// (blockwise.hpp Note [Blockwise layout]); the caller has checked the shape (Quantizer::check_input).
Layout layout_for(const Shape& shape, const QuantizerSettings& s) {
  if (!s.block.blockwise()) return layout_of(shape, s.per_channel, s.axis);
  Layout l;
  l.channels = shape[0] * (shape[1] / s.block.block_size);
  l.inner = shape_numel(shape) / l.channels;
  return l;
}

std::vector<Item> items_of(const Layout& l) {
  std::vector<Item> v;
  for (int64_t o = 0; o < l.outer; ++o)
    for (int64_t c = 0; c < l.channels; ++c) {
      const int64_t base = (o * l.channels + c) * l.inner;
      for (int64_t s = 0; s < l.inner; s += kChunk) v.push_back({c, base + s, std::min(kChunk, l.inner - s)});
    }
  return v;
}

template <class F> void run_items(const std::vector<Item>& items, int64_t total, F&& f) {
  const int64_t n = static_cast<int64_t>(items.size());
  if (total >= (int64_t(1) << 23) && n > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) f(i, items[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) f(i, items[i]);
  }
}

bool wide(const AffineParams& p) { return p.hi - p.lo > 65536.0f; }

template <class T> detail::QdqParams<T> qp(const AffineParams& p) {
  const T inv = static_cast<T>(p.inv_scale);
  return detail::QdqParams<T>(static_cast<T>(p.scale), inv, static_cast<T>(p.lo), static_cast<T>(p.hi));
}

// Note [Range gradient map] Every range-learning rule is linear in the two GradSums S and O of a block
// (qdq_kernels.hpp): dp0 = s0*S + o0*O, dp1 = s1*S + o1*O, with coefficients from the parameter values
// read at forward time. QdqOp and Quantizer::fused_qdq (the fused recurrent op) both use this map.
struct RangeGradMap {
  double s0 = 0, o0 = 0, s1 = 0, o1 = 0;
};
RangeGradMap range_grad_map(RangeLearning rl, bool symmetric_signed, double steps, double pmin, double pmax,
                            double scale, double grad_factor) {
  RangeGradMap m;
  if (rl == RangeLearning::aimet) {
    if (symmetric_signed) {  // dL/dmax = S / floor(N/2), dL/dmin = -dL/dmax
      m.s1 = 1.0 / std::floor(steps / 2);
      m.s0 = -m.s1;
    } else {  // dL/dmin = -S/N + max*N/w^2 * delta*O,  dL/dmax = S/N - min*N/w^2 * delta*O
      const double w = pmax - pmin, delta = w / steps;
      m.s0 = -1.0 / steps;
      m.o0 = pmax * steps / (w * w) * delta;
      m.s1 = 1.0 / steps;
      m.o1 = -pmin * steps / (w * w) * delta;
    }
  } else if (rl == RangeLearning::lsq) {  // dscale = S * g, dzp = -scale * O * g
    m.s0 = grad_factor;
    m.o1 = -scale * grad_factor;
  }
  return m;
}

// LSQ's gradient scale 1/sqrt(numel * Qp): numel = the elements sharing one scale (per sample for
// activations), Qp = the number of positive grid levels (hi).
double lsq_grad_factor(const Shape& x_shape, int64_t channels, bool is_param, float hi) {
  const double numel = static_cast<double>(shape_numel(x_shape));
  const double per_scale = numel / static_cast<double>(channels) /
                           ((!is_param && x_shape.size() > 1) ? static_cast<double>(x_shape[0]) : 1.0);
  const double qp_levels = std::max(1.0f, hi);
  return 1.0 / std::sqrt(std::max(1.0, per_scale) * qp_levels);
}

// Note [QdqOp] inputs (x, p0, p1): p0/p1 are the learnable range parameters (undefined when the grid is
// static). Forward reads their values (already folded into `ap`); backward returns their gradients.
struct QdqOp : OpBase {
  static constexpr const char* kName = "quantize_dequantize";
  Layout l;
  std::vector<AffineParams> ap;
  RangeLearning rl = RangeLearning::none;
  bool symmetric_signed = false;  // aimet: symmetric signed grid (tied min/max)
  double steps = 255;
  std::vector<double> pmin, pmax;  // aimet: gated parameter values
  double grad_factor = 1.0;         // lsq
  bool lsq_zp = false;              // lsq: zero point learnable
  bool stochastic = false;
  Generator* gen = nullptr;
  Shape param_shape;
  SavedTensor saved_x;
  Tensor mask;  // stochastic only (u8)

  Tensor forward(const Tensor& xin, const Tensor&, const Tensor&) {
    Tensor x = xin.contiguous();
    if (recording) saved_x = x;
    Tensor y = Tensor::empty(x.shape(), x.dtype());
    const auto items = items_of(l);
    auto body = [&]<class T>() {
      const T* px = x.data<T>();
      T* py = y.data<T>();
      if (stochastic) {
        mask = Tensor::empty(x.shape(), DType::u8);
        uint8_t* pm = mask.data<uint8_t>();
        std::vector<float> u;
        for (const Item& it : items) {
          u.resize(it.len);
          for (auto& v : u) v = static_cast<float>(gen->uniform());
          const AffineParams& a = ap[it.c];
          if (wide(a)) detail::qdq_forward_stochastic(px + it.off, u.data(), py + it.off, pm + it.off, it.len, qp<double>(a));
          else detail::qdq_forward_stochastic(px + it.off, u.data(), py + it.off, pm + it.off, it.len, qp<T>(a));
        }
        return;
      }
      run_items(items, x.numel(), [&](int64_t, const Item& it) {
        const AffineParams& a = ap[it.c];
        if (wide(a)) detail::qdq_forward<Tie::half_up>(px + it.off, py + it.off, it.len, qp<double>(a));
        else detail::qdq_forward<Tie::half_up>(px + it.off, py + it.off, it.len, qp<T>(a));
      });
    };
    if (x.dtype() == DType::f32) body.template operator()<float>();
    else body.template operator()<double>();
    return y;
  }

  std::vector<Tensor> backward(const Tensor& gin) {
    const Tensor& x = saved_x.get(kName);
    Tensor g = gin.contiguous();
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    const auto items = items_of(l);
    const bool learn = rl != RangeLearning::none && (needs_grad(1) || needs_grad(2));
    std::vector<detail::GradSums> sums(learn ? items.size() : 0);
    auto body = [&]<class T>() {
      const T* px = x.data<T>();
      const T* pg = g.data<T>();
      T* pd = dx.data<T>();
      if (stochastic) {
        const uint8_t* pm = mask.data<uint8_t>();
        const int64_t n = x.numel();
        for (int64_t i = 0; i < n; ++i) pd[i] = pm[i] ? pg[i] : T(0);
        QFORGE_CHECK(!learn, "quantize_dequantize: range learning with stochastic rounding is not supported");
        return;
      }
      run_items(items, x.numel(), [&](int64_t i, const Item& it) {
        const AffineParams& a = ap[it.c];
        if (learn) {
          sums[i] = wide(a) ? detail::qdq_backward_learnable<Tie::half_up>(px + it.off, pg + it.off, pd + it.off, it.len,
                                                                           qp<double>(a))
                            : detail::qdq_backward_learnable<Tie::half_up>(px + it.off, pg + it.off, pd + it.off, it.len,
                                                                           qp<T>(a));
        } else if (wide(a)) {
          detail::qdq_backward_ste<Tie::half_up>(px + it.off, pg + it.off, pd + it.off, it.len, qp<double>(a));
        } else {
          detail::qdq_backward_ste<Tie::half_up>(px + it.off, pg + it.off, pd + it.off, it.len, qp<T>(a));
        }
      });
    };
    if (x.dtype() == DType::f32) body.template operator()<float>();
    else body.template operator()<double>();
    if (!learn) return {dx, Tensor(), Tensor()};

    std::vector<double> S(l.channels, 0.0), O(l.channels, 0.0);
    for (size_t i = 0; i < items.size(); ++i) {
      S[items[i].c] += sums[i].s_scale;
      O[items[i].c] += sums[i].s_out;
    }
    std::vector<float> g0(l.channels), g1(l.channels);
    for (int64_t c = 0; c < l.channels; ++c) {
      const bool aimet = rl == RangeLearning::aimet;
      const RangeGradMap m = range_grad_map(rl, symmetric_signed, steps, aimet ? pmin[c] : 0.0,
                                            aimet ? pmax[c] : 0.0, ap[c].scale, grad_factor);
      g0[c] = static_cast<float>(m.s0 * S[c] + m.o0 * O[c]);
      g1[c] = static_cast<float>(m.s1 * S[c] + m.o1 * O[c]);
    }
    Tensor t0 = needs_grad(1) ? Tensor::from_vector(g0, param_shape) : Tensor();
    Tensor t1 = needs_grad(2) && (rl == RangeLearning::aimet || lsq_zp) ? Tensor::from_vector(g1, param_shape) : Tensor();
    return {needs_grad(0) ? dx : Tensor(), t0, t1};
  }
};

// AIMET float quantizer: half-precision round trip, gradient passed through unchanged.
struct Fp16Op : OpBase {
  static constexpr const char* kName = "fp16_quantize_dequantize";
  Tensor forward(const Tensor& xin) {
    Tensor x = xin.contiguous();
    Tensor y = Tensor::empty(x.shape(), x.dtype());
    if (x.dtype() == DType::f32) detail::fp16_round_trip(x.data<float>(), y.data<float>(), x.numel());
    else detail::fp16_round_trip(x.data<double>(), y.data<double>(), x.numel());
    return y;
  }
  std::vector<Tensor> backward(const Tensor& g) { return {g}; }
};

}  // namespace

// ---- Quantizer ---------------------------------------------------------------------------------------

Quantizer::Quantizer(QuantizerSettings s, std::string name) : name_(std::move(name)), gen_(s.seed) {
  set_settings(s);
}

void Quantizer::set_settings(const QuantizerSettings& s) {
  check_bitwidth(s.grid.bitwidth, s.allow_32, s.grid.is_float, name_.empty() ? "quantizer" : name_.c_str());
  QFORGE_CHECK(s.axis >= 0, "quantizer {}: channel axis must be >= 0, got {}", name_, s.axis);
  QFORGE_CHECK(s.percentile >= 50 && s.percentile <= 100, "quantizer {}: percentile {} outside [50, 100]", name_,
               s.percentile);
  QuantizerSettings n = s;
  if (n.block.blockwise()) {  // Note [Blockwise layout]: per-channel along axis 0, blocks along axis 1
    n.per_channel = true;
    n.axis = 0;
    if (n.block.lpbq()) {
      if (!n.grid.symmetric || n.grid.is_float)
        throw InputError(fmt::format("quantizer {}: LPBQ needs a symmetric integer grid", name_));
      if (n.block.decompressed_bw <= n.grid.bitwidth || n.block.decompressed_bw > 16 || n.grid.bitwidth > 8)
        throw InputError(fmt::format("quantizer {}: LPBQ needs bitwidth <= 8 below the decompressed bitwidth (got {} "
                                     "and {})",
                                     name_, n.grid.bitwidth, n.block.decompressed_bw));
    }
  }
  set_settings_checked(n);
}

void Quantizer::set_settings_checked(const QuantizerSettings& s) {
  const bool grid_changed = s.grid.bitwidth != s_.grid.bitwidth || s.grid.symmetric != s_.grid.symmetric ||
                            s.grid.strict_symmetric != s_.grid.strict_symmetric ||
                            s.grid.unsigned_symmetric != s_.grid.unsigned_symmetric ||
                            s.grid.is_float != s_.grid.is_float || s.per_channel != s_.per_channel ||
                            s.axis != s_.axis || s.block != s_.block;
  s_ = s;
  if (s_.is_param) s_.histogram.expand = 1.0;  // parameters are observed once: use all bins
  if (grid_changed) clear_encoding();
  if (!enc_.empty()) init_params();
}

void Quantizer::clear_encoding() {
  enc_.clear();
  lpbq_ = {};
  p0_ = Tensor();
  p1_ = Tensor();
  stats_.clear();
}

void Quantizer::check_input(const Tensor& x) const {
  QFORGE_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64,
               "quantizer {}: expected an f32 or f64 tensor, got {} {}", name_, dtype_name(x.dtype()),
               shape_str(x.shape()));
  if (s_.block.blockwise()) {
    const int64_t nb = blocks_per_channel(x.shape(), s_.block.block_size, "quantizer " + name_);
    nb_ = nb;
    if (!enc_.empty() && x.size(0) * nb != static_cast<int64_t>(enc_.size()))
      throw InputError(fmt::format("quantizer {}: {} block encodings for a tensor of shape {} ({} blocks of {})", name_,
                                   enc_.size(), shape_str(x.shape()), x.size(0) * nb, s_.block.block_size));
  } else if (s_.per_channel) {
    QFORGE_CHECK(s_.axis < x.dim(), "quantizer {}: channel axis {} out of range for shape {}", name_, s_.axis,
                 shape_str(x.shape()));
    if (!enc_.empty())
      QFORGE_CHECK(x.size(s_.axis) == static_cast<int64_t>(enc_.size()),
                   "quantizer {}: {} per-channel encodings for a tensor of shape {} (axis {})", name_, enc_.size(),
                   shape_str(x.shape()), s_.axis);
  }
}

void Quantizer::reset_stats() {
  stats_.clear();
}

void Quantizer::start_calibration() {
  reset_stats();
  calibrating_ = true;
}

void Quantizer::observe(const Tensor& xin) {
  check_input(xin);
  if (s_.grid.is_float) return;
  Tensor x = xin.detach().contiguous();
  if (s_.block.blockwise()) nb_ = x.size(1) / s_.block.block_size;
  const Layout l = layout_for(x.shape(), s_);
  const bool hist = s_.scheme != QuantScheme::tf;
  if (stats_.size() != static_cast<size_t>(l.channels)) stats_.assign(l.channels, TensorStats(hist, s_.histogram, s_.scheme));
  for (int64_t o = 0; o < l.outer; ++o)
    for (int64_t c = 0; c < l.channels; ++c) {
      const int64_t off = (o * l.channels + c) * l.inner;
      if (x.dtype() == DType::f32) stats_[c].update(x.data<float>() + off, l.inner);
      else stats_[c].update(x.data<double>() + off, l.inner);
    }
}

bool Quantizer::compute_encoding() {
  calibrating_ = false;
  if (s_.grid.is_float) {
    enc_.assign(1, compute_encoding_float());
    return true;
  }
  if (frozen_ && !enc_.empty()) return true;
  if (stats_.empty() || stats_[0].empty()) return false;
  std::vector<Encoding> e;
  e.reserve(stats_.size());
  for (const auto& st : stats_) {
    Encoding enc = analyze(st, s_.scheme, s_.grid, s_.percentile);
    if (s_.constraint_min || s_.constraint_max) {
      const double mn = s_.constraint_min ? *s_.constraint_min : enc.min;
      const double mx = s_.constraint_max ? *s_.constraint_max : enc.max;
      enc = quant::compute_encoding(mn, mx, s_.grid);
    }
    e.push_back(enc);
  }
  enc_ = std::move(e);
  if (s_.block.lpbq()) {  // Note [LPBQ]: block scales onto the per-channel grid
    std::vector<double> d(enc_.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = enc_[i].delta;
    const int64_t channels = static_cast<int64_t>(enc_.size()) / nb_;
    lpbq_ = lpbq_compress(d, channels, s_.block.decompressed_bw - s_.grid.bitwidth);
    enc_ = lpbq_block_encodings(lpbq_, s_.grid.bitwidth);
  }
  init_params();
  return true;
}

Encoding Quantizer::compute_encoding_float() const {
  Encoding e;
  e.bitwidth = s_.grid.bitwidth;
  e.is_float = true;
  return e;
}

void Quantizer::set_encodings(std::vector<Encoding> e) {
  QFORGE_CHECK(!e.empty(), "quantizer {}: set_encodings with no encoding", name_);
  QFORGE_CHECK(s_.per_channel || e.size() == 1, "quantizer {}: {} encodings for a per-tensor quantizer", name_,
               e.size());
  for (const auto& x : e) check_bitwidth(x.bitwidth, s_.allow_32, x.is_float, name_.c_str());
  enc_ = std::move(e);
  s_.grid.bitwidth = enc_[0].bitwidth;
  s_.grid.is_float = enc_[0].is_float;
  if (!enc_[0].is_float) s_.grid.symmetric = enc_[0].symmetric;
  calibrating_ = false;
  lpbq_ = {};
  if (s_.block.lpbq()) {  // arbitrary block scales: onto the LPBQ grid (Note [LPBQ])
    QFORGE_CHECK(nb_ > 0 && enc_.size() % static_cast<size_t>(nb_) == 0,
                 "quantizer {}: LPBQ block encodings set before the weight's shape is known (use set_lpbq)", name_);
    std::vector<double> d(enc_.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = enc_[i].delta;
    lpbq_ = lpbq_compress(d, static_cast<int64_t>(enc_.size()) / nb_, s_.block.decompressed_bw - s_.grid.bitwidth);
    enc_ = lpbq_block_encodings(lpbq_, s_.grid.bitwidth);
  }
  init_params();
}

void Quantizer::set_lpbq(const LpbqScales& sc, int bitwidth) {
  QFORGE_CHECK(s_.block.lpbq(), "quantizer {}: set_lpbq on a quantizer that is not LPBQ", name_);
  const int64_t channels = static_cast<int64_t>(sc.channel_scale.size());
  QFORGE_CHECK(channels > 0 && sc.multiplier.size() % static_cast<size_t>(channels) == 0,
               "quantizer {}: {} LPBQ multipliers for {} channels", name_, sc.multiplier.size(), channels);
  check_lpbq(sc, channels, static_cast<int64_t>(sc.multiplier.size()) / channels, bitwidth, s_.block.decompressed_bw,
             "quantizer " + name_);
  s_.grid.bitwidth = bitwidth;
  s_.grid.symmetric = true;
  s_.grid.is_float = false;
  nb_ = static_cast<int64_t>(sc.multiplier.size()) / channels;
  lpbq_ = sc;
  enc_ = lpbq_block_encodings(lpbq_, bitwidth);
  calibrating_ = false;
  init_params();
}

std::optional<BlockEntry> Quantizer::block_entry() const {
  if (!s_.block.blockwise()) return std::nullopt;
  BlockEntry b;
  b.spec = s_.block;
  if (s_.block.lpbq()) b.lpbq = lpbq();
  return b;
}

const LpbqScales& Quantizer::lpbq() const {
  if (p0_.defined() && s_.block.lpbq()) encodings();  // re-derive from the learned block scales
  return lpbq_;
}

void Quantizer::assign(std::vector<Encoding> e, const BlockEntry* block) {
  QuantizerSettings s = s_;
  if (block != nullptr) {
    s.block = block->spec;
    s.grid.bitwidth = e.front().bitwidth;
    s.grid.symmetric = e.front().symmetric;
  } else {
    if (s.block.blockwise()) s.per_channel = e.size() > 1;
    s.block = {};
    if (e.size() > 1) s.per_channel = true;
  }
  if (s.block.blockwise() || e.size() > 1) s.axis = 0;
  set_settings(s);
  if (block != nullptr && block->spec.lpbq()) set_lpbq(block->lpbq, e.front().bitwidth);
  else set_encodings(std::move(e));
}

void Quantizer::set_range_learning(RangeLearning r) {
  s_.range_learning = r;
  if (!enc_.empty()) init_params();
}

void Quantizer::init_params() {
  p0_ = Tensor();
  p1_ = Tensor();
  if (s_.range_learning == RangeLearning::none || enc_.empty() || enc_[0].is_float) return;
  const int64_t c = static_cast<int64_t>(enc_.size());
  std::vector<float> a(c), b(c);
  for (int64_t i = 0; i < c; ++i) {
    if (s_.range_learning == RangeLearning::aimet) {
      a[i] = static_cast<float>(enc_[i].min);
      b[i] = static_cast<float>(enc_[i].max);
    } else {
      a[i] = static_cast<float>(enc_[i].delta);
      b[i] = static_cast<float>(-enc_[i].offset);
    }
  }
  p0_ = Tensor::from_vector(a, {c}).set_requires_grad(true);
  const bool lsq_sym = s_.range_learning == RangeLearning::lsq && enc_[0].symmetric;
  p1_ = Tensor::from_vector(b, {c}).set_requires_grad(!lsq_sym);
}

std::vector<Tensor> Quantizer::parameters() const {
  std::vector<Tensor> v;
  if (p0_.defined()) v.push_back(p0_);
  if (p1_.defined() && p1_.requires_grad()) v.push_back(p1_);
  return v;
}

// AIMET gates learned min/max after every step: min <= 0 <= max, max >= min + 1e-5. LSQ: scale >= eps,
// zero point within the grid.
void Quantizer::gate_params() {
  if (!p0_.defined()) return;
  float* a = p0_.data<float>();
  float* b = p1_.data<float>();
  const int64_t c = p0_.numel();
  bool changed = false;
  const float n = static_cast<float>(enc_[0].steps());
  for (int64_t i = 0; i < c; ++i) {
    if (s_.range_learning == RangeLearning::aimet) {
      float mn = std::min(a[i], 0.0f), mx = std::max(b[i], 0.0f);
      mx = std::max(mx, mn + static_cast<float>(kRangeLearningGate));
      if (mn != a[i] || mx != b[i]) {
        a[i] = mn;
        b[i] = mx;
        changed = true;
      }
    } else {
      const float eps = std::numeric_limits<float>::epsilon();
      if (!(a[i] >= eps)) {
        a[i] = eps;
        changed = true;
      }
      const float z = std::clamp(b[i], 0.0f, n);
      if (z != b[i]) {
        b[i] = z;
        changed = true;
      }
    }
  }
  if (changed) {
    p0_.bump_version();
    p1_.bump_version();
  }
}

std::vector<AffineParams> Quantizer::affine_from_params() const {
  std::vector<AffineParams> out(enc_.size());
  std::vector<double> deltas(enc_.size()), offsets(enc_.size());
  const float* a = p0_.data<float>();
  const float* b = p1_.data<float>();
  for (size_t i = 0; i < enc_.size(); ++i) {
    const Encoding& e = enc_[i];
    const double n = static_cast<double>(e.steps());
    double delta, offset;
    if (s_.range_learning == RangeLearning::aimet) {
      const double mn = a[i], mx = b[i];
      if (e.symmetric && e.offset != 0) {
        delta = mx / std::floor(n / 2);
        offset = -std::ceil(n / 2);
      } else {
        delta = (mx - mn) / n;
        offset = -std::clamp(std::round(-mn / delta), 0.0, n);
      }
    } else {
      delta = a[i];
      offset = -std::clamp(std::nearbyint(static_cast<double>(b[i])), 0.0, n);
    }
    deltas[i] = delta;
    offsets[i] = offset;
  }
  if (s_.block.lpbq()) snap_lpbq(deltas);
  for (size_t i = 0; i < enc_.size(); ++i) {
    const double n = static_cast<double>(enc_[i].steps());
    AffineParams p;
    p.scale = static_cast<float>(deltas[i]);
    p.inv_scale = 1.0f / p.scale;
    p.lo = static_cast<float>(offsets[i]);
    p.hi = static_cast<float>(n + offsets[i]);
    out[i] = p;
  }
  return out;
}

// Note [LPBQ] with range learning: the learned block scales are re-snapped to c[o]·m[o,b] on every
// forward; the snap is the identity for the gradient (straight-through), as the rounding of x is.
void Quantizer::snap_lpbq(std::vector<double>& deltas) const {
  QFORGE_CHECK(nb_ > 0 && deltas.size() % static_cast<size_t>(nb_) == 0, "quantizer {}: LPBQ block count unknown",
               name_);
  lpbq_ = lpbq_compress(deltas, static_cast<int64_t>(deltas.size()) / nb_, s_.block.decompressed_bw - s_.grid.bitwidth);
  for (size_t i = 0; i < deltas.size(); ++i) {
    const int64_t o = static_cast<int64_t>(i) / nb_;
    deltas[i] = lpbq_.channel_scale[o] * lpbq_.multiplier[i];
  }
}

const std::vector<Encoding>& Quantizer::encodings() const {
  if (p0_.defined() && s_.block.lpbq()) {
    affine_from_params();  // refreshes lpbq_
    enc_ = lpbq_block_encodings(lpbq_, s_.grid.bitwidth);
  } else if (p0_.defined()) {
    const auto ap = affine_from_params();
    GridSpec g = s_.grid;
    for (size_t i = 0; i < enc_.size(); ++i) {
      g.symmetric = enc_[i].symmetric;
      g.bitwidth = enc_[i].bitwidth;
      enc_[i] = encoding_from_scale_offset(ap[i].scale, ap[i].lo, g);
    }
  }
  return enc_;
}

Tensor Quantizer::forward(const Tensor& x) {
  if (!s_.enabled) return x;
  if (calibrating_) {
    observe(x);
    return x;
  }
  if (enc_.empty()) return x;
  check_input(x);
  if (enc_[0].is_float) {
    QFORGE_CHECK(enc_[0].bitwidth == 16 || enc_[0].bitwidth == 32, "quantizer {}: float bitwidth {}", name_,
                 enc_[0].bitwidth);
    if (enc_[0].bitwidth == 32) return x;
    return ops::apply(Fp16Op{}, x);
  }
  QdqOp op;
  op.l = layout_for(x.shape(), s_);
  op.rl = s_.range_learning;
  op.steps = static_cast<double>(enc_[0].steps());
  op.stochastic = s_.rounding == RoundingMode::stochastic;
  op.gen = &gen_;
  if (p0_.defined()) {
    {
      NoGradGuard ng;
      gate_params();
    }
    op.ap = affine_from_params();
    op.param_shape = p0_.shape();
    if (op.rl == RangeLearning::aimet) {
      op.pmin.assign(p0_.data<float>(), p0_.data<float>() + p0_.numel());
      op.pmax.assign(p1_.data<float>(), p1_.data<float>() + p1_.numel());
      op.symmetric_signed = enc_[0].symmetric && enc_[0].offset != 0;
    } else {
      op.grad_factor = lsq_grad_factor(x.shape(), op.l.channels, s_.is_param, op.ap[0].hi);
      op.lsq_zp = p1_.requires_grad();
    }
    return ops::apply(std::move(op), x, p0_, p1_);
  }
  op.ap.reserve(enc_.size());
  for (const auto& e : enc_) op.ap.push_back(affine_params(e));
  return ops::apply(std::move(op), x, Tensor(), Tensor());
}

std::optional<Quantizer::FusedQdq> Quantizer::fused_qdq(const Shape& x_shape) {
  if (!s_.enabled || calibrating_ || enc_.empty() || s_.per_channel || s_.rounding != RoundingMode::nearest ||
      enc_.size() != 1 || enc_[0].is_float)
    return std::nullopt;
  FusedQdq f;
  if (!p0_.defined()) {
    f.grid = affine_params(enc_[0]);
  } else {
    {
      NoGradGuard ng;
      gate_params();
    }
    f.grid = affine_from_params()[0];
    const bool aimet = s_.range_learning == RangeLearning::aimet;
    const double steps = static_cast<double>(enc_[0].steps());
    const RangeGradMap m = range_grad_map(
        s_.range_learning, aimet && enc_[0].symmetric && enc_[0].offset != 0, steps,
        aimet ? double(p0_.data<float>()[0]) : 0.0, aimet ? double(p1_.data<float>()[0]) : 0.0, f.grid.scale,
        aimet ? 1.0 : lsq_grad_factor(x_shape, 1, s_.is_param, f.grid.hi));
    f.p0 = p0_;
    f.p1 = p1_;
    f.s0 = m.s0;
    f.o0 = m.o0;
    f.s1 = m.s1;
    f.o1 = m.o1;
  }
  if (f.grid.hi - f.grid.lo > 65536.0f) return std::nullopt;  // wide grids compute in double (QdqOp)
  return f;
}

std::string Quantizer::describe() const {
  std::string s = fmt::format("{:<40} {} bw={} {}{}{}{} scheme={}{}{}", name_.empty() ? "<quantizer>" : name_,
                              s_.enabled ? "on " : "off", s_.grid.bitwidth,
                              s_.grid.is_float ? "float" : (s_.grid.symmetric ? "sym" : "asym"),
                              s_.grid.strict_symmetric ? ",strict" : "", s_.grid.unsigned_symmetric ? ",unsigned" : "",
                              s_.block.blockwise()
                                  ? fmt::format(" {}(block {}{})", s_.block.lpbq() ? "lpbq" : "blockwise",
                                                s_.block.block_size,
                                                s_.block.lpbq() ? fmt::format(", {}-bit scales", s_.block.decompressed_bw)
                                                                : "")
                                  : (s_.per_channel ? fmt::format(" per-channel(axis {})", s_.axis) : ""),
                              scheme_name(s_.scheme),
                              s_.range_learning != RangeLearning::none
                                  ? fmt::format(" learn={}", range_learning_name(s_.range_learning))
                                  : "",
                              frozen_ ? " frozen" : "");
  const auto& e = encodings();
  if (e.empty()) return s + " | no encoding";
  if (e.size() == 1) return s + " | " + e[0].to_string();
  double mn = e[0].min, mx = e[0].max;
  for (const auto& x : e) {
    mn = std::min(mn, x.min);
    mx = std::max(mx, x.max);
  }
  return s + fmt::format(" | {} {}, min in [{:.6g}, ...], max up to {:.6g}", e.size(), s_.block.blockwise() ? "blocks" : "channels", mn, mx);
}

}  // namespace qforge::quant
