#!/usr/bin/python3
"""Times the rows of qforge_bench_ops in PyTorch and in qforge, and prints qforge/PyTorch ratios.

Run with Debian's python3-torch (never needed at qforge run time):

    /usr/bin/python3 benchmarks/compare_torch_ops.py [--bench build/benchmarks/qforge_bench_ops]
        [--threads 2] [--repeats 15] [--warmup 3] [--rounds 3] [--omp-wait-policy passive] [--json]

Both sides use the same shapes, the same thread count (torch.set_num_threads, OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS for qforge), the same output gradient (ones), and report the median of `repeats`
timed iterations after `warmup`. The machine may be shared, so the two sides alternate for `rounds`
rounds and each side keeps its best round median; the ratio is qforge / PyTorch (below 1: qforge faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

torch = F = None  # imported in main(), after OMP_WAIT_POLICY is settled



def rows(gen):
    def leaf(*shape):
        return torch.randn(*shape, generator=gen).requires_grad_()

    return [
        ("linear", "64x784 -> 256", [leaf(64, 784), leaf(256, 784), leaf(256)], lambda v: F.linear(*v)),
        ("conv2d", "64x16x28x28, 16->32 3x3 p1", [leaf(64, 16, 28, 28), leaf(32, 16, 3, 3), leaf(32)],
         lambda v: F.conv2d(v[0], v[1], v[2], padding=1)),
        ("conv2d_dw", "64x32x28x28, dw 3x3 p1", [leaf(64, 32, 28, 28), leaf(32, 1, 3, 3), leaf(32)],
         lambda v: F.conv2d(v[0], v[1], v[2], padding=1, groups=32)),
        ("matmul", "256x256x256", [leaf(256, 256), leaf(256, 256)], lambda v: v[0] @ v[1]),
        ("matmul", "1024x1024x1024", [leaf(1024, 1024), leaf(1024, 1024)], lambda v: v[0] @ v[1]),
    ]


def time_torch(warmup, repeats):
    gen = torch.Generator().manual_seed(7)
    out = []
    for name, shape, leaves, run in rows(gen):
        with torch.no_grad():
            gout = torch.ones_like(run(leaves))
        fwd, both = [], []
        for it in range(warmup + repeats):
            for l in leaves:
                l.grad = None
            t0 = time.perf_counter()
            with torch.no_grad():
                run(leaves)
            t1 = time.perf_counter()
            run(leaves).backward(gout)
            t2 = time.perf_counter()
            if it >= warmup:
                fwd.append((t1 - t0) * 1e3)
                both.append((t2 - t1) * 1e3)
        out.append({"name": name, "shape": shape, "fwd_ms": statistics.median(fwd),
                    "fwd_bwd_ms": statistics.median(both)})
    return out


def time_qforge(bench, threads, warmup, repeats):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    res = subprocess.run([bench, "--json", "--threads", str(threads), "--warmup", str(warmup),
                          "--repeats", str(repeats)], env=env, check=True, capture_output=True, text=True)
    return json.loads(res.stdout)["rows"]


def best(a, b):
    if a is None:
        return b
    return [{**x, "fwd_ms": min(x["fwd_ms"], y["fwd_ms"]), "fwd_bwd_ms": min(x["fwd_bwd_ms"], y["fwd_bwd_ms"])}
            for x, y in zip(a, b)]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=os.path.join(here, "..", "build", "benchmarks", "qforge_bench_ops"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--omp-wait-policy", choices=["active", "passive"],
                    help="OMP_WAIT_POLICY for both sides (default: inherited). On a busy machine, spinning "
                         "OpenMP workers can stall every parallel region for a scheduler time slice.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.omp_wait_policy:
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    global torch, F
    import torch
    import torch.nn.functional as F
    if not os.path.exists(args.bench):
        sys.exit(f"compare_torch_ops: runner not found: {args.bench} (build qforge_bench_ops or pass --bench)")
    torch.set_num_threads(args.threads)

    tq = tt = None
    for _ in range(args.rounds):
        tt = best(tt, time_torch(args.warmup, args.repeats))
        tq = best(tq, time_qforge(args.bench, args.threads, args.warmup, args.repeats))

    table = []
    for q, t in zip(tq, tt):
        assert (q["name"], q["shape"]) == (t["name"], t["shape"]), (q, t)
        table.append({"name": q["name"], "shape": q["shape"],
                      "qforge_fwd_ms": q["fwd_ms"], "torch_fwd_ms": t["fwd_ms"],
                      "fwd_ratio": q["fwd_ms"] / t["fwd_ms"],
                      "qforge_fwd_bwd_ms": q["fwd_bwd_ms"], "torch_fwd_bwd_ms": t["fwd_bwd_ms"],
                      "fwd_bwd_ratio": q["fwd_bwd_ms"] / t["fwd_bwd_ms"]})
    if args.json:
        print(json.dumps({"threads": args.threads, "torch": torch.__version__,
                          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "rows": table}, indent=2))
        return
    print(f"qforge vs PyTorch {torch.__version__}, {args.threads} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, best of {args.rounds} rounds of "
          f"median-of-{args.repeats} (ratio = qforge / PyTorch, below 1 = qforge faster)")
    print(f"{'op':<10} {'shape':<28} {'fwd qf':>8} {'fwd pt':>8} {'ratio':>6}   {'f+b qf':>8} {'f+b pt':>8} {'ratio':>6}")
    for r in table:
        print(f"{r['name']:<10} {r['shape']:<28} {r['qforge_fwd_ms']:8.3f} {r['torch_fwd_ms']:8.3f} "
              f"{r['fwd_ratio']:6.2f}   {r['qforge_fwd_bwd_ms']:8.3f} {r['torch_fwd_bwd_ms']:8.3f} "
              f"{r['fwd_bwd_ratio']:6.2f}")


if __name__ == "__main__":
    main()
