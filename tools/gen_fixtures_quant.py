#!/usr/bin/python3
"""Golden values for qforge's PyTorch-compatible fake-quant ops (quant/fake_quant.hpp).

Runs PyTorch 1.13 (Debian python3-torch) on CPU and writes tests/fixtures/quant/fake_quant.json:
forward outputs and gradients (for a random upstream gradient g) of
  fake_quantize_per_tensor_affine, fake_quantize_per_channel_affine (int and float zero points),
  _fake_quantize_learnable_per_tensor_affine, _fake_quantize_learnable_per_channel_affine.
Each learnable case records whether PyTorch's backward quirks can trigger ("quirk_free"): qforge's default
mode is compared only on quirk-free cases, its torch_compat mode on all of them.
Usage: /usr/bin/python3 tools/gen_fixtures_quant.py   (from the repository root)
"""
import json
import os

import torch

torch.manual_seed(5)
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "quant", "fake_quant.json")


def t(x):
    x = x.detach()
    dt = "i64" if not x.is_floating_point() else "f32"
    vals = x.reshape(-1).tolist()
    return {"shape": list(x.shape), "dtype": dt, "data": vals}


def sample(shape, spread):
    x = torch.randn(shape) * spread
    # add exact ties and boundary values
    return x


cases = []

# ---- per-tensor plain -------------------------------------------------------------------------
for (s, z, qmin, qmax, spread) in [(0.1, 0, -128, 127, 6.0), (0.02, 128, 0, 255, 2.0), (0.37, 3, 0, 15, 3.0),
                                   (1.0, 0, -128, 127, 100.0), (0.05, -2, -8, 7, 0.4), (0.003, 7, 0, 15, 0.05),
                                   (0.25, 0, -2, 1, 0.6)]:
    x = sample((64,), spread)
    x[:8] = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 3.5, 0.0, -1.55]) * s  # ties on the grid
    x.requires_grad_(True)
    y = torch.fake_quantize_per_tensor_affine(x, s, z, qmin, qmax)
    g = torch.randn_like(y)
    y.backward(g)
    cases.append({"op": "per_tensor", "x": t(x), "scale": s, "zero_point": z, "qmin": qmin, "qmax": qmax,
                  "g": t(g), "y": t(y), "dx": t(x.grad)})

# ---- per-channel plain, int and float zero points ------------------------------------------------
for (shape, axis, qmin, qmax, zfloat) in [((4, 3, 5), 0, -128, 127, False), ((2, 6, 3), 1, 0, 255, False),
                                          ((3, 8), 1, -8, 7, False), ((5, 4), 0, 0, 15, True)]:
    C = shape[axis]
    x = torch.randn(shape) * 2
    scale = (torch.rand(C) * 0.2 + 0.01).float()
    if zfloat:
        zp = (torch.rand(C) * (qmax - qmin) + qmin).float()
    else:
        zp = torch.randint(qmin, qmax + 1, (C,), dtype=torch.int32)
    x.requires_grad_(True)
    y = torch.fake_quantize_per_channel_affine(x, scale, zp, axis, qmin, qmax)
    g = torch.randn_like(y)
    y.backward(g)
    cases.append({"op": "per_channel", "x": t(x), "scale": t(scale), "zero_point": t(zp),
                  "zero_point_float": zfloat, "axis": axis, "qmin": qmin, "qmax": qmax,
                  "g": t(g), "y": t(y), "dx": t(x.grad)})

# ---- learnable --------------------------------------------------------------------------------------
def learnable(x, scale, zp, axis, qmin, qmax, gf, quirk_free, ties=False):
    x = x.clone().requires_grad_(True)
    s = scale.clone().requires_grad_(True)
    z = zp.clone().requires_grad_(True)
    if axis is None:
        y = torch._fake_quantize_learnable_per_tensor_affine(x, s, z, qmin, qmax, gf)
    else:
        y = torch._fake_quantize_learnable_per_channel_affine(x, s, z, axis, qmin, qmax, gf)
    g = torch.randn_like(y)
    y.backward(g)
    cases.append({"op": "learnable_per_tensor" if axis is None else "learnable_per_channel", "x": t(x),
                  "scale": t(scale), "zero_point": t(zp), "axis": -1 if axis is None else axis, "qmin": qmin,
                  "qmax": qmax, "grad_factor": gf, "quirk_free": quirk_free, "g": t(g), "y": t(y),
                  "dx": t(x.grad), "dscale": t(s.grad), "dzero_point": t(z.grad)})


for (sc, zp, qmin, qmax, gf, spread) in [(0.1, 3.0, -8, 7, 1.0, 1.0), (0.02, 128.0, 0, 255, 0.25, 3.0),
                                         (0.2, 0.0, -2, 1, 0.5, 0.5), (0.05, 7.0, 0, 15, 1.0, 0.5)]:
    x = torch.randn(48) * spread
    learnable(x, torch.tensor([sc]), torch.tensor([zp]), None, qmin, qmax, gf, True)
# quirk cases: negative / half zero points and exact ties (compat mode only)
x = torch.tensor([-1.2, -1.0, -0.55, 0.0, 0.12, 0.38, 0.4, 0.45, 0.9])
learnable(x, torch.tensor([0.1]), torch.tensor([3.0]), None, -8, 7, 1.0, False)
x = torch.tensor([-1.25, 1.25, -0.75, 0.25, 0.75, 2.0, -3.0])
learnable(x, torch.tensor([0.5]), torch.tensor([1.0]), None, -4, 3, 1.0, False)
x = torch.tensor([5.0, -6.0, 4.4, -5.5, 0.5, 7.2, -9.0])
learnable(x, torch.tensor([1.0]), torch.tensor([2.5]), None, -8, 7, 1.0, False)
learnable(x, torch.tensor([1.0]), torch.tensor([-2.7]), None, -8, 7, 1.0, False)
# per-channel
x = torch.randn(3, 10) * 0.7
learnable(x, torch.tensor([0.1, 0.05, 0.2]), torch.tensor([0.0, 3.0, 8.0]), 0, 0, 15, 1.0, True)
x = torch.randn(2, 4, 6)
learnable(x, torch.tensor([0.1, 0.3, 0.05, 0.2]), torch.tensor([1.0, -2.0, 0.0, 4.0]), 1, -8, 7, 0.3, True)
x = torch.tensor([[-0.93, 0.04, 0.77], [-4.0, 1.3, 2.6]])
learnable(x, torch.tensor([0.1, 0.5]), torch.tensor([0.0, 2.5]), 0, -8, 7, 1.0, False)

os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump({"generator": "tools/gen_fixtures_quant.py", "torch": torch.__version__, "cases": cases}, f)
print(f"wrote {OUT}: {len(cases)} cases, {os.path.getsize(OUT)} bytes")
