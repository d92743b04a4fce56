#!/usr/bin/env python3
"""Small hand-made ONNX files for the importer's unit tests (tests/nn/test_onnx_import*.cpp).

Written with onnx.helper (Debian's python3-onnx 1.12) into tests/fixtures/onnx_unit/; every file is a few
hundred bytes. Usage: /usr/bin/python3 tools/gen_fixtures_onnx_unit.py
Cases (the tests know what each must do):
  asym_pad_conv.onnx        Conv with pads [0, 1, 2, 1] (asymmetric: a Pad node before the conv) + Relu;
                            expected output in asym_pad_conv.expected.npz (numpy reference)
  dyn_hw.onnx               input [N, 3, H, W] with dynamic H and W and a Shape->Gather->Reshape chain:
                            needs --input-shape
  gru_lbr0.onnx             GRU with linear_before_reset = 0 (refused, naming the node)
  avgpool_ceil.onnx         AveragePool with ceil_mode = 1 (refused)
  raw_data_short.onnx       an initializer whose raw_data is 4 bytes short of its dims
  external_escape.onnx      external data location "../escape.bin" (refused)
  external_absolute.onnx    external data location "/etc/passwd" (refused)
  external_past_end.onnx    external data offset past the end of its (existing) file
  bad_opset.onnx            opset 9 (refused: 11-17)
  onnx_names.onnx           Gemm whose weight is named "onnx::Gemm_7": the model dir must keep that name
"""
import os
import numpy as np
import onnx
from onnx import helper, TensorProto, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "onnx_unit")
rng = np.random.default_rng(7)


def save(model, name, check=True):
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, name))


def model(nodes, inputs, outputs, inits, opset=13):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="gen_fixtures_onnx_unit")


def conv2d_ref(x, w, b, pads):  # pads t, l, b, r
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    y = np.zeros((n, o, h - kh + 1, wd - kw + 1), np.float64)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            y[:, :, i, j] = np.einsum("nchw,ochw->no", x[:, :, i:i + kh, j:j + kw], w)
    return y + b[None, :, None, None]


def main():
    os.makedirs(OUT, exist_ok=True)
    f32 = TensorProto.FLOAT

    # Asymmetric pads.
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    x = rng.standard_normal((2, 2, 5, 6)).astype(np.float32)
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[0, 1, 2, 1], kernel_shape=[3, 3]),
               helper.make_node("Relu", ["c"], ["y"], name="relu")],
              [helper.make_tensor_value_info("x", f32, [2, 2, 5, 6])], [helper.make_tensor_value_info("y", f32, [2, 4, 5, 6])],
              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    save(m, "asym_pad_conv.onnx")
    y = np.maximum(conv2d_ref(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), [0, 1, 2, 1]), 0)
    np.savez(os.path.join(OUT, "asym_pad_conv.expected.npz"), x=x, y=y.astype(np.float32))

    # Dynamic H, W; flatten via Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
    m = model([helper.make_node("Shape", ["x"], ["s"], name="shape"),
               helper.make_node("Constant", [], ["i0"], name="c0", value=numpy_helper.from_array(np.array(0, np.int64))),
               helper.make_node("Gather", ["s", "i0"], ["n"], name="gather"),
               helper.make_node("Constant", [], ["ax"], name="c1", value=numpy_helper.from_array(np.array([0], np.int64))),
               helper.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsq"),
               helper.make_node("Constant", [], ["m1"], name="c2", value=numpy_helper.from_array(np.array([-1], np.int64))),
               helper.make_node("Concat", ["n1", "m1"], ["shape2"], name="concat", axis=0),
               helper.make_node("Reshape", ["x", "shape2"], ["y"], name="reshape")],
              [helper.make_tensor_value_info("x", f32, ["N", 3, "H", "W"])], [helper.make_tensor_value_info("y", f32, ["N", "D"])], [])
    save(m, "dyn_hw.onnx")

    # GRU with linear_before_reset = 0.
    H, I = 4, 3
    m = model([helper.make_node("GRU", ["x", "W", "R"], ["y"], name="gru_lbr0", hidden_size=H)],
              [helper.make_tensor_value_info("x", f32, [5, 2, I])], [helper.make_tensor_value_info("y", f32, [5, 1, 2, H])],
              [numpy_helper.from_array(rng.standard_normal((1, 3 * H, I)).astype(np.float32), "W"),
               numpy_helper.from_array(rng.standard_normal((1, 3 * H, H)).astype(np.float32), "R")])
    save(m, "gru_lbr0.onnx")

    m = model([helper.make_node("AveragePool", ["x"], ["y"], name="pool_ceil", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
              [helper.make_tensor_value_info("x", f32, [1, 1, 5, 5])], [helper.make_tensor_value_info("y", f32, [1, 1, 3, 3])], [])
    save(m, "avgpool_ceil.onnx")

    # raw_data 4 bytes short (the checker does not look at sizes).
    t = numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "short_weight")
    t.raw_data = t.raw_data[:-4]
    m = model([helper.make_node("Gemm", ["x", "short_weight"], ["y"], name="fc", transB=1)],
              [helper.make_tensor_value_info("x", f32, [2, 4])], [helper.make_tensor_value_info("y", f32, [2, 3])], [t])
    save(m, "raw_data_short.onnx", check=False)

    def external(name, location, offset=0, make_file=None):
        t = TensorProto()
        t.name, t.data_type = "ext_weight", f32
        t.dims.extend([3, 4])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", str(offset)), ("length", "48")):
            e = t.external_data.add()
            e.key, e.value = k, v
        m = model([helper.make_node("Gemm", ["x", "ext_weight"], ["y"], name="fc", transB=1)],
                  [helper.make_tensor_value_info("x", f32, [2, 4])], [helper.make_tensor_value_info("y", f32, [2, 3])], [t])
        save(m, name, check=False)
        if make_file:
            with open(os.path.join(OUT, make_file), "wb") as f:
                f.write(b"\0" * 16)

    external("external_escape.onnx", "../escape.bin")
    external("external_absolute.onnx", "/etc/passwd")
    external("external_past_end.onnx", "external_past_end.bin", offset=8, make_file="external_past_end.bin")

    m = model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
              [helper.make_tensor_value_info("x", f32, [1, 4])], [helper.make_tensor_value_info("y", f32, [1, 4])], [], opset=9)
    save(m, "bad_opset.onnx")

    wt = rng.standard_normal((3, 4)).astype(np.float32)
    m = model([helper.make_node("Gemm", ["x", "onnx::Gemm_7", "fc.bias"], ["y"], name="/fc/Gemm", transB=1)],
              [helper.make_tensor_value_info("x", f32, [2, 4])], [helper.make_tensor_value_info("y", f32, [2, 3])],
              [numpy_helper.from_array(wt, "onnx::Gemm_7"), numpy_helper.from_array(np.arange(3, dtype=np.float32), "fc.bias")])
    save(m, "onnx_names.onnx")


if __name__ == "__main__":
    main()
