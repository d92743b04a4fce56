#!/usr/bin/python3
"""Golden values for qforge's optimizers, LR schedules and gradient clipping, from PyTorch.

Writes tests/fixtures/train/optim.json. Run with Debian's python3-torch:
    /usr/bin/python3 tools/gen_fixtures_optim.py
Each optimizer case: two parameter groups (a [3, 4] weight and a [4] bias, each in its own group with its
own lr / weight decay), 5 steps with fixed random gradients; the parameters after every step are stored.
"""
import json
import math
import os

import torch

torch.manual_seed(1234)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "train", "optim.json")
STEPS = 5


def t2j(t):
    t = t.detach().to(torch.float32)
    return {"shape": list(t.shape), "dtype": "f32", "data": [float(v) for v in t.reshape(-1).tolist()]}


def optimizer_case(name, cls, defaults, group_overrides):
    w0 = torch.randn(3, 4)
    b0 = torch.randn(4)
    grads = [(torch.randn(3, 4), torch.randn(4)) for _ in range(STEPS)]
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    groups = [dict(params=[w], **group_overrides[0]), dict(params=[b], **group_overrides[1])]
    opt = cls(groups, **defaults)
    after = []
    for gw, gb in grads:
        w.grad = gw.clone()
        b.grad = gb.clone()
        opt.step()
        after.append([t2j(w), t2j(b)])
    return {
        "name": name,
        "type": {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}[cls],
        "defaults": defaults,
        "groups": group_overrides,
        "init": [t2j(w0), t2j(b0)],
        "grads": [[t2j(gw), t2j(gb)] for gw, gb in grads],
        "after": after,
    }


def schedule_lrs(make, steps):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def main():
    cases = [
        optimizer_case("sgd plain", torch.optim.SGD, {"lr": 0.1}, [{}, {"lr": 0.05}]),
        optimizer_case("sgd momentum dampening wd", torch.optim.SGD,
                       {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
                       [{}, {"weight_decay": 0.0}]),
        optimizer_case("sgd nesterov", torch.optim.SGD,
                       {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, [{}, {"lr": 0.2}]),
        optimizer_case("adam", torch.optim.Adam, {"lr": 0.01}, [{}, {"lr": 0.03}]),
        optimizer_case("adam wd amsgrad", torch.optim.Adam,
                       {"lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True},
                       [{}, {"weight_decay": 0.0}]),
        optimizer_case("adamw", torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}, [{}, {"weight_decay": 0.0}]),
    ]
    for c in cases:  # JSON-friendly betas
        if "betas" in c["defaults"]:
            c["defaults"]["beta1"], c["defaults"]["beta2"] = c["defaults"].pop("betas")
    n = 20
    schedules = {
        # per-step equivalents with steps_per_epoch = 1
        "step:3:0.5": schedule_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5), n),
        "multistep:4,9:0.1": schedule_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [4, 9], 0.1), n),
        "cosine": schedule_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=n), n),
        "warmup:5:0.1": schedule_lrs(
            lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5), n),
    }
    torch.manual_seed(99)
    grads = [torch.randn(3, 4) * 3, torch.randn(5)]
    ps = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(ps, grads):
        p.grad = g.clone()
    norm = torch.nn.utils.clip_grad_norm_(ps, 1.5)
    clip = {"max_norm": 1.5, "grads": [t2j(g) for g in grads], "norm": float(norm),
            "clipped": [t2j(p.grad) for p in ps]}
    with open(OUT, "w") as f:
        json.dump({"torch_version": torch.__version__, "optimizers": cases, "schedules": schedules, "clip": clip}, f)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
