// Recurrent cells: one time step of RNN (tanh/relu), LSTM and GRU, with PyTorch's equations, gate order
// and weight layouts, usable on their own; and the fused whole-sequence op the recurrent layers use.
//
// Weights (PyTorch layout, G gates stacked along dim 0):
//   w_ih [G*H, I], w_hh [G*H, H], b_ih [G*H], b_hh [G*H]   (biases optional)
//   RNN  (G=1): h' = act(W_ih x + b_ih + W_hh h + b_hh)                      act = tanh or relu
//   LSTM (G=4, gates i,f,g,o): [i f g o] = W_ih x + b_ih + W_hh h + b_hh
//        c' = sigmoid(f) * c + sigmoid(i) * tanh(g);   h' = sigmoid(o) * tanh(c')
//   GRU  (G=3, gates r,z,n): gx = W_ih x + b_ih, gh = W_hh h + b_hh (each split r|z|n)
//        r = sigmoid(gx_r + gh_r); z = sigmoid(gx_z + gh_z); n = tanh(gx_n + r * gh_n)
//        h' = (1 - z) * n + z * h                  (PyTorch's placement of the reset gate)
//
// Two implementations with one meaning (Note [Two recurrent paths]):
//   - cell_step(): the composition of differentiable ops for one step, with a SiteFn hook through which
//     every intermediate the quantization issue cares about passes (input, weights, gate
//     pre-activations, hidden state after every step, cell state). This is the cell "on its own".
//   - recurrent_sequence(): one autograd op running all T steps of one layer and direction, with a
//     hand-written backward through time (per step one GEMM forward and one backward; the weight
//     gradient of W_hh is a single GEMM over all steps). Used when no in-loop hook is active.
// tests/nn/test_recurrent.cpp proves the two agree in forward and backward.
#pragma once

#include "engine/tensor.hpp"

#include <functional>
#include <string>

namespace qforge::nn {

enum class CellType { rnn_tanh, rnn_relu, lstm, gru };

int64_t gate_count(CellType t);          // 1, 1, 4, 3
const char* cell_type_name(CellType t);  // "RNN_TANH", "RNN_RELU", "LSTM", "GRU" (PyTorch's mode names)

// Where a hook sees a tensor inside the cell.
enum class CellSite {
  input,      // x fed to the cell ([B, I] per step, or the whole sequence [T, B, I] in the fused path)
  weight_ih,  // W_ih as used
  weight_hh,  // W_hh as used (the recurrent weight R)
  gates,      // gate pre-activations [B, G*H] (GRU: called on gx and on gh separately)
  hidden,     // h after every step [B, H]
  cell,       // c after every step [B, H] (LSTM)
};
const char* cell_site_name(CellSite s);

// A transform applied at a site (identity when empty). It must be differentiable (ops), e.g. a
// fake-quantiser; the recurrent layer binds its layer index and direction into it.
using SiteFn = std::function<Tensor(CellSite site, const Tensor& t)>;

struct CellWeights {
  Tensor w_ih, w_hh, b_ih, b_hh;  // biases may be undefined
};

struct CellState {
  Tensor h;  // [B, H]
  Tensor c;  // [B, H], LSTM only
};

// One step from the input projection x_proj = x W_ih^T + b_ih ([B, G*H], computed by the caller, e.g. for
// all steps at once). `site` (may be empty) sees gates, hidden and cell.
CellState cell_step_projected(CellType type, const Tensor& x_proj, const CellState& prev, const Tensor& w_hh,
                              const Tensor& b_hh, const SiteFn& site = {});

// One full step from x [B, I]; `site` also sees input and weights.
CellState cell_step(CellType type, const Tensor& x, const CellState& prev, const CellWeights& w,
                    const SiteFn& site = {});

// A per-tensor fake-quantization of the hidden state after every step, applied inside the fused op's
// loop (Note [Fused hidden fake-quant]). nn does not depend on quant: the fields are quant::AffineParams'
// y = clamp(round_half_up(clamp(h * inv_scale, lo - 1, hi + 1)), lo, hi) * scale (lo = offset,
// hi = N + offset), computed in the element type (f32 params widened for f64 tensors). Grids wider than
// 2^16 levels are not supported here (the quantizer computes them in double).
// With a learnable range (`range`, Note [Fused range learning]) the op also returns the gradients of
// the range parameters; the grid fields must then be the ones the parameters define now.
struct HiddenRangeGrad {
  // The range parameters (f32, any shape with one element; either may be undefined or not require
  // grad). They are inputs of the fused op so that autograd delivers their gradients.
  Tensor p0, p1;
  // d p0 = s0 * S + o0 * O,  d p1 = s1 * S + o1 * O, with the sums over all steps, rows and features
  //   S = sum g * (in ? r - h * inv_scale : clamp(r, lo, hi)),   O = sum g * (1 - in)
  // (g = dL/dq(h_t), r the rounded level, in = lo <= r <= hi): quant/qdq_kernels.hpp GradSums.
  double s0 = 0, o0 = 0, s1 = 0, o1 = 0;
  bool learnable() const { return p0.defined() || p1.defined(); }
};
struct HiddenFakeQuant {
  float scale = 1, inv_scale = 1;  // inv_scale = 1.0f / scale, in float (the quantizer's convention)
  float lo = 0, hi = 255;
  HiddenRangeGrad range;  // empty: static grid
  bool valid() const { return scale > 0 && hi >= lo && hi - lo <= 65536.0f; }
};

// Fused op: all steps of one layer and direction. x_proj [T, B, G*H] (= x W_ih^T + b_ih, contiguous,
// time-major), w_hh [G*H, H], b_hh [G*H] or undefined, h0 [B, H], c0 [B, H] (LSTM; else undefined).
// Returns Y [T, B, H] (h_t at original time positions; reverse runs t = T-1 .. 0), and for LSTM
// [T+1, B, H] whose last row is the final cell state c_n. h_n is Y[T-1] (forward) or Y[0] (reverse).
// Differentiable in x_proj, w_hh, b_hh, h0, c0. f32 or f64.
// With `hidden_fq`, every h_t is fake-quantized before it is stored and fed to the next step (Y holds
// the quantized values); backward applies the straight-through estimator's mask (gradient where the
// rounded value lies on the grid, zero outside) exactly like the quantizer op, and with a learnable
// range also differentiates hidden_fq->range.p0 / p1.
Tensor recurrent_sequence(CellType type, const Tensor& x_proj, const Tensor& w_hh, const Tensor& b_hh,
                          const Tensor& h0, const Tensor& c0, bool reverse,
                          const HiddenFakeQuant* hidden_fq = nullptr);

// Note [Two recurrent paths]
// The fused op is the fast path (no per-step graph nodes, no per-step allocations, one weight-gradient
// GEMM); the step path exists because quantization must observe and transform tensors *inside* the loop
// (the hidden state feeds the next step, so quantizing it changes the recurrence). RNNBase picks the step
// path exactly when its hook wants an in-loop site (gates, hidden, cell); input and weight sites are
// applied outside the loop in both paths. Exception: a hidden-state hook that can describe itself as a
// HiddenFakeQuant (CellHook::fused_hidden; static or learnable range) runs inside the fused op.
//
// Note [Fused hidden fake-quant]
// Quantizing h_t after every step is what QAT of a recurrent layer needs on every step, so it must not
// force the slow step path. The fused op applies it point-wise right after h_t is computed, with the
// same float arithmetic and tie rule as quant/qdq_kernels.hpp (qdq_forward / qdq_backward_ste with
// Tie::half_up), and keeps the raw h_t (needed for the STE mask and for the RNN derivative). The
// gradient reaching q(h_t) (output gradient plus the recurrent one) is multiplied by the mask before
// the cell backward, as the quantizer op does in the step path. Stochastic rounding, per-channel grids
// and calibration (which must observe every h_t) keep the step path.
//
// Note [Fused range learning]
// Learnable ranges (LSQ scale/zero point, AIMET min/max) are the common QAT setting, so they run fused
// too. Every rule quant/ implements gives the range-parameter gradients as a linear function of two sums
// over the quantized elements, S (dy/dscale-like term) and O (gradient mass clipped at a bound); the
// rules differ only in the coefficients (LSQ's 1/sqrt(numel * Qp) gradient scale, AIMET's min/max chain
// rule), which depend on the range values read at forward time. So the quantizer describes its rule as
// those four coefficients (HiddenRangeGrad), nn stays rule-agnostic, and the formulas live once in
// quant/quantizer.cpp. The backward accumulates S and O over all steps and batch rows (per thread, in
// double, combined in thread order) and returns s*S + o*O as the gradients of the parameter inputs.
// The per-step quantizer op instead adds T per-step float gradients: the two agree to float rounding
// (tests/nn/test_recurrent.cpp, tests/quant/test_quantsim.cpp).

}  // namespace qforge::nn
