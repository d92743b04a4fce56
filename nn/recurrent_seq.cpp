// The fused recurrent sequence op: all T steps of one layer and direction as one autograd node, with a
// hand-written backward through time (see recurrent_cells.hpp, Note [Two recurrent paths]).
//
// Forward, per step t (in processing order; reverse walks t = T-1 .. 0):
//   rec = h_prev W_hh^T + b_hh                      one GEMM [B,H] x [H,G*H]
//   point-wise cell on (x_proj[t], rec, c_prev)    -> h_t (into Y[t]), c_t, saved activations
// Backward, walking the steps in the opposite order:
//   dh = dY[t] + dh_rec
//   point-wise cell backward -> dGX[t] (= d x_proj[t]), dGH[t] (= d rec; equal to dGX except GRU's n part)
//   dh_rec = (GRU: dh * z) + dGH[t] W_hh           one GEMM [B,G*H] x [G*H,H]
// and after the loop dW_hh = sum_t dGH[t]^T h_prev(t) (two GEMMs over all steps), db_hh = sum dGH.
// With a hidden fake-quant, h_t is quantized right after the cell (raw h_t kept) and the backward masks
// dh before the cell backward; with a learnable range it also sums the range-gradient terms of every
// element and returns them through the quantizer's linear map (Note [Fused range learning]).
#include "nn/recurrent_cells.hpp"

#include "engine/kernels/quantize.hpp"
#include "engine/ops/blas.hpp"
#include "engine/ops/op.hpp"

#include <omp.h>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace qforge::nn {

namespace {

using ops::SavedTensor;

using ops::detail::gemm;      // OpenMP-split OpenBLAS GEMM (Note [BLAS threads inside OpenMP])
using ops::detail::gemm_raw;  // on the calling thread

// Note [Recurrent batch split]
// The recurrence couples time steps but never batch rows: h_t[b] depends only on h_{t-1}[b]. So the
// threads split the batch once and each runs the whole sequence (GEMM and point-wise work on its rows)
// with no barrier per step; a per-step parallel region would pay T fork/joins and stall badly when
// the cores are shared.
int batch_threads(int64_t B, double work) {
  if (omp_in_parallel()) return 1;
  const int64_t nt = std::min<int64_t>(omp_get_max_threads(), B / 8);
  return work >= double(1 << 22) && nt > 1 ? int(nt) : 1;
}

void batch_slice(int64_t B, int64_t& b0, int64_t& b1) {
  const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
  b0 = B * id / nt;
  b1 = B * (id + 1) / nt;
}

// Note [Recurrent activations]
// The point-wise work runs on whole rows: f32 sigmoid/tanh are xsimd batches (baseline ISA, vectorised
// exp/tanh accurate to a few ulp), f64 uses libm so that gradcheck sees full precision. Backward needs no
// transcendental at all: the forward saves the activated gates and tanh(c).
void sigmoid_inplace(float* v, int64_t n) {
  using Batch = xsimd::batch<float>;
  constexpr int64_t kW = static_cast<int64_t>(Batch::size);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    const Batch x = Batch::load_unaligned(v + i);
    (Batch(1.0f) / (Batch(1.0f) + xsimd::exp(-x))).store_unaligned(v + i);
  }
  for (; i < n; ++i) v[i] = 1.0f / (1.0f + std::exp(-v[i]));
}
void tanh_inplace(float* v, int64_t n) {
  using Batch = xsimd::batch<float>;
  constexpr int64_t kW = static_cast<int64_t>(Batch::size);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) xsimd::tanh(Batch::load_unaligned(v + i)).store_unaligned(v + i);
  for (; i < n; ++i) v[i] = std::tanh(v[i]);
}
inline void sigmoid_inplace(double* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = 1.0 / (1.0 + std::exp(-v[i]));
}
inline void tanh_inplace(double* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = std::tanh(v[i]);
}

// Note [Fused hidden fake-quant] (recurrent_cells.hpp): the arithmetic is engine/kernels/quantize.hpp's
// grid functions with Tie::half_up in the element type, the same ones quant/qdq_kernels.hpp's loops call
// (tests/nn/test_recurrent.cpp + tests/quant check the two paths agree bit for bit).
namespace kq = qforge::kernels;
template <class S> using HqParams = kq::GridIn<S>;
template <class S> HqParams<S> hq_params(const HiddenFakeQuant& q) {
  return HqParams<S>(kq::AffineGrid{q.scale, q.inv_scale, q.lo, q.hi});
}
// raw[j] = h[j]; h[j] = q(h[j])
template <class S>
inline void hq_forward(S* __restrict h, S* __restrict raw, int64_t n, const HqParams<S>& p) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const S x = h[j];
    raw[j] = x;
    h[j] = static_cast<S>(kq::grid_fake_quant<kq::Tie::half_up>(x, p));
  }
}
template <class S> inline S hq_mask(S x, const HqParams<S>& p) {  // 1 where the rounded value is on the grid
  return kq::in_range(kq::grid_level<kq::Tie::half_up>(x, p), p.lo, p.hi);
}

// The STE-masked gradient d = mask * g of one row, g = gy + gh (output and recurrent gradient of q(h_t)),
// plus the row's range-gradient sums (Note [Fused range learning]): s += g * (in ? r - x*inv : clamp(r)),
// o += g * (1 - in). The same per-element terms as quant/qdq_kernels.hpp qdq_backward_learnable (sums in
// S per row, then in double).
template <class S>
inline void hq_backward_learnable(const S* __restrict raw, const S* __restrict gy, const S* __restrict gh,
                                  S* __restrict d, int64_t n, const HqParams<S>& p, double& s_sum, double& o_sum) {
  S a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
  for (int64_t j = 0; j < n; ++j) {
    const S xs = raw[j] * p.inv;
    const S r = kq::grid_level_scaled<kq::Tie::half_up>(xs, p);
    const S in = kq::in_range(r, p.lo, p.hi);
    const S gj = gy[j] + gh[j];
    d[j] = in * gj;
    a += gj * (in * (r - xs) + (S(1) - in) * kq::clamp_to(r, p.lo, p.hi));
    b += gj * (S(1) - in);
  }
  s_sum += static_cast<double>(a);
  o_sum += static_cast<double>(b);
}

struct RecurrentSeqOp : ops::OpBase {
  static constexpr const char* kName = "recurrent_sequence";
  CellType type = CellType::lstm;
  bool reverse = false;
  bool has_bias = false, has_c0 = false;
  bool hq_on = false;
  HiddenFakeQuant hq;  // grid and range-gradient coefficients (hq.range's tensors are not kept)
  Shape p0_shape, p1_shape;
  DType p0_dtype = DType::f32, p1_dtype = DType::f32;
  double sum_s = 0, sum_o = 0;  // backward: the range-gradient sums over all steps and rows
  SavedTensor w_hh_saved, h0_saved, c0_saved, y_saved;
  Tensor acts;  // [T, B, G*H] post-activation gates (LSTM i,f,g,o; GRU r,z,n); private to this op
  Tensor cs;    // LSTM: c_t [T, B, H]
  Tensor tcs;   // LSTM: tanh(c_t) [T, B, H]
  Tensor ghn;   // GRU: W_hn h_prev + b_hn [T, B, H]
  Tensor hraw;  // with hidden fake-quant: h_t before quantization [T, B, H]

  // p0_in / p1_in: the learnable range parameters (Note [Fused range learning]); only their shapes are
  // read here, the grid values come with `hq`.
  Tensor forward(const Tensor& xp_in, const Tensor& w_in, const Tensor& b_in, const Tensor& h0_in,
                 const Tensor& c0_in, const Tensor& p0_in, const Tensor& p1_in) {
    const char* name = cell_type_name(type);
    const int64_t G = gate_count(type);
    QFORGE_CHECK(xp_in.dim() == 3, "recurrent_sequence({}): x_proj must be [T, B, G*H], got {}", name,
                 shape_str(xp_in.shape()));
    QFORGE_CHECK(w_in.dim() == 2 && w_in.size(0) == G * w_in.size(1),
                 "recurrent_sequence({}): weight_hh must be [{}*H, H], got {}", name, G, shape_str(w_in.shape()));
    const int64_t T = xp_in.size(0), B = xp_in.size(1), H = w_in.size(1), GH = G * H;
    QFORGE_CHECK(T >= 1, "recurrent_sequence({}): empty sequence", name);
    QFORGE_CHECK(xp_in.size(2) == GH, "recurrent_sequence({}): x_proj {} does not match weight_hh {}", name,
                 shape_str(xp_in.shape()), shape_str(w_in.shape()));
    QFORGE_CHECK(h0_in.defined() && h0_in.shape() == Shape({B, H}), "recurrent_sequence({}): h0 must be [{}, {}], got {}",
                 name, B, H, h0_in.defined() ? shape_str(h0_in.shape()) : std::string("undefined"));
    if (type == CellType::lstm)
      QFORGE_CHECK(c0_in.defined() && c0_in.shape() == Shape({B, H}),
                   "recurrent_sequence(LSTM): c0 must be [{}, {}], got {}", B, H,
                   c0_in.defined() ? shape_str(c0_in.shape()) : std::string("undefined"));
    if (b_in.defined())
      QFORGE_CHECK(b_in.dim() == 1 && b_in.size(0) == GH, "recurrent_sequence({}): bias_hh must be [{}], got {}", name,
                   GH, shape_str(b_in.shape()));
    const DType dt = xp_in.dtype();
    QFORGE_CHECK(is_floating(dt) && w_in.dtype() == dt && h0_in.dtype() == dt && (!b_in.defined() || b_in.dtype() == dt) &&
                     (!c0_in.defined() || c0_in.dtype() == dt),
                 "recurrent_sequence({}): all inputs must share one floating dtype", name);
    for (const Tensor* p : {&p0_in, &p1_in})
      QFORGE_CHECK(!p->defined() || (hq_on && p->numel() == 1 && is_floating(p->dtype())),
                   "recurrent_sequence({}): range parameters need a hidden fake-quant and one floating element, "
                   "got {}", name, shape_str(p->shape()));
    if (p0_in.defined()) {
      p0_shape = p0_in.shape();
      p0_dtype = p0_in.dtype();
    }
    if (p1_in.defined()) {
      p1_shape = p1_in.shape();
      p1_dtype = p1_in.dtype();
    }
    has_bias = b_in.defined();
    has_c0 = type == CellType::lstm;
    const Tensor xp = xp_in.contiguous(), w = w_in.contiguous(), h0 = h0_in.contiguous();
    const Tensor b = has_bias ? b_in.contiguous() : Tensor();
    const Tensor c0 = has_c0 ? c0_in.contiguous() : Tensor();
    Tensor y = Tensor::empty({type == CellType::lstm ? T + 1 : T, B, H}, dt);
    if (type == CellType::lstm || type == CellType::gru) acts = Tensor::empty({T, B, GH}, dt);
    if (type == CellType::lstm) cs = Tensor::empty({T, B, H}, dt);
    if (type == CellType::lstm) tcs = Tensor::empty({T, B, H}, dt);
    if (type == CellType::gru) ghn = Tensor::empty({T, B, H}, dt);
    if (hq_on) hraw = Tensor::empty({T, B, H}, dt);
    if (dt == DType::f32) run_forward<float>(xp, w, b, h0, c0, y, T, B, H);
    else run_forward<double>(xp, w, b, h0, c0, y, T, B, H);
    if (recording) {
      w_hh_saved = w;
      h0_saved = h0;
      if (has_c0) c0_saved = c0;
      y_saved = y;
    } else {
      acts = cs = tcs = ghn = hraw = Tensor();
    }
    return y;
  }

  template <class S>
  void run_forward(const Tensor& xp_t, const Tensor& w_t, const Tensor& b_t, const Tensor& h0_t, const Tensor& c0_t,
                   Tensor& y_t, int64_t T, int64_t B, int64_t H) {
    const int64_t G = gate_count(type), GH = G * H;
    const S* xp = xp_t.data<S>();
    const S* w = w_t.data<S>();
    const S* bias = has_bias ? b_t.data<S>() : nullptr;
    S* y = y_t.data<S>();
    S* act = acts.defined() ? acts.data<S>() : nullptr;
    S* c_all = cs.defined() ? cs.data<S>() : nullptr;
    S* tc_all = tcs.defined() ? tcs.data<S>() : nullptr;
    S* gn = ghn.defined() ? ghn.data<S>() : nullptr;
    S* raw_all = hraw.defined() ? hraw.data<S>() : nullptr;
    const HqParams<S> hqp = hq_params<S>(hq);
    const CellType ty = type;
    const bool rev = reverse;
    const int nthreads = batch_threads(B, double(T) * double(B) * double(GH) * double(H));
#pragma omp parallel num_threads(nthreads)
    {
    int64_t b0, b1;
    batch_slice(B, b0, b1);  // Note [Recurrent batch split]
    const int64_t nb = b1 - b0;
    std::vector<S> rec(size_t(std::max<int64_t>(nb, 1) * GH));
    const S* hp = h0_t.data<S>();
    const S* cp = c0_t.defined() ? c0_t.data<S>() : nullptr;
    for (int64_t s = 0; s < T && nb > 0; ++s) {
      const int64_t t = rev ? T - 1 - s : s;
      for (int64_t r = 0; r < nb; ++r)
        for (int64_t j = 0; j < GH; ++j) rec[r * GH + j] = bias ? bias[j] : S(0);
      gemm_raw(false, true, nb, GH, H, S(1), hp + b0 * H, H, w, H, S(1), rec.data(), GH);
      const S* x = xp + t * B * GH;
      S* h = y + t * B * H;
      for (int64_t bb = b0; bb < b1; ++bb) {
        const S* xr = x + bb * GH;
        const S* rr = rec.data() + (bb - b0) * GH;
        S* hr = h + bb * H;
        const S* hpr = hp + bb * H;
        if (ty == CellType::lstm) {
          S* ar = act + (t * B + bb) * GH;
          S* cr = c_all + (t * B + bb) * H;
          S* tcr = tc_all + (t * B + bb) * H;
          const S* cpr = cp + bb * H;
          for (int64_t j = 0; j < GH; ++j) ar[j] = xr[j] + rr[j];  // i f g o pre-activations
          sigmoid_inplace(ar, 2 * H);
          tanh_inplace(ar + 2 * H, H);
          sigmoid_inplace(ar + 3 * H, H);
          for (int64_t j = 0; j < H; ++j) tcr[j] = cr[j] = ar[H + j] * cpr[j] + ar[j] * ar[2 * H + j];
          tanh_inplace(tcr, H);
          for (int64_t j = 0; j < H; ++j) hr[j] = ar[3 * H + j] * tcr[j];
        } else if (ty == CellType::gru) {
          S* ar = act + (t * B + bb) * GH;
          S* gnr = gn + (t * B + bb) * H;
          for (int64_t j = 0; j < 2 * H; ++j) ar[j] = xr[j] + rr[j];  // r z pre-activations
          sigmoid_inplace(ar, 2 * H);
          for (int64_t j = 0; j < H; ++j) {
            gnr[j] = rr[2 * H + j];
            ar[2 * H + j] = xr[2 * H + j] + ar[j] * rr[2 * H + j];
          }
          tanh_inplace(ar + 2 * H, H);
          for (int64_t j = 0; j < H; ++j) hr[j] = ar[2 * H + j] + ar[H + j] * (hpr[j] - ar[2 * H + j]);
        } else if (ty == CellType::rnn_tanh) {
          for (int64_t j = 0; j < H; ++j) hr[j] = xr[j] + rr[j];
          tanh_inplace(hr, H);
        } else {
          for (int64_t j = 0; j < H; ++j) {
            const S v = xr[j] + rr[j];
            hr[j] = v > S(0) ? v : S(0);
          }
        }
        if (raw_all) hq_forward(hr, raw_all + (t * B + bb) * H, H, hqp);
      }
      hp = h;
      if (ty == CellType::lstm) cp = c_all + t * B * H;
    }
    }
    if (type == CellType::lstm) {
      const S* last = c_all + (reverse ? 0 : T - 1) * B * H;
      std::copy(last, last + B * H, y + T * B * H);
    }
  }

  std::vector<Tensor> backward(const Tensor& g_in) {
    const Tensor& y = y_saved.get(kName);
    const Tensor& w = w_hh_saved.get(kName);
    const Tensor& h0 = h0_saved.get(kName);
    const Tensor c0 = has_c0 ? c0_saved.get(kName) : Tensor();
    const Tensor g = g_in.contiguous();
    const int64_t T = acts.defined() ? acts.size(0) : (type == CellType::lstm ? y.size(0) - 1 : y.size(0));
    const int64_t B = y.size(1), H = y.size(2), GH = gate_count(type) * H;
    const DType dt = y.dtype();
    Tensor dxp = Tensor::empty({T, B, GH}, dt);
    Tensor dgh = type == CellType::gru ? Tensor::empty({T, B, GH}, dt) : dxp;  // equal except GRU
    Tensor dh0 = Tensor::empty({B, H}, dt);
    Tensor dc0 = has_c0 ? Tensor::empty({B, H}, dt) : Tensor();
    Tensor dw = needs_grad(1) ? Tensor::empty({GH, H}, dt) : Tensor();
    Tensor db = has_bias && needs_grad(2) ? Tensor::empty({GH}, dt) : Tensor();
    if (dt == DType::f32) run_backward<float>(g, y, w, h0, c0, dxp, dgh, dh0, dc0, dw, db, T, B, H);
    else run_backward<double>(g, y, w, h0, c0, dxp, dgh, dh0, dc0, dw, db, T, B, H);
    // Note [Fused range learning]: the rule's linear map applied once to the sums over all steps.
    auto range_grad = [&](int i, double cs, double co, const Shape& shape, DType pdt) {
      if (!needs_grad(i)) return Tensor();
      return Tensor::from_vector(std::vector<double>{cs * sum_s + co * sum_o}, shape).to(pdt);
    };
    return {needs_grad(0) ? dxp : Tensor(), dw, db, needs_grad(3) ? dh0 : Tensor(),
            has_c0 && needs_grad(4) ? dc0 : Tensor(), range_grad(5, hq.range.s0, hq.range.o0, p0_shape, p0_dtype),
            range_grad(6, hq.range.s1, hq.range.o1, p1_shape, p1_dtype)};
  }

  template <class S>
  void run_backward(const Tensor& g_t, const Tensor& y_t, const Tensor& w_t, const Tensor& h0_t, const Tensor& c0_t,
                    Tensor& dxp_t, Tensor& dgh_t, Tensor& dh0_t, Tensor& dc0_t, Tensor& dw_t, Tensor& db_t, int64_t T,
                    int64_t B, int64_t H) {
    const int64_t GH = gate_count(type) * H;
    const S* gy = g_t.data<S>();
    const S* y = y_t.data<S>();
    const S* w = w_t.data<S>();
    const S* h0 = h0_t.data<S>();
    const S* c0 = c0_t.defined() ? c0_t.data<S>() : nullptr;
    const S* act = acts.defined() ? acts.data<S>() : nullptr;
    const S* c_all = cs.defined() ? cs.data<S>() : nullptr;
    const S* tc_all = tcs.defined() ? tcs.data<S>() : nullptr;
    const S* gn = ghn.defined() ? ghn.data<S>() : nullptr;
    const S* raw_all = hraw.defined() ? hraw.data<S>() : nullptr;
    const HqParams<S> hqp = hq_params<S>(hq);
    S* dx = dxp_t.data<S>();
    S* dg = dgh_t.data<S>();
    S* dh_rec = dh0_t.data<S>();  // recurrent gradient, ends as dh0 (zero-initialised)
    std::vector<S> dc_rec;
    if (type == CellType::lstm) dc_rec.assign(gy + T * B * H, gy + (T + 1) * B * H);  // d c_n
    const CellType ty = type;
    const bool rev = reverse;
    const bool learn = raw_all && (needs_grad(5) || needs_grad(6));
    const int nthreads = batch_threads(B, double(T) * double(B) * double(GH) * double(H));
    std::vector<double> part(2 * size_t(nthreads), 0.0);  // per-thread range-gradient sums
#pragma omp parallel num_threads(nthreads)
    {
    int64_t b0, b1;
    batch_slice(B, b0, b1);  // Note [Recurrent batch split]
    const int64_t nb = b1 - b0;
    double s_sum = 0, o_sum = 0;
    std::vector<S> dmask(raw_all ? size_t(std::max<int64_t>(nb, 1) * H) : 0);
    for (int64_t s = T - 1; s >= 0 && nb > 0; --s) {
      const int64_t t = rev ? T - 1 - s : s;
      const int64_t tp = rev ? t + 1 : t - 1;  // previous step's time index (if s > 0)
      const S* hp = s > 0 ? y + tp * B * H : h0;
      const S* cp = ty == CellType::lstm ? (s > 0 ? c_all + tp * B * H : c0) : nullptr;
      for (int64_t bb = b0; bb < b1; ++bb) {
        const S* gyr = gy + (t * B + bb) * H;
        S* dhr = dh_rec + bb * H;
        S* dxr = dx + (t * B + bb) * GH;
        S* dgr = dg + (t * B + bb) * GH;
        const S* hr = y + (t * B + bb) * H;
        if (raw_all) {
          // dL/dh_t (raw) = STE mask * dL/dq(h_t): fold the mask into the output gradient and the
          // recurrent gradient row (the cell backward below sums them), and use the raw h_t.
          const S* rawr = raw_all + (t * B + bb) * H;
          S* dmr = dmask.data() + (bb - b0) * H;
          if (learn) hq_backward_learnable(rawr, gyr, dhr, dmr, H, hqp, s_sum, o_sum);
          else
            for (int64_t j = 0; j < H; ++j) dmr[j] = hq_mask(rawr[j], hqp) * (gyr[j] + dhr[j]);
          gyr = dmr;
          hr = rawr;
          std::fill(dhr, dhr + H, S(0));
        }
        if (ty == CellType::lstm) {
          const S* ar = act + (t * B + bb) * GH;
          const S* tcr = tc_all + (t * B + bb) * H;
          const S* cpr = cp + bb * H;
          S* dcr = dc_rec.data() + bb * H;
          for (int64_t j = 0; j < H; ++j) {
            const S i = ar[j], f = ar[H + j], g = ar[2 * H + j], o = ar[3 * H + j];
            const S dh = gyr[j] + dhr[j];
            const S tc = tcr[j];
            const S dc = dcr[j] + dh * o * (S(1) - tc * tc);
            dxr[j] = dc * g * i * (S(1) - i);
            dxr[H + j] = dc * cpr[j] * f * (S(1) - f);
            dxr[2 * H + j] = dc * i * (S(1) - g * g);
            dxr[3 * H + j] = dh * tc * o * (S(1) - o);
            dcr[j] = dc * f;
          }
        } else if (ty == CellType::gru) {
          const S* ar = act + (t * B + bb) * GH;
          const S* gnr = gn + (t * B + bb) * H;
          const S* hpr = hp + bb * H;
          for (int64_t j = 0; j < H; ++j) {
            const S r = ar[j], z = ar[H + j], n = ar[2 * H + j];
            const S dh = gyr[j] + dhr[j];
            const S dn = dh * (S(1) - z) * (S(1) - n * n);
            const S dz = dh * (hpr[j] - n) * z * (S(1) - z);
            const S dr = dn * gnr[j] * r * (S(1) - r);
            dxr[j] = dgr[j] = dr;
            dxr[H + j] = dgr[H + j] = dz;
            dxr[2 * H + j] = dn;
            dgr[2 * H + j] = dn * r;
            dhr[j] = dh * z;  // the direct path h' = ... + z * h; the GEMM below adds the gate paths
          }
        } else {
          for (int64_t j = 0; j < H; ++j) {
            const S dh = gyr[j] + dhr[j];
            dxr[j] = ty == CellType::rnn_tanh ? dh * (S(1) - hr[j] * hr[j]) : (hr[j] > S(0) ? dh : S(0));
          }
        }
      }
      // dh_rec = (GRU: dh * z) + dGH[t] W_hh
      gemm_raw(false, false, nb, H, GH, S(1), dg + (t * B + b0) * GH, GH, w, H, ty == CellType::gru ? S(1) : S(0),
               dh_rec + b0 * H, H);
    }
    part[2 * size_t(omp_get_thread_num())] = s_sum;
    part[2 * size_t(omp_get_thread_num()) + 1] = o_sum;
    }
    sum_s = sum_o = 0;
    for (int i = 0; i < nthreads; ++i) {  // thread order: deterministic for a given thread count
      sum_s += part[2 * size_t(i)];
      sum_o += part[2 * size_t(i) + 1];
    }
    if (c0) std::copy(dc_rec.begin(), dc_rec.end(), dc0_t.data<S>());
    if (dw_t.defined()) {
      // dW = sum_t dGH[t]^T h_prev(t): the steps with h_prev = Y[t -/+ 1] form one contiguous block.
      S* dw = dw_t.data<S>();
      const int64_t first = reverse ? T - 1 : 0;  // the step whose h_prev is h0
      gemm(true, false, GH, H, B, S(1), dg + first * B * GH, GH, h0, H, S(0), dw, H);
      if (T > 1) {
        const S* dblock = reverse ? dg : dg + B * GH;     // dGH[0..T-2] (reverse) or dGH[1..T-1]
        const S* hblock = reverse ? y + B * H : y;        // Y[1..T-1] (reverse) or Y[0..T-2]
        gemm(true, false, GH, H, (T - 1) * B, S(1), dblock, GH, hblock, H, S(1), dw, H);
      }
    }
    if (db_t.defined()) {
      S* db = db_t.data<S>();
      for (int64_t j = 0; j < GH; ++j) db[j] = 0;
      for (int64_t r = 0; r < T * B; ++r) {
        const S* row = dg + r * GH;
        for (int64_t j = 0; j < GH; ++j) db[j] += row[j];
      }
    }
  }
};

}  // namespace

Tensor recurrent_sequence(CellType type, const Tensor& x_proj, const Tensor& w_hh, const Tensor& b_hh, const Tensor& h0,
                          const Tensor& c0, bool reverse, const HiddenFakeQuant* hidden_fq) {
  RecurrentSeqOp op;
  op.type = type;
  op.reverse = reverse;
  if (hidden_fq) {
    QFORGE_CHECK(hidden_fq->valid(), "recurrent_sequence({}): invalid hidden fake-quant scale {} grid [{}, {}]",
                 cell_type_name(type), hidden_fq->scale, hidden_fq->lo, hidden_fq->hi);
    op.hq_on = true;
    op.hq = *hidden_fq;
    op.hq.range.p0 = op.hq.range.p1 = Tensor();  // passed as inputs below; the op keeps no reference
    return ops::apply(std::move(op), x_proj, w_hh, b_hh, h0, type == CellType::lstm ? c0 : Tensor(),
                      hidden_fq->range.p0, hidden_fq->range.p1);
  }
  return ops::apply(std::move(op), x_proj, w_hh, b_hh, h0, type == CellType::lstm ? c0 : Tensor(), Tensor(), Tensor());
}

}  // namespace qforge::nn
