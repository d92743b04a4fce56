#!/usr/bin/python3
"""ONNX fixtures for `qforge import` (PyTorch -> ONNX -> qforge), tests/scripts/test_onnx_import.sh.

Every model case is a PyTorch module exported with torch.onnx.export (eval mode, fixed seeds), plus
fixed inputs and PyTorch's outputs for them:

  tests/fixtures/onnx/<case>.onnx            the exported model (+ <case>.onnx.data for external data)
  tests/fixtures/onnx/<case>.inputs.npz      the model's inputs, arrays named after the ONNX graph inputs
                                             (what `qforge run --inputs` takes)
  tests/fixtures/onnx/<case>.expected.npz    PyTorch's outputs, arrays named after the ONNX graph outputs
  tests/fixtures/onnx/<case>.calib.npz       image models: `input` and `label` (the float model's own
                                             predictions, so accuracy on it = agreement with FP32), 16
                                             samples, for `qforge quantize --data tensors:FILE`
  tests/fixtures/onnx/manifest.json          the index: every case, its files, input/output names,
                                             tolerance, and the expected failures (hostile files)
  tests/fixtures/onnx/cases.tsv, hostile.tsv the same, tab-separated, for the shell test (no JSON parser)

Expected outputs are computed by the same weights in float64 (then stored as float32), so they are the
exact answer for the float32 weights and inputs; PyTorch's own float32 run is checked against them here
(within 1e-5 of the output's max magnitude) before anything is written. The test tolerance is 1e-4 of
the output's max magnitude (max |qforge - expected| / max |expected|).

The zoo twins are the PyTorch models of tools/gen_fixtures_nn.py (make_zoo) with the weights of the zoo
fixtures there (tests/fixtures/nn/zoo_<name>.weights.safetensors, PyTorch state_dict names, loadable
strictly into qforge's zoo model of the same name), so an imported twin can be compared with the zoo model.

The exporter's choices this set covers on purpose (see cases() below): constant folding on (BatchNorm folded
into Conv, initializers named like onnx::Conv_123) and off with training=PRESERVE (BatchNormalization
nodes kept), opsets 11, 13 and 17, a dynamic batch axis, external data, LSTM/GRU/RNN (one and two layers,
bidirectional), HardSwish (opset 14+) and its opset-13 decomposition (HardSigmoid, Mul), and a model of
miscellaneous ops (Pad, AveragePool, Concat, Split, Slice, Transpose, MatMul, Softmax, ReduceMean, ...).

Hostile files (manifest "expect_failure"): truncated and corrupt protobuf, an op in a custom domain, a
standard op qforge does not lower, unsupported attribute values (a dilated MaxPool, a reflect Pad, LSTM
activations), a missing external-data file, a shape that cannot be resolved without --input-shape, and
.npz files with a wrong dtype or ragged arrays (an object array; label count != input count).

Run:  /usr/bin/python3 tools/gen_fixtures_onnx.py          (from anywhere; writes tests/fixtures/onnx/)
      /usr/bin/python3 tools/gen_fixtures_onnx.py --check-ort
                      (runs every case on ONNX Runtime through tests/ort/run_ort.js, after
                       tests/ort/install.sh, and compares with the expected outputs: an independent check
                       of the exported files; measured 2026-12-03: all within 5.7e-7)
      /usr/bin/python3 tools/gen_fixtures_onnx.py --full-resnet18 OUT.onnx
                      (the full-size torchvision resnet18, ~45 MB, random weights, 1x3x224x224, not
                       committed: for measuring `qforge import` time)
Needs Debian's python3-torch (1.13), python3-torchvision (0.14) and python3-onnx (1.12).
"""
import json
import os
import sys
import zlib

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as tnn
import torch.nn.functional as F
import torchvision.models as tvm
from torchvision.models.resnet import BasicBlock, ResNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures_nn as nnfix  # noqa: E402  (make_zoo, load_st, kVocab)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "onnx")
kTolerance = 1e-4        # test: max |qforge - expected| / max |expected|
kSelfCheck = 1e-5        # here: PyTorch float32 against the float64 reference
kCalibSamples = 16


# ---- small architectures ------------------------------------------------------------------------

def resnet18_small(num_classes=10):
    """torchvision's ResNet(BasicBlock, [2, 2, 2, 2]) at widths 16/32/64/128 (the real one: 64..512),
    built from torchvision's own classes and _make_layer so module names and structure are resnet18's."""
    m = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
    m.inplanes = 16
    m.conv1 = tnn.Conv2d(3, 16, kernel_size=7, stride=2, padding=3, bias=False)
    m.bn1 = tnn.BatchNorm2d(16)
    m.layer1 = m._make_layer(BasicBlock, 16, 2)
    m.layer2 = m._make_layer(BasicBlock, 32, 2, stride=2)
    m.layer3 = m._make_layer(BasicBlock, 64, 2, stride=2)
    m.layer4 = m._make_layer(BasicBlock, 128, 2, stride=2)
    m.fc = tnn.Linear(128, num_classes)
    for mod in m.modules():
        if isinstance(mod, tnn.Conv2d):
            tnn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
    return m


class TextClassifier(tnn.Module):
    """Embedding -> LSTM/GRU/RNN (batch_first) -> last time step -> Linear; optionally also softmax."""

    def __init__(self, kind, vocab, embed, hidden, layers, bidirectional, classes, with_probs=False):
        super().__init__()
        self.embed = tnn.Embedding(vocab, embed)
        cls = {"lstm": tnn.LSTM, "gru": tnn.GRU, "rnn": tnn.RNN}[kind]
        self.rnn = cls(embed, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=True)
        self.fc = tnn.Linear(hidden * (2 if bidirectional else 1), classes)
        self.with_probs = with_probs

    def forward(self, tokens):
        out, _ = self.rnn(self.embed(tokens))
        logits = self.fc(out[:, -1, :])
        return (logits, torch.softmax(logits, dim=1)) if self.with_probs else logits


class MiscOps(tnn.Module):
    """A small image model whose export uses the ops the real architectures do not: Pad (asymmetric),
    dilated and grouped Conv, LeakyRelu, AveragePool, MaxPool 3x3/2 pad 1, Split, Concat, Sub/Div/Mul with
    broadcasting, Sigmoid, Tanh, ReduceMean, Transpose, MatMul, Softmax, LogSoftmax, Unsqueeze/Squeeze."""

    def __init__(self):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 8, 3)                      # after an asymmetric Pad
        self.conv2 = tnn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.conv3 = tnn.Conv2d(8, 8, 1)
        self.scale = tnn.Parameter(torch.linspace(0.5, 1.5, 8).reshape(1, 8, 1, 1))
        self.shift = tnn.Parameter(torch.linspace(-0.2, 0.2, 8).reshape(1, 8, 1, 1))
        self.proj = tnn.Parameter(torch.randn(16, 6) * 0.3)
        self.head = tnn.Linear(6, 5)

    def forward(self, x):
        x = F.pad(x, (0, 1, 1, 0))                             # left 0, right 1, top 1, bottom 0
        x = F.leaky_relu(self.conv1(x), 0.1)
        x = F.avg_pool2d(x, 2)
        a, b = torch.split(x, 4, dim=1)
        x = torch.cat([torch.sigmoid(a), torch.tanh(b)], dim=1)
        x = self.conv2(x)
        x = (x - self.shift) / self.scale * 0.5
        x = F.max_pool2d(F.relu(self.conv3(x)), 3, stride=2, padding=1)
        n, c = x.shape[0], x.shape[1]
        seq = x.reshape(n, c, -1).transpose(1, 2)              # [n, hw, c]
        pooled = seq.mean(dim=1, keepdim=True)                 # ReduceMean, [n, 1, c]
        feat = torch.cat([pooled, pooled * pooled], dim=2).squeeze(1)  # [n, 2c]
        h = torch.matmul(feat, self.proj)                      # MatMul
        logits = self.head(torch.tanh(h))
        return torch.softmax(logits, dim=-1), torch.log_softmax(logits, dim=1)


class HardswishMlp(tnn.Module):
    """Linear -> Hardswish -> Linear -> Hardsigmoid * x: at opset 13 the exporter writes Hardswish as
    HardSigmoid + Mul (HardSwish is opset 14)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = tnn.Linear(12, 16), tnn.Linear(16, 4)

    def forward(self, x):
        h = F.hardswish(self.fc1(x))
        return self.fc2(h * F.hardsigmoid(h))


class MaxPoolCeil(tnn.Module):
    """MaxPool with ceil_mode=True (the window may hang over the bottom/right edge)."""

    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 4, 3, padding=1)
        self.fc = tnn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(self.conv(x), 3, stride=2, ceil_mode=True), 1))


class ReflectPad(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))


class ZooTwin(tnn.Module):
    """A zoo model of gen_fixtures_nn (whose forward returns a one-element list) with a tensor output."""

    def __init__(self, name):
        super().__init__()
        self.model = nnfix.make_zoo(name)

    def forward(self, x):
        return self.model(x)[0]


def randomize_bn(model, gen):
    """Non-trivial BatchNorm statistics and affine parameters, so folding BN is not a no-op."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, tnn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.3, 0.3, generator=gen)
                m.running_mean.uniform_(-0.3, 0.3, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)


def zoo_twin(name):
    """The zoo model with the weights of tests/fixtures/nn/zoo_<name>.weights.safetensors."""
    twin = ZooTwin(name)
    path = os.path.join(ROOT, "tests", "fixtures", "nn", f"zoo_{name.replace('-', '_')}.weights.safetensors")
    sd = {k: torch.from_numpy(v.astype(np.int64) if v.dtype.kind == "i" else v.astype(np.float32))
          for k, v in nnfix.load_st(path).items()}
    twin.model.load_state_dict(sd, strict=True)
    return twin


# ---- inputs -------------------------------------------------------------------------------------

def image(gen, n, c, h, w, kind="normal"):
    if kind == "unit":  # MNIST-like pixels in [0, 1)
        return torch.rand((n, c, h, w), generator=gen)
    # Smooth structure plus noise (so convolutions see edges and flat regions, not only white noise).
    base = torch.randn((n, c, h // 8 + 1, w // 8 + 1), generator=gen)
    smooth = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return smooth + 0.3 * torch.randn((n, c, h, w), generator=gen)


def tokens(gen, n, t, vocab):
    return torch.randint(0, vocab, (n, t), generator=gen)


# ---- the cases ----------------------------------------------------------------------------------
# Each: name, build() -> model, inputs(gen) -> [tensors], and export options. `calib` (image models):
# calibration samples like the inputs. `zoo`: the zoo model it twins.

ZOO_IN = {"char-lstm": lambda g: [tokens(g, 3, 12, nnfix.kVocab)]}


def zoo_inputs(name):
    return ZOO_IN.get(name, lambda g: [image(g, 4, 1, 28, 28, "unit")])


def cases():
    C = []

    def add(name, build, inputs, **kw):
        C.append(dict(name=name, build=build, inputs=inputs, **kw))

    for z in ["mlp", "mnist-cnn", "dw-cnn", "resnet-tiny", "lstm", "gru", "char-lstm"]:
        add("zoo_" + z.replace("-", "_"), lambda z=z: zoo_twin(z), zoo_inputs(z), zoo=z,
            calib=None if z == "char-lstm" else (lambda g: image(g, kCalibSamples, 1, 28, 28, "unit")))
    # Exporter variants on the small twins.
    add("zoo_mnist_cnn_bn", lambda: zoo_twin("mnist-cnn"), zoo_inputs("mnist-cnn"), zoo="mnist-cnn",
        preserve_bn=True, note="do_constant_folding=False, training=PRESERVE: BatchNormalization nodes kept")
    add("zoo_dw_cnn_opset11", lambda: zoo_twin("dw-cnn"), zoo_inputs("dw-cnn"), zoo="dw-cnn", opset=11,
        note="opset 11")
    add("zoo_resnet_tiny_dynbatch", lambda: zoo_twin("resnet-tiny"), lambda g: [image(g, 3, 1, 28, 28, "unit")],
        zoo="resnet-tiny", dynamic={"input": {0: "batch"}, "output": {0: "batch"}},
        note="dynamic batch axis (dim_param 'batch'); the inputs use batch 3")
    add("zoo_mlp_external", lambda: zoo_twin("mlp"), zoo_inputs("mlp"), zoo="mlp", external=True,
        note="initializers > 1 KiB in zoo_mlp_external.onnx.data (external data)")
    add("zoo_gru_opset17", lambda: zoo_twin("gru"), zoo_inputs("gru"), zoo="gru", opset=17)
    # torchvision architectures, reduced.
    img = lambda g: [image(g, 2, 3, 64, 64)]  # noqa: E731
    cal = lambda g: image(g, kCalibSamples, 3, 64, 64)  # noqa: E731
    add("resnet18", resnet18_small, img, calib=cal, quantize=True,
        note="torchvision ResNet(BasicBlock, [2,2,2,2]) at widths 16/32/64/128, 10 classes, BN folded")
    add("mobilenet_v2", lambda: tvm.mobilenet_v2(num_classes=10, width_mult=0.5), img, calib=cal, quantize=True,
        preserve_bn=True, note="torchvision mobilenet_v2(width_mult=0.5), 10 classes, BatchNormalization nodes kept")
    add("mobilenet_v3_small", lambda: tvm.mobilenet_v3_small(num_classes=10), img, calib=cal, opset=17,
        note="torchvision mobilenet_v3_small, 10 classes, opset 17 (HardSwish, HardSigmoid, SE blocks)")
    # Text classifiers (int64 token inputs).
    tok = lambda g: [tokens(g, 3, 10, 50)]  # noqa: E731
    add("lstm_text", lambda: TextClassifier("lstm", 50, 16, 32, 2, False, 5), tok, input_names=["tokens"],
        output_names=["logits"], note="Embedding -> LSTM(2 layers) -> last step -> Linear")
    add("lstm_text_bidir", lambda: TextClassifier("lstm", 50, 16, 24, 2, True, 5), tok, input_names=["tokens"],
        output_names=["logits"], note="Embedding -> bidirectional LSTM(2 layers) -> last step -> Linear")
    add("gru_text", lambda: TextClassifier("gru", 50, 16, 32, 2, False, 5, with_probs=True), tok,
        input_names=["tokens"], output_names=["logits", "probs"],
        note="Embedding -> GRU(2 layers) -> last step -> Linear, + Softmax (two outputs)")
    add("rnn_text_bidir", lambda: TextClassifier("rnn", 50, 16, 24, 1, True, 5), tok, input_names=["tokens"],
        output_names=["logits"], opset=11, note="Embedding -> bidirectional RNN(tanh) -> last step -> Linear, opset 11")
    add("maxpool_ceil", MaxPoolCeil, lambda g: [image(g, 2, 1, 8, 8)],
        note="MaxPool ceil_mode=1 (the window may hang over the bottom/right edge)")
    # Miscellaneous ops.
    add("misc_ops", MiscOps, lambda g: [image(g, 2, 3, 15, 14)], output_names=["probs", "log_probs"],
        note="Pad, dilated grouped Conv, LeakyRelu, AveragePool, Split, Concat, broadcast Sub/Div/Mul, "
             "Sigmoid, Tanh, MaxPool 3/2/1, Transpose, ReduceMean, MatMul, Softmax, LogSoftmax")
    add("hardswish_mlp", HardswishMlp, lambda g: [torch.randn((4, 12), generator=g) * 3],
        note="opset 13: Hardswish written as HardSigmoid + Mul")
    return C


# ---- export and reference -----------------------------------------------------------------------

def as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def export(model, inputs, path, c):
    opset = c.get("opset", 13)
    kw = dict(opset_version=opset, input_names=c["input_names"], output_names=c["output_names"])
    if c.get("dynamic"):
        kw["dynamic_axes"] = c["dynamic"]
    if c.get("preserve_bn"):
        kw.update(do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    args = tuple(inputs)
    torch.onnx.export(model, args, path, **kw)
    m = onnx.load(path)
    # The exporter leaves node names like /layer1/layer1.0/conv1/Conv; keep them, but drop its
    # doc_strings (stack traces with local paths) so the files do not depend on where they were made.
    for n in m.graph.node:
        n.doc_string = ""
    m.producer_version = torch.__version__.split("+")[0]
    if c.get("external"):
        data = os.path.basename(path) + ".data"
        if os.path.exists(path + ".data"):
            os.remove(path + ".data")
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data,
                        size_threshold=1024)
    else:
        onnx.save_model(m, path)
    m = onnx.load(path)  # (loads external data too)
    onnx.checker.check_model(m)
    onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    return m


def reference(model, inputs):
    """float64 outputs of the float32 weights, and the float32 run's relative deviation from them."""
    with torch.no_grad():
        y32 = [t.numpy() for t in as_list(model(*inputs))]
        m64 = __import__("copy").deepcopy(model).double()
        y64 = [t.numpy() for t in as_list(m64(*[x.double() if x.is_floating_point() else x for x in inputs]))]
    dev = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) for a, b in zip(y32, y64))
    return [y.astype(np.float32) for y in y64], dev


def save_npz(path, arrays, compressed):
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


def op_census(m):
    ops = {}
    for n in m.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        ops[key] = ops.get(key, 0) + 1
    return dict(sorted(ops.items()))


def run_case(c):
    c.setdefault("input_names", ["input"])
    c.setdefault("output_names", ["output"])
    seed = zlib.crc32(c["name"].encode())
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = c["build"]()
    if not c.get("zoo"):
        randomize_bn(model, gen)
    model.eval()
    inputs = c["inputs"](gen)
    expected, dev = reference(model, inputs)
    if dev > kSelfCheck:
        sys.exit(f"{c['name']}: PyTorch float32 differs from float64 by {dev:.3g} (relative)")
    path = os.path.join(OUT, c["name"] + ".onnx")
    m = export(model, inputs, path, c)
    graph_inputs = [i.name for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    assert graph_inputs == c["input_names"], (c["name"], graph_inputs)
    assert [o.name for o in m.graph.output] == c["output_names"]
    save_npz(os.path.join(OUT, c["name"] + ".inputs.npz"),
             {n: x.numpy() for n, x in zip(c["input_names"], inputs)}, compressed=False)
    save_npz(os.path.join(OUT, c["name"] + ".expected.npz"), dict(zip(c["output_names"], expected)),
             compressed=False)
    entry = {"case": c["name"], "file": c["name"] + ".onnx", "opset": c.get("opset", 13),
             "inputs": [{"name": n, "shape": list(x.shape), "dtype": str(x.numpy().dtype)}
                        for n, x in zip(c["input_names"], inputs)],
             "outputs": [{"name": n, "shape": list(y.shape)} for n, y in zip(c["output_names"], expected)],
             "inputs_file": c["name"] + ".inputs.npz", "expected_file": c["name"] + ".expected.npz",
             "tolerance": kTolerance, "pytorch_fp32_deviation": float(f"{dev:.3g}"), "ops": op_census(m)}
    if c.get("external"):
        entry["external_data"] = c["name"] + ".onnx.data"
    if c.get("dynamic"):
        entry["dynamic_axes"] = {k: {str(a): v for a, v in d.items()} for k, d in c["dynamic"].items()}
    if c.get("zoo"):
        entry["zoo"] = c["zoo"]
        entry["zoo_weights"] = "nn/zoo_" + c["zoo"].replace("-", "_") + ".weights.safetensors"
        if c["zoo"] == "char-lstm":
            entry["vocab"] = nnfix.kVocab
    if c.get("calib"):
        x = c["calib"](gen)
        with torch.no_grad():
            labels = model(x).argmax(dim=1) if not c.get("zoo") else model(x).argmax(dim=1)
        calib = c["name"] + ".calib.npz"
        save_npz(os.path.join(OUT, calib), {"input": x.numpy(), "label": labels.numpy().astype(np.int64)},
                 compressed=True)
        entry["calib_file"] = calib
    if c.get("quantize"):
        entry["quantize"] = True
    if c.get("note"):
        entry["note"] = c["note"]
    print(f"  {c['name']:28s} {os.path.getsize(path) / 1e6:6.2f} MB  ops={len(m.graph.node)}  fp32 dev {dev:.2g}")
    return entry


# ---- hostile files ------------------------------------------------------------------------------

def must_fail_to_load(path):
    try:
        m = onnx.load(path)
        onnx.checker.check_model(m)
    except Exception:
        return
    sys.exit(f"{path}: expected to be unreadable, but onnx loads and checks it")


def tiny_graph(name, nodes, inputs, outputs, opsets, initializers=()):
    g = onnx.helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    m = onnx.helper.make_model(g, producer_name="qforge gen_fixtures_onnx",
                               opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets])
    m.ir_version = 8
    return m


def hostile(entries_by_name):
    H = []
    T = onnx.TensorProto
    vi = onnx.helper.make_tensor_value_info

    def add(case, file, stage, message, note, **kw):
        H.append(dict(case=case, file=file, expect_failure={"stage": stage, "exit": 2, "message": message},
                      note=note, **kw))

    src = os.path.join(OUT, "zoo_mnist_cnn.onnx")
    blob = open(src, "rb").read()
    with open(os.path.join(OUT, "bad_truncated.onnx"), "wb") as f:
        f.write(blob[: len(blob) * 3 // 5])
    must_fail_to_load(os.path.join(OUT, "bad_truncated.onnx"))
    add("bad_truncated", "bad_truncated.onnx", "import", "bad_truncated.onnx",
        "zoo_mnist_cnn.onnx cut at 60% (inside an initializer's raw data)")

    # Corrupt: a valid-looking header followed by bytes that are not protobuf (wire type 7 is invalid).
    corrupt = bytearray(blob[:64]) + bytes([0xff, 0xff, 0xff, 0xff, 0x0f]) * 8 + bytearray(blob[64 + 40:])
    with open(os.path.join(OUT, "bad_corrupt.onnx"), "wb") as f:
        f.write(bytes(corrupt))
    must_fail_to_load(os.path.join(OUT, "bad_corrupt.onnx"))
    add("bad_corrupt", "bad_corrupt.onnx", "import", "bad_corrupt.onnx",
        "zoo_mnist_cnn.onnx with 40 bytes overwritten by an invalid protobuf field")

    # An op in a custom domain.
    m = tiny_graph("custom_op", [onnx.helper.make_node("Relu", ["input"], ["r"], name="relu"),
                                 onnx.helper.make_node("FancyOp", ["r"], ["output"], name="fancy_node",
                                                       domain="com.example")],
                   [vi("input", T.FLOAT, [2, 4])], [vi("output", T.FLOAT, [2, 4])],
                   [("", 13), ("com.example", 1)])
    onnx.save_model(m, os.path.join(OUT, "bad_unknown_op_custom.onnx"))
    add("bad_unknown_op_custom", "bad_unknown_op_custom.onnx", "import", "fancy_node",
        "node 'fancy_node' of op com.example.FancyOp (a custom domain)")

    # A standard op qforge does not lower.
    m = tiny_graph("nms", [onnx.helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out"], ["output"],
                                                 name="nms_node")],
                   [vi("boxes", T.FLOAT, [1, 6, 4]), vi("scores", T.FLOAT, [1, 1, 6])],
                   [vi("output", T.INT64, [None, 3])], [("", 13)],
                   [onnx.helper.make_tensor("max_out", T.INT64, [1], [3])])
    onnx.checker.check_model(m)
    onnx.save_model(m, os.path.join(OUT, "bad_unknown_op_nms.onnx"))
    add("bad_unknown_op_nms", "bad_unknown_op_nms.onnx", "import", "NonMaxSuppression",
        "a standard op (NonMaxSuppression, node 'nms_node') that qforge has no layer for")

    # Unsupported attribute values, as torch exports them: MaxPool with dilation 2, Pad in reflect mode.
    for case, mod, message, note in [
            ("bad_maxpool_dilation", tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.MaxPool2d(2, dilation=2)), "dilations",
             "MaxPool node '/1/MaxPool' with dilations [2, 2] (qforge's MaxPool2d has none)"),
            ("bad_pad_reflect", ReflectPad(), "reflect", "Pad node with mode 'reflect' (qforge pads with constants)")]:
        torch.manual_seed(3)
        path = os.path.join(OUT, case + ".onnx")
        torch.onnx.export(mod.eval(), (torch.zeros(2, 1, 9, 9),), path, opset_version=13, input_names=["input"],
                          output_names=["output"])
        m = onnx.load(path)
        for n in m.graph.node:
            n.doc_string = ""
        onnx.save_model(m, path)
        add(case, case + ".onnx", "import", message, note)
    # Unsupported attribute value: an LSTM with non-default activations (qforge's LSTM is sigmoid/tanh).
    hid, inp = 3, 4
    W = onnx.numpy_helper.from_array(np.linspace(-0.5, 0.5, 4 * hid * inp, dtype=np.float32).reshape(1, 4 * hid, inp), "W")
    R = onnx.numpy_helper.from_array(np.linspace(0.4, -0.4, 4 * hid * hid, dtype=np.float32).reshape(1, 4 * hid, hid), "R")
    m = tiny_graph("lstm_relu", [onnx.helper.make_node("LSTM", ["input", "W", "R"], ["Y"], name="lstm_node",
                                                       hidden_size=hid, activations=["Sigmoid", "Relu", "Relu"]),
                                 onnx.helper.make_node("Squeeze", ["Y", "axes"], ["output"], name="squeeze")],
                   [vi("input", T.FLOAT, [5, 2, inp])], [vi("output", T.FLOAT, [5, 2, hid])], [("", 13)],
                   [W, R, onnx.helper.make_tensor("axes", T.INT64, [1], [1])])
    onnx.checker.check_model(m)
    onnx.save_model(m, os.path.join(OUT, "bad_lstm_activations.onnx"))
    add("bad_lstm_activations", "bad_lstm_activations.onnx", "import", "lstm_node",
        "LSTM node 'lstm_node' with activations [Sigmoid, Relu, Relu] (an unsupported attribute value)")

    # Missing external-data file: the external-data twin without its .data file.
    m = onnx.load(os.path.join(OUT, "zoo_mlp_external.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = "bad_missing_external.onnx.data"
    onnx.save_model(m, os.path.join(OUT, "bad_missing_external.onnx"))
    add("bad_missing_external", "bad_missing_external.onnx", "import", "bad_missing_external.onnx.data",
        "zoo_mlp_external.onnx with its external-data location renamed to bad_missing_external.onnx.data, "
        "a file that does not exist")

    # A shape that cannot be resolved: the LSTM twin (Shape -> Gather -> Reshape of its input) with dynamic
    # height and width, so the Reshape target depends on dims nobody gave.
    twin = zoo_twin("lstm").eval()
    path = os.path.join(OUT, "bad_dynamic_shape.onnx")
    torch.onnx.export(twin, (torch.zeros(1, 1, 28, 28),), path, opset_version=13, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}})
    m = onnx.load(path)
    for n in m.graph.node:
        n.doc_string = ""
    onnx.save_model(m, path)
    add("bad_dynamic_shape", "bad_dynamic_shape.onnx", "import", "--input-shape",
        "zoo lstm twin with input dims 'height' and 'width' symbolic: its Reshape target (from Shape) cannot "
        "be resolved without an input shape (the message says to give --input-shape; with "
        "--input-shape input=4,1,28,28 it imports and matches zoo_lstm.expected.npz)")

    # npz files qforge must refuse (for `run --inputs` and `--data tensors:`).
    x = np.random.default_rng(5).random((kCalibSamples, 1, 28, 28))
    np.savez(os.path.join(OUT, "bad_dtype.npz"), input=x.astype(np.complex64))
    add("bad_npz_dtype", "bad_dtype.npz", "run+data", "input", "array 'input' of dtype complex64 (<c8)",
        model="zoo_mnist_cnn")
    ragged = np.empty(3, dtype=object)
    ragged[:] = [np.zeros((1, 28, 28), np.float32), np.zeros((1, 28, 27), np.float32),
                 np.zeros((1, 27, 28), np.float32)]
    np.savez(os.path.join(OUT, "bad_ragged_object.npz"), input=ragged)
    add("bad_npz_ragged_object", "bad_ragged_object.npz", "run+data", "input",
        "array 'input' is a ragged object array (dtype |O, pickled)", model="zoo_mnist_cnn")
    np.savez(os.path.join(OUT, "bad_ragged_count.npz"), input=x[:, :, :, :].astype(np.float32),
             label=np.arange(kCalibSamples - 4, dtype=np.int64) % 10)
    add("bad_npz_ragged_count", "bad_ragged_count.npz", "data", "label",
        "'input' has 16 samples, 'label' 12 (for --data tensors:, where labels pair with inputs; `run` "
        "ignores arrays that are not model inputs)", model="zoo_mnist_cnn")
    return H


# ---- main ---------------------------------------------------------------------------------------

def generate():
    os.makedirs(OUT, exist_ok=True)
    for fn in os.listdir(OUT):
        if fn.endswith((".onnx", ".npz", ".data", ".tsv")) or fn == "manifest.json":
            os.remove(os.path.join(OUT, fn))
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    entries = [run_case(c) for c in cases()]
    bad = hostile({e["case"]: e for e in entries})
    manifest = {"generator": "tools/gen_fixtures_onnx.py", "torch": torch.__version__.split("+")[0],
                "onnx": onnx.__version__, "tolerance_rule": "max |actual - expected| / max |expected| <= tolerance",
                "cases": entries, "hostile": bad}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    write_tsv(manifest)
    total = sum(os.path.getsize(os.path.join(OUT, fn)) for fn in os.listdir(OUT))
    print(f"wrote {len(entries)} cases + {len(bad)} hostile files to {OUT}: {total / 1e6:.1f} MB")


def check_ort():
    """Every case through ONNX Runtime (tests/ort/run_ort.js), compared with the expected outputs."""
    import subprocess
    import tempfile
    man = json.load(open(os.path.join(OUT, "manifest.json")))
    worst_all = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for e in man["cases"]:
            ins = dict(np.load(os.path.join(OUT, e["inputs_file"])))
            nnfix.save_st(os.path.join(tmp, "in.safetensors"), ins)
            r = subprocess.run(["node", os.path.join(ROOT, "tests", "ort", "run_ort.js"), "run",
                                os.path.join(OUT, e["file"]), os.path.join(tmp, "in.safetensors"),
                                os.path.join(tmp, "out.safetensors")], capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"{e['case']}: ONNX Runtime failed: {r.stderr.strip()[-500:]}")
            out = nnfix.load_st(os.path.join(tmp, "out.safetensors"))
            exp = dict(np.load(os.path.join(OUT, e["expected_file"])))
            worst = max(float(np.abs(out[k] - v).max() / np.abs(v).max()) for k, v in exp.items())
            print(f"  {e['case']:28s} ONNX Runtime vs expected: {worst:.2g}")
            if worst > kTolerance:
                sys.exit(f"{e['case']}: ONNX Runtime differs from the expected outputs by {worst:.3g}")
            worst_all = max(worst_all, worst)
    print(f"checked {len(man['cases'])} cases on ONNX Runtime: worst relative difference {worst_all:.2g}")


def write_tsv(manifest):
    """cases.tsv: case, onnx file, inputs file, expected file, tolerance, calib file, quantize, zoo, output
    names (comma-separated); hostile.tsv: case, file, stage, expected message substring, model. '-' = none.
    Stages: import (qforge import FILE), run+data (qforge run --inputs FILE and --data tensors:FILE on the
    imported `model`), data (--data tensors:FILE only)."""
    with open(os.path.join(OUT, "cases.tsv"), "w") as f:
        f.write("# case\tfile\tinputs\texpected\ttolerance\tcalib\tquantize\tzoo\toutputs\n")
        for e in manifest["cases"]:
            f.write("\t".join([e["case"], e["file"], e["inputs_file"], e["expected_file"], str(e["tolerance"]),
                               e.get("calib_file", "-"), "yes" if e.get("quantize") else "no", e.get("zoo", "-"),
                               ",".join(o["name"] for o in e["outputs"])]) + "\n")
    with open(os.path.join(OUT, "hostile.tsv"), "w") as f:
        f.write("# case\tfile\tstage\tmessage\tmodel\n")
        for h in manifest["hostile"]:
            x = h["expect_failure"]
            f.write("\t".join([h["case"], h["file"], x["stage"], x["message"], h.get("model", "-")]) + "\n")


def full_resnet18(path):
    torch.manual_seed(0)
    model = tvm.resnet18(num_classes=1000).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), path, opset_version=13, input_names=["input"],
                      output_names=["output"])
    print(f"wrote {path}: {os.path.getsize(path) / 1e6:.1f} MB")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--full-resnet18":
        full_resnet18(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] == "--check-ort":
        check_ort()
    elif len(sys.argv) == 1:
        generate()
    else:
        sys.exit(__doc__)
