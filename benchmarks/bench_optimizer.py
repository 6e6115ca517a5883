"""The optimizer of gnc.train: torch.optim.SGD with foreach=True vs torch's CPU default (per-tensor loop).

Measured in one process, interleaved (the machine may be loaded): the optimizer step alone and a whole
training step (SmallCNN width 16, batch 128, 3x32x32, SGD momentum 0.9 + Nesterov + weight decay), and
whether both give bit-identical weights. Then, in fresh interpreters (alternating), the one-time cost of
building torch.optim.SGD and taking its first step (torch.optim imports torch._dynamo) against an update
by hand.

    python benchmarks/bench_optimizer.py [--reps 200] [--procs 3]

The last lines are the ratios.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

WORKFLOW = Path(__file__).resolve().parents[1] / "workflow"
sys.path.insert(0, str(WORKFLOW))

from gnc.models import build_model  # noqa: E402
from gnc.train import make_optimizer, normalize_spec, train_step  # noqa: E402

FIRST_STEP = """
import time, torch
p = [torch.nn.Parameter(torch.zeros(1000))]
p[0].grad = torch.ones(1000)
t = time.perf_counter()
{step}
print(time.perf_counter() - t)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--procs", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    spec = normalize_spec({})
    torch.manual_seed(0)
    models = [build_model("smallcnn", (3, 32, 32), 10, 100, width=16) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [make_optimizer(models[0].parameters(), spec),
            torch.optim.SGD(models[1].parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)]
    x, y = torch.rand(128, 3, 32, 32), torch.randint(0, 100, (128,))
    for m, o in zip(models, opts):
        train_step(m, o, x, y, spec)
    opt_t, step_t = [0.0, 0.0], [0.0, 0.0]
    for i in range(args.reps):
        for j in ((0, 1) if i % 2 else (1, 0)):
            t = time.perf_counter()
            opts[j].step()
            opt_t[j] += time.perf_counter() - t
    for i in range(max(4, args.reps // 10)):
        for j in ((0, 1) if i % 2 else (1, 0)):
            t = time.perf_counter()
            train_step(models[j], opts[j], x, y, spec)
            step_t[j] += time.perf_counter() - t
    same = all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))
    first = {"torch.optim.SGD built + first step": "torch.optim.SGD(p, lr=0.1, momentum=0.9, foreach=True).step()",
             "an update by hand": "p[0].data.add_(p[0].grad, alpha=-0.1)"}
    firsts = {k: [] for k in first}
    for _ in range(args.procs):
        for k, code in first.items():
            out = subprocess.run([sys.executable, "-c", FIRST_STEP.format(step=code)], capture_output=True, text=True,
                                 check=True)
            firsts[k].append(float(out.stdout.split()[-1]))
    print(f"optimizer step: foreach {opt_t[0] / args.reps * 1e3:.3f} ms, per-tensor loop "
          f"{opt_t[1] / args.reps * 1e3:.3f} ms")
    n = max(4, args.reps // 10)
    print(f"training step: foreach {step_t[0] / n * 1e3:.1f} ms, per-tensor loop {step_t[1] / n * 1e3:.1f} ms; "
          f"weights bit-identical: {same}")
    for k, v in firsts.items():
        print(f"{k} in a fresh interpreter: {min(v):.3f} s (min of {len(v)})")
    print(f"ratio optimizer step per-tensor / foreach: {opt_t[1] / opt_t[0]:.2f}")
    print(f"ratio training step per-tensor / foreach: {step_t[1] / step_t[0]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
