#!/usr/bin/python3
"""PyTorch baseline for `qforge train`: the same models, data, split and settings; time per epoch.

Usage (Debian's python3-torch; data from $QFORGE_DATA or ../shared/data):
    /usr/bin/python3 benchmarks/compare_torch_train.py --model mnist-cnn --epochs 3 --optimizer sgd --lr 0.02
    /usr/bin/python3 benchmarks/compare_torch_train.py --model lstm --epochs 3 --optimizer adam --lr 2e-3
    /usr/bin/python3 benchmarks/compare_torch_train.py --model char-lstm --epochs 1 --optimizer adam --lr 2e-3
    ... --qforge build/apps/qforge      also run `qforge train` with the same settings and print both rows

Data conventions are qforge's (data/idx.hpp, data/text.hpp): MNIST t10k-only -> first 8,000 train, last
2,000 test, normalised with mean 0.1307 / std 0.3081; Tiny Shakespeare -> vocabulary of the first 90%,
last 10% validation, non-overlapping windows of --seq-len with next-character targets. SGD uses
momentum 0.9 (as the issue's mnist-cnn target); char-lstm clips gradients at norm 5 (--clip).
Prints one JSON object per framework: {"framework", "model", "epochs", "seconds_per_epoch", "test_accuracy",
"test_loss", ...}.
"""
import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import time

# Note [fair PyTorch timing] (torch_side.py): PyTorch's OpenBLAS is pinned to one thread before torch is
# imported, unless --openblas-default asks for the unpinned (default) setting; run both to report both.
OPENBLAS_DEFAULT = "--openblas-default" in sys.argv
if OPENBLAS_DEFAULT:
    sys.argv.remove("--openblas-default")
else:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def data_dir():
    if os.environ.get("QFORGE_DATA"):
        return os.environ["QFORGE_DATA"]
    for p in (os.path.join(HERE, "..", "..", "shared", "data"), os.path.join("..", "shared", "data")):
        if os.path.isdir(p):
            return os.path.abspath(p)
    sys.exit("no data directory (set QFORGE_DATA)")


def read_idx(path):
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        b = f.read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def mnist(dirname):
    img = read_idx(os.path.join(dirname, "t10k-images-idx3-ubyte.gz"))
    lab = read_idx(os.path.join(dirname, "t10k-labels-idx1-ubyte.gz"))
    x = (torch.from_numpy(img.astype(np.float32)) / 255.0 - 0.1307) / 0.3081
    x = x.unsqueeze(1)
    y = torch.from_numpy(lab.astype(np.int64))
    n = len(y) * 4 // 5
    return (x[:n], y[:n]), (x[n:], y[n:])


def text(path, seq_len):
    with open(path, "rb") as f:
        raw = f.read()
    n_val = len(raw) // 10
    tr, va = raw[:len(raw) - n_val], raw[len(raw) - n_val:]
    vocab = sorted(set(tr))
    index = {c: i for i, c in enumerate(vocab)}

    def windows(s):
        t = torch.tensor([index.get(c, 0) for c in s], dtype=torch.int64)
        n = (len(t) - 1) // seq_len
        return t[:n * seq_len].view(n, seq_len), t[1:n * seq_len + 1].view(n, seq_len)

    return windows(tr), windows(va), len(vocab)


class MnistCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(1568, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(torch.flatten(x, 1))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class RowRnn(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(28, 128, batch_first=True)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        out, _ = self.rnn(x.view(x.shape[0], 28, 28))
        return self.fc(out[:, -1])


class CharLstm(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, 64)
        self.lstm = nn.LSTM(64, 256, batch_first=True)
        self.fc = nn.Linear(256, vocab)

    def forward(self, x):
        out, _ = self.lstm(self.embed(x))
        return self.fc(out)


def run_torch(a):
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    if a.model == "char-lstm":
        (xtr, ytr), (xte, yte), vocab = text(os.path.join(data_dir(), "tinyshakespeare", "input.txt"), a.seq_len)
        model = CharLstm(vocab)
    else:
        (xtr, ytr), (xte, yte) = mnist(os.path.join(data_dir(), "mnist"))
        model = {"mnist-cnn": MnistCnn, "mlp": Mlp}.get(a.model, lambda: RowRnn(a.model))()
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    elif a.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
    g = torch.Generator().manual_seed(a.seed)
    times = []
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        t0 = time.perf_counter()
        for i in range(0, len(perm), a.batch_size):
            idx = perm[i:i + a.batch_size]
            out = model(xtr[idx])
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), ytr[idx].reshape(-1))
            opt.zero_grad()
            loss.backward()
            if a.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
        times.append(time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            tot, correct, n = 0.0, 0, 0
            for i in range(0, len(xte), 256):
                out = model(xte[i:i + 256])
                o, y = out.reshape(-1, out.shape[-1]), yte[i:i + 256].reshape(-1)
                tot += F.cross_entropy(o, y, reduction="sum").item()
                correct += (o.argmax(1) == y).sum().item()
                n += y.numel()
        print(f"torch epoch {epoch + 1}: {times[-1]:.1f}s test loss {tot / n:.4f} acc {100 * correct / n:.2f}%",
              file=sys.stderr)
    return {"framework": "pytorch " + torch.__version__, "model": a.model, "epochs": a.epochs,
            "batch_size": a.batch_size, "threads": a.threads,
            "openblas_threads": "default" if OPENBLAS_DEFAULT else 1, "seconds_per_epoch": sum(times) / len(times),
            "epoch_seconds": times, "test_loss": tot / n, "test_accuracy": 100 * correct / n}


def run_qforge(a):
    data = (f"text:{os.path.join(data_dir(), 'tinyshakespeare', 'input.txt')}" if a.model == "char-lstm"
            else f"mnist:{os.path.join(data_dir(), 'mnist')}")
    out = os.path.join("/tmp", f"qforge_compare_{a.model}_{os.getpid()}")
    cmd = [a.qforge, "train", "--model", a.model, "--data", data, "--epochs", str(a.epochs), "--batch-size",
           str(a.batch_size), "--lr", str(a.lr), "--optimizer", a.optimizer, "--seed", str(a.seed), "--threads",
           str(a.threads), "--out", out, "--json"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        return {"framework": "qforge", "error": f"exit code {r.returncode}", "command": " ".join(cmd)}
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res.update({"framework": "qforge", "command": " ".join(cmd)})
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist-cnn", choices=["mnist-cnn", "mlp", "lstm", "gru", "char-lstm"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--clip", type=float, default=None, help="gradient clipping norm (default: 5 for char-lstm)")
    p.add_argument("--qforge", default=None, help="path of the qforge binary to compare against")
    a = p.parse_args()
    if a.clip is None:
        a.clip = 5.0 if a.model == "char-lstm" else 0.0
    print(json.dumps(run_torch(a)))
    if a.qforge:
        print(json.dumps(run_qforge(a)))


if __name__ == "__main__":
    main()
