"""The GPU-only options of the training loop and of GNC2, run on the CPU against the plain fp32 path.

bf16 autocast (``torch.autocast("cpu", bfloat16)``), channels-last, ``torch.compile`` (inductor),
the resident-data batching, DDP over gloo with the code that picks NCCL on CUDA, the tiled GNC2
solver with the device as a parameter, and ``gnc-gpu-check --quick``. What cannot run on a CPU
(NCCL itself, CUDA kernels, SyncBatchNorm) is listed in the README's "GPU status".
"""

import io
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gnc import gpucheck
from gnc.models import build_model
from gnc.train import Accel, ResidentBatches, dist_backend, make_optimizer, normalize_spec, train_run, train_step

sys.path.insert(0, str(Path(__file__).parent))
from test_train import SPEC, _launch_ddp, assert_same_models, load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Tolerances on the per-epoch mean losses against fp32 for SPEC-like runs (SmallCNN / MLP, batch 15-16,
# 7-8 steps per epoch on 120 noisy images: a small, noisy task where differences grow from step to step).
# bf16 rounds activations to 8 mantissa bits; after 2 epochs (14-16 steps) the losses differ by 0.6-2.3 %
# here. channels_last reorders float32 sums: 2e-4 after 4 epochs (28 steps); compile (MLP, 7 steps): 1e-7.
BF16_RTOL = 5e-2
FP32_RTOL = 1e-3
COMPILE_RTOL = 1e-5


def _run(spec, data, tmp_path, accel):
    out = tmp_path / f"e{spec['epochs']}.pt"
    summary = train_run(spec, data, tmp_path / "w", {spec["epochs"]: out}, log=io.StringIO(), accel=accel)
    return summary, load(out)


# ------------------------------------------------------------------------------------ bf16, channels-last

def test_bf16_autocast_runs_the_backbone_in_bf16_and_the_head_in_float32():
    torch.manual_seed(0)
    model = build_model("smallcnn", (3, 16, 16), 4, 5, "normalized", tau=0.1, width=4)
    dtypes = {}

    def record(name):
        def hook(module, inputs, output):
            dtypes[name] = output.dtype
        return hook

    model.backbone.blocks[0][0].register_forward_hook(record("conv"))
    model.proj.register_forward_hook(record("h"))
    x, y = torch.rand(6, 3, 16, 16), torch.randint(0, 5, (6,))
    opt = make_optimizer(model.parameters(), normalize_spec({}))
    loss, logits = train_step(model, opt, x, y, normalize_spec({}), autocast=Accel(bf16=True).autocast(x.device))
    assert dtypes == {"conv": torch.bfloat16, "h": torch.bfloat16}
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32 and torch.isfinite(loss)


def test_bf16_training_tracks_fp32(data, tmp_path):
    """2 epochs (14 steps) with bf16 autocast: a different trajectory (so bf16 did run) whose
    per-epoch losses stay within BF16_RTOL of fp32."""
    spec = {**SPEC, "epochs": 2}
    fp32, _ = _run(spec, data, tmp_path / "fp32", Accel())
    summary, ck = _run(spec, data, tmp_path / "bf16", Accel(bf16=True))
    assert summary["accel"] == "bf16"
    got, ref = np.array(summary["history"]["loss"]), np.array(fp32["history"]["loss"])
    assert not np.array_equal(got, ref)
    np.testing.assert_allclose(got, ref, rtol=BF16_RTOL)
    assert ck["model"]["proj.weight"].dtype == torch.float32  # weights stay float32 (autocast, not .half())


def test_channels_last_batches_model_and_training(reference, data, tmp_path):
    """``reference`` (conftest) is the fp32 run: on a CPU a run's default Accel is plain fp32."""
    x = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(40) % 5
    rb = ResidentBatches(x, y, batch_size=16, seed=0, augmentation="crop-flip", channels_last=True)
    xb, _ = next(rb.epoch(0))
    assert xb.is_contiguous(memory_format=torch.channels_last) and not xb.is_contiguous()
    plain = next(ResidentBatches(x, y, batch_size=16, seed=0, augmentation="crop-flip").epoch(0))[0]
    assert torch.equal(xb, plain)  # same values, other memory layout
    model = Accel(channels_last=True).memory_format(build_model("smallcnn", (3, 8, 8), 3, 5, width=4))
    conv = model.backbone.blocks[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()

    summary, _ = _run(SPEC, data, tmp_path, Accel(channels_last=True))
    assert summary["accel"] == "channels_last"
    np.testing.assert_allclose(summary["history"]["loss"], reference[2]["history"]["loss"], rtol=FP32_RTOL)


# ------------------------------------------------------------------------------------ torch.compile

MLP_SPEC = {**{k: v for k, v in SPEC.items() if k != "width"}, "arch": "mlp", "arch_opts": {"width": 16},
            "epochs": 1}


def test_torch_compile_mlp_equals_eager(data, tmp_path):
    """torch.compile (inductor, C++ on the CPU) of the training model, one epoch (7 steps) of an
    MLP (13 s of CPU time here); the SmallCNN version below takes minutes and is marked slow."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager, ck_e = _run(MLP_SPEC, data, tmp_path / "eager", Accel())
    compiled, ck_c = _run(MLP_SPEC, data, tmp_path / "compiled", Accel(compile=True))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # dynamo did capture graphs
    assert compiled["accel"] == "compile"
    np.testing.assert_allclose(compiled["history"]["loss"], eager["history"]["loss"], rtol=COMPILE_RTOL)
    assert_same_models(ck_e, ck_c, exact=False)


@pytest.mark.slow
def test_torch_compile_convnet_equals_eager():
    """The same for a SmallCNN (convolutions, BatchNorm) through the gpu-check's loop: 6 steps;
    compilation takes minutes on this shared 2-core machine, hence slow."""
    setup = replace(gpucheck.QUICK, steps=6)
    x, y = gpucheck.random_cifar(256, setup.K)
    spec = gpucheck.recipe_spec(setup.batch)
    dev = torch.device("cpu")
    ref = gpucheck.loss_curve(setup, x, y, spec, dev, Accel())
    got = gpucheck.loss_curve(setup, x, y, spec, dev, Accel(compile=True))
    np.testing.assert_allclose(got, ref, rtol=COMPILE_RTOL)


# ------------------------------------------------------------------------------------ resident batches

def test_resident_batches_equal_a_dataloader_over_the_same_permutation():
    """Without augmentation the resident path serves exactly what a DataLoader over float images
    serves for the same permutation, and training on either gives bit-identical losses."""
    from gnc.train import _seed

    x = torch.randint(0, 256, (70, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(70) % 5
    rb = ResidentBatches(x, y, batch_size=16, seed=3)
    perm = torch.randperm(70, generator=torch.Generator().manual_seed(_seed(3, 2, 1)))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x.float() / 255, y), batch_size=16,
                                         sampler=perm.tolist(), drop_last=True)
    ours, ref = list(rb.epoch(2)), list(loader)
    assert len(ours) == len(ref) == 70 // 16
    spec = normalize_spec({"augmentation": "none"})
    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        m = build_model("smallcnn", (3, 8, 8), 3, 5, width=4)
        nets.append((m, make_optimizer(m.parameters(), spec)))
    for (xa, ya), (xb, yb) in zip(ours, ref):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        la, _ = train_step(*nets[0], xa, ya, spec)
        lb, _ = train_step(*nets[1], xb, yb, spec)
        assert torch.equal(la, lb)


def test_resident_batches_shards_make_up_the_global_batch():
    x = torch.randint(0, 256, (50, 1, 8, 8), dtype=torch.uint8)
    y = torch.arange(50) % 5
    kw = dict(batch_size=15, seed=1, augmentation="crop-flip-rotate")
    whole = list(ResidentBatches(x, y, **kw).epoch(0))
    shards = [list(ResidentBatches(x, y, rank=r, world=2, **kw).epoch(0)) for r in (0, 1)]
    assert [len(b[0]) for b in shards[0]] == [7, 7, 7] and [len(b[0]) for b in shards[1]] == [8, 8, 8]
    for (xw, yw), (x0, y0), (x1, y1) in zip(whole, *shards):
        assert torch.equal(torch.cat([x0, x1]), xw) and torch.equal(torch.cat([y0, y1]), yw)


# ------------------------------------------------------------------------------------ DDP

def test_backend_choice():
    assert dist_backend(torch.device("cuda", 0)) == "nccl" and dist_backend(torch.device("cpu")) == "gloo"


def test_ddp_gloo_with_bf16_and_channels_last_tracks_one_process(data, tmp_path):
    """2 CPU ranks over gloo (the process group code that takes NCCL on CUDA) with the GPU speed
    options forced on (``--accel``), against one process with the same options."""
    spec = {**{k: v for k, v in SPEC.items() if k != "width"}, "arch": "mlp", "arch_opts": {"width": 16},
            "head": "cmf", "epochs": 2, "batch_size": 15, "augmentation": "crop-flip"}
    accel = Accel(bf16=True, channels_last=True)
    single = tmp_path / "single.pt"
    train_run(spec, data, tmp_path / "w1", {2: single}, log=io.StringIO(), accel=accel)
    ddp = tmp_path / "ddp.pt"
    outputs = _launch_ddp(spec, data, tmp_path / "w2", ddp, extra_args=["--accel", "bf16,channels_last"])
    assert "world 2 (gloo)" in outputs[0] and "bf16 + channels_last" in outputs[0]
    a, b = load(single), load(ddp)
    assert b["provenance"]["gnc_world_size"] == 2
    # losses, not weights: bf16 roundings differ between a 15-sample batch and two shards of 7 and 8, and
    # the weights of this small noisy task drift apart by more than the losses do (exact fp32 agreement
    # of DDP and one process is test_train's test_ddp_gloo_two_processes_equal_single_process)
    np.testing.assert_allclose(b["history"]["loss"], a["history"]["loss"], rtol=BF16_RTOL)


# ------------------------------------------------------------------------------------ GNC2, tiled

def _nnls_distances(W: np.ndarray) -> np.ndarray:
    """Independent: per class, scipy's NNLS with the sum-to-one constraint as a heavy extra row."""
    from scipy.optimize import nnls

    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    out = []
    for k in range(len(Wn)):
        A = np.delete(Wn, k, 0).T
        lam, _ = nnls(np.vstack([A, 1e5 * np.ones((1, A.shape[1]))]), np.concatenate([Wn[k], [1e5]]),
                      maxiter=50 * A.shape[1])
        lam /= lam.sum()
        out.append(np.linalg.norm(Wn[k] - A @ lam))
    return np.array(out)


def test_tiled_gnc2_with_the_cuda_settings_on_cpu_equals_the_default():
    """ovr_distances takes the device as a parameter; on CUDA it runs every round in float64 with
    tiles from a memory budget. Those settings (float64, small tiles, blocks and budget) on the CPU
    give the same distances as the default CPU settings and as an independent NNLS solve."""
    from gnc.metrics.ovr import ovr_distances

    W = np.random.default_rng(5).standard_normal((60, 8))
    default = ovr_distances(W, device="cpu")
    tiled = ovr_distances(W, device=torch.device("cpu"), precision="float64", tile=7, block_size=9,
                          memory_budget=1 << 16, candidates=10)
    assert tiled.info.get("device", "cpu").startswith("cpu")
    np.testing.assert_allclose(tiled.dist, default.dist, rtol=0, atol=1e-12)
    assert tiled.value == pytest.approx(default.value, abs=1e-13)
    assert max(tiled.gap.max(), default.gap.max()) < 1e-10
    np.testing.assert_allclose(default.dist, _nnls_distances(W), atol=1e-7)


# ------------------------------------------------------------------------------------ gnc-gpu-check

def _conv_linear_flops(model, x, y) -> float:
    """Independent FLOP count: 2 x MACs of every Conv2d (k_h k_w C_in/groups C_out H_out W_out) and
    Linear (in x out) from forward hooks on real tensors, plus the head's cosine matrix (2 d K)."""
    total = [0.0]

    def conv(m, i, o):
        total[0] += 2 * m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups * o.numel()

    def lin(m, i, o):
        total[0] += 2 * m.in_features * o.numel()

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lin)
    model.train()
    with torch.no_grad():
        model(x, y)
    return total[0] + 2 * model.d * model.K * len(x)


@pytest.mark.parametrize("arch,opts,shape", [("resnet18", {"width": 64}, (3, 32, 32)),
                                             ("resnext50", {"width": 16, "groups": 4, "width_per_group": 4},
                                              (3, 16, 16))])
def test_forward_flops_per_image_equal_an_analytic_count(arch, opts, shape):
    torch.manual_seed(0)
    model = build_model(arch, shape, 10, 100, "normalized", tau=0.1, **opts)
    x, y = torch.rand(2, *shape), torch.zeros(2, dtype=torch.long)
    expected = _conv_linear_flops(model, x, y) / 2
    assert gpucheck.forward_flops_per_image(arch, shape, 10, 100, **opts) == pytest.approx(expected, rel=1e-9)
    if arch == "resnet18":  # the CIFAR ResNet18's well-known 0.56 GMAC forward
        assert expected / 2 == pytest.approx(0.556e9, rel=0.01)


def test_study_cost_formula_by_hand(tmp_path):
    """One tiny study config, counted independently: epochs x (n // batch) x batch x 3F + checkpoints x
    (train + test) x F, with F from the analytic counter."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    cfg["experiments"] = {"one": {"dataset": "cifar100", "arch": ["resnet18"], "tau": [0.1], "d": [10], "K": [20],
                                  "seed": [0], "train": {"epochs": 3, "checkpoints": [0, 3], "batch_size": 300,
                                                         "width": 8}}}
    cfg["datasets"] = {"cifar100": cfg["datasets"]["cifar100"]}
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rows, _ = gpucheck.study_cost(path)
    assert len(rows) == 1
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 32, 32), 10, 20, "normalized", tau=0.1, width=8)
    f = _conv_linear_flops(model, torch.rand(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)) / 2
    n_train, n_test = 500 * 20, 100 * 20
    expected = 3 * (n_train // 300) * 300 * 3 * f + 2 * (n_train + n_test) * f
    assert rows[0]["flops"] == pytest.approx(expected, rel=1e-9)


def test_compare_curves_fails_outside_the_tolerance():
    assert gpucheck.compare_curves([2.0] * 10, [2.0 * (1 + 1e-4)] * 10, bf16=False)["ok"]
    assert not gpucheck.compare_curves([2.0] * 10, [2.0] + [2.5] * 9, bf16=False)["ok"]  # training diverged
    assert not gpucheck.compare_curves([2.0] * 10, [2.1] + [2.0] * 9, bf16=False)["ok"]  # first step off
    assert not gpucheck.compare_curves([2.0] * 10, [float("nan")] * 10, bf16=True)["ok"]


def test_gpu_check_quick_runs_on_cpu(capsys):
    status = gpucheck.main(["--quick", "--threads", "1"])
    out = capsys.readouterr().out
    assert status == 0, out
    for section in ("[1] environment", "[2] paths vs fp32", "[3] throughput", "[4] FLOPs", "[5] GNC2",
                    "[6] paper.yaml"):
        assert section in out
    assert "no GPU: every number below is a CPU measurement" in out
    assert out.count("  ok") >= 3 and "FAIL" not in out and "=== all checks passed ===" in out
    assert "skipped: face" in out and "device-hours" in out


def test_console_script_declared():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["gnc-gpu-check"] == "gnc.gpucheck:main"
