"""Memory / time benchmark of the streaming NC accumulators (gnc.metrics.NCStream).

Main run: N = 1,000,000 features of d = 512 with K = 10,000 classes, generated batch by batch
(seeded; never all in memory), both passes (class means, then the pooled within-class scatter),
L2-normalized features (the GNC convention), no per-sample predictions (those cost O(N·K·d) —
timed separately on a sub-sample). Each measurement runs in its own subprocess and reports the
peak RSS above the RSS reached after imports and generator warm-up ("beyond the inputs": one input
batch is also counted, it is small).

Baseline: the dense computation (all features in one float64 array, numpy means + scatter) on a
smaller size (default N = 200,000), compared with the streaming run on the same data: values,
peak memory and time ratios.

Usage: python benchmarks/bench_streaming.py [--quick] [--threads 2] [--device cpu|cuda]
       --quick: N = 200,000 for the main run and N = 50,000 for the dense comparison.
The last lines printed are the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def batches(N, d, K, batch, seed=0):
    """Deterministic synthetic features: class centres + noise, generated batch by batch (float32).

    Labels cycle through all K classes (balanced, every class present once N ≥ K)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(K, d, generator=g)
    for b0 in range(0, N, batch):
        n = min(batch, N - b0)
        gb = torch.Generator().manual_seed(seed * 1_000_003 + b0)
        y = (torch.arange(b0, b0 + n) * 7919) % K  # balanced: every class once per K samples
        h = centres[y] + 0.5 * torch.randn(n, d, generator=gb)
        yield h, y


def run_stream(N, d, K, batch, device, predictions):
    from gnc.metrics import NCStream

    for _ in batches(min(N, batch), d, K, batch):  # warm-up: allocator, generator
        pass
    base = rss_bytes()
    t0 = time.perf_counter()
    W = torch.randn(K, d, generator=torch.Generator().manual_seed(1)) if predictions else None
    acc = NCStream(K, d, normalize=True, W=W, device=device, predictions=predictions)
    for h, y in batches(N, d, K, batch):
        acc.update(h, y)
    acc.end_first_pass()
    for h, y in batches(N, d, K, batch):
        acc.update_second(h, y)
    st = acc.result()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    out = dict(seconds=secs, peak_beyond=peak_rss_bytes() - base, acc_bytes=acc.memory_bytes(),
               trace_SW=float(np.trace(st.Sigma_W)), mean0=st.means[0, :4].tolist(), N=st.N,
               ncc_train_acc=st.ncc_accuracy.get("train"))
    if device.startswith("cuda"):
        out["cuda_peak"] = torch.cuda.max_memory_allocated()
    return out


def run_dense(N, d, K, batch):
    parts = list(batches(min(N, batch), d, K, batch))  # warm-up like the streaming run
    del parts
    base = rss_bytes()
    t0 = time.perf_counter()
    H = np.empty((N, d), dtype=np.float64)
    Y = np.empty(N, dtype=np.int64)
    i = 0
    for h, y in batches(N, d, K, batch):  # the dense baseline holds all features at once
        H[i:i + len(y)] = h.numpy()
        Y[i:i + len(y)] = y.numpy()
        i += len(y)
    H /= np.linalg.norm(H, axis=1, keepdims=True)
    counts = np.bincount(Y, minlength=K)
    sums = np.zeros((K, d))
    np.add.at(sums, Y, H)
    means = sums / counts[:, None]
    D = H - means[Y]
    SW = D.T @ D / N
    secs = time.perf_counter() - t0
    return dict(seconds=secs, peak_beyond=peak_rss_bytes() - base, trace_SW=float(np.trace(SW)),
                mean0=means[0, :4].tolist(), N=N)


def child(args):
    torch.set_num_threads(args.threads)
    if args.mode == "stream":
        out = run_stream(args.N, args.d, args.K, args.batch, args.device, args.predictions)
    else:
        out = run_dense(args.N, args.d, args.K, args.batch)
    print("RESULT " + json.dumps(out))


def spawn(mode, N, args, predictions=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--N", str(N), "--d", str(args.d),
           "--K", str(args.K), "--batch", str(args.batch), "--threads", str(args.threads), "--device", args.device]
    if predictions:
        cmd.append("--predictions")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{res.stderr}")
    line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (2 on an idle 2-core machine; on a shared one, 2 threads contend badly)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--N", type=int, default=None)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--K", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--child", choices=["stream", "dense"], default=None, dest="mode")
    ap.add_argument("--predictions", action="store_true")
    args = ap.parse_args(argv)
    if args.mode:
        return child(args)

    GiB = 2 ** 30
    N_main = args.N or (200_000 if args.quick else 1_000_000)
    N_cmp = 50_000 if args.quick else 200_000
    print(f"torch {torch.__version__}, threads {args.threads}, device {args.device}; K={args.K}, d={args.d}, "
          f"batch={args.batch}")
    main_run = spawn("stream", N_main, args)
    print(f"[stream N={N_main:,}] {main_run['seconds']:.1f} s, peak RSS beyond inputs "
          f"{main_run['peak_beyond'] / GiB:.3f} GiB (accumulator tensors {main_run['acc_bytes'] / 2**20:.0f} MiB)"
          + (f", CUDA peak {main_run['cuda_peak'] / GiB:.3f} GiB" if "cuda_peak" in main_run else ""))
    s_cmp = spawn("stream", N_cmp, args)
    d_cmp = spawn("dense", N_cmp, args)
    same = abs(s_cmp["trace_SW"] - d_cmp["trace_SW"]) <= 1e-9 * abs(d_cmp["trace_SW"]) and np.allclose(
        s_cmp["mean0"], d_cmp["mean0"], rtol=1e-12, atol=1e-14)
    print(f"[stream N={N_cmp:,}] {s_cmp['seconds']:.1f} s, peak beyond inputs {s_cmp['peak_beyond'] / GiB:.3f} GiB")
    print(f"[dense  N={N_cmp:,}] {d_cmp['seconds']:.1f} s, peak beyond inputs {d_cmp['peak_beyond'] / GiB:.3f} GiB; "
          f"same values as streaming: {same} (tr Sigma_W {s_cmp['trace_SW']:.12g} vs {d_cmp['trace_SW']:.12g})")
    n_pred = 20_000 if args.quick else 50_000
    p = spawn("stream", n_pred, args, predictions=True)
    per_sample = p["seconds"] / n_pred
    print(f"[stream + NCC/classifier predictions N={n_pred:,}] {p['seconds']:.1f} s "
          f"({per_sample * 1e3:.2f} ms/sample, O(K·d) each; {per_sample * N_main / 60:.0f} min for N={N_main:,})")
    print("---- ratios / figures (same run) ----")
    print(f"peak memory beyond inputs, N={N_main:,} d={args.d} K={args.K} (GiB, target < 2): "
          f"{main_run['peak_beyond'] / GiB:.3f}")
    print(f"dense / streaming peak memory at N={N_cmp:,}: {d_cmp['peak_beyond'] / max(s_cmp['peak_beyond'], 1):.2f}")
    print(f"dense / streaming time at N={N_cmp:,}: {d_cmp['seconds'] / s_cmp['seconds']:.2f}")


if __name__ == "__main__":
    main()
