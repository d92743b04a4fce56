"""Runs the PyTorch half of a comparison script in a child process, once per OpenBLAS setting.

Note [fair PyTorch timing]: Debian's PyTorch links the pthread build of OpenBLAS, whose worker threads spin
against PyTorch's own OpenMP threads; with both at their defaults on a 2-core machine PyTorch runs 2-3x
slower than it can, which flatters qforge. The fair comparison pins OpenBLAS to one thread
(OPENBLAS_NUM_THREADS=1, set before torch is imported, hence the child process) and keeps PyTorch's
intra-op threads (torch.set_num_threads) at the thread count being measured. The scripts report the
pinned ("fair") time and the default one, and compute ratios against the fair time.

A script using this module accepts `--torch-only` (run only the PyTorch side, print its JSON result as the
last line of stdout) and calls torch_side(...) from its parent run.
"""
import json
import os
import subprocess
import sys

SETTINGS = {"fair": "1", "default": None}  # OPENBLAS_NUM_THREADS per setting (None: leave unset)


def torch_side(script, args, setting):
    """Runs `script --torch-only ARGS` with the OpenBLAS setting ("fair" or "default"); returns its JSON."""
    env = dict(os.environ)
    env.pop("OPENBLAS_NUM_THREADS", None)
    if SETTINGS[setting] is not None:
        env["OPENBLAS_NUM_THREADS"] = SETTINGS[setting]
    proc = subprocess.run([sys.executable, script, "--torch-only", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{os.path.basename(script)}: the PyTorch side failed ({setting} OpenBLAS setting)")
    return json.loads(proc.stdout.strip().splitlines()[-1])
