"""gnc.train: augmentation, schedule, determinism, checkpoints, resume after SIGKILL / SIGINT / SIGTERM,
NaN, DDP (gloo), the one default recipe."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from gnc import io as gio
from gnc.data import dataset_checksum
from gnc.models import build_model
from gnc import train as gtrain
from gnc.train import NonFiniteLossError, augment, channel_stats, learning_rate, normalize_spec, train_run

ROOT = Path(__file__).resolve().parents[1]


def make_prepared(folder: Path, K=5, n_train=24, n_test=8, shape=(1, 8, 8), seed=0) -> Path:
    """A tiny prepared dataset in the gnc.data layout: class prototypes + noise, uint8."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0, 255, size=(K, *shape))

    def split(n):
        y = np.repeat(np.arange(K), n)
        x = protos[y] + rng.normal(0, 50, size=(len(y), *shape))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    arrays = dict(zip(("train_x", "train_y"), split(n_train)))
    arrays.update(zip(("test_x", "test_y"), split(n_test)))
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, a in arrays.items():
        gio.save_npy_atomic(folder / f"{name}.npy", a)
        files[f"{name}.npy"] = gio.sha256_file(folder / f"{name}.npy")
    manifest = {"name": "synthetic", "version": "test", "classes": [f"c{k}" for k in range(K)], "num_classes": K,
                "shape": list(shape), "counts": {"train": K * n_train, "test": K * n_test}, "files": files,
                "checksum": dataset_checksum(files)}
    gio.write_json_atomic(folder / "manifest.json", manifest)
    return folder


SPEC = {"run_id": "t-run", "arch": "smallcnn", "width": 4, "head": "normalized", "loss": "ce", "tau": 0.2,
        "d": 3, "seed": 3, "epochs": 4, "batch_size": 16, "lr": 0.05, "augmentation": "crop-flip-rotate"}
CKPTS = (0, 2, 4)


def outs(folder: Path, epochs=CKPTS) -> dict:
    return {e: folder / f"epoch={e}.pt" for e in epochs}


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_models(a: dict, b: dict, exact=True):
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        if exact:
            assert torch.equal(a["model"][k], b["model"][k]), k
        else:
            torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=2e-5, msg=k)


# fixtures `data` (the prepared dataset of make_prepared) and `reference` (one run of SPEC): conftest.py


class _Stop(Exception):
    """Raised by :func:`stop_after_epoch` once the state of the chosen epoch is written."""


def stop_after_epoch(monkeypatch, epoch: int) -> None:
    """Make train_run stop (raise _Stop) right after it has written the state of ``epoch``."""
    real = gtrain._StateStore.write

    def write(self, state):
        real(self, state)
        if state["epoch"] == epoch:
            raise _Stop(epoch)

    monkeypatch.setattr(gtrain._StateStore, "write", write)


def start_hanging_trainer(data, work: Path, out: dict, log: Path, epoch: int, step: int):
    """A trainer subprocess (gnc.train's command line) that hangs at ``step`` of (1-based) ``epoch``;
    returned once it hangs."""
    from _trainhang import hang_env

    marker = work.parent / "hang.marker"
    cmd = [sys.executable, "-c", "import sys; from gnc.train import main; sys.exit(main(sys.argv[1:]))", "--spec", json.dumps(SPEC), "--data", str(data), "--work-dir", str(work),
           "--log", str(log)] + [f"--ckpt={e}={p}" for e, p in out.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **hang_env(work.parent / "hang-site", epoch, step, marker)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"trainer exited early: {proc.stdout.read()}")
        assert time.time() < deadline, "trainer never reached the hang point"
        time.sleep(0.05)
    return proc


# ------------------------------------------------------------------------------------ pieces

def test_augment_crop_flip_rotate_match_explicit_operations():
    from gnc._torchvision_compat import import_torchvision

    TF = import_torchvision().transforms.functional
    x = torch.rand(3, 2, 8, 6)
    # crop with zero padding 2 at offset (top=2+dy, left=2+dx)
    shift = torch.tensor([[1, -2], [0, 0], [-2, 2]])  # (dx, dy)
    got = augment(x, {"shift": shift})
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i, (dx, dy) in enumerate(shift.tolist()):
        torch.testing.assert_close(got[i], padded[i, :, 2 + dy:2 + dy + 8, 2 + dx:2 + dx + 6])
    # flip
    flip = torch.tensor([True, False, True])
    got = augment(x, {"flip": flip})
    for i in range(3):
        torch.testing.assert_close(got[i], x[i].flip(-1) if flip[i] else x[i])
    # rotation by +-90 degrees on square images equals torchvision's rotate (nearest, fill 0)
    xs = torch.rand(2, 1, 6, 6)
    got = augment(xs, {"angle": torch.tensor([90.0, -90.0])})
    for i, a in enumerate((90.0, -90.0)):
        torch.testing.assert_close(got[i], TF.rotate(xs[i], a))
    # torchvision order: flip first, then rotate
    got = augment(xs, {"flip": torch.tensor([True, True]), "angle": torch.tensor([90.0, 90.0])})
    torch.testing.assert_close(got[0], TF.rotate(xs[0].flip(-1), 90.0))
    # small angles: agrees with torchvision except on a few rounding-boundary pixels
    got = augment(xs, {"angle": torch.tensor([12.0, -7.0])})
    for i, a in enumerate((12.0, -7.0)):
        assert (got[i] != TF.rotate(xs[i], a)).float().mean() < 0.1


def test_cosine_schedule_matches_torch_cosine_annealing():
    spec = normalize_spec({"lr": 0.1, "epochs": 7, "schedule": "cosine"})
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7)
    for e in range(7):
        assert learning_rate(spec, e) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        opt.step()
        sched.step()
    step = normalize_spec({"lr": 1.0, "epochs": 9, "schedule": "step"})
    assert [learning_rate(step, e) for e in (0, 2, 3, 5, 6, 8)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_channel_stats_exact():
    x = np.random.default_rng(0).integers(0, 256, size=(50, 3, 5, 4)).astype(np.uint8)
    mean, std = channel_stats(x, chunk=7)
    f = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, f.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, f.std(axis=(0, 2, 3)), rtol=1e-12)


def test_spec_validation():
    assert normalize_spec({"width": 8})["arch_opts"] == {"width": 8}
    with pytest.raises(ValueError, match="augmentation"):
        normalize_spec({"augmentation": "crop-jitter"})
    with pytest.raises(ValueError, match="hardmax loss needs a cosine head"):
        normalize_spec({"loss": "hardmax", "head": "linear"})


# ------------------------------------------------------------------------------------ runs

def test_checkpoints_published_and_weights_only(reference, data):
    out, log, summary = reference
    for e in CKPTS:
        ck = load(out[e])
        assert ck["epoch"] == e
        assert set(ck) >= {"model", "epoch", "spec", "history", "classes", "provenance"}
        assert ck["classes"] == [0, 1, 2, 3, 4] and ck["in_shape"] == [1, 8, 8]
        assert len(ck["history"]["loss"]) == e == len(ck["history"]["train_acc"])
        assert ck["spec"]["run_id"] == "t-run" and ck["spec"]["arch_opts"] == {"width": 4}
        prov = ck["provenance"]
        assert prov["gnc_dataset"] == "synthetic" and prov["gnc_seed"] == 3
        assert prov["gnc_dataset_checksum"] == json.loads((data / "manifest.json").read_text())["checksum"]
    hist = load(out[4])["history"]
    assert hist["epoch"] == [1, 2, 3, 4] and all(np.isfinite(hist["loss"]))
    assert hist["lr"][0] == pytest.approx(0.05) and hist["lr"][-1] < hist["lr"][0]
    assert hist["loss"][-1] < hist["loss"][0] and hist["train_acc"][-1] > 0.3  # learns (chance: 0.2)
    # one progress line per epoch, with ETA
    lines = [ln for ln in log.splitlines() if " epoch " in ln and "ETA" in ln]
    assert len(lines) == 4 and "train_acc" in lines[0] and "img/s" in lines[0]


def test_published_files_survive_a_fresh_run_in_the_same_work_dir(data, tmp_path):
    spec = {**SPEC, "epochs": 1, "augmentation": "none"}
    out = {1: tmp_path / "out" / "epoch=1.pt"}
    train_run(spec, data, tmp_path / "work", out, log=io.StringIO())
    before = out[1].read_bytes()
    assert (tmp_path / "work" / "ckpt" / "epoch=1.pt").read_bytes() == before
    # a changed spec starts from scratch and clears work_dir; the published file is untouched
    train_run({**spec, "lr": 0.02}, data, tmp_path / "work", {1: tmp_path / "other.pt"}, log=io.StringIO())
    assert out[1].read_bytes() == before


def test_epoch0_checkpoint_is_the_initial_model(reference, data):
    out, _, _ = reference
    ck = load(out[0])
    torch.manual_seed(SPEC["seed"])
    m = build_model("smallcnn", (1, 8, 8), 3, 5, "normalized", tau=0.2, width=4)
    for k, v in m.state_dict().items():
        if k in ("input_mean", "input_std"):
            continue
        assert torch.equal(v, ck["model"][k]), k
    x = np.load(data / "train_x.npy").astype(np.float64) / 255
    assert ck["model"]["input_mean"].item() == pytest.approx(x.mean(), rel=1e-6)
    assert ck["model"]["input_std"].item() == pytest.approx(x.std(), rel=1e-6)
    # later checkpoints differ
    assert not torch.equal(load(out[2])["model"]["proj.weight"], ck["model"]["proj.weight"])


def test_two_runs_are_bit_identical(reference, data, tmp_path):
    out, _, summary = reference
    again = train_run(SPEC, data, tmp_path / "work", outs(tmp_path / "out"), log=io.StringIO())
    for e in CKPTS:
        a, b = load(out[e]), load(tmp_path / "out" / f"epoch={e}.pt")
        assert_same_models(a, b)
        assert a["history"]["loss"] == b["history"]["loss"]
        assert a["history"]["train_acc"] == b["history"]["train_acc"]
    assert again["resumed_from"] == 0
    # and a different seed gives a different model
    other = train_run({**SPEC, "seed": 4, "epochs": 1}, data, tmp_path / "w2", {1: tmp_path / "o2.pt"},
                      log=io.StringIO())
    assert other["history"]["loss"][0] != summary["history"]["loss"][0]


def test_resume_after_sigkill_mid_epoch_equals_uninterrupted(reference, data, tmp_path):
    """A real subprocess is SIGKILLed in the middle of epoch 3; the restarted job resumes from the
    state of epoch 2 and publishes exactly the same checkpoints."""
    work, out = tmp_path / "work", outs(tmp_path / "out")
    proc = start_hanging_trainer(data, work, out, tmp_path / "train.log", epoch=3, step=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not any(p.exists() for p in out.values()), "nothing is published before the end"
    assert load(work / "state.pt")["epoch"] == 2
    assert "epoch 2/4" in (tmp_path / "train.log").read_text()

    log = io.StringIO()
    summary = train_run(SPEC, data, work, out, log=log)
    assert summary["resumed_from"] == 2
    assert "resuming from" in log.getvalue()
    ref_out = reference[0]
    for e in CKPTS:
        a, b = load(ref_out[e]), load(out[e])
        assert_same_models(a, b)
        assert a["history"]["loss"] == b["history"]["loss"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_print_one_line_and_the_same_command_resumes(reference, data, tmp_path, sig):
    """SIGINT (Ctrl-C) / SIGTERM in the middle of epoch 3: one line saying what is saved and how to
    resume, no traceback, exit status 128 + signal; the same command then resumes from epoch 2 and
    ends with the uninterrupted run's checkpoints."""
    work, out = tmp_path / "work", outs(tmp_path / "out")
    proc = start_hanging_trainer(data, work, out, tmp_path / "train.log", epoch=3, step=2)
    proc.send_signal(sig)
    console = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + sig
    name = signal.Signals(sig).name
    expected = (f"[t-run] interrupted by {name} during epoch 3/4: state saved at epoch 2 in {work}; "
                f"run the same command to resume")
    assert console.strip().splitlines() == [expected], console
    assert expected in (tmp_path / "train.log").read_text()
    assert load(work / "state.pt")["epoch"] == 2

    summary = train_run(SPEC, data, work, out, log=io.StringIO())
    assert summary["resumed_from"] == 2
    for e in CKPTS:
        assert_same_models(load(reference[0][e]), load(out[e]))


def test_interruption_before_the_first_epoch_says_nothing_was_saved(data, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gtrain, "train_step", interrupt)
    with pytest.raises(gtrain.TrainingInterrupted, match=r"interrupted by SIGINT during epoch 1/4: no epoch "
                                                         r"was completed, so no state was saved") as err:
        train_run(SPEC, data, tmp_path / "work", outs(tmp_path / "out"), log=io.StringIO())
    assert err.value.saved_epoch is None and err.value.exit_code == 130


def test_snakemake_job_glue_turns_an_interruption_into_one_line_and_its_exit_status(tmp_path):
    """In a Snakemake job (gnc.jobs.job) the interruption is logged as its one line, without a
    traceback, and the job exits with 128 + the signal number."""
    import logging
    from types import SimpleNamespace

    from gnc.jobs import job

    log = tmp_path / "job.log"
    smk = SimpleNamespace(log=[str(log)], rule="train", wildcards={}, threads=1, config={}, params=SimpleNamespace(),
                          input=[], output=[])
    line = "[r] interrupted by SIGTERM during epoch 3/4: state saved at epoch 2 in w; run the same command to resume"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with pytest.raises(SystemExit) as exit_:
            with job(smk):
                raise gtrain.TrainingInterrupted(line, signal_name="SIGTERM", saved_epoch=2)
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)
    assert exit_.value.code == 143
    text = log.read_text()
    assert line in text and "Traceback" not in text and "FAILED" not in text


# per-epoch training losses of SPEC (and variants) made by the trainer at commit a90b9d1 (its own
# SGD copy, before the loop was split into pieces) on this machine kind: the refactored loop must
# reproduce them (they were bit-identical here; 1e-6 leaves room for another CPU's kernels)
A90B9D1_LOSSES = {
    "smallcnn": (SPEC, [2.204697608947754, 1.6061208929334367, 1.47194162436894, 1.4081646714891707]),
    "cmf": ({**SPEC, "head": "cmf", "epochs": 2, "classes": [4, 0, 2], "augmentation": "crop"},
            [1.0148218423128128, 0.7928378134965897]),
    "hardmax": ({**SPEC, "loss": "hardmax", "epochs": 2}, [109.48295593261719, 109.95144762311664]),
    "linear": ({**SPEC, "head": "linear", "epochs": 2, "augmentation": "flip", "schedule": "step"},
               [1.5421381507601057, 1.2529454657009669]),
}


@pytest.mark.parametrize("name", sorted(A90B9D1_LOSSES))
def test_same_losses_as_the_trainer_before_the_refactor(reference, data, tmp_path, name):
    spec, losses = A90B9D1_LOSSES[name]
    if name == "smallcnn":
        got = load(reference[0][4])["history"]["loss"]
    else:
        got = train_run(spec, data, tmp_path / "w", {spec["epochs"]: tmp_path / "o.pt"},
                        log=io.StringIO())["history"]["loss"]
    np.testing.assert_allclose(got, losses, rtol=1e-6, atol=0)


def test_one_default_recipe():
    """The trainer's defaults are the workflow's recipe (gnc.recipe.DEFAULT_RECIPE), and the head x loss
    rule is the config's."""
    from gnc.recipe import DEFAULT_RECIPE

    spec = normalize_spec({})
    for key, value in DEFAULT_RECIPE.items():
        if key == "checkpoints":  # which epochs are published: the caller's out_ckpts
            continue
        if key == "width":  # an architecture option: the default arch's default width
            from gnc.models import ARCH_OPTIONS

            assert spec["arch_opts"] == {} and ARCH_OPTIONS[spec["arch"]][key] == value
            continue
        assert spec[key] == value, key


def test_corrupt_state_falls_back_to_previous(reference, data, tmp_path, monkeypatch):
    work, out = tmp_path / "work", outs(tmp_path / "out")
    with monkeypatch.context() as m:
        stop_after_epoch(m, 3)
        with pytest.raises(_Stop):
            train_run(SPEC, data, work, out, log=io.StringIO())
    assert load(work / "state.pt")["epoch"] == 3 and load(work / "state.prev.pt")["epoch"] == 2
    blob = (work / "state.pt").read_bytes()
    (work / "state.pt").write_bytes(blob[: len(blob) // 2])  # truncated, as after a disk problem
    log = io.StringIO()
    summary = train_run(SPEC, data, work, out, log=log)
    assert "unreadable" in log.getvalue()
    assert summary["resumed_from"] == 2
    for e in CKPTS:
        assert_same_models(load(reference[0][e]), load(out[e]))


def test_changed_spec_does_not_resume(data, tmp_path, monkeypatch):
    work = tmp_path / "work"
    spec = {**SPEC, "epochs": 2, "augmentation": "none"}
    with monkeypatch.context() as m:
        stop_after_epoch(m, 1)
        with pytest.raises(_Stop):
            train_run(spec, data, work, {2: tmp_path / "a.pt"}, log=io.StringIO())
    log = io.StringIO()
    summary = train_run({**spec, "lr": 0.01}, data, work, {2: tmp_path / "b.pt"}, log=log)
    assert summary["resumed_from"] == 0 and "different run spec" in log.getvalue()
    # ... but run_id is not part of the identity
    with monkeypatch.context() as m:
        stop_after_epoch(m, 1)
        with pytest.raises(_Stop):
            train_run(spec, data, tmp_path / "w3", {2: tmp_path / "c.pt"}, log=io.StringIO())
    assert train_run({**spec, "run_id": "renamed"}, data, tmp_path / "w3", {2: tmp_path / "c.pt"},
                     log=io.StringIO())["resumed_from"] == 1


def test_non_finite_loss_raises_and_publishes_nothing(data, tmp_path):
    spec = {**SPEC, "run_id": "exploding", "head": "linear", "lr": 1e30, "epochs": 2, "augmentation": "none"}
    out = outs(tmp_path / "out", (0, 2))
    with pytest.raises(NonFiniteLossError, match=r"run 'exploding'.*epoch 1, step \d+") as err:
        train_run(spec, data, tmp_path / "work", out, log=io.StringIO())
    assert err.value.epoch == 1 and not np.isfinite(err.value.value)
    assert not any(p.exists() for p in out.values())


def test_class_subset_and_hardmax_cmf_variants(data, tmp_path):
    for head, loss in (("cmf", "ce"), ("normalized", "hardmax")):
        spec = {**SPEC, "head": head, "loss": loss, "epochs": 2, "classes": [4, 0, 2], "augmentation": "crop"}
        p = tmp_path / f"{head}-{loss}.pt"
        train_run(spec, data, tmp_path / f"w-{head}-{loss}", {2: p}, log=io.StringIO())
        ck = load(p)
        assert ck["classes"] == [4, 0, 2] and ck["class_names"] == ["c4", "c0", "c2"]
        assert ck["spec"]["K"] == 3
        if head == "cmf":
            C = ck["model"]["head.C"]
            torch.testing.assert_close(C.norm(dim=1), torch.ones(3))
            assert not any(k.startswith("head.weight") for k in ck["model"])
    # K < number of classes without explicit classes: gnc.data.class_subset(5, 2, class_subset_seed)
    from gnc.data import class_subset

    train_run({**SPEC, "epochs": 0, "K": 2, "class_subset_seed": 7}, data, tmp_path / "wk", {0: tmp_path / "k.pt"},
              log=io.StringIO())
    assert load(tmp_path / "k.pt")["classes"] == class_subset(5, 2, 7)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_ddp(spec, data, work, ckpt, world=2, extra_args=()):
    """Start ``world`` ranks of ``python -m gnc.train`` with the environment torchrun would set."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port),
               "PYTHONPATH": str(ROOT / "workflow") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "gnc.train", "--spec", json.dumps(spec), "--data", str(data), "--work-dir",
               str(work), f"--ckpt=2={ckpt}", *extra_args]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for p, o in zip(procs, outputs):
        assert p.returncode == 0, o[-3000:]
    return outputs


DDP_SPEC = {**{k: v for k, v in SPEC.items() if k != "width"}, "arch": "mlp", "arch_opts": {"width": 16, "bn": False},
            "head": "cmf", "epochs": 2, "batch_size": 15, "augmentation": "crop-flip"}


def test_ddp_gloo_two_processes_equal_single_process(data, tmp_path):
    """2 CPU ranks (gloo): each rank a shard of each batch (uneven: 7 + 8 samples), gradients
    averaged, CMF class sums all-reduced -> the same model as one process, to float tolerance.
    An MLP without BatchNorm (per-rank BN statistics would legitimately differ)."""
    single = tmp_path / "single.pt"
    train_run(DDP_SPEC, data, tmp_path / "w1", {2: single}, log=io.StringIO())
    ddp = tmp_path / "ddp.pt"
    outputs = _launch_ddp(DDP_SPEC, data, tmp_path / "w2", ddp)
    assert "epoch 2/2" in outputs[0] and "epoch 2/2" not in outputs[1]  # only rank 0 reports
    a, b = load(single), load(ddp)
    assert b["provenance"]["gnc_world_size"] == 2 and a["provenance"]["gnc_world_size"] == 1
    assert_same_models(a, b, exact=False)
    np.testing.assert_allclose(a["history"]["loss"], b["history"]["loss"], rtol=1e-5)
    assert a["history"]["train_acc"] == b["history"]["train_acc"]
    assert not torch.equal(a["model"]["head.C"], torch.zeros_like(a["model"]["head.C"]))


@pytest.mark.slow
def test_ddp_through_torchrun(data, tmp_path):
    """The same through the real launcher (slower: one more interpreter start)."""
    ddp = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gnc.train",
           "--spec", json.dumps(DDP_SPEC), "--data", str(data), "--work-dir", str(tmp_path / "w"), f"--ckpt=2={ddp}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "workflow") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    single = tmp_path / "single.pt"
    train_run(DDP_SPEC, data, tmp_path / "w1", {2: single}, log=io.StringIO())
    assert_same_models(load(single), load(ddp), exact=False)


# ------------------------------------------------------------------------------------ warm start

def test_init_checkpoint_starts_from_its_weights_and_records_them(reference, data, tmp_path):
    """A HardMax run with init_checkpoint = a trained CE run's checkpoint: epoch 0 is exactly that network
    (not the seeded initialization), and the provenance names the file and its sha256."""
    import hashlib

    src = reference[0][4]
    spec = {**SPEC, "run_id": "tuned", "loss": "hardmax", "lr": 1e-4, "epochs": 1, "init_checkpoint": str(src)}
    out = outs(tmp_path / "out", (0, 1))
    log = io.StringIO()
    train_run(spec, data, tmp_path / "work", out, log=log)
    start, trained = load(out[0]), load(src)
    assert_same_models(start, trained)
    scratch = load(reference[0][0])  # the seeded initialization of the same network
    assert not torch.equal(start["model"]["head.weight"], scratch["model"]["head.weight"])
    end = load(out[1])
    assert not torch.equal(end["model"]["head.weight"], start["model"]["head.weight"])  # it trained on
    for ck in (start, end):
        prov = ck["provenance"]
        assert prov["gnc_init_checkpoint"] == str(src)
        assert prov["gnc_init_checkpoint_sha256"] == hashlib.sha256(Path(src).read_bytes()).hexdigest()
        assert prov["gnc_init_run_id"] == SPEC["run_id"] and prov["gnc_init_epoch"] == 4
    assert f"initialized from {src}" in log.getvalue()
    # a run without init_checkpoint records none
    assert not any(k.startswith("gnc_init") for k in scratch["provenance"])


def test_init_checkpoint_of_another_network_or_data_is_refused(reference, data, tmp_path):
    src = str(reference[0][4])
    base = {**SPEC, "epochs": 1, "init_checkpoint": src}
    for change, words in (({"width": 8}, ["another network", "arch_opts"]),
                          ({"d": 4}, ["another network", "d: 3 there, 4 here"]),
                          ({"head": "cmf"}, ["head: 'normalized' there, 'cmf' here"]),
                          ({"classes": [0, 1, 2]}, ["classes: [0, 1, 2, 3, 4] there, [0, 1, 2] here"])):
        with pytest.raises(ValueError) as err:
            train_run({**base, **change}, data, tmp_path / "w", {1: tmp_path / "x.pt"}, log=io.StringIO())
        assert all(w in str(err.value) for w in words), str(err.value)
        assert src in str(err.value)
    with pytest.raises(FileNotFoundError, match="init_checkpoint .*nothing.pt does not exist"):
        train_run({**base, "init_checkpoint": str(tmp_path / "nothing.pt")}, data, tmp_path / "w", {1: tmp_path / "x.pt"},
                  log=io.StringIO())
    with pytest.raises(ValueError, match="init_checkpoint must be a checkpoint path"):
        normalize_spec({"init_checkpoint": 3})
    assert not (tmp_path / "x.pt").exists()


def test_a_changed_init_checkpoint_does_not_resume(reference, data, tmp_path, monkeypatch):
    """The resume identity holds the init checkpoint's content: the same path with other weights in it
    starts afresh; the same content at another path resumes."""
    import shutil

    init = tmp_path / "init.pt"
    shutil.copyfile(reference[0][2], init)
    spec = {**SPEC, "epochs": 2, "augmentation": "none", "init_checkpoint": str(init)}
    work = tmp_path / "work"
    with monkeypatch.context() as m:
        stop_after_epoch(m, 1)
        with pytest.raises(_Stop):
            train_run(spec, data, work, {2: tmp_path / "a.pt"}, log=io.StringIO())
    moved = tmp_path / "moved.pt"
    shutil.copyfile(init, moved)
    assert train_run({**spec, "init_checkpoint": str(moved)}, data, work, {2: tmp_path / "a.pt"},
                     log=io.StringIO())["resumed_from"] == 1
    with monkeypatch.context() as m:
        stop_after_epoch(m, 1)
        with pytest.raises(_Stop):
            train_run(spec, data, tmp_path / "w2", {2: tmp_path / "b.pt"}, log=io.StringIO())
    shutil.copyfile(reference[0][4], init)  # other weights, same path
    log = io.StringIO()
    assert train_run(spec, data, tmp_path / "w2", {2: tmp_path / "b.pt"}, log=log)["resumed_from"] == 0
    assert "different run spec" in log.getvalue()
