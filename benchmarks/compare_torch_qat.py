#!/usr/bin/python3
"""PyTorch baseline for benchmarks/bench_qat.cpp: QAT step cost vs FP32 step for the zoo `lstm` model.

Usage (Debian's python3-torch 1.13):
    /usr/bin/python3 benchmarks/compare_torch_qat.py [--threads 1] [--repeats 15] [--qforge build/benchmarks/qforge_bench_qat]

The model is the zoo lstm: image rows as a 28-step sequence, LSTM(28, 128), last time step, Linear(128, 10);
batch 64, one step = forward, cross-entropy, backward, SGD (lr 1e-3, momentum 0.9), random data as in
bench_qat. FP32 uses nn.LSTM. PyTorch 1.13 has no QAT for nn.LSTM (prepare_qat leaves its weights
unquantized, pytorch-fake-quant.md section 10), so the W8A8 QAT model is written the way AIMET v1's
QcQuantizeRecurrent does it in PyTorch: a loop over time steps with torch.lstm_cell, the input, W (weight_ih)
and R (weight_hh) fake-quantized once per forward, the hidden state fake-quantized after every step, the fc
weight and the logits fake-quantized; weights symmetric int8 per tensor, activations asymmetric uint8,
ranges from min/max of one FP32 forward (qforge's default tf scheme). Modes:
    static  torch.fake_quantize_per_tensor_affine (STE)
    lsq     torch._fake_quantize_learnable_per_tensor_affine with LSQ's grad_factor 1/sqrt(numel * Qp)
    aimet   learnable min/max as AIMET's autograd formulation (aimet-compat.md section 6.2: scale = (max - min)/N,
            offset = STE(round(min/scale)), q = clamp(STE(round(x/scale)) - offset, 0, N), (q + offset) * scale)
    loop    the same time-step loop without any fake-quant (how much of the QAT cost is the loop itself)
Prints one row per mode with the median step time and its ratio to the FP32 nn.LSTM step (and, with
--qforge, the qforge rows of bench_qat for the same model).
"""
import argparse
import copy
import os
import subprocess
import sys
import time

# Note [fair PyTorch timing] (torch_side.py): PyTorch's OpenBLAS is pinned to one thread before torch is
# imported, unless --openblas-default asks for the unpinned (default) setting; run both to report both.
OPENBLAS_DEFAULT = "--openblas-default" in sys.argv
if OPENBLAS_DEFAULT:
    sys.argv.remove("--openblas-default")
else:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import torch
import torch.nn as nn
import torch.nn.functional as F

B, T, I, H, C = 64, 28, 28, 128, 10


class RowLstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(I, H, batch_first=True)
        self.fc = nn.Linear(H, C)

    def forward(self, x):
        out, _ = self.rnn(x.view(x.shape[0], T, I))
        return self.fc(out[:, -1])


def ste_round(v):
    return v + (torch.round(v) - v).detach()


class Fq(nn.Module):
    """One per-tensor fake quantizer: static, LSQ or AIMET range learning, initialised from min/max."""

    def __init__(self, mode, mn, mx, symmetric, numel_per_scale):
        super().__init__()
        self.mode, self.symmetric = mode, symmetric
        if symmetric:
            a = max(abs(mn), abs(mx), 1e-8)
            self.qmin, self.qmax = -128, 127
            scale, zp = a / 127.0, 0
            mn, mx = -128 * scale, 127 * scale
        else:
            mn, mx = min(mn, 0.0), max(mx, 0.0)
            mx = max(mx, mn + 1e-5)
            self.qmin, self.qmax = 0, 255
            scale = (mx - mn) / 255.0
            zp = int(round(-mn / scale))
        self.scale_f, self.zp_i = scale, zp
        if mode == "lsq":
            self.scale = nn.Parameter(torch.tensor([scale]))
            self.zp = nn.Parameter(torch.tensor([float(zp)]), requires_grad=not symmetric)
            self.gf = 1.0 / (numel_per_scale * self.qmax) ** 0.5
        elif mode == "aimet":
            self.mn = nn.Parameter(torch.tensor(mn))
            self.mx = nn.Parameter(torch.tensor(mx))

    def forward(self, x):
        if self.mode == "static":
            return torch.fake_quantize_per_tensor_affine(x, self.scale_f, self.zp_i, self.qmin, self.qmax)
        if self.mode == "lsq":
            return torch._fake_quantize_learnable_per_tensor_affine(x, self.scale, self.zp, self.qmin, self.qmax,
                                                                    self.gf)
        n = 255.0
        scale = (self.mx - self.mn) / n
        offset = ste_round(self.mn / scale)
        q = torch.clamp(ste_round(x / scale) - offset, 0.0, n)
        return (q + offset) * scale


class QatLstm(nn.Module):
    """The same model as a time-step loop with AIMET v1's quantizer placement (or none for mode 'loop')."""

    def __init__(self, base, mode, x):
        super().__init__()
        self.base, self.mode = base, mode
        if mode == "loop":
            return
        r = base.rnn
        with torch.no_grad():  # ranges from one FP32 forward (min/max)
            seq, _ = r(x.view(B, T, I))
            logits = base.fc(seq[:, -1])

        def mm(t):
            return float(t.min()), float(t.max())

        self.q_in = Fq(mode, *mm(x), False, T * I)
        self.q_w = Fq(mode, *mm(r.weight_ih_l0), True, r.weight_ih_l0.numel())
        self.q_r = Fq(mode, *mm(r.weight_hh_l0), True, r.weight_hh_l0.numel())
        self.q_h = Fq(mode, *mm(seq), False, H)
        self.q_fcw = Fq(mode, *mm(base.fc.weight), True, base.fc.weight.numel())
        self.q_out = Fq(mode, *mm(logits), False, C)

    def forward(self, x):
        r, quant = self.base.rnn, self.mode != "loop"
        x = x.view(x.shape[0], T, I)
        w_ih, w_hh = r.weight_ih_l0, r.weight_hh_l0
        if quant:
            x, w_ih, w_hh = self.q_in(x), self.q_w(w_ih), self.q_r(w_hh)
        h = x.new_zeros(x.shape[0], H)
        c = x.new_zeros(x.shape[0], H)
        for t in range(T):
            h, c = torch.lstm_cell(x[:, t], (h, c), w_ih, w_hh, r.bias_ih_l0, r.bias_hh_l0)
            if quant:
                h = self.q_h(h)
        w = self.q_fcw(self.base.fc.weight) if quant else self.base.fc.weight
        out = F.linear(h, w, self.base.fc.bias)
        return self.q_out(out) if quant else out


def time_steps(models, x, y, repeats):
    """Median step time per model; the models' steps are interleaved (as in bench_qat) so that a change in
    machine load affects every mode alike."""
    opts = [torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for m in models]
    times = [[] for _ in models]
    for i in range(3 + repeats):
        for m, opt, t in zip(models, opts, times):
            t0 = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
            if i >= 3:
                t.append((time.perf_counter() - t0) * 1e3)
    return [sorted(t)[len(t) // 2] for t in times]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--qforge", default=None, help="path of qforge_bench_qat: also print its lstm row")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    x = torch.randn(B, 1, 28, 28)
    y = torch.arange(B) % C
    base = RowLstm()
    modes = ("loop", "static", "lsq", "aimet")
    models = [base] + [QatLstm(copy.deepcopy(base), mode, x) for mode in modes]  # same initial weights
    ms = dict(zip(("fp32",) + modes, time_steps(models, x, y, a.repeats)))
    f = ms["fp32"]
    print(f"pytorch {torch.__version__} (OpenBLAS {'default' if OPENBLAS_DEFAULT else 'pinned to 1'} thread) "
          f"lstm threads {a.threads}  fp32 {f:7.2f} ms  "
          f"loop (no fq) {ms['loop']:7.2f} ms ({ms['loop'] / f:.2f}x)  qat W8A8 {ms['static']:7.2f} ms "
          f"({ms['static'] / f:.2f}x)  lsq {ms['lsq']:7.2f} ms ({ms['lsq'] / f:.2f}x)  "
          f"aimet {ms['aimet']:7.2f} ms ({ms['aimet'] / f:.2f}x)")
    if a.qforge:
        r = subprocess.run([a.qforge, "--models", "lstm", "--threads", str(a.threads), "--repeats", str(a.repeats)],
                           stdout=subprocess.PIPE, text=True, check=True)
        print("qforge " + r.stdout.strip())


if __name__ == "__main__":
    main()
