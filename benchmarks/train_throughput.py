"""Training throughput: gnc.train's loop vs a reference-style loop, same model and batch.

ours       the loop of gnc.train (gnc.train.ResidentBatches + train_step): the whole training set
           resident on the device as uint8, batches gathered by index, converted to float and augmented
           on the device (crop + flip + rotate, one grid_sample), the recipe's speed options
           (gnc.train.Accel: bf16 autocast + channels_last on CUDA), optional torch.compile
reference  what the reference code (PyTorch-Lightning + torchvision) does: a DataLoader with worker
           processes over PIL images and torchvision transforms (RandomCrop, RandomHorizontalFlip,
           RandomRotation, ToTensor, Normalize), fp32, default memory format

The measurements are gnc.gpucheck's (the ``gnc-gpu-check`` command's section [3]-[4]); this script
exposes their sizes. Both train the same model with SGD(momentum, nesterov) on synthetic uint8
images. Reports images/s of each (best of ``--rounds`` interleaved rounds), training FLOPs per image
(3 x the forward count of torch.utils.flop_counter) and the achieved FLOP rate; on a GPU in the
table gnc.gpucheck.GPU_PEAK_BF16 the model FLOP utilisation. The last line is the ratio.

    python benchmarks/train_throughput.py --quick            # CPU: smallcnn w16, 32x32, a few steps
    python benchmarks/train_throughput.py --arch resnet18 --width 64 --batch 500 --n 50000   # GPU
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from gnc import gpucheck  # noqa: E402
from gnc.train import Accel  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CPU-sized: smallcnn w16, 2048 images, batch 128")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--n", type=int, default=50_000, help="training images (synthetic, 3x32x32)")
    ap.add_argument("--K", type=int, default=100)
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    ap.add_argument("--accel", default=None, help="speed options of ours (default: the recipe's on this device)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.arch, args.width, args.n, args.batch = "smallcnn", 16, 2048, 128
        args.steps, args.warmup, args.rounds, args.workers = min(args.steps, 12), min(args.warmup, 2), 1, \
            min(args.workers, 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    setup = replace(gpucheck.FULL, arch=args.arch, width=args.width, n=args.n, K=args.K, d=args.d, batch=args.batch,
                    workers=args.workers)
    accel = Accel.parse(args.accel) if args.accel else Accel.for_run(gpucheck.recipe_spec(args.batch), dev)
    for line in gpucheck.environment(dev):
        print(line)
    print(f"model: {args.arch} width {args.width}, d={args.d}, K={args.K}; {args.n} images 3x32x32 uint8; batch "
          f"{args.batch}; {args.steps} timed steps after {args.warmup} warm-up, best of {args.rounds} round(s)")
    ours, ref = gpucheck.measure_throughput(setup, dev, accel, args.steps, args.warmup, args.rounds)
    print(f"ours      ({accel.label()}, resident data, on-device aug): {ours:10.1f} img/s")
    print(f"reference (fp32, DataLoader {args.workers} workers, PIL transforms): {ref:10.1f} img/s")
    f_img = 3 * gpucheck.forward_flops_per_image(args.arch, (3, 32, 32), args.d, args.K, width=args.width)
    print(f"training FLOPs per image: {f_img / 1e6:.2f} MFLOP; achieved: ours {ours * f_img / 1e9:.2f} GFLOP/s, "
          f"reference {ref * f_img / 1e9:.2f} GFLOP/s")
    peak, note = gpucheck.peak_table(dev)
    if peak:
        print(f"model FLOP utilisation ({note}): ours {ours * f_img / peak:.1%}, reference {ref * f_img / peak:.1%}")
    print(f"ratio ours/reference images/s: {ours / ref:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
