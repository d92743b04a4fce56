#!/usr/bin/python3
"""Golden fixtures for every op in engine/ops/ops.hpp, computed with PyTorch (Debian python3-torch 1.13).

Run:  /usr/bin/python3 tools/gen_fixtures_ops.py      (writes tests/fixtures/ops/*.json)

Each fixture file is {"torch_version", "cases": [...]}; a case is
  {"name", "op", "params": {...},
   "inputs":  [tensor | null],          # float64 or int64 tensors, {"shape", "dtype", "data"}
   "requires_grad": [bool],             # which inputs get gradients
   "outs":    [tensor],                 # the op's outputs (several for split/chunk)
   "ws":      [tensor | null],          # weights: gradients are those of sum_k sum(outs[k] * ws[k])
   "grads":   [tensor | null],          # d/d inputs[i] of that sum (null where no gradient)
   "after":   {"<i>": tensor}}          # inputs modified in place (batch_norm running stats)
tests/engine/test_ops_golden.cpp replays every case through qforge in f64. Deterministic: fixed seeds.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "ops")

torch.set_default_dtype(torch.float64)
GEN = torch.Generator().manual_seed(0)


def rnd(*shape, lo=-1.0, hi=1.0):
    return torch.rand(tuple(shape), generator=GEN, dtype=torch.float64) * (hi - lo) + lo


def ints(*shape, lo=0, hi=5):
    return torch.randint(lo, hi, tuple(shape), generator=GEN, dtype=torch.int64)


def enc(t):
    if t is None:
        return None
    t = t.detach()
    if t.dtype == torch.bool:
        t = t.to(torch.float64)
    if t.dtype in (torch.int64, torch.int32):
        return {"shape": list(t.shape), "dtype": "i64", "data": [int(v) for v in t.reshape(-1).tolist()]}
    return {"shape": list(t.shape), "dtype": "f64", "data": [float(v) for v in t.reshape(-1).tolist()]}


class Family:
    def __init__(self, name):
        self.name = name
        self.cases = []
        GEN.manual_seed(sum(ord(ch) * (i + 1) for i, ch in enumerate(name)))  # per family: regenerate any subset

    def case(self, name, op, fn, inputs, grad=None, params=None, mutated=()):
        """fn(*inputs) -> tensor or list of tensors. grad: which inputs require grad (default: floats)."""
        if grad is None:
            grad = [t is not None and t.is_floating_point() for t in inputs]
        orig = [None if t is None else t.detach().clone() for t in inputs]
        live = []
        for t, g in zip(inputs, grad):
            if t is None:
                live.append(None)
                continue
            c = t.detach().clone()
            if g:
                c.requires_grad_(True)
            live.append(c)
        outs = fn(*live)
        if isinstance(outs, torch.Tensor):
            outs = [outs]
        outs = list(outs)
        ws, loss = [], None
        for o in outs:
            if not o.is_floating_point() or not o.requires_grad:
                ws.append(None)
                continue
            w = rnd(*o.shape, lo=0.5, hi=1.5)
            ws.append(w)
            term = (o * w).sum()
            loss = term if loss is None else loss + term
        grads = [None] * len(inputs)
        if loss is not None:
            loss.backward()
            for i, (t, g) in enumerate(zip(live, grad)):
                if g:
                    grads[i] = t.grad if t.grad is not None else torch.zeros_like(t)
        c = {
            "name": name,
            "op": op,
            "params": params or {},
            "inputs": [enc(t) for t in orig],
            "requires_grad": [bool(g) for g in grad],
            "outs": [enc(o) for o in outs],
            "ws": [enc(w) for w in ws],
            "grads": [enc(g) for g in grads],
        }
        if mutated:
            c["after"] = {str(i): enc(live[i]) for i in mutated}
        self.cases.append(c)

    def write(self):
        os.makedirs(OUT_DIR, exist_ok=True)
        path = os.path.join(OUT_DIR, self.name + ".json")
        with open(path, "w") as f:
            json.dump({"torch_version": torch.__version__, "cases": self.cases}, f, separators=(",", ":"))
            f.write("\n")
        print(f"{path}: {len(self.cases)} cases, {os.path.getsize(path)} bytes")


def arith():
    f = Family("arith")
    a, b = rnd(2, 3, 4), rnd(3, 1)
    f.case("add broadcast", "add", torch.add, [a, b])
    f.case("sub broadcast", "sub", torch.sub, [b, a])
    f.case("mul broadcast", "mul", torch.mul, [rnd(2, 1, 4), rnd(3, 1)])
    f.case("div broadcast", "div", torch.div, [rnd(2, 3), rnd(3, lo=0.5, hi=2)])
    x, y = rnd(3, 4), rnd(4)
    x[0, 1] = y[1]  # a tie: PyTorch splits the gradient evenly
    f.case("maximum broadcast with a tie", "maximum", torch.maximum, [x, y])
    f.case("minimum broadcast with a tie", "minimum", torch.minimum, [x, y])
    f.case("pow tensor exponent", "pow", torch.pow, [rnd(3, 4, lo=0.5, hi=2), rnd(4)])
    cond = rnd(3, 4) > 0
    f.case("where broadcast", "where", lambda c, p, q: torch.where(c > 0.5, p, q),
           [cond.to(torch.float64), rnd(3, 4), rnd(4)], grad=[False, True, True])
    f.case("add scalar", "add_scalar", lambda t: t + 2.5, [rnd(2, 3)], params={"value": 2.5})
    f.case("mul scalar", "mul_scalar", lambda t: t * -1.5, [rnd(2, 3)], params={"value": -1.5})
    f.case("pow scalar", "pow_scalar", lambda t: torch.pow(t, 3.0), [rnd(2, 3)], params={"value": 3.0})
    f.case("pow scalar fractional", "pow_scalar", lambda t: torch.pow(t, 0.5), [rnd(5, lo=0.2, hi=3)],
           params={"value": 0.5})
    f.write()


def unary():
    f = Family("unary")
    f.case("neg", "neg", torch.neg, [rnd(2, 3)])
    f.case("exp", "exp", torch.exp, [rnd(2, 3, lo=-3, hi=3)])
    f.case("log", "log", torch.log, [rnd(2, 3, lo=0.1, hi=4)])
    f.case("sqrt", "sqrt", torch.sqrt, [rnd(2, 3, lo=0.1, hi=4)])
    f.case("abs", "abs", torch.abs, [rnd(2, 3)])
    f.case("clamp both", "clamp", lambda t: torch.clamp(t, -0.5, 0.3), [rnd(3, 4)], params={"lo": -0.5, "hi": 0.3})
    f.case("clamp lo", "clamp", lambda t: torch.clamp(t, min=-0.2), [rnd(3, 4)], params={"lo": -0.2})
    f.case("clamp hi", "clamp", lambda t: torch.clamp(t, max=0.1), [rnd(3, 4)], params={"hi": 0.1})
    f.case("relu", "relu", F.relu, [rnd(3, 4)])
    f.case("relu6", "relu6", F.relu6, [rnd(3, 4, lo=-3, hi=9)])
    f.case("leaky_relu", "leaky_relu", lambda t: F.leaky_relu(t, 0.2), [rnd(3, 4)], params={"slope": 0.2})
    f.case("leaky_relu default", "leaky_relu", F.leaky_relu, [rnd(3, 4)], params={"slope": 0.01})
    f.case("hardswish", "hardswish", F.hardswish, [rnd(4, 5, lo=-5, hi=5)])
    f.case("sigmoid", "sigmoid", torch.sigmoid, [rnd(3, 4, lo=-4, hi=4)])
    f.case("tanh", "tanh", torch.tanh, [rnd(3, 4, lo=-3, hi=3)])
    f.write()


def reduce():
    f = Family("reduce")
    x = rnd(2, 3, 4)
    f.case("sum all", "sum", lambda t: t.sum(), [x], params={"dims": [], "keepdim": False})
    f.case("sum dims 0,2", "sum", lambda t: t.sum((0, 2)), [x], params={"dims": [0, 2], "keepdim": False})
    f.case("sum dim -1 keepdim", "sum", lambda t: t.sum(-1, keepdim=True), [x], params={"dims": [-1], "keepdim": True})
    f.case("mean all", "mean", lambda t: t.mean(), [x], params={"dims": [], "keepdim": False})
    f.case("mean dim 1 keepdim", "mean", lambda t: t.mean(1, keepdim=True), [x], params={"dims": [1], "keepdim": True})
    for dim in (0, 1, -1):
        for keep in (False, True):
            f.case(f"max dim {dim} keepdim {keep}", "max_dim", lambda t: t.max(dim, keepdim=keep)[0], [x],
                   params={"dim": dim, "keepdim": keep})
            f.case(f"min dim {dim} keepdim {keep}", "min_dim", lambda t: t.min(dim, keepdim=keep)[0], [x],
                   params={"dim": dim, "keepdim": keep})
            f.case(f"argmax dim {dim} keepdim {keep}", "argmax", lambda t: t.argmax(dim, keepdim=keep), [x],
                   grad=[False], params={"dim": dim, "keepdim": keep})
    f.case("max all", "max_all", lambda t: t.max(), [x])
    f.case("min all", "min_all", lambda t: t.min(), [x])
    ties = torch.tensor([[1.0, 3.0, 0.5], [3.0, -2.0, 3.0]])
    f.case("max all with ties splits evenly", "max_all", lambda t: t.max(), [ties])
    f.case("min all with ties splits evenly", "min_all", lambda t: t.min(), [-ties])
    for dim in (0, 1, -1):
        f.case(f"softmax dim {dim}", "softmax", lambda t: t.softmax(dim), [rnd(2, 3, 4, lo=-3, hi=3)],
               params={"dim": dim})
        f.case(f"log_softmax dim {dim}", "log_softmax", lambda t: t.log_softmax(dim), [rnd(2, 3, 4, lo=-3, hi=3)],
               params={"dim": dim})
    f.case("softmax large logits stay finite", "softmax", lambda t: t.softmax(1),
           [torch.tensor([[1000.0, 999.0, -1000.0], [-500.0, -501.0, -499.0]])], params={"dim": 1})
    f.case("log_softmax large logits stay finite", "log_softmax", lambda t: t.log_softmax(1),
           [torch.tensor([[1000.0, 999.0, -1000.0], [-500.0, -501.0, -499.0]])], params={"dim": 1})
    f.write()


def views():
    f = Family("views")
    x = rnd(2, 3, 4)
    f.case("reshape", "reshape", lambda t: t.reshape(4, 6), [x], params={"shape": [4, 6]})
    f.case("reshape infer", "reshape", lambda t: t.reshape(-1, 2), [x], params={"shape": [-1, 2]})
    f.case("view", "view", lambda t: t.view(6, 4), [x], params={"shape": [6, 4]})
    f.case("transpose", "transpose", lambda t: t.transpose(0, 2), [x], params={"d0": 0, "d1": 2})
    f.case("permute", "permute", lambda t: t.permute(1, 2, 0), [x], params={"dims": [1, 2, 0]})
    f.case("narrow", "narrow", lambda t: t.narrow(2, 1, 2), [x], params={"dim": 2, "start": 1, "length": 2})
    f.case("slice with step", "slice", lambda t: t[:, :, 0:4:2], [x], params={"dim": 2, "start": 0, "end": 4, "step": 2})
    f.case("select", "select", lambda t: t.select(1, -1), [x], params={"dim": 1, "index": -1})
    f.case("expand", "expand", lambda t: t.expand(2, 3, 4), [rnd(3, 1)], params={"shape": [2, 3, 4]})
    f.case("squeeze", "squeeze", lambda t: t.squeeze(1), [rnd(2, 1, 3)], params={"dim": 1})
    f.case("unsqueeze", "unsqueeze", lambda t: t.unsqueeze(-1), [x], params={"dim": -1})
    f.case("flatten", "flatten", lambda t: torch.flatten(t, 1), [rnd(2, 3, 2, 2)], params={"start": 1, "end": -1})
    f.case("flatten middle", "flatten", lambda t: torch.flatten(t, 1, 2), [rnd(2, 3, 2, 2)], params={"start": 1, "end": 2})
    f.case("transpose then contiguous", "transpose_contiguous", lambda t: t.transpose(0, 1).contiguous() * 1.0,
           [rnd(3, 5)], params={"d0": 0, "d1": 1})
    f.write()


def linalg():
    f = Family("linalg")
    f.case("matmul 2d", "matmul", torch.matmul, [rnd(3, 4), rnd(4, 5)])
    f.case("matmul batched broadcast", "matmul", torch.matmul, [rnd(2, 1, 3, 4), rnd(3, 4, 2)])
    f.case("matmul 1d x 2d", "matmul", torch.matmul, [rnd(4), rnd(4, 3)])
    f.case("matmul 2d x 1d", "matmul", torch.matmul, [rnd(3, 4), rnd(4)])
    f.case("matmul 1d x 1d", "matmul", torch.matmul, [rnd(4), rnd(4)])
    f.case("matmul batched x 2d", "matmul", torch.matmul, [rnd(2, 3, 4), rnd(4, 5)])
    f.case("linear with bias", "linear", F.linear, [rnd(3, 5), rnd(4, 5), rnd(4)])
    f.case("linear without bias", "linear", lambda x, w: F.linear(x, w), [rnd(3, 5), rnd(4, 5)])
    f.case("linear 3d input", "linear", F.linear, [rnd(2, 3, 5), rnd(4, 5), rnd(4)])
    f.write()


def conv():
    f = Family("conv")

    def c(name, x, w, b, stride=1, padding=0, dilation=1, groups=1):
        ins = [x, w] + ([b] if b is not None else [])
        f.case(name, "conv2d",
               lambda *t: F.conv2d(t[0], t[1], t[2] if len(t) > 2 else None, stride, padding, dilation, groups), ins,
               params={"stride": [stride] * 2 if isinstance(stride, int) else list(stride),
                       "padding": [padding] * 2 if isinstance(padding, int) else list(padding),
                       "dilation": [dilation] * 2 if isinstance(dilation, int) else list(dilation),
                       "groups": groups})

    c("conv2d basic", rnd(2, 3, 6, 6), rnd(4, 3, 3, 3), rnd(4))
    c("conv2d no bias", rnd(1, 2, 5, 5), rnd(3, 2, 3, 3), None)
    c("conv2d stride 2 padding 1", rnd(2, 3, 7, 7), rnd(4, 3, 3, 3), rnd(4), stride=2, padding=1)
    c("conv2d asymmetric stride/padding", rnd(1, 2, 7, 6), rnd(3, 2, 3, 2), rnd(3), stride=(2, 1), padding=(1, 0))
    c("conv2d dilation 2", rnd(1, 2, 8, 8), rnd(3, 2, 3, 3), rnd(3), dilation=2, padding=2)
    c("conv2d groups 2", rnd(2, 4, 5, 5), rnd(6, 2, 3, 3), rnd(6), groups=2, padding=1)
    c("conv2d depthwise", rnd(2, 4, 6, 6), rnd(4, 1, 3, 3), rnd(4), groups=4, padding=1)
    c("conv2d depthwise multiplier 2 stride 2", rnd(1, 3, 7, 7), rnd(6, 1, 3, 3), rnd(6), groups=3, stride=2, padding=1)
    c("conv2d 1x1", rnd(2, 5, 4, 4), rnd(3, 5, 1, 1), rnd(3))
    f.write()


def pool():
    f = Family("pool")

    def params(kernel, stride, padding, cip=True):
        return {"kernel": list(kernel), "stride": list(stride), "padding": list(padding), "count_include_pad": cip}

    f.case("max_pool2d 2x2", "max_pool2d", lambda t: F.max_pool2d(t, 2), [rnd(2, 3, 6, 6)],
           params=params((2, 2), (2, 2), (0, 0)))
    f.case("max_pool2d 3x3 stride 2 padding 1", "max_pool2d", lambda t: F.max_pool2d(t, 3, 2, 1), [rnd(1, 2, 7, 7)],
           params=params((3, 3), (2, 2), (1, 1)))
    f.case("max_pool2d overlapping 3x2 stride 1", "max_pool2d", lambda t: F.max_pool2d(t, (3, 2), 1),
           [rnd(1, 2, 5, 5)], params=params((3, 2), (1, 1), (0, 0)))
    f.case("avg_pool2d 2x2", "avg_pool2d", lambda t: F.avg_pool2d(t, 2), [rnd(2, 3, 6, 6)],
           params=params((2, 2), (2, 2), (0, 0)))
    f.case("avg_pool2d 3x3 stride 2 padding 1 count_include_pad", "avg_pool2d",
           lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=True), [rnd(1, 2, 7, 7)],
           params=params((3, 3), (2, 2), (1, 1), True))
    f.case("avg_pool2d 3x3 stride 2 padding 1 exclude pad", "avg_pool2d",
           lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=False), [rnd(1, 2, 7, 7)],
           params=params((3, 3), (2, 2), (1, 1), False))
    f.case("adaptive_avg_pool2d 3x2 from 5x7", "adaptive_avg_pool2d", lambda t: F.adaptive_avg_pool2d(t, (3, 2)),
           [rnd(2, 2, 5, 7)], params={"output_size": [3, 2]})
    f.case("adaptive_avg_pool2d 2x2 from 4x4", "adaptive_avg_pool2d", lambda t: F.adaptive_avg_pool2d(t, (2, 2)),
           [rnd(1, 3, 4, 4)], params={"output_size": [2, 2]})
    f.case("global_avg_pool2d", "global_avg_pool2d", lambda t: F.adaptive_avg_pool2d(t, 1), [rnd(2, 3, 4, 5)])
    f.write()


def norm():
    f = Family("norm")

    def bn(name, x, affine, training, momentum=0.1, eps=1e-5):
        c = x.shape[1]
        rm, rv = rnd(c, lo=-0.5, hi=0.5), rnd(c, lo=0.5, hi=2.0)
        ins = [x, rm, rv] + ([rnd(c, lo=0.5, hi=1.5), rnd(c)] if affine else [None, None])
        grad = [True, False, False, affine, affine]
        f.case(name, "batch_norm",
               lambda t, m, v, w, b: F.batch_norm(t, m, v, w, b, training, momentum, eps), ins, grad=grad,
               params={"training": training, "momentum": momentum, "eps": eps}, mutated=(1, 2))

    bn("batch_norm train [N,C]", rnd(6, 4, lo=-2, hi=3), True, True)
    bn("batch_norm train [N,C,H,W]", rnd(3, 2, 4, 5, lo=-1, hi=2), True, True)
    bn("batch_norm train no affine momentum 0.3", rnd(2, 3, 3, 3), False, True, momentum=0.3, eps=1e-3)
    bn("batch_norm eval [N,C]", rnd(5, 3), True, False)
    bn("batch_norm eval [N,C,H,W]", rnd(2, 3, 3, 4), True, False)
    f.write()


def misc():
    f = Family("misc")
    f.case("dropout p=0 training is identity", "dropout", lambda t: F.dropout(t, 0.0, True), [rnd(3, 4)],
           params={"p": 0.0, "training": True})
    f.case("dropout eval is identity", "dropout", lambda t: F.dropout(t, 0.5, False), [rnd(3, 4)],
           params={"p": 0.5, "training": False})
    w = rnd(6, 3)
    idx = torch.tensor([[0, 5, 2, 2], [5, 1, 0, 2]])
    f.case("embedding with repeated indices", "embedding", F.embedding, [idx, w], grad=[False, True])
    f.case("embedding 1d indices", "embedding", F.embedding, [torch.tensor([3, 3, 4]), w], grad=[False, True])
    f.write()


def shape():
    f = Family("shape")
    f.case("concat dim 0", "concat", lambda *t: torch.cat(t, 0), [rnd(2, 3), rnd(1, 3), rnd(3, 3)], params={"dim": 0})
    f.case("concat dim 1", "concat", lambda *t: torch.cat(t, 1), [rnd(2, 2, 2), rnd(2, 3, 2)], params={"dim": 1})
    f.case("concat dim -1", "concat", lambda *t: torch.cat(t, -1), [rnd(2, 3, 1), rnd(2, 3, 2)], params={"dim": -1})
    f.case("stack dim 0", "stack", lambda *t: torch.stack(t, 0), [rnd(2, 3), rnd(2, 3), rnd(2, 3)], params={"dim": 0})
    f.case("stack dim -1", "stack", lambda *t: torch.stack(t, -1), [rnd(2, 3), rnd(2, 3)], params={"dim": -1})
    f.case("split 2 over 5", "split", lambda t: torch.split(t, 2, 1), [rnd(3, 5)], params={"split_size": 2, "dim": 1})
    f.case("chunk 3 over 7", "chunk", lambda t: torch.chunk(t, 3, 0), [rnd(7, 2)], params={"chunks": 3, "dim": 0})
    f.case("chunk 4 over 6 gives 3", "chunk", lambda t: torch.chunk(t, 4, 0), [rnd(6, 2)], params={"chunks": 4, "dim": 0})
    f.case("pad last dim", "pad", lambda t: F.pad(t, (1, 2)), [rnd(2, 3)], params={"pads": [1, 2], "value": 0.0})
    f.case("pad two dims with value", "pad", lambda t: F.pad(t, (1, 0, 2, 1), value=-0.5), [rnd(1, 2, 3, 3)],
           params={"pads": [1, 0, 2, 1], "value": -0.5})
    f.case("pad negative crops", "pad", lambda t: F.pad(t, (-1, 2, 1, -2)), [rnd(2, 4, 5)],
           params={"pads": [-1, 2, 1, -2], "value": 0.0})
    f.case("pad three dims", "pad", lambda t: F.pad(t, (0, 1, 1, 0, 1, 1), value=1.0), [rnd(2, 2, 2)],
           params={"pads": [0, 1, 1, 0, 1, 1], "value": 1.0})
    f.write()


def loss():
    f = Family("loss")

    def ce(name, x, t, ignore=-100, ls=0.0):
        f.case(name, "cross_entropy", lambda a, b: F.cross_entropy(a, b, ignore_index=ignore, label_smoothing=ls),
               [x, t], grad=[True, False], params={"ignore_index": ignore, "label_smoothing": ls})

    ce("cross_entropy [N,C]", rnd(5, 4, lo=-2, hi=2), ints(5, hi=4))
    ce("cross_entropy ignore_index -100", rnd(5, 4, lo=-2, hi=2), torch.tensor([0, -100, 3, -100, 1]))
    ce("cross_entropy ignore_index 2", rnd(6, 3, lo=-2, hi=2), torch.tensor([2, 0, 2, 1, 1, 0]), ignore=2)
    ce("cross_entropy label_smoothing 0.1", rnd(5, 4, lo=-2, hi=2), ints(5, hi=4), ls=0.1)
    ce("cross_entropy ignore_index and label_smoothing", rnd(6, 5, lo=-2, hi=2),
       torch.tensor([4, -100, 0, 2, -100, 1]), ls=0.25)
    ce("cross_entropy [N,C,H,W]", rnd(2, 3, 2, 3, lo=-2, hi=2), ints(2, 2, 3, hi=3))
    t = ints(2, 4, hi=3)
    t[0, 1] = -1
    t[1, 3] = -1
    ce("cross_entropy [N,C,L] ignore and smoothing", rnd(2, 3, 4, lo=-2, hi=2), t, ignore=-1, ls=0.3)
    ce("cross_entropy single sample [C]", rnd(5, lo=-2, hi=2), torch.tensor(3))

    def nll(name, x, t, ignore=-100):
        f.case(name, "nll_loss", lambda a, b: F.nll_loss(a, b, ignore_index=ignore), [x, t], grad=[True, False],
               params={"ignore_index": ignore})

    nll("nll_loss [N,C]", rnd(5, 4, lo=-3, hi=0), ints(5, hi=4))
    nll("nll_loss ignore_index", rnd(5, 4, lo=-3, hi=0), torch.tensor([1, -100, 3, 0, -100]))
    nll("nll_loss [N,C,d]", rnd(2, 3, 4, lo=-3, hi=0), ints(2, 4, hi=3))
    f.case("mse_loss", "mse_loss", F.mse_loss, [rnd(3, 4), rnd(3, 4)])
    f.case("mse_loss 1d", "mse_loss", F.mse_loss, [rnd(7), rnd(7)])
    f.write()


FAMILIES = [arith, unary, reduce, views, linalg, conv, pool, norm, misc, shape, loss]

if __name__ == "__main__":
    only = set(sys.argv[1:])
    for fam in FAMILIES:
        if not only or fam.__name__ in only:
            fam()
