"""Training throughput: gnc.train's step vs a reference-style loop, same model and batch.

ours       the step of gnc.train: the whole training set resident on the device as uint8, batches
           gathered by index, converted to float and augmented on the device (crop + flip + rotate,
           one grid_sample), bf16 autocast + channels_last on CUDA, optional torch.compile
reference  what the reference code (PyTorch-Lightning + torchvision) does: a DataLoader with worker
           processes over PIL images and torchvision transforms (RandomCrop, RandomHorizontalFlip,
           RandomRotation, ToTensor, Normalize), fp32, default memory format

Both train the same model (gnc.models.build_model) with SGD(momentum, nesterov) and the same loss
on synthetic uint8 images (or a prepared dataset with --data). Reports images/s of each, FLOPs per
step (torch.utils.flop_counter, forward + backward) and the achieved FLOP rate; on CUDA the model
FLOP utilization against the GPU's dense bf16 peak. The last lines are the ratios.

    python benchmarks/train_throughput.py --quick            # CPU: smallcnn, 32x32, a few steps
    python benchmarks/train_throughput.py --arch resnet18 --width 64 --batch 500 --n 50000   # GPU

The CUDA path (bf16, channels_last, pinned-memory loader, MFU) is written but was not run in the
session that wrote it (no GPU there).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from gnc._torchvision_compat import import_torchvision  # noqa: E402
from gnc.models import build_model  # noqa: E402
from gnc.train import SGD, augment_params, channel_stats, make_batch, normalize_spec, train_step  # noqa: E402

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by substring of the device name
GPU_PEAK_BF16 = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
                 "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0, "V100": 125.0}


def synthetic(n, shape, K, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = rng.integers(0, K, size=n).astype(np.int64)
    return x, y


class PILDataset(torch.utils.data.Dataset):
    """uint8 N x C x H x W array served as PIL images through torchvision transforms (reference style)."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        a = self.x[i]
        img = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
        return self.transform(img), int(self.y[i])


def flops_per_step(model, x, y, spec):
    """FLOPs of one forward + backward (torch.utils.flop_counter counts matmuls/convs)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as fc:
        logits = model(x, y)
        torch.nn.functional.cross_entropy(logits, y).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_ours(args, x_np, y_np, dev, spec, mean, std):
    torch.manual_seed(0)
    model = build_model(args.arch, x_np.shape[1:], args.d, args.K, "normalized", tau=0.1, **_opts(args)).to(dev)
    model.set_input_stats(mean, std)
    cuda = dev.type == "cuda"
    cl = cuda and not args.no_channels_last
    if cl:
        model.to(memory_format=torch.channels_last)
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    net = torch.compile(model) if args.compile else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and not args.no_bf16)
    train_x, train_y = torch.from_numpy(x_np).to(dev), torch.from_numpy(y_np).to(dev)
    n, b = len(y_np), args.batch
    g_perm = torch.Generator().manual_seed(0)
    g_aug = torch.Generator(device=dev).manual_seed(1)
    pad = x_np.shape[2] // 8
    perm = torch.randperm(n, generator=g_perm).to(dev)
    steps_per_epoch = n // b

    def step(i):
        nonlocal perm
        j = i % steps_per_epoch
        if j == 0 and i > 0:
            perm = torch.randperm(n, generator=g_perm).to(dev)
        idx = perm[j * b:(j + 1) * b]
        params = augment_params(b, parts={"crop", "flip", "rotate"}, pad=pad, degrees=15.0, generator=g_aug,
                                device=dev)
        xb, yb = make_batch(train_x, train_y, idx, params, cl)
        return train_step(net, opt, xb, yb, spec, autocast=autocast)

    for i in range(args.warmup):
        step(i)
    sync(dev)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    sync(dev)
    sec = time.perf_counter() - t0
    xb, yb = make_batch(train_x, train_y, perm[:b], {}, cl)
    with autocast:
        flops = flops_per_step(model, xb, yb, spec)
    return args.steps * b / sec, flops


def bench_reference(args, x_np, y_np, dev, spec, mean, std):
    tv = import_torchvision()
    T = tv.transforms
    h = x_np.shape[2]
    transform = T.Compose([T.RandomCrop(h, padding=h // 8), T.RandomHorizontalFlip(), T.RandomRotation(15),
                           T.ToTensor(), T.Normalize(mean, std)])
    ds = PILDataset(x_np, y_np, transform)
    cuda = dev.type == "cuda"
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers, pin_memory=cuda,
                                         persistent_workers=args.workers > 0)
    torch.manual_seed(0)
    model = build_model(args.arch, x_np.shape[1:], args.d, args.K, "normalized", tau=0.1, **_opts(args)).to(dev)
    # Normalize happens in the transforms: identity standardization inside the model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    total = args.warmup + args.steps
    done, t0 = 0, None
    while done < total:
        for xb, yb in loader:
            if done == args.warmup:
                sync(dev)
                t0 = time.perf_counter()
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            train_step(model, opt, xb, yb, spec)
            done += 1
            if done >= total:
                break
    sync(dev)
    return args.steps * args.batch / (time.perf_counter() - t0)


def _opts(args):
    return {} if args.width is None else {"width": args.width}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CPU-sized: smallcnn w16, 3x32x32, 2048 images, batch 128")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--shape", default="3,32,32")
    ap.add_argument("--n", type=int, default=50_000, help="training images (synthetic)")
    ap.add_argument("--data", default=None, help="prepared dataset folder instead of synthetic images")
    ap.add_argument("--K", type=int, default=100)
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.arch, args.width, args.n, args.batch = "smallcnn", args.width or 16, 2048, 128
        args.steps, args.warmup = min(args.steps, 12), min(args.warmup, 2)
        args.workers = min(args.workers, 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    if args.data:
        from gnc.data import load_prepared

        p = load_prepared(args.data)
        x_np, y_np = p.train_x, p.train_y
        args.K = int(p.train_y.max()) + 1
    else:
        shape = tuple(int(s) for s in args.shape.split(","))
        x_np, y_np = synthetic(args.n, shape, args.K)
    mean, std = channel_stats(x_np)
    spec = normalize_spec({"loss": "ce", "head": "normalized", "tau": 0.1})
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"device: {name}; torch {torch.__version__}")
    print(f"model: {args.arch} width {args.width or 'default'}, d={args.d}, K={args.K}; data {x_np.shape} uint8; "
          f"batch {args.batch}; {args.steps} timed steps after {args.warmup} warm-up")

    ours, flops = bench_ours(args, x_np, y_np, dev, spec, mean, std)
    cuda = dev.type == "cuda"
    label = ("bf16" if cuda and not args.no_bf16 else "fp32") + (
        " + channels_last" if cuda and not args.no_channels_last else "") + (" + compile" if args.compile else "")
    print(f"ours      ({label}, resident data, on-device aug): {ours:10.1f} img/s")
    ref = bench_reference(args, x_np, y_np, dev, spec, mean, std)
    print(f"reference (fp32, DataLoader {args.workers} workers, PIL transforms): {ref:10.1f} img/s")
    per_img = flops / args.batch
    print(f"FLOPs per step (fwd+bwd, batch {args.batch}): {flops / 1e9:.3f} GFLOP ({per_img / 1e6:.2f} MFLOP/image)")
    achieved_ours, achieved_ref = ours * per_img, ref * per_img
    print(f"achieved: ours {achieved_ours / 1e9:.2f} GFLOP/s, reference {achieved_ref / 1e9:.2f} GFLOP/s")
    if cuda:
        peak = next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)
        if peak:
            print(f"model FLOP utilization (vs {peak:.0f} TFLOP/s dense bf16): ours {achieved_ours / 1e12 / peak:.1%}, "
                  f"reference {achieved_ref / 1e12 / peak:.1%}")
    print(f"ratio ours/reference images/s: {ours / ref:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
