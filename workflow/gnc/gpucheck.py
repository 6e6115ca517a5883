"""``gnc-gpu-check``: the command to run on a new GPU machine before the paper study.

It prints one text block (paste it into a bug report) with six sections:

1. **environment** — torch, CUDA, device, NCCL, a C compiler for ``torch.compile``.
2. **paths vs fp32** — ``steps`` training steps of ResNet18 (``--quick``: a narrow SmallCNN) on random
   CIFAR-shaped data (class prototypes + noise, so the loss falls) with the paper's augmentation, in plain
   fp32 (TF32 off) and once per speed option of :class:`gnc.train.Accel` (bf16, channels_last, compile,
   the recipe's set on this device), from the same weights on the same batches. A path passes when its
   first loss is within ``FIRST_STEP_RTOL`` of fp32 (the arithmetic) and the mean loss of the last 10 %
   of the steps within ``FINAL_RTOL`` (the training).
3. **throughput** — images/s of our loop (resident uint8 data, on-device augmentation, the recipe's speed
   options) against a reference loop (DataLoader workers over PIL images, torchvision transforms, fp32),
   interleaved in the same run; the README promises >= 3x on a GPU.
4. **FLOPs** — training FLOPs per image = 3 x the forward FLOPs of ``FlopCounterMode`` (torch's own
   backward count over-counts grouped convolutions), the achieved FLOP/s, and the model-FLOP utilisation
   against the device's dense bf16 peak (:data:`GPU_PEAK_BF16`) and against a measured matmul.
5. **GNC2** — :func:`gnc.metrics.ovr.ovr_distances` at K = 100,000, d = 512 on the device (random rows):
   time, value, worst certified gap.
6. **paper study** — FLOPs of every run of ``config/paper.yaml`` (training + the feature passes at each
   checkpoint) and the device-hours at the FLOP rate measured in 3-4.

``--quick`` runs everything at toy sizes (the CPU test-suite runs it). Exit status 1 when a path check
or GNC2 fails, or, on CUDA, when the throughput ratio misses 3x.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import platform
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml

from .config import load_study
from .metrics.ovr import ovr_distances
from .models import build_model
from .provenance import code_version
from .train import Accel, ResidentBatches, channel_stats, make_optimizer, normalize_spec, train_step

#: relative tolerance of the first step's loss (same weights, same batch): bf16 rounds activations
#: to 8 bits of mantissa; the fp32 options (channels_last, compile; TF32 on CUDA) only reorder sums
FIRST_STEP_RTOL = {True: 2e-2, False: 2e-3}  # keyed by "uses bf16"
#: relative tolerance of the mean loss over the last 10 % of the steps
FINAL_RTOL = 0.05
#: the throughput ratio the README promises on a GPU
TARGET_RATIO = 3.0

#: dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, by a substring
#: of torch.cuda.get_device_name (first match wins, so the specific names come first)
GPU_PEAK_BF16 = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
                 "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0, "A40": 150.0,
                 "A10": 125.0, "RTX 4090": 165.0, "RTX 6000 Ada": 365.0}

#: training images per class, test images per class and image shape of the paper's datasets
PAPER_DATASETS = {"cifar10": (5000, 1000, (3, 32, 32)), "cifar100": (500, 100, (3, 32, 32)),
                  "tiny_imagenet": (500, 50, (3, 64, 64))}

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Setup:
    """One check's sizes."""

    arch: str
    width: int
    n: int
    K: int
    d: int
    batch: int
    steps: int
    gnc2_K: int
    gnc2_d: int
    workers: int


FULL = Setup("resnet18", 64, 50_000, 100, 10, 500, 300, 100_000, 512, 8)
QUICK = Setup("smallcnn", 8, 512, 10, 10, 64, 24, 2_000, 32, 0)


# ------------------------------------------------------------------------------------------ data

def random_cifar(n: int, K: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 3x32x32 images: a random prototype per class + Gaussian noise (learnable, unlike pure noise)."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0, 255, size=(K, 3, 32, 32))
    y = rng.integers(0, K, size=n)
    x = np.clip(protos[y] + rng.normal(0, 60, size=(n, 3, 32, 32)), 0, 255).astype(np.uint8)
    return x, y.astype(np.int64)


def recipe_spec(batch: int) -> dict:
    """The paper recipe's optimisation (config/paper.yaml ``train:``) at batch size ``batch``."""
    return normalize_spec({"batch_size": batch, "lr": 0.1, "augmentation": "crop-flip-rotate", "tau": 0.1,
                           "seed": 0, "bf16": True, "channels_last": True})


def _model(setup: Setup, shape, dev):
    torch.manual_seed(0)
    return build_model(setup.arch, shape, setup.d, setup.K, "normalized", tau=0.1, width=setup.width).to(dev)


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 matmuls/convolutions on CUDA on or off inside the block (no effect on a CPU)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _first(n: int, batches_of_epoch):
    """The first ``n`` batches of epochs 0, 1, 2, ... (``batches_of_epoch(e)`` iterates epoch e)."""
    return itertools.islice(itertools.chain.from_iterable(map(batches_of_epoch, itertools.count())), n)


def _per_second(step, items, warmup: int, dev) -> float:
    """Calls per second of ``step(item)`` over ``items``, the first ``warmup`` calls untimed."""
    for i, item in enumerate(items):
        if i == warmup:
            _sync(dev)
            t0 = time.perf_counter()
        step(item)
    _sync(dev)
    return (i + 1 - warmup) / (time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------ 2. paths

def _our_loop(setup: Setup, x_np, y_np, spec: dict, dev, accel: Accel):
    """Our training loop with the speed options ``accel``: its step (a batch -> the loss) and its resident
    batches (model with input statistics, memory format and compiled form of ``accel``; fresh optimizer)."""
    model = _model(setup, x_np.shape[1:], dev)
    model.set_input_stats(*channel_stats(x_np))
    accel.memory_format(model)
    net, opt, autocast = accel.compiled(model), make_optimizer(model.parameters(), spec), accel.autocast(dev)
    batches = ResidentBatches.for_spec(torch.from_numpy(x_np).to(dev), torch.from_numpy(y_np).to(dev), spec,
                                       channels_last=accel.channels_last)
    return (lambda batch: train_step(net, opt, *batch, spec, autocast=autocast)[0]), batches


def loss_curve(setup: Setup, x_np, y_np, spec: dict, dev, accel: Accel) -> list[float]:
    """Per-step training losses of ``setup.steps`` steps of our loop with the speed options ``accel``."""
    step, batches = _our_loop(setup, x_np, y_np, spec, dev, accel)
    with tf32(accel != Accel() and dev.type == "cuda"):
        losses = [step(batch) for batch in _first(setup.steps, batches.epoch)]
    return [float(v) for v in torch.stack(losses).cpu()]


def compare_curves(ref: list[float], got: list[float], bf16: bool) -> dict:
    """First-step and final-window relative differences and whether they are within tolerance."""
    window = max(1, len(ref) // 10)
    first = abs(got[0] - ref[0]) / abs(ref[0])
    a, b = float(np.mean(ref[-window:])), float(np.mean(got[-window:]))
    final = abs(b - a) / abs(a)
    ok = bool(np.isfinite(got).all()) and first <= FIRST_STEP_RTOL[bf16] and final <= FINAL_RTOL
    return {"first_rdiff": first, "final_rdiff": final, "final_loss": b, "ok": ok}


def check_paths(setup: Setup, dev, compile_: bool, out) -> bool:
    x, y = random_cifar(max(setup.n // 10, setup.batch * 4), setup.K)
    spec = recipe_spec(setup.batch)
    ref = loss_curve(setup, x, y, spec, dev, Accel())
    window = max(1, len(ref) // 10)
    out(f"  fp32 reference (TF32 off): loss {ref[0]:.4f} at step 1, {np.mean(ref[-window:]):.4f} over the last "
        f"{window} of {len(ref)} steps")
    all_ok = ref[-1] < ref[0]
    if not all_ok:
        out("  FAIL: the fp32 loss did not fall")
    recipe = Accel.for_run(spec, dev)
    variants = {"bf16": Accel(bf16=True), "channels_last": Accel(channels_last=True),
                **({"compile": Accel(compile=True)} if compile_ else {}),
                f"recipe on {dev.type} ({recipe.label()})": recipe}
    for name, accel in variants.items():
        if accel == Accel():
            out(f"  {name}: the fp32 path above")
            continue
        r = compare_curves(ref, loss_curve(setup, x, y, spec, dev, accel), accel.bf16)
        all_ok &= r["ok"]
        out(f"  {name}: step-1 loss rel. diff {r['first_rdiff']:.1e} (tol {FIRST_STEP_RTOL[accel.bf16]:g}), "
            f"final {r['final_loss']:.4f} rel. diff {r['final_rdiff']:.1e} (tol {FINAL_RTOL:g})  "
            f"{'ok' if r['ok'] else 'FAIL'}")
    return all_ok


# ------------------------------------------------------------------------------------------ 3. throughput

class _PILDataset(torch.utils.data.Dataset):
    """uint8 N x 3 x H x W images served as PIL images through torchvision transforms (reference style)."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i].transpose(1, 2, 0))), int(self.y[i])


def images_per_s_reference(setup: Setup, x_np, y_np, spec: dict, dev, steps: int, warmup: int) -> float:
    """The reference code's loop: DataLoader over PIL images with torchvision transforms, fp32."""
    from ._torchvision_compat import import_torchvision

    T = import_torchvision().transforms
    h = x_np.shape[2]
    mean, std = channel_stats(x_np)
    transform = T.Compose([T.RandomCrop(h, padding=h // 8), T.RandomHorizontalFlip(), T.RandomRotation(15),
                           T.ToTensor(), T.Normalize(mean, std)])
    loader = torch.utils.data.DataLoader(_PILDataset(x_np, y_np, transform), batch_size=int(spec["batch_size"]),
                                         shuffle=True, drop_last=True, num_workers=setup.workers,
                                         pin_memory=dev.type == "cuda", persistent_workers=setup.workers > 0)
    model = _model(setup, x_np.shape[1:], dev)  # Normalize is in the transforms: identity statistics inside
    opt = make_optimizer(model.parameters(), spec)

    def step(batch):
        train_step(model, opt, *(t.to(dev, non_blocking=True) for t in batch), spec)

    batches = _first(warmup + steps, lambda epoch: loader)
    return int(spec["batch_size"]) * _per_second(step, batches, warmup, dev)


def measure_throughput(setup: Setup, dev, accel: Accel, steps: int, warmup: int, rounds: int) -> tuple[float, float]:
    """Best images/s of ours (resident data, on-device augmentation, ``accel``) and of the reference over
    ``rounds`` interleaved rounds (same data)."""
    x, y = random_cifar(setup.n, setup.K, seed=1)
    spec = recipe_spec(setup.batch)
    ours, ref = [], []
    for _ in range(rounds):
        step, batches = _our_loop(setup, x, y, spec, dev, accel)
        per_s = _per_second(step, _first(warmup + steps, batches.epoch), warmup, dev)
        ours.append(batches.global_batch * per_s)
        ref.append(images_per_s_reference(setup, x, y, spec, dev, steps, warmup))
    return max(ours), max(ref)


# ------------------------------------------------------------------------------------------ 4. FLOPs

@functools.lru_cache(maxsize=None)
def forward_flops_per_image(arch: str, in_shape: tuple, d: int, K: int, head: str = "normalized",
                            **arch_opts) -> float:
    """Forward FLOPs of one image in training mode, counted by FlopCounterMode on the meta device
    (shapes only: nothing is computed, so any size is instant; cached by arguments)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(arch, tuple(in_shape), d, K, head, tau=0.1, **arch_opts)
        x, y = torch.empty(2, *in_shape), torch.zeros(2, dtype=torch.long)
    model.train()
    with FlopCounterMode(display=False) as fc:
        model(x, y)
    return fc.get_total_flops() / 2


def peak_table(dev) -> tuple[float | None, str]:
    """Dense bf16 peak FLOP/s of ``dev`` from :data:`GPU_PEAK_BF16`, or None."""
    if dev.type != "cuda":
        return None, "no table entry for CPUs"
    name = torch.cuda.get_device_name(dev)
    for key, tflops in GPU_PEAK_BF16.items():
        if key in name:
            return tflops * 1e12, f"{key}, {tflops:g} TFLOP/s dense bf16 (data sheet)"
    return None, f"{name!r} is not in the table"


def measured_matmul(dev, quick: bool) -> tuple[float, str]:
    """FLOP/s of a large square matmul: bf16 on CUDA, float32 on a CPU (its bf16 matmul is slow)."""
    cuda = dev.type == "cuda"
    n = 8192 if cuda else (512 if quick else 2048)
    dt = torch.bfloat16 if cuda else torch.float32
    a, b = torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)
    per_s = _per_second(lambda _: a @ b, range(2 + (20 if cuda else 3)), 2, dev)
    return 2 * n**3 * per_s, f"{n}x{n} {str(dt).split('.')[-1]} matmul"


# ------------------------------------------------------------------------------------------ 5. GNC2

def check_gnc2(K: int, d: int, dev) -> dict:
    W = np.random.default_rng(0).standard_normal((K, d))
    t0 = time.perf_counter()
    res = ovr_distances(W, device=dev, return_support=False, warn=False)
    _sync(dev)
    return {"K": K, "d": d, "seconds": time.perf_counter() - t0, "value": res.value,
            "max_gap": float(res.gap.max()), "value_gap": res.value_gap,
            "bounds_ok": bool(np.all(res.lower <= res.dist + 1e-12) and np.all(res.dist <= res.upper + 1e-12))}


# ------------------------------------------------------------------------------------------ 6. study cost

def study_cost(config_path) -> tuple[list[dict], dict[str, str]]:
    """Per run of a study config: images, forward FLOPs per image, training and evaluation FLOPs.

    training = epochs x (n_train // batch) x batch x 3 F_fwd;  evaluation = checkpoints x
    (n_train + n_test) x F_fwd (one feature pass over both splits per checkpoint). Runs on datasets
    whose size is not known here are returned with ``flops`` None.
    """
    skipped: dict[str, str] = {}
    cfg, runs = load_study(yaml.safe_load(Path(config_path).read_text()), skipped)
    rows = []
    for run in runs.values():
        r = run.spec()
        ds = cfg["datasets"][run.dataset]
        known = PAPER_DATASETS.get(ds.get("source", run.dataset))
        row = {"run_id": run.run_id, "dataset": run.dataset, "arch": run.arch, "K": run.K, "d": run.d,
               "epochs": r["epochs"], "flops": None}
        if known is not None:
            per_train, per_test, shape = known
            if "size" in ds:
                shape = (shape[0], int(ds["size"]), int(ds["size"]))
            opts = {"width": r["width"]} if "width" in r else {}
            f = forward_flops_per_image(run.arch, shape, run.d, run.K, r["head"], **opts)
            n_train, n_test = per_train * run.K, per_test * run.K
            seen = (n_train // int(r["batch_size"])) * int(r["batch_size"])
            row.update(n_train=n_train, forward_flops=f, train_flops=r["epochs"] * seen * 3 * f,
                       eval_flops=len(r["checkpoints"]) * (n_train + n_test) * f)
            row["flops"] = row["train_flops"] + row["eval_flops"]
        rows.append(row)
    return rows, skipped


# ------------------------------------------------------------------------------------------ report

def environment(dev) -> list[str]:
    lines = [f"  gnc-study {code_version()}; torch {torch.__version__}; CUDA {torch.version.cuda or 'none'}; "
             f"python {platform.python_version()}; {platform.platform()}"]
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        lines.append(f"  device {dev}: {p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability "
                     f"{p.major}.{p.minor}, {torch.cuda.device_count()} visible; cuDNN "
                     f"{torch.backends.cudnn.version()}; bf16 supported: {torch.cuda.is_bf16_supported()}")
    else:
        lines.append(f"  device cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
                     f"torch thread(s) — no GPU: every number below is a CPU measurement")
    lines.append(f"  distributed: gloo {dist.is_gloo_available()}, NCCL {dist.is_nccl_available()}; C compiler for "
                 f"torch.compile: {shutil.which('gcc') or shutil.which('cc') or 'none'}")
    return lines


def run_check(quick: bool, dev, *, steps: int | None = None, compile_: bool | None = None,
              gnc2: tuple[int, int] | None = None, config=None, out=print) -> int:
    """Run all sections, printing through ``out``; return the exit status (0 = all checks passed)."""
    setup = QUICK if quick else FULL
    if steps:
        setup = replace(setup, steps=steps)
    cuda = dev.type == "cuda"
    ok = True
    out("=== gnc-gpu-check" + (" --quick" if quick else "") + " ===")
    out("[1] environment")
    for line in environment(dev):
        out(line)
    if not cuda and not quick:
        out("  note: the full check is sized for a GPU; on a CPU it takes hours (--quick takes a minute)")

    out(f"[2] paths vs fp32: {setup.steps} steps of {setup.arch} width {setup.width}, batch {setup.batch}, "
        f"random 3x32x32 data (K={setup.K}), crop-flip-rotate")
    ok &= check_paths(setup, dev, compile_ if compile_ is not None else not quick, out)

    accel = Accel.for_run(recipe_spec(setup.batch), dev)
    steps, warmup, rounds = (6, 2, 1) if quick else (50, 10, 2)
    out(f"[3] throughput: {setup.arch} width {setup.width}, batch {setup.batch}, {steps} timed steps after "
        f"{warmup} warm-up, best of {rounds} interleaved round(s)")
    ours, ref = measure_throughput(setup, dev, accel, steps, warmup, rounds)
    ratio = ours / ref
    out(f"  ours ({accel.label()}, resident data, on-device augmentation): {ours:,.0f} img/s")
    out(f"  reference (fp32, DataLoader {setup.workers} workers, PIL transforms): {ref:,.0f} img/s")
    if cuda:
        met = ratio >= TARGET_RATIO
        ok &= met
        out(f"  ratio {ratio:.2f}x (target >= {TARGET_RATIO:g}x on a GPU): {'ok' if met else 'BELOW TARGET'}")
    else:
        out(f"  ratio {ratio:.2f}x (on a CPU; the >= {TARGET_RATIO:g}x target is for GPUs)")

    f_img = 3 * forward_flops_per_image(setup.arch, (3, 32, 32), setup.d, setup.K, width=setup.width)
    achieved = ours * f_img
    peak, peak_note = peak_table(dev)
    mm, mm_note = measured_matmul(dev, quick)
    out(f"[4] FLOPs: {f_img / 1e9:.4g} GFLOP per training image (3 x forward, FlopCounterMode); ours achieves "
        f"{achieved / 1e12:.4g} TFLOP/s")
    out(f"  MFU vs peak: {achieved / peak:.1%} ({peak_note})" if peak else f"  MFU vs peak: n/a ({peak_note})")
    out(f"  MFU vs measured {mm_note} ({mm / 1e12:.4g} TFLOP/s): {achieved / mm:.1%}")

    gK, gd = gnc2 or (setup.gnc2_K, setup.gnc2_d)
    if not cuda and not quick and gnc2 is None:
        out(f"[5] GNC2 K={gK:,} d={gd}: skipped on a CPU (tens of minutes); --gnc2 {gK} {gd} runs it")
    else:
        g = check_gnc2(gK, gd, dev)
        certified = g["bounds_ok"] and g["value_gap"] <= 1e-9
        ok &= certified
        out(f"[5] GNC2 K={gK:,} d={gd} (random unit rows) on {dev}: {g['seconds']:.1f} s, value {g['value']:.10f}, "
            f"certified gap on the value {g['value_gap']:.1e}, worst class gap {g['max_gap']:.1e}  "
            f"{'ok' if certified else 'FAIL'}")

    _report_study(config or ROOT / "config" / "paper.yaml", achieved, setup, out)
    out("=== " + ("all checks passed" if ok else "SOME CHECKS FAILED") + " ===")
    return 0 if ok else 1


def _report_study(config, achieved: float, setup: Setup, out) -> None:
    if not Path(config).is_file():
        out(f"[6] study cost: {config} not found (run from a clone of the repository, or pass --config)")
        return
    rows, skipped = study_cost(config)
    known = [r for r in rows if r["flops"] is not None]
    total = sum(r["flops"] for r in known)
    out(f"[6] {Path(config).name}: {len(rows)} runs; FLOPs = sum over runs of epochs x images x 3 F_fwd "
        f"+ checkpoints x (train + test images) x F_fwd = {total / 1e15:,.0f} PFLOP")
    groups: dict[tuple, list] = {}
    for r in known:
        groups.setdefault((r["dataset"], r["arch"]), []).append(r)
    for (ds, arch), rs in sorted(groups.items()):
        pf = sum(r["flops"] for r in rs)
        out(f"  {ds:14s} {arch:12s} {len(rs):2d} run(s) {pf / 1e15:8,.0f} PFLOP  {pf / achieved / 3600:10,.1f} h")
    for r in rows:
        if r["flops"] is None:
            out(f"  {r['run_id']}: dataset size unknown here, not counted")
    for name, why in skipped.items():
        out(f"  skipped: {name}: {why}")
    out(f"  at the {achieved / 1e12:.4g} TFLOP/s measured in [3]-[4] ({setup.arch} width {setup.width} on this "
        f"device; other archs assumed to reach the same FLOP rate): {total / achieved / 3600:,.1f} device-hours")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gnc-gpu-check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small model and sizes (the CPU test-suite runs this)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--steps", type=int, default=None, help="steps of the path checks (default 300; quick 24)")
    ap.add_argument("--compile", dest="compile_", action=argparse.BooleanOptionalAction, default=None,
                    help="include torch.compile in the path checks (default: yes, except with --quick)")
    ap.add_argument("--gnc2", nargs=2, type=int, metavar=("K", "D"), default=None,
                    help="GNC2 case (default 100000 512; quick 2000 32)")
    ap.add_argument("--config", default=None, help="study config to estimate (default config/paper.yaml)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return run_check(args.quick, dev, steps=args.steps, compile_=args.compile_,
                     gnc2=tuple(args.gnc2) if args.gnc2 else None, config=args.config,
                     out=lambda s: print(s, flush=True))


if __name__ == "__main__":
    sys.exit(main())
