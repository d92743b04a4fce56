#!/usr/bin/python3
"""Golden values for qforge's PyTorch observers (quant/torch_observers.hpp).

Runs PyTorch 1.13 (Debian python3-torch) on CPU and writes tests/fixtures/torch_observers/observers.json:
for each case, the observer options, the batches fed to forward(), and after every batch the observer's
float32 buffers (min_val/max_val, and for HistogramObserver the histogram at the last step) and
calculate_qparams(); for FusedMovingAvgObsFakeQuantize also the enable flags of each step, its output and
its scale/zero_point buffers. Float32 values are written as JSON doubles (exact), so tests compare bits. Non-finite values
are the strings "inf"/"-inf"/"nan". Histograms are stored sparsely as [bin, count] pairs.
Usage: /usr/bin/python3 tools/gen_fixtures_torch_observers.py   (from the repository root)
"""
import json
import os
import warnings

# torch.sum's reduction order depends on the vector width; pin the AVX2 kernels (8 float lanes), which is
# also what the DEFAULT kernels use.
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
import torch  # noqa: E402
from torch.ao.quantization import observer as obs  # noqa: E402
from torch.ao.quantization.fake_quantize import FusedMovingAvgObsFakeQuantize  # noqa: E402

warnings.filterwarnings("ignore")
torch.manual_seed(18)
OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "torch_observers")

DTYPES = {"quint8": torch.quint8, "qint8": torch.qint8}
QSCHEMES = {"per_tensor_affine": torch.per_tensor_affine, "per_tensor_symmetric": torch.per_tensor_symmetric,
            "per_channel_affine": torch.per_channel_affine, "per_channel_symmetric": torch.per_channel_symmetric}


def num(v):
    v = float(v)
    return v if v == v and abs(v) != float("inf") else str(v)  # "inf", "-inf", "nan": JSON has no literal


def flat(x):
    return [num(v) for v in x.detach().reshape(-1).tolist()]


def tensor(x):
    return {"shape": list(x.shape), "data": flat(x)}


def kwargs_of(o):
    k = {"dtype": DTYPES[o["dtype"]], "qscheme": QSCHEMES[o["qscheme"]], "reduce_range": o.get("reduce_range", False)}
    if "quant_min" in o:
        k["quant_min"], k["quant_max"] = o["quant_min"], o["quant_max"]
    if "eps" in o:
        k["eps"] = o["eps"]
    return k


def qparams(sz):
    s, z = sz
    return {"scale": flat(s.float()), "zero_point": [int(v) for v in z.reshape(-1).tolist()]}


cases = []


def observer_case(name, kind, opts, batches):
    k = kwargs_of(opts)
    if kind == "minmax":
        o = obs.MinMaxObserver(**k)
    elif kind == "moving_average":
        o = obs.MovingAverageMinMaxObserver(averaging_constant=opts.get("averaging_constant", 0.01), **k)
    elif kind == "per_channel":
        o = obs.PerChannelMinMaxObserver(ch_axis=opts.get("ch_axis", 0), **k)
    elif kind == "moving_average_per_channel":
        o = obs.MovingAveragePerChannelMinMaxObserver(averaging_constant=opts.get("averaging_constant", 0.01),
                                                      ch_axis=opts.get("ch_axis", 0), **k)
    elif kind == "histogram":
        o = obs.HistogramObserver(bins=opts.get("bins", 2048), upsample_rate=opts.get("upsample_rate", 128), **k)
    else:
        raise ValueError(kind)
    steps = []
    for i, b in enumerate(batches):
        o(b)
        st = {"min_val": flat(o.min_val), "max_val": flat(o.max_val), **qparams(o.calculate_qparams())}
        if kind == "histogram":
            nmin, nmax = o._non_linear_param_search()
            st["search_min"], st["search_max"] = float(nmin), float(nmax)
            if i == len(batches) - 1:
                h = flat(o.histogram)  # sparse: [bin, count] of the non-empty bins
                st["histogram_nz"] = [[j, v] for j, v in enumerate(h) if v != 0.0]
        steps.append(st)
    cases.append({"name": name, "kind": kind, "options": opts, "batches": [tensor(b) for b in batches],
                  "steps": steps})


def fused_case(name, opts, batches, flags):
    k = kwargs_of(opts)
    per_channel = opts["qscheme"].startswith("per_channel")
    observer = obs.MovingAveragePerChannelMinMaxObserver if per_channel else obs.MovingAverageMinMaxObserver
    extra = {"averaging_constant": opts.get("averaging_constant", 0.01)}
    if per_channel:
        extra["ch_axis"] = opts.get("ch_axis", 0)
    fq = FusedMovingAvgObsFakeQuantize(observer=observer, quant_min=opts["quant_min"], quant_max=opts["quant_max"],
                                       **{kk: v for kk, v in k.items() if kk not in ("quant_min", "quant_max")},
                                       **extra)
    steps = []
    for b, (obs_on, fq_on) in zip(batches, flags):
        fq.observer_enabled[0] = obs_on
        fq.fake_quant_enabled[0] = fq_on
        y = fq(b)
        steps.append({"observer_enabled": obs_on, "fake_quant_enabled": fq_on, "y": flat(y),
                      "running_min": flat(fq.activation_post_process.min_val),
                      "running_max": flat(fq.activation_post_process.max_val),
                      "buffer_scale": flat(fq.scale), "buffer_zero_point": [int(v) for v in fq.zero_point.tolist()],
                      "python": qparams(fq.calculate_qparams())})
    cases.append({"name": name, "kind": "fused", "options": opts, "batches": [tensor(b) for b in batches],
                  "steps": steps})


def rnd(*shape, spread=1.0, shift=0.0):
    return torch.randn(*shape) * spread + shift


# ---- option grid: every per-tensor qscheme x dtype x reduce_range x ranges -----------------------------
PT_OPTIONS = []
for dtype in ("quint8", "qint8"):
    for qs in ("per_tensor_affine", "per_tensor_symmetric"):
        for rr in (False, True):
            if qs.endswith("symmetric") and rr and dtype == "quint8":
                continue  # torch: NotImplementedError
            PT_OPTIONS.append({"dtype": dtype, "qscheme": qs, "reduce_range": rr})
PT_OPTIONS += [
    {"dtype": "quint8", "qscheme": "per_tensor_affine", "quant_min": 0, "quant_max": 15},
    {"dtype": "quint8", "qscheme": "per_tensor_symmetric", "quant_min": 0, "quant_max": 15},
    {"dtype": "qint8", "qscheme": "per_tensor_symmetric", "quant_min": -127, "quant_max": 127},
    {"dtype": "qint8", "qscheme": "per_tensor_affine", "quant_min": -8, "quant_max": 7},
    {"dtype": "qint8", "qscheme": "per_tensor_symmetric", "quant_min": -2, "quant_max": 1},
    {"dtype": "quint8", "qscheme": "per_tensor_affine", "quant_min": 0, "quant_max": 255, "reduce_range": True},
    {"dtype": "qint8", "qscheme": "per_tensor_affine", "quant_min": -127, "quant_max": 127, "reduce_range": True},
    {"dtype": "quint8", "qscheme": "per_tensor_affine", "eps": 1e-3},
]

DATA = {
    "normal": lambda: [rnd(37, spread=1.5), rnd(64, spread=0.7, shift=0.3), rnd(5, 7, spread=3.0)],
    "positive": lambda: [rnd(40).abs() + 0.5, rnd(40).abs() * 2.0],
    "negative": lambda: [-(rnd(40).abs()) - 0.25, -(rnd(30).abs())],
    "ex9": lambda: [torch.tensor([-1.0, 0.5, 2.0, 3.0])],
    "constant": lambda: [torch.full((17,), 2.75), torch.full((17,), 2.75)],
    "zeros": lambda: [torch.zeros(9), torch.zeros(3)],
    "single": lambda: [torch.tensor([-0.3]), torch.tensor([1.7])],
    "large": lambda: [torch.tensor([-3.0e38, 1.0, 2.5e38]), torch.tensor([1.0e30, -7.0])],
    "tiny": lambda: [torch.tensor([1e-30, -2e-30, 0.0]), torch.tensor([3e-38, 0.0])],
}

for kind in ("minmax", "moving_average"):
    for i, opts in enumerate(PT_OPTIONS):
        for dname, gen in DATA.items():
            if kind == "moving_average" and dname == "large":
                continue  # the moving average of +-3e38 overflows to inf (not JSON)
            o = dict(opts)
            if kind == "moving_average" and i % 3 == 0:
                o["averaging_constant"] = 0.5 if i % 2 == 0 else 0.3
            observer_case(f"{kind}/{i}/{dname}", kind, o, gen())

# ---- per channel -------------------------------------------------------------------------------------------
PC_OPTIONS = []
for dtype in ("quint8", "qint8"):
    for qs in ("per_channel_affine", "per_channel_symmetric"):
        for rr in (False, True):
            if qs.endswith("symmetric") and rr and dtype == "quint8":
                continue
            PC_OPTIONS.append({"dtype": dtype, "qscheme": qs, "reduce_range": rr})
PC_OPTIONS += [{"dtype": "qint8", "qscheme": "per_channel_symmetric", "quant_min": -127, "quant_max": 127},
               {"dtype": "quint8", "qscheme": "per_channel_affine", "quant_min": 0, "quant_max": 15},
               {"dtype": "quint8", "qscheme": "per_channel_symmetric", "quant_min": 0, "quant_max": 15}]
for kind in ("per_channel", "moving_average_per_channel"):
    for i, opts in enumerate(PC_OPTIONS):
        for axis, shape in ((0, (4, 6)), (1, (2, 3, 5)), (3, (2, 2, 3, 4))):
            o = dict(opts, ch_axis=axis)
            if kind.startswith("moving") and i % 2 == 1:
                o["averaging_constant"] = 0.25
            b = [rnd(*shape, spread=2.0), rnd(*shape, spread=1.0, shift=0.5), rnd(*shape, spread=0.5)]
            b[0].select(axis, 1).fill_(0.0)  # an all-zero channel
            b[1].select(axis, 0).fill_(1.25)  # a constant channel
            observer_case(f"{kind}/{i}/axis{axis}", kind, o, b)
observer_case("per_channel/ex10", "per_channel", {"dtype": "qint8", "qscheme": "per_channel_symmetric"},
              [torch.tensor([[-0.5, 0.25, 1.0], [0, 0, 0], [-2.0, 0.1, 0.3]])])

# ---- histogram -----------------------------------------------------------------------------------------
HIST_DATA = {
    "normal": lambda: [rnd(300, spread=2.0), rnd(250, spread=3.0, shift=1.0), rnd(200, spread=1.0)],
    "outliers": lambda: [torch.cat([rnd(400, spread=0.5), torch.tensor([9.5, -7.25])]), rnd(200, spread=0.6)],
    "growing": lambda: [rnd(150, spread=0.3), rnd(150, spread=1.5), rnd(150, spread=6.0, shift=4.0)],
    "positive": lambda: [rnd(200).abs() * 3.0, rnd(200).abs() * 5.0],
    "small": lambda: [rnd(100, spread=0.2), rnd(100, spread=0.25)],  # int() truncation -> histc on data range
    "trunc": lambda: [torch.tensor([-1.6, -0.2, 0.3, 2.7]), rnd(50, spread=2.0)],
    "constant": lambda: [torch.full((20,), 1.5), torch.full((20,), 1.5)],
    "zeros": lambda: [torch.zeros(16), torch.zeros(4)],
    "single": lambda: [torch.tensor([0.75])],
    "large": lambda: [torch.tensor([-4.0e12, 3.0, 1.0e12]), torch.tensor([2.0e12, 5.0])],
}
H_OPTIONS = [{"dtype": "quint8", "qscheme": "per_tensor_affine"},
             {"dtype": "qint8", "qscheme": "per_tensor_symmetric"},
             {"dtype": "qint8", "qscheme": "per_tensor_affine", "reduce_range": True},
             {"dtype": "quint8", "qscheme": "per_tensor_affine", "quant_min": 0, "quant_max": 15}]
for i, opts in enumerate(H_OPTIONS):
    for dname, gen in HIST_DATA.items():
        o = dict(opts)
        if dname in ("normal", "growing") and i >= 2:
            o["bins"], o["upsample_rate"] = 256, 16
        observer_case(f"histogram/{i}/{dname}", "histogram", o, gen())

# ---- fused -------------------------------------------------------------------------------------------------
FLAGS = [(1, 1), (1, 1), (0, 1), (1, 0), (1, 1), (0, 0), (1, 1)]
F_OPTIONS = [{"dtype": "quint8", "qscheme": "per_tensor_affine", "quant_min": 0, "quant_max": 255},
             {"dtype": "qint8", "qscheme": "per_tensor_symmetric", "quant_min": -128, "quant_max": 127},
             {"dtype": "qint8", "qscheme": "per_tensor_symmetric", "quant_min": -127, "quant_max": 127},
             {"dtype": "quint8", "qscheme": "per_tensor_affine", "quant_min": 0, "quant_max": 15},
             {"dtype": "quint8", "qscheme": "per_tensor_affine", "quant_min": 0, "quant_max": 255,
              "reduce_range": True, "averaging_constant": 0.5},
             {"dtype": "qint8", "qscheme": "per_channel_symmetric", "quant_min": -128, "quant_max": 127},
             {"dtype": "quint8", "qscheme": "per_channel_affine", "quant_min": 0, "quant_max": 255,
              "averaging_constant": 0.2}]
for i, opts in enumerate(F_OPTIONS):
    pc = opts["qscheme"].startswith("per_channel")
    shape = (3, 2, 4) if pc else (6, 5)
    b = [rnd(*shape, spread=1.0 + 0.3 * k, shift=0.1 * k) for k in range(len(FLAGS))]
    fused_case(f"fused/{i}", opts, b, FLAGS)
    if not pc:
        fused_case(f"fused/{i}/positive", opts, [rnd(8).abs() + 0.5 for _ in range(3)], FLAGS[:3])
        fused_case(f"fused/{i}/tiny", opts, [torch.tensor([0.0, 1e-4]), torch.tensor([-2e-5, 3e-5])], FLAGS[:2])
fused_case("fused/ex11", F_OPTIONS[1], [torch.tensor([-1.0, 0.5, 2.0, 3.0])], [(1, 1)])

os.makedirs(OUT_DIR, exist_ok=True)
out = os.path.join(OUT_DIR, "observers.json")
with open(out, "w") as f:
    json.dump({"generator": "tools/gen_fixtures_torch_observers.py", "torch": torch.__version__,
               "cases": cases}, f, separators=(",", ":"))
print(f"wrote {len(cases)} cases to {out} ({os.path.getsize(out)} bytes)")
