#!/usr/bin/env python3
"""Writes the fuzz seed corpora into tests/fuzz/corpus/<target>/ (small, hand-made inputs that reach
every reader's main paths). Deterministic; the output is committed. Run: python3 tests/fuzz/make_corpus.py"""
import gzip
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


# ---- safetensors -------------------------------------------------------------------------------
def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


put("safetensors", "f32_2x3", safetensors({"w": ("F32", [2, 3], struct.pack("<6f", *range(6)))}, {"format": "pt"}))
put("safetensors", "mixed", safetensors({
    "a.weight": ("F16", [2], struct.pack("<2H", 0x3c00, 0xc000)),
    "b.bias": ("BF16", [1], struct.pack("<H", 0x3f80)),
    "bn.num_batches_tracked": ("I64", [], struct.pack("<q", 7)),
    "m": ("BOOL", [3], b"\x00\x01\x00"),
    "d": ("F64", [1, 1], struct.pack("<d", 0.5)),
    "i": ("I32", [2], struct.pack("<2i", -1, 2)),
    "s": ("I16", [1], struct.pack("<h", 3)),
    "q": ("I8", [2], b"\x80\x7f"),
    "u": ("U8", [0, 4], b""),
}))
put("safetensors", "empty", safetensors({}))

# ---- model spec --------------------------------------------------------------------------------
put("spec", "mlp.json", json.dumps({"name": "mlp", "nodes": [
    {"name": "flat", "type": "Flatten"},
    {"name": "fc1", "type": "Linear", "args": {"in_features": 16, "out_features": 8}},
    {"name": "relu", "type": "ReLU"},
    {"name": "drop", "type": "Dropout", "args": {"p": 0.1}},
    {"name": "fc2", "type": "Linear", "args": {"in_features": 8, "out_features": 3, "bias": False}}]}))
put("spec", "cnn.json", json.dumps({"inputs": ["input"], "nodes": [
    {"name": "conv", "type": "Conv2d", "args": {"in_channels": 1, "out_channels": 4, "kernel_size": [3, 3],
                                                "padding": 1, "stride": 1, "dilation": 1, "groups": 1}},
    {"name": "bn", "type": "BatchNorm2d", "args": {"num_features": 4, "eps": 1e-5, "momentum": None}},
    {"name": "act", "type": "ReLU6"},
    {"name": "dw", "type": "Conv2d", "args": {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "groups": 4}},
    {"name": "pool", "type": "MaxPool2d", "args": {"kernel_size": 2}},
    {"name": "avg", "type": "AvgPool2d", "args": {"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False}},
    {"name": "gap", "type": "AdaptiveAvgPool2d", "args": {"output_size": 1}},
    {"name": "flat", "type": "Flatten", "args": {"start_dim": 1, "end_dim": -1}},
    {"name": "fc", "type": "Linear", "args": {"in_features": 4, "out_features": 2}}], "outputs": ["fc"]}))
put("spec", "residual.json", json.dumps({"nodes": [
    {"name": "a", "type": "Conv2d", "args": {"in_channels": 2, "out_channels": 2, "kernel_size": 1}},
    {"name": "b", "type": "Hardswish", "inputs": ["a"]},
    {"name": "s", "type": "Add", "inputs": ["a", "b"]},
    {"name": "t", "type": "Tanh"}, {"name": "g", "type": "Sigmoid"}, {"name": "l", "type": "LeakyReLU", "args": {"negative_slope": 0.2}},
    {"name": "i", "type": "Identity"}]}))
put("spec", "rnn.json", json.dumps({"nodes": [
    {"name": "seq", "type": "ImageAsSequence"},
    {"name": "lstm", "type": "LSTM", "args": {"input_size": 4, "hidden_size": 3, "batch_first": True}},
    {"name": "gru", "type": "GRU", "args": {"input_size": 3, "hidden_size": 2, "batch_first": True, "num_layers": 1},
     "inputs": ["lstm:0"]},
    {"name": "last", "type": "LastTimeStep", "args": {"batch_first": True}},
    {"name": "fc", "type": "Linear", "args": {"in_features": 2, "out_features": 2}}]}))
put("spec", "embed.json", json.dumps({"nodes": [
    {"name": "emb", "type": "Embedding", "args": {"num_embeddings": 10, "embedding_dim": 4}},
    {"name": "rnn", "type": "RNN", "args": {"input_size": 4, "hidden_size": 4, "nonlinearity": "tanh"}},
    {"name": "bn", "type": "BatchNorm1d", "args": {"num_features": 4, "affine": False}}]}))

# ---- AIMET config ------------------------------------------------------------------------------
here = os.path.dirname(os.path.abspath(__file__))
for name in ("default_config.json", "per_channel_config.json"):
    with open(os.path.join(here, "..", "..", "quant", "configs", name), "rb") as f:
        put("aimet_config", name, f.read())
put("aimet_config", "full.json", json.dumps({
    "defaults": {"ops": {"is_output_quantized": "True", "is_symmetric": "False"},
                 "params": {"is_quantized": "True", "is_symmetric": "True"},
                 "strict_symmetric": "False", "unsigned_symmetric": "True", "per_channel_quantization": "True",
                 "supported_kernels": [{"activation": {"bitwidth": 8, "dtype": "int"}, "param": {"bitwidth": 8, "dtype": "int"}}],
                 "hw_version": "V73"},
    "params": {"bias": {"is_quantized": "False"}},
    "op_type": {"Conv": {"is_input_quantized": "True", "is_output_quantized": "False", "per_channel_quantization": "False",
                         "params": {"weight": {"is_symmetric": "False"}},
                         "supported_kernels": [{"activation": {"bitwidth": 16, "dtype": "float"}}],
                         "encoding_constraints": {"min": -1.0, "max": 1.0}}},
    "supergroups": [{"op_list": ["Conv", "Relu"]}, {"op_list": ["Add", "Relu"]}],
    "model_input": {"is_input_quantized": "True"}, "model_output": {"is_output_quantized": "True"},
    "supergroup_pass_list": ["ReplaceReluWithRelu6"]}))

# ---- encodings ---------------------------------------------------------------------------------
e061 = {"bitwidth": 8, "dtype": "int", "is_symmetric": "False", "max": 1.0, "min": -0.5, "offset": -85, "scale": 0.00588}
put("encodings", "v061.json", json.dumps({"version": "0.6.1",
    "activation_encodings": {"conv.output": [e061], "x": [{"bitwidth": 16, "dtype": "float"}]},
    "param_encodings": {"conv.weight": [dict(e061, is_symmetric="True", offset=-128), dict(e061, is_symmetric="True", offset=-127)]},
    "excluded_layers": ["fc"], "quantizer_args": {"activation_bitwidth": 8, "param_bitwidth": 4, "dtype": "int",
    "is_symmetric": True, "per_channel_quantization": True, "quant_scheme": "post_training_tf_enhanced"}}))
put("encodings", "v100.json", json.dumps({"version": "1.0.0",
    "activation_encodings": [{"name": "conv.output", "dtype": "INT", "enc_type": "PER_TENSOR", "bw": 8, "is_sym": False,
                              "scale": [0.01], "offset": [-100]},
                             {"name": "f", "dtype": "FLOAT", "enc_type": "PER_TENSOR", "bw": 16}],
    "param_encodings": [{"name": "conv.weight", "dtype": "INT", "enc_type": "PER_CHANNEL", "bw": 4, "is_sym": True,
                         "scale": [0.1, 0.2], "offset": [-8, -7]}],
    "excluded_layers": [], "quantizer_args": {}}))
put("encodings", "adaround.json", json.dumps({"conv.weight": [dict(e061, is_symmetric="True", offset=-128)]}))
put("encodings", "v051.json", json.dumps({"version": "0.5.1", "activation_encodings": {}, "param_encodings": {"w": [e061]}}))

# ---- quantsim.json -----------------------------------------------------------------------------
put("quantsim_json", "quantsim.json", json.dumps({"format": "qforge-quantsim", "version": 1, "config": "<builtin:default>",
    "config_notes": [], "scheme": "tf_enhanced", "act_bw": 8, "param_bw": 4, "bias_bw": 32, "range_learning": "lsq",
    "fold_bn": True, "folded_bn": [{"layer": "conv", "batchnorm": "bn"}], "quantize_cell_state": False, "quantize_gates": False,
    "quantizers": [{"name": "conv.weight", "enabled": True, "kind": "param", "bitwidth": 4},
                   {"name": "conv.output", "enabled": False}]}))
put("quantsim_json", "minimal.json", json.dumps({"format": "qforge-quantsim", "scheme": "percentile", "range_learning": "aimet",
                                                 "config": "per_channel"}))

# ---- checkpoint state.json -----------------------------------------------------------------------
gen = {"s": [1, 2, 3, 18446744073709551615], "has_spare": True, "spare_bits": 4607182418800017408}
put("checkpoint_state", "state.json", json.dumps({"format": "qforge-checkpoint", "version": 1, "step": 12,
    "model_file": "model-12.safetensors", "optimizer_file": "optimizer-12.safetensors",
    "optimizer": {"type": "adam", "step": 12, "groups": [{"lr": 0.001}]},
    "trainer": {"epoch": 1, "batch": 3, "data_gen": gen, "model_gen": dict(gen, has_spare=False, spare_bits=0), "best": None}}))

# ---- int8 bundle -------------------------------------------------------------------------------
class Blob:
    def __init__(self):
        self.b = b""

    def put(self, fmt, values):
        while len(self.b) % 8:
            self.b += b"\0"
        off = len(self.b)
        self.b += struct.pack("<%d%s" % (len(values), fmt), *values) if values else b""
        return {"offset": off, "count": len(values)}


def q(scale, zp=0, lo=-128, hi=127):
    return {"scale": scale, "zero_point": zp, "qmin": lo, "qmax": hi}


def op(blob, kind, name, inputs, output, in_c=0, out_c=0, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1,
       weights=(), weights_hh=(), bias=(), bias_hh=(), mult=(), mult_hh=(), rng=(-128, 127), m=(0, 0), identity=False,
       add=(0, 0, 0, 0, 0, 0, -128, 127), cell=(-11, 0, 0, 0, 0, -128, 127), hidden=0, count_include_pad=True):
    return {"kind": kind, "name": name, "inputs": list(inputs), "output": output, "in_c": in_c, "out_c": out_c,
            "kernel": list(kernel), "stride": list(stride), "padding": list(padding), "dilation": [1, 1], "groups": groups,
            "per_channel": False, "range": list(rng), "act": "none", "count_include_pad": count_include_pad,
            "add": list(add), "m": list(m), "identity": identity, "cell": list(cell), "hidden": hidden,
            "arrays": {"weights": blob.put("b", list(weights)), "weights_hh": blob.put("b", list(weights_hh)),
                       "bias": blob.put("i", list(bias)), "bias_hh": blob.put("i", list(bias_hh)),
                       "mult_q": blob.put("i", [x[0] for x in mult]), "mult_shift": blob.put("i", [x[1] for x in mult]),
                       "mult_hh_q": blob.put("i", [x[0] for x in mult_hh]),
                       "mult_hh_shift": blob.put("i", [x[1] for x in mult_hh])}}


def bundle(values, ops, blob, name):
    desc = {"format": "qforge-int8-bundle", "version": 1, "model": name, "input": 0, "output": len(values) - 1,
            "blob": "program.bin", "blob_bytes": len(blob.b),
            "values": [{"name": n, "module": n, "shape": s, "q": qq} for n, s, qq in values], "ops": ops}
    return json.dumps(desc, separators=(",", ":")).encode() + b"\n--program.bin--\n" + blob.b


M = (1 << 30, -3)
b = Blob()
ops = [op(b, "conv2d", "conv", [0], 1, in_c=1, out_c=2, kernel=(3, 3), padding=(1, 1),
          weights=[(i * 7) % 11 - 5 for i in range(18)], bias=[3, -3], mult=[M, M], rng=(0, 127)),
       op(b, "maxpool2d", "pool", [1], 2, in_c=2, out_c=2, kernel=(2, 2), stride=(2, 2)),
       op(b, "flatten", "flat", [2], 3),
       op(b, "linear", "fc", [3], 4, in_c=18, out_c=3, weights=[(i * 5) % 9 - 4 for i in range(54)], bias=[1, 2, 3], mult=[M] * 3)]
put("bundle", "cnn", bundle([("input", [1, 6, 6], q(0.05)), ("conv", [2, 6, 6], q(0.1, -128)),
                             ("pool", [2, 3, 3], q(0.1, -128)), ("flat", [18], q(0.1, -128)), ("fc", [3], q(0.2, 3))], ops, b, "cnn"))

b = Blob()
ops = [op(b, "requant", "rq", [0], 1, m=(1 << 30, 0), rng=(-128, 127)),
       op(b, "add", "add", [0, 1], 2, add=(0, 5, -2, 16384, 12000, 15, -2, 127), rng=(-2, 127)),
       op(b, "avgpool2d", "avg", [2], 3, kernel=(3, 3), stride=(1, 1), padding=(1, 1), count_include_pad=False),
       op(b, "global_avgpool", "gap", [3], 4, m=(1 << 30, -4), rng=(-128, 127)),
       op(b, "flatten", "flat", [4], 5),
       op(b, "image_as_sequence", "seq", [0], 6),
       op(b, "requant", "id", [6], 7, identity=True, rng=(-100, 100)),
       op(b, "conv2d", "dw", [2], 8, in_c=2, out_c=2, kernel=(3, 3), padding=(1, 1), stride=(2, 2), groups=2,
          weights=[1, -1, 2, 0, 3, 0, -2, 1, 1] * 2, bias=[0, 1], mult=[M, M])]
put("bundle", "residual", bundle([("input", [2, 4, 4], q(0.05)), ("rq", [2, 4, 4], q(0.07, 5)), ("add", [2, 4, 4], q(0.1, -2)),
                                  ("avg", [2, 4, 4], q(0.1, -2)), ("gap", [2, 1, 1], q(0.1, 0)), ("flat", [2], q(0.1, 0)),
                                  ("seq", [4, 8], q(0.05)), ("id", [4, 8], q(0.05)), ("dw", [2, 2, 2], q(0.2, 0))],
                                 ops, b, "residual"))

for kind, gates in (("lstm", 4), ("gru", 3)):
    b = Blob()
    H, F, T = 2, 3, 4
    G = gates * H
    ops = [op(b, kind, kind, [0], 1, in_c=F, out_c=G, hidden=H, weights=[(i % 7) - 3 for i in range(G * F)],
              weights_hh=[(i % 5) - 2 for i in range(G * H)], bias=list(range(G)), bias_hh=list(range(G)) if kind == "gru" else [],
              mult=[(1 << 30, -2)] * G, mult_hh=[(1 << 30, -1)] * G, cell=(-11, 0, 1 << 30, 1, 3, -128, 127)),
           op(b, "last_step", "last", [1], 2),
           op(b, "linear", "fc", [2], 3, in_c=H, out_c=2, weights=[1, -1, 2, 3], bias=[0, 0], mult=[M, M])]
    put("bundle", kind, bundle([("input", [T, F], q(0.05)), (kind, [T, H], q(1 / 128, 3)), ("last", [H], q(1 / 128, 3)),
                                ("fc", [2], q(0.05))], ops, b, kind))

# ---- IDX / CIFAR / text --------------------------------------------------------------------------
def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


put("idx", "images", idx([2, 3, 3], range(18)))
put("idx", "labels.gz", gz(idx([4], [0, 9, 3, 1])))
put("idx", "empty", idx([0, 28, 28], []))
rec = bytes([3]) + bytes((i * 13) % 256 for i in range(3072))
put("cifar", "two_records", rec + bytes([9]) + rec[1:])
put("cifar", "one_record.gz", gz(rec))
put("text", "short", b"\x03" + b"hello, world! the quick brown fox jumps over the lazy dog.\n" * 2)
put("text", "vocab", b"\x00" + bytes(range(32, 127)))
put("text", "gz", b"\x05" + gz(b"abcabcabcabd" * 10))

# ---- regressions: the hostile inputs of issue 12 (each must be refused with InputError) ----------
def reg(target, name, data):
    d = os.path.join(os.path.dirname(ROOT), "regressions", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


with open(os.path.join(ROOT, "bundle", "cnn"), "rb") as f:
    cnn = f.read()
text, _, blob = cnn.partition(b"\n--program.bin--\n")
desc = json.loads(text)


def edited(fn):
    d = json.loads(text)
    fn(d)
    return json.dumps(d, separators=(",", ":")).encode() + b"\n--program.bin--\n" + blob


def set_op(i, key, value):
    return lambda d: d["ops"][i].__setitem__(key, value)


reg("bundle", "groups_zero", edited(set_op(0, "groups", 0)))
reg("bundle", "stride_zero", edited(set_op(1, "stride", [0, 2])))
reg("bundle", "kernel_zero", edited(set_op(0, "kernel", [0, 3])))
reg("bundle", "in_c_mismatch", edited(set_op(0, "in_c", 4)))
reg("bundle", "out_c_mismatch", edited(set_op(3, "out_c", 300)))
reg("bundle", "weights_short", edited(lambda d: d["ops"][3]["arrays"]["weights"].__setitem__("count", 10)))
reg("bundle", "offset_past_end", edited(lambda d: d["ops"][0]["arrays"]["bias"].__setitem__("offset", 1 << 62)))
reg("bundle", "shift_40", edited(lambda d: d["ops"][0]["arrays"]["mult_shift"].__setitem__("offset", 0)))
reg("bundle", "shape_2e62", edited(lambda d: d["values"][4].__setitem__("shape", [1 << 62])))
reg("bundle", "value_forward_ref", edited(set_op(0, "inputs", [3])))
reg("bundle", "type_error", edited(set_op(0, "groups", "1")))
reg("bundle", "deep", "[" * 5000)
reg("spec", "linear_2e62", json.dumps({"nodes": [{"name": "fc", "type": "Linear",
                                                  "args": {"in_features": 1, "out_features": 1 << 62}}]}))
reg("spec", "deep_args", '{"nodes": [{"name": "a", "type": "ReLU", "args": ' + "[" * 5000 + "]" * 5000 + "}]}")
reg("spec", "batchnorm_huge", json.dumps({"nodes": [{"name": "bn", "type": "BatchNorm2d", "args": {"num_features": 2147483647}}]}))
reg("spec", "output_index_huge", json.dumps({"nodes": [{"name": "a", "type": "ReLU"}], "outputs": ["a:99999999999999999999"]}))
reg("idx", "dims_wrap_2e64", bytes([0, 0, 8, 4]) + struct.pack(">4I", 0x10000, 0x10000, 0x10000, 0x10000))
reg("idx", "dims_zero_and_huge", bytes([0, 0, 8, 4]) + struct.pack(">4I", 0, 0xffffffff, 0xffffffff, 0xffffffff))
reg("safetensors", "zero_dim_strides", safetensors({"t": ("F32", [0, 1 << 40, 1 << 40], b"")}))
reg("safetensors", "deep_header", struct.pack("<Q", 4000) + b"[" * 2000 + b"]" * 2000)
reg("encodings", "offset_1e300", json.dumps({"version": "0.6.1", "param_encodings": {"w": [dict(e061, offset=-1e300)]}}))
reg("encodings", "args_type_error", json.dumps({"version": "0.6.1", "quantizer_args": {"param_bitwidth": "8"}}))
reg("aimet_config", "deep", "{\"defaults\": " + "[" * 5000)
reg("quantsim_json", "quantizer_not_object", json.dumps({"format": "qforge-quantsim", "quantizers": [5, {"name": 3}]}))
reg("quantsim_json", "bw_string", json.dumps({"format": "qforge-quantsim", "act_bw": "8"}))

# ---- npy: numpy files written by numpy (tools/gen_fixtures_npy.py -> tests/fixtures/npy/) ---------------
NPY_FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "npy")
for name in ["f4_2x3.npy", "f8_be.npy", "fortran_2x3x2.npy", "v3.npy", "scalar_0d.npy", "stored.npz", "deflated.npz",
             "zip64_end.npz", "images_u8.npz"]:
    with open(os.path.join(NPY_FIXTURES, name), "rb") as f:
        put("npy", name, f.read())
