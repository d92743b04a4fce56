#!/usr/bin/python3
"""Times one training step (forward, cross-entropy, backward) of every zoo model in PyTorch and in qforge
(qforge_bench_zoo) at the same batch size and thread count, and prints qforge/PyTorch ratios.

Run with Debian's python3-torch (never needed at qforge run time):

    /usr/bin/python3 benchmarks/compare_torch_zoo.py [--bench build/benchmarks/qforge_bench_zoo]
        [--batch 64] [--threads 2] [--repeats 10] [--warmup 3] [--rounds 2] [--filter NAME]

The PyTorch models are the ones tools/gen_fixtures_nn.py uses for the weight fixtures (same
architectures and state_dict names). The machine may be shared, so the two sides alternate for `rounds`
rounds and each keeps its best median. PyTorch runs with its OpenBLAS pinned to one thread ("fair", Note
[fair PyTorch timing] in torch_side.py) and with the default; ratio = qforge / PyTorch fair (below 1:
qforge faster).
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

VOCAB = 65


def torch_rows(names, batch, repeats, warmup):
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "tools"))
    import gen_fixtures_nn as g
    out = {}
    gen = torch.Generator().manual_seed(2)
    for name in names:
        model = g.CharLstm(VOCAB) if name == "char-lstm" else g.ZOO[name]()
        model.train()
        if name == "char-lstm":
            x = torch.randint(0, VOCAB, (batch, 32), generator=gen)
            t = torch.randint(0, VOCAB, (batch * 32,), generator=gen)
        else:
            x = torch.rand(batch, 1, 28, 28, generator=gen)
            t = torch.randint(0, 10, (batch,), generator=gen)

        def step():
            logits = model(x)[0]
            if logits.dim() == 3:
                logits = logits.reshape(-1, logits.shape[-1])
            torch.nn.functional.cross_entropy(logits, t).backward()
            model.zero_grad(set_to_none=True)

        for _ in range(warmup):
            step()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = statistics.median(times)
    return out


def qforge_rows(bench, batch, threads, repeats, warmup, flt):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    cmd = [bench, "--json", "--batch", str(batch), "--threads", str(threads), "--repeats", str(repeats),
           "--warmup", str(warmup)]
    if flt:
        cmd += ["--filter", flt]
    rows = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    return {r["model"]: r["step_ms"] for r in rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=os.path.join(HERE, "..", "build", "benchmarks", "qforge_bench_zoo"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--filter", default="")
    ap.add_argument("--torch-only", action="store_true")
    ap.add_argument("--models", default="")
    a = ap.parse_args()
    if a.torch_only:
        import torch
        torch.set_num_threads(a.threads)
        print(json.dumps(torch_rows(a.models.split(","), a.batch, a.repeats, a.warmup)))
        return
    best_q, best_t, best_d = {}, {}, {}
    for _ in range(a.rounds):
        q = qforge_rows(a.bench, a.batch, a.threads, a.repeats, a.warmup, a.filter)
        child = ["--models", ",".join(q.keys()), "--batch", str(a.batch), "--threads", str(a.threads),
                 "--repeats", str(a.repeats), "--warmup", str(a.warmup)]
        t = torch_side(__file__, child, "fair")
        d = torch_side(__file__, child, "default")
        for k in q:
            best_q[k] = min(best_q.get(k, q[k]), q[k])
            best_t[k] = min(best_t.get(k, t[k]), t[k])
            best_d[k] = min(best_d.get(k, d[k]), d[k])
    print(f"{'model':<12} {'qforge ms':>10} {'torch ms':>10} {'torch dflt':>10} {'ratio':>7}   "
          f"(batch {a.batch}, {a.threads} threads; torch ms with OpenBLAS pinned to 1 thread, dflt unpinned)")
    for k in best_q:
        print(f"{k:<12} {best_q[k]:>10.2f} {best_t[k]:>10.2f} {best_d[k]:>10.2f} {best_q[k] / best_t[k]:>7.2f}")


if __name__ == "__main__":
    main()
