#!/usr/bin/python3
"""int8 inference: qforge's integer runtime against PyTorch's quantized engines (onednn, qnnpack) on the
same zoo architectures, batch 1 and 64, 1 and 2 threads, in one run.

    /usr/bin/python3 benchmarks/compare_torch_int8.py [--qforge build/apps/qforge] [--models mnist-cnn,...]
        [--batches 1,64] [--threads 1,2] [--rounds 2]

PyTorch side: the architectures of tools/gen_fixtures_nn.py, quantized with FX graph mode
(prepare_fx/convert_fx, the engine's default qconfig mapping: per-channel weights for onednn, per-tensor
for qnnpack), calibrated on random inputs, timed in inference mode (median of repeats). qforge side:
`qforge bench infer --json` (its own calibrated program of the same architecture; the speed of an int8
program does not depend on the values). Both sides alternate for `rounds` rounds and each keeps its best
median. PyTorch runs with OpenBLAS pinned to one thread ("fair", Note [fair PyTorch timing] in
torch_side.py) and with the default; ratio = torch_fair_ms / qforge_ms (above 1: qforge faster).
State the CPU (printed first) beside the figures.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_side import torch_side  # noqa: E402

ENGINES = ["onednn", "qnnpack"]


def torch_int8_rows(models, batches, threads_list, repeats):
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    sys.path.insert(0, os.path.join(HERE, "..", "tools"))
    import gen_fixtures_nn as g
    rows = []
    gen = torch.Generator().manual_seed(3)
    for engine in ENGINES:
        torch.backends.quantized.engine = engine
        for name in models:
            model = g.ZOO[name]().eval()
            example = (torch.rand(8, 1, 28, 28, generator=gen),)
            prepared = prepare_fx(model, get_default_qconfig_mapping(engine), example)
            with torch.inference_mode():
                for _ in range(4):
                    prepared(torch.rand(32, 1, 28, 28, generator=gen))
            qmodel = convert_fx(prepared)
            for threads in threads_list:
                torch.set_num_threads(threads)
                for batch in batches:
                    x = torch.rand(batch, 1, 28, 28, generator=gen)
                    with torch.inference_mode():
                        for _ in range(5):
                            qmodel(x)
                        # at least ~0.2 s of calls per measurement
                        t0 = time.perf_counter()
                        qmodel(x)
                        one = max(time.perf_counter() - t0, 1e-6)
                        reps = max(1, min(repeats, int(0.2 / one)))
                        times = []
                        for _ in range(reps):
                            t0 = time.perf_counter()
                            qmodel(x)
                            times.append((time.perf_counter() - t0) * 1e3)
                    rows.append({"engine": engine, "model": name, "batch": batch, "threads": threads,
                                 "ms": statistics.median(times)})
    return rows


def qforge_int8_rows(qforge, models, batches, threads_list):
    out = {}
    for name in models:
        for threads in threads_list:
            cmd = [qforge, "bench", "infer", "--model", name, "--batches", ",".join(map(str, batches)),
                   "--threads", str(threads), "--json"]
            rows = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])["rows"]
            for r in rows:
                out[(name, r["batch"], r["threads"])] = r["int8_ms"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qforge", default=os.path.join(HERE, "..", "build", "apps", "qforge"))
    ap.add_argument("--models", default="mnist-cnn,dw-cnn,resnet-tiny")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--torch-only", action="store_true")
    a = ap.parse_args()
    models = a.models.split(",")
    batches = [int(b) for b in a.batches.split(",")]
    threads_list = [int(t) for t in a.threads.split(",")]
    if a.torch_only:
        print(json.dumps(torch_int8_rows(models, batches, threads_list, a.repeats)))
        return
    child_args = ["--models", a.models, "--batches", a.batches, "--threads", a.threads, "--repeats", str(a.repeats)]
    best_q, best_t = {}, {}
    for _ in range(a.rounds):
        for key, ms in qforge_int8_rows(a.qforge, models, batches, threads_list).items():
            best_q[key] = min(best_q.get(key, ms), ms)
        for setting in ("fair", "default"):
            for r in torch_side(__file__, child_args, setting):
                key = (setting, r["engine"], r["model"], r["batch"], r["threads"])
                best_t[key] = min(best_t.get(key, r["ms"]), r["ms"])
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"cpu: {cpu}; best of {a.rounds} rounds; torch ratio = torch_fair_ms / qforge_int8_ms (> 1: qforge faster)")
    print(f"{'model':<12} {'batch':>5} {'thr':>3} {'qforge ms':>10} " +
          " ".join(f"{e + ' ms':>11} {e + ' dflt':>12} {'ratio':>6}" for e in ENGINES))
    for name in models:
        for threads in threads_list:
            for batch in batches:
                q = best_q[(name, batch, threads)]
                cols = []
                for e in ENGINES:
                    fair, dflt = best_t[("fair", e, name, batch, threads)], best_t[("default", e, name, batch, threads)]
                    cols.append(f"{fair:>11.4f} {dflt:>12.4f} {fair / q:>6.2f}")
                print(f"{name:<12} {batch:>5} {threads:>3} {q:>10.4f} " + " ".join(cols))


if __name__ == "__main__":
    main()
