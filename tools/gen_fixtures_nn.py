#!/usr/bin/python3
"""PyTorch fixtures for qforge's layers and zoo models (tests/nn/test_pytorch_fixtures.cpp).

For every case: build the PyTorch module with PyTorch's state_dict names, save its weights as a
safetensors file (written by hand: the `safetensors` package is not needed), run forward and backward
of sum(out_k * w_k) in float64, and save inputs, outputs, loss weights, gradients w.r.t. every float
input and every parameter, and (train mode) the updated buffers, in a second safetensors file:

  tests/fixtures/nn/cases.json                 index: name, spec or zoo name, mode, files, strides
  tests/fixtures/nn/<case>.weights.safetensors the state_dict (what a PyTorch user would save)
  tests/fixtures/nn/<case>.io.safetensors      input.k, outw.k, output.k, grad.input.k, grad.param.<name>,
                                               after.<buffer>

Weights are rounded to float16-representable values so that large ones can be stored as F16 (exact),
keeping files small; gradients of tensors above kMaxGradElems elements are stored subsampled
(flat[::stride], stride recorded in cases.json).

The reverse direction: `--check-qforge DIR` loads weights that qforge wrote (QFORGE_EXPORT_DIR=DIR
tests/nn/tests_nn -tc='*qforge-written*') into the same PyTorch models and compares the outputs qforge
recorded next to them. Files under tests/fixtures/nn/from_qforge/ are checked on every run.

Run: /usr/bin/python3 tools/gen_fixtures_nn.py   (from the repository root)

Re-running rewrites every case; float64 results of BLAS-backed layers (conv, linear, recurrent) may
come out a few ULPs different with another thread count or machine load (seen: 4e-15). Commit only
the files of cases you added or changed (and cases.json).
"""
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn as tnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "nn")
kMaxGradElems = 4096
kF16Threshold = 20000  # weight tensors larger than this are stored as F16

# ---- safetensors by hand ----------------------------------------------------------------------

_DT = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("float16"): "F16",
       np.dtype("int64"): "I64", np.dtype("int32"): "I32"}
_NP = {v: k for k, v in _DT.items()}


def save_st(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        a = np.array(tensors[name], order="C", copy=True)  # (ascontiguousarray would make 0-d arrays 1-d)
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _DT[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_st(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    buf = data[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, t = e["data_offsets"]
        out[name] = np.frombuffer(buf[b:t], dtype=_NP[e["dtype"]]).reshape(e["shape"]).copy()
    return out


# ---- models -------------------------------------------------------------------------------------

class Single(tnn.Module):
    """One layer under the name "layer" (a one-node spec); multi-output layers return a flat list."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, *xs):
        if isinstance(self.layer, (tnn.RNN, tnn.GRU)):
            h0 = xs[1] if len(xs) > 1 else None
            out, h = self.layer(xs[0], h0)
            return [out, h]
        if isinstance(self.layer, tnn.LSTM):
            state = (xs[1], xs[2]) if len(xs) > 2 else None
            out, (h, c) = self.layer(xs[0], state)
            return [out, h, c]
        if isinstance(self.layer, (tnn.RNNCell, tnn.GRUCell)):
            return [self.layer(xs[0], xs[1] if len(xs) > 1 else None)]
        if isinstance(self.layer, tnn.LSTMCell):
            return list(self.layer(xs[0], (xs[1], xs[2]) if len(xs) > 2 else None))
        if isinstance(self.layer, AddLayer):
            return [self.layer(xs[0], xs[1])]
        out = self.layer(*xs)
        return list(out) if isinstance(out, (list, tuple)) else [out]


class AddLayer(tnn.Module):
    def forward(self, a, b):
        return a + b


class Fn(tnn.Module):
    """A parameter-free layer given as a function of its inputs (the ONNX node types' PyTorch twins)."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, *xs):
        return self.f(*xs)


def onnx_slice(x, starts, ends, axes, steps):
    """ONNX Slice: Python's slice rules per axis (negative indices count from the end, then clamp), also
    for negative steps; index_select keeps it differentiable."""
    for s, e, a, st in zip(starts, ends, axes, steps):
        idx = list(range(x.shape[a]))[slice(s, e, st)]
        x = torch.index_select(x, a, torch.tensor(idx, dtype=torch.long))
    return x


def onnx_reshape(x, shape):
    return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(shape)])


def onnx_squeeze(x, dims):
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = x.squeeze(d)
    return x


def onnx_unsqueeze(x, dims):
    rank = x.dim() + len(dims)
    for d in sorted(d % rank for d in dims):
        x = x.unsqueeze(d)
    return x


def onnx_pad(x, pads, value):
    r = x.dim()
    torch_pads = []
    for d in reversed(range(r)):
        torch_pads += [pads[d], pads[r + d]]
    return torch.nn.functional.pad(x, torch_pads, value=value)


class Mlp(tnn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = tnn.Linear(784, 256), tnn.Linear(256, 10)

    def forward(self, x):
        return [self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))]


class MnistCnn(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(1, 16, 3, padding=1), tnn.BatchNorm2d(16)
        self.conv2, self.bn2 = tnn.Conv2d(16, 32, 3, padding=1), tnn.BatchNorm2d(32)
        self.fc = tnn.Linear(1568, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return [self.fc(torch.flatten(x, 1))]


class DwCnn(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(1, 16, 3, padding=1), tnn.BatchNorm2d(16)
        self.dw1, self.bn2 = tnn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16), tnn.BatchNorm2d(16)
        self.pw1, self.bn3 = tnn.Conv2d(16, 32, 1), tnn.BatchNorm2d(32)
        self.dw2, self.bn4 = tnn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32), tnn.BatchNorm2d(32)
        self.pw2, self.bn5 = tnn.Conv2d(32, 64, 1), tnn.BatchNorm2d(64)
        self.fc = tnn.Linear(64, 10)

    def forward(self, x):
        r6 = torch.nn.functional.relu6
        for conv, bn in [(self.conv1, self.bn1), (self.dw1, self.bn2), (self.pw1, self.bn3), (self.dw2, self.bn4),
                         (self.pw2, self.bn5)]:
            x = r6(bn(conv(x)))
        return [self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))]


class ConvBn(tnn.Module):
    def __init__(self, cin, cout, k, stride, pad):
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)
        self.bn = tnn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class Block(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False), tnn.BatchNorm2d(cout)
        self.conv2, self.bn2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False), tnn.BatchNorm2d(cout)
        self.proj = ConvBn(cin, cout, 1, stride, 0) if (stride != 1 or cin != cout) else None

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.proj(x) if self.proj is not None else x))


class ResnetTiny(tnn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvBn(1, 16, 3, 1, 1)
        self.block1, self.block2 = Block(16, 16, 1), Block(16, 32, 2)
        self.fc = tnn.Linear(32, 10)

    def forward(self, x):
        x = self.block2(self.block1(torch.relu(self.stem(x))))
        return [self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))]


class RowRnn(tnn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        setattr(self, kind, (tnn.LSTM if kind == "lstm" else tnn.GRU)(28, 128, batch_first=True))
        self.fc = tnn.Linear(128, 10)

    def forward(self, x):
        n, c, h, w = x.shape
        seq = x.permute(0, 2, 1, 3).reshape(n, h, c * w)
        out, _ = getattr(self, self.kind)(seq)
        return [self.fc(out[:, -1, :])]


class CharLstm(tnn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = tnn.Embedding(vocab, 64)
        self.lstm = tnn.LSTM(64, 256, batch_first=True)
        self.fc = tnn.Linear(256, vocab)

    def forward(self, idx):
        out, _ = self.lstm(self.embed(idx))
        return [self.fc(out)]


ZOO = {"mlp": Mlp, "mnist-cnn": MnistCnn, "dw-cnn": DwCnn, "resnet-tiny": ResnetTiny,
       "lstm": lambda: RowRnn("lstm"), "gru": lambda: RowRnn("gru")}
kVocab = 11


def make_zoo(name):
    return CharLstm(kVocab) if name == "char-lstm" else ZOO[name]()


# ---- layer cases: (name, spec node, torch layer, input shapes, train, extra) ---------------------

def pair(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def layer_cases():
    C = []

    def add(name, type_, args, layer, inputs, train=False, int_input=None):
        C.append(dict(name=name, type=type_, args=args, layer=layer, inputs=inputs, train=train, int_input=int_input))

    add("linear", "Linear", {"in_features": 5, "out_features": 4}, tnn.Linear(5, 4), [(3, 5)])
    add("linear_nobias_3d", "Linear", {"in_features": 5, "out_features": 4, "bias": False},
        tnn.Linear(5, 4, bias=False), [(2, 3, 5)])
    add("conv2d", "Conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3}, tnn.Conv2d(3, 4, 3),
        [(2, 3, 6, 6)])
    add("conv2d_stride_pad", "Conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2,
                                        "padding": 1}, tnn.Conv2d(3, 4, 3, 2, 1), [(2, 3, 7, 7)])
    add("conv2d_dilation_nobias", "Conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 2,
                                             "dilation": 2, "bias": False},
        tnn.Conv2d(2, 3, 3, padding=2, dilation=2, bias=False), [(2, 2, 6, 5)])
    add("conv2d_groups", "Conv2d", {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "padding": 1,
                                    "groups": 2}, tnn.Conv2d(4, 6, 3, padding=1, groups=2), [(2, 4, 5, 5)])
    add("conv2d_depthwise", "Conv2d", {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "stride": 2,
                                       "padding": 1, "groups": 4},
        tnn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4), [(2, 4, 6, 6)])
    add("conv2d_rect", "Conv2d", {"in_channels": 2, "out_channels": 3, "kernel_size": [3, 2], "stride": [2, 1],
                                  "padding": [1, 0]}, tnn.Conv2d(2, 3, (3, 2), (2, 1), (1, 0)), [(2, 2, 5, 4)])
    for mode in ("train", "eval"):
        tr = mode == "train"
        add(f"batchnorm1d_{mode}", "BatchNorm1d", {"num_features": 3}, tnn.BatchNorm1d(3), [(4, 3)], tr)
        add(f"batchnorm1d_3d_{mode}", "BatchNorm1d", {"num_features": 3, "momentum": 0.3},
            tnn.BatchNorm1d(3, momentum=0.3), [(4, 3, 5)], tr)
        add(f"batchnorm2d_{mode}", "BatchNorm2d", {"num_features": 4, "eps": 1e-3}, tnn.BatchNorm2d(4, eps=1e-3),
            [(3, 4, 3, 5)], tr)
    for t, layer, args in [("ReLU", tnn.ReLU(), {}), ("ReLU6", tnn.ReLU6(), {}),
                           ("LeakyReLU", tnn.LeakyReLU(0.2), {"negative_slope": 0.2}),
                           ("Hardswish", tnn.Hardswish(), {}), ("Sigmoid", tnn.Sigmoid(), {}),
                           ("Tanh", tnn.Tanh(), {})]:
        add(t.lower(), t, args, layer, [(4, 9)])
    add("maxpool2d", "MaxPool2d", {"kernel_size": 2}, tnn.MaxPool2d(2), [(2, 3, 6, 6)])
    add("maxpool2d_k3s2p1", "MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, tnn.MaxPool2d(3, 2, 1),
        [(2, 2, 7, 7)])
    add("avgpool2d", "AvgPool2d", {"kernel_size": 2}, tnn.AvgPool2d(2), [(2, 3, 6, 6)])
    add("avgpool2d_k3s2p1_nopad", "AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1,
                                                "count_include_pad": False},
        tnn.AvgPool2d(3, 2, 1, count_include_pad=False), [(2, 2, 7, 7)])
    add("adaptiveavgpool2d", "AdaptiveAvgPool2d", {"output_size": 1}, tnn.AdaptiveAvgPool2d(1), [(2, 3, 5, 4)])
    add("flatten", "Flatten", {}, tnn.Flatten(), [(2, 3, 2, 2)])
    add("dropout_eval", "Dropout", {"p": 0.5}, tnn.Dropout(0.5), [(3, 4)])
    add("embedding", "Embedding", {"num_embeddings": 10, "embedding_dim": 4}, tnn.Embedding(10, 4), [(3, 5)],
        int_input=10)
    add("add", "Add", {}, AddLayer(), [(2, 3, 4), (2, 3, 4)])

    # The ONNX node types (nn/layers.hpp Note [ONNX layers]).
    add("mul_broadcast", "Mul", {}, Fn(torch.mul), [(2, 3, 1, 1), (2, 3, 4, 5)])
    add("sub_broadcast", "Sub", {}, Fn(torch.sub), [(2, 3, 4), (4,)])
    add("div_broadcast", "Div", {}, Fn(torch.div), [(3, 1), (1, 5)])
    add("add_broadcast", "Add", {}, Fn(torch.add), [(2, 4, 3, 3), (4, 1, 1)])
    add("concat", "Concat", {"dim": 1}, Fn(lambda *xs: torch.cat(xs, 1)), [(2, 1, 3), (2, 2, 3), (2, 3, 3)])
    add("split", "Split", {"dim": -1, "split_sizes": [1, 3, 2]}, Fn(lambda x: torch.split(x, [1, 3, 2], -1)),
        [(2, 3, 6)])
    for name, args in [("slice", dict(starts=[1, -100], ends=[2 ** 63 - 1, -1], axes=[-1, 0], steps=[2, 1])),
                       ("slice_reverse", dict(starts=[-1, 4], ends=[-2 ** 63, 0], axes=[1, 2], steps=[-1, -2]))]:
        add(name, "Slice", args, Fn(lambda x, a=args: onnx_slice(x, a["starts"], a["ends"], a["axes"], a["steps"])),
            [(3, 5, 6)])
    add("transpose", "Transpose", {"perm": [0, 2, 3, 1]}, Fn(lambda x: x.permute(0, 2, 3, 1)), [(2, 3, 4, 5)])
    add("reshape", "Reshape", {"shape": [0, 0, -1, 2]}, Fn(lambda x: onnx_reshape(x, [0, 0, -1, 2])), [(2, 3, 4, 3)])
    add("squeeze", "Squeeze", {"dims": [1, -1]}, Fn(lambda x: onnx_squeeze(x, [1, -1])), [(2, 1, 3, 1)])
    add("unsqueeze", "Unsqueeze", {"dims": [0, -1]}, Fn(lambda x: onnx_unsqueeze(x, [0, -1])), [(2, 3)])
    add("pad", "Pad", {"pads": [0, 0, 1, -1, 0, 0, 2, 1], "value": 0.5},
        Fn(lambda x: onnx_pad(x, [0, 0, 1, -1, 0, 0, 2, 1], 0.5)), [(2, 2, 3, 4)])
    add("softmax", "Softmax", {"dim": 1}, tnn.Softmax(1), [(2, 4, 3)])
    add("logsoftmax", "LogSoftmax", {"dim": -1}, tnn.LogSoftmax(-1), [(3, 5)])
    add("reducemean", "ReduceMean", {"dims": [2, 3], "keepdim": True},
        Fn(lambda x: torch.mean(x, [2, 3], keepdim=True)), [(2, 3, 4, 5)])
    add("reducemean_all", "ReduceMean", {}, Fn(torch.mean), [(2, 3)])
    add("hardsigmoid_torch", "HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, tnn.Hardsigmoid(), [(4, 9)])
    add("hardsigmoid_onnx", "HardSigmoid", {}, Fn(lambda x: torch.clamp(0.2 * x + 0.5, 0, 1)), [(4, 9)])
    add("hardtanh", "Hardtanh", {"min_val": -0.5, "max_val": 1.5}, tnn.Hardtanh(-0.5, 1.5), [(4, 9)])

    def rnn(name, cls, args, tlayer, shape, states):
        add(name, cls, args, tlayer, [shape] + states)

    rnn("rnn_tanh", "RNN", {"input_size": 4, "hidden_size": 3}, tnn.RNN(4, 3), (5, 2, 4), [(1, 2, 3)])
    rnn("rnn_relu_batch_first", "RNN", {"input_size": 4, "hidden_size": 3, "nonlinearity": "relu",
                                        "batch_first": True},
        tnn.RNN(4, 3, nonlinearity="relu", batch_first=True), (2, 5, 4), [])
    rnn("rnn_bidir_2layer", "RNN", {"input_size": 4, "hidden_size": 3, "num_layers": 2, "bidirectional": True,
                                    "batch_first": True},
        tnn.RNN(4, 3, num_layers=2, bidirectional=True, batch_first=True), (2, 5, 4), [(4, 2, 3)])
    rnn("lstm", "LSTM", {"input_size": 4, "hidden_size": 3}, tnn.LSTM(4, 3), (5, 2, 4), [])
    rnn("lstm_bidir_2layer", "LSTM", {"input_size": 4, "hidden_size": 3, "num_layers": 2, "bidirectional": True,
                                      "batch_first": True},
        tnn.LSTM(4, 3, num_layers=2, bidirectional=True, batch_first=True), (2, 5, 4), [(4, 2, 3), (4, 2, 3)])
    rnn("lstm_nobias_states", "LSTM", {"input_size": 4, "hidden_size": 3, "bias": False},
        tnn.LSTM(4, 3, bias=False), (5, 2, 4), [(1, 2, 3), (1, 2, 3)])
    rnn("gru", "GRU", {"input_size": 4, "hidden_size": 3}, tnn.GRU(4, 3), (5, 2, 4), [(1, 2, 3)])
    rnn("gru_bidir_2layer", "GRU", {"input_size": 4, "hidden_size": 3, "num_layers": 2, "bidirectional": True,
                                    "batch_first": True},
        tnn.GRU(4, 3, num_layers=2, bidirectional=True, batch_first=True), (2, 5, 4), [(4, 2, 3)])
    rnn("rnncell_tanh", "RNNCell", {"input_size": 4, "hidden_size": 3}, tnn.RNNCell(4, 3), (2, 4), [(2, 3)])
    rnn("rnncell_relu", "RNNCell", {"input_size": 4, "hidden_size": 3, "nonlinearity": "relu"},
        tnn.RNNCell(4, 3, nonlinearity="relu"), (2, 4), [])
    rnn("lstmcell", "LSTMCell", {"input_size": 4, "hidden_size": 3}, tnn.LSTMCell(4, 3), (2, 4), [(2, 3), (2, 3)])
    rnn("grucell", "GRUCell", {"input_size": 4, "hidden_size": 3}, tnn.GRUCell(4, 3), (2, 4), [(2, 3)])
    rnn("grucell_nobias", "GRUCell", {"input_size": 4, "hidden_size": 3, "bias": False},
        tnn.GRUCell(4, 3, bias=False), (2, 4), [])
    return C


# ---- running a case -----------------------------------------------------------------------------

def f16_exact(model, gen):
    """Randomise BN affine/statistics and round every float tensor to float16-representable values."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, tnn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.5, 0.5, generator=gen)
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.num_batches_tracked.fill_(3)
        for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            t.copy_(t.half().double())


def state_arrays(model):
    out = {}
    for k, v in model.state_dict().items():
        a = v.detach().cpu().numpy().copy()  # no aliasing: train-mode forward updates buffers in place
        if a.dtype == np.float64 or a.dtype == np.float32:
            a = a.astype(np.float16 if a.size > kF16Threshold else np.float32)
        out[k] = a
    return out


def run_case(name, model, inputs, train, entry):
    model.double()
    model.train(train)
    weights = state_arrays(model)  # before forward (train mode updates BN buffers)
    xs = []
    for x in inputs:
        if x.is_floating_point():
            x = x.double().requires_grad_(True)
        xs.append(x)
    outs = model(*xs)
    gen = torch.Generator().manual_seed(1000 + len(name))
    ws = [torch.rand(o.shape, generator=gen, dtype=torch.float64) + 0.5 for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, ws))
    loss.backward()
    io, strides = {}, {}
    for k, x in enumerate(xs):
        if x.is_floating_point():
            io[f"input.{k}"] = x.detach().numpy().astype(np.float32)
            io[f"grad.input.{k}"] = x.grad.numpy()
        else:
            io[f"input.{k}"] = x.numpy().astype(np.int64)
    for k, (o, w) in enumerate(zip(outs, ws)):
        io[f"output.{k}"] = o.detach().numpy()
        io[f"outw.{k}"] = w.numpy()
    for pname, p in model.named_parameters():
        g = p.grad.numpy().reshape(-1)
        s = 1
        while g.size // s > kMaxGradElems:
            s += 2 if s > 1 else 6  # 1, 7, 9, 11, ... odd strides walk across rows and columns
        if s > 1:
            strides[pname] = s
        io[f"grad.param.{pname}"] = g[::s].copy()
    if train:
        for bname, b in model.named_buffers():
            a = b.detach().numpy()
            io[f"after.{bname}"] = a.astype(np.int64) if a.dtype == np.int64 else a
    save_st(os.path.join(OUT, f"{name}.weights.safetensors"), weights, {"format": "pt"})
    save_st(os.path.join(OUT, f"{name}.io.safetensors"), io)
    entry.update({"name": name, "train": train, "weights": f"nn/{name}.weights.safetensors",
                  "io": f"nn/{name}.io.safetensors", "num_inputs": len(xs), "num_outputs": len(outs),
                  "grad_strides": strides})
    return entry


def make_input(shape, gen, int_range=None):
    if int_range:
        return torch.randint(0, int_range, shape, generator=gen)
    # Values rounded to float32 (what qforge receives), spread so activations/pools see all regions.
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 4 - 2).float().double()


def generate():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)  # layer_cases() constructs (and initialises) the torch layers
    index = []
    for c in layer_cases():
        gen = torch.Generator().manual_seed(zlib.crc32(c["name"].encode()))
        torch.manual_seed(len(index) + 1)
        model = Single(c["layer"])
        f16_exact(model, gen)
        inputs = [make_input(s, gen, c["int_input"] if k == 0 else None) for k, s in enumerate(c["inputs"])]
        if c["type"] == "Sigmoid" or c["type"] == "Tanh":
            inputs[0] = inputs[0] * 2
        if c["type"] == "HardSigmoid":
            inputs[0] = inputs[0] * 2  # [-4, 4): both flat parts and the slope
        if c["type"] == "Div":
            inputs[1] = (inputs[1].abs() + 0.5).float().double()  # divisors away from 0, float32 values
        names = ["input"] + [f"in{k}" for k in range(1, len(inputs))]
        spec = {"name": c["name"], "inputs": names,
                "nodes": [{"name": "layer", "type": c["type"], "args": c["args"], "inputs": names}]}
        index.append(run_case(c["name"], model, inputs, c["train"], {"kind": "layer", "spec": spec}))
    for zname in list(ZOO) + ["char-lstm"]:
        torch.manual_seed(7)
        gen = torch.Generator().manual_seed(77)
        model = make_zoo(zname)
        f16_exact(model, gen)
        if zname == "char-lstm":
            x = torch.randint(0, kVocab, (2, 6), generator=gen)
        else:
            x = torch.rand((2, 1, 28, 28), generator=gen, dtype=torch.float64).float().double()
        case = "zoo_" + zname.replace("-", "_")
        index.append(run_case(case, model, [x], True, {"kind": "zoo", "zoo": zname, "vocab": kVocab}))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    print(f"wrote {len(index)} cases to {OUT}")


# ---- the reverse direction: weights written by qforge load into PyTorch -------------------------

def check_qforge(dirname):
    """Each <model>.safetensors (qforge's save_weights) + <model>.io.safetensors (input.0, output.0 as
    computed by qforge in eval mode) must load strictly into the PyTorch model and reproduce the output."""
    n, worst = 0, 0.0
    for fn in sorted(os.listdir(dirname)):
        if not fn.endswith(".safetensors") or fn.endswith(".io.safetensors"):
            continue
        model_name = fn[: -len(".safetensors")]
        sd = {k: torch.from_numpy(v) for k, v in load_st(os.path.join(dirname, fn)).items()}
        io = load_st(os.path.join(dirname, model_name + ".io.safetensors"))
        model = make_zoo(model_name)
        model.load_state_dict(sd, strict=True)
        assert all(sd[k].dtype == v.dtype for k, v in model.state_dict().items()), "dtype mismatch"
        model.eval()
        x = torch.from_numpy(io["input.0"])
        with torch.no_grad():
            y = model(x if x.dtype == torch.int64 else x.float())[0].numpy()
        err = float(np.abs(y - io["output.0"]).max())
        worst = max(worst, err)
        n += 1
        if err > 1e-5:
            sys.exit(f"{fn}: PyTorch output differs from qforge's by {err}")
    print(f"checked {n} qforge-written weight files in {dirname}: max |diff| {worst:.3g}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-qforge":
        check_qforge(sys.argv[2])
    else:
        generate()
        fq = os.path.join(OUT, "from_qforge")
        if os.path.isdir(fq):
            check_qforge(fq)
