"""The training loop: resident data, own seeded batching, resumable state, atomic checkpoints.

``train_run(spec, data_folder, work_dir, out_ckpts)`` trains one run and, only at the end, publishes
the checkpoints ``out_ckpts = {epoch: path}`` (epoch 0 = the initial model, before any step).

* Data: the (class-subset) training set sits in one uint8 tensor on the device
  (:class:`ResidentBatches`); every random draw of an epoch (permutation; augmentation: crop with
  zero padding, flip, rotation in one ``grid_sample``) comes from generators seeded by (seed, epoch),
  so the trajectory depends only on the state at the epoch start. On CPU a run is bit-reproducible.
* Speed options (:class:`Accel`: bf16 autocast, channels-last, ``torch.compile``) are device-agnostic
  and tested on CPU against fp32; by default a run takes the spec's bf16/channels_last on CUDA only
  (on a CPU they slow it down and change the fp32 trajectory), compile wherever set.
* Resumable: after every epoch the full state (model, optimizer, RNG states, history, spec identity)
  goes atomically to ``work_dir/state.pt`` (the previous one kept as ``state.prev.pt``), requested
  checkpoints to ``work_dir/ckpt/epoch=E.pt``. ``work_dir`` must not be a declared Snakemake output
  (Snakemake deletes those after a failure). A restarted job resumes from the newest valid state of
  the same identity (a corrupt one is reported and skipped), so a job killed at any moment and
  restarted produces the same checkpoints as an uninterrupted one.
* SIGINT and SIGTERM raise :class:`TrainingInterrupted`: one line saying which epoch's state is
  saved where and that the same command resumes; the CLI exits with 128 + the signal number.
* Warm start (``init_checkpoint``: a gnc checkpoint of the same network, classes and input shape):
  its weights replace the seeded initialization, the optimizer and schedule start afresh; its path,
  sha256, run id and epoch go into the provenance (``gnc_init_*``), the sha256 into the identity.
* Data parallel (``torchrun``, WORLD_SIZE > 1): every rank takes one contiguous shard of every
  global batch (``batch_size`` is global), gloo on CPU / nccl on CUDA, only rank 0 writes. The CE
  loss is scaled so the averaged gradient is that of the global-batch mean; CMF class sums are
  all-reduced. BatchNorm statistics are per rank (as in the reference) unless ``sync_bn`` is set
  (CUDA only: torch's SyncBatchNorm has no CPU kernel).

Checkpoint (loadable with ``torch.load(weights_only=True)``)::

    {"format": 1, "model": state_dict, "epoch": E, "spec": spec, "history": {...}, "classes": [...],
     "class_names": [...], "in_shape": [C, H, W], "provenance": {gnc_* attributes}}

``history`` holds per-epoch lists: epoch, loss, train_acc (running, on augmented batches, during
the epoch), lr, images_per_s, seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import io as gio
from .data import Prepared, class_subset, load_prepared, read_manifest
from .recipe import DEFAULT_RECIPE, head_loss_problem
from .losses import LOSSES, compute_loss
from .models import ARCH_OPTIONS, HEADS, build_model
from .provenance import dataset_attrs, device_description, provenance

FORMAT = 1

# a run's defaults: the recipe's (so a spec trains the same through the workflow and here; its width
# is an architecture option, its checkpoints the caller's out_ckpts) and the run's own
DEFAULT_SPEC: dict[str, Any] = {
    **{k: v for k, v in DEFAULT_RECIPE.items() if k not in ("width", "checkpoints")},
    "run_id": None,
    "arch": "smallcnn",
    "arch_opts": {},        # architecture options (width ...); defaults per arch in gnc.models.ARCH_OPTIONS
    "tau": 0.1,
    "d": 10,
    "K": None,              # None: all classes of the dataset (or len(classes))
    "classes": None,        # original class indices, in label order; None: gnc.data.class_subset
    "seed": 0,
    "aug_pad": None,        # crop padding in pixels; None: H // 8 (4 for 32x32, as for CIFAR)
    "aug_degrees": 15.0,
    "hardmax_scale": 100.0,
    "deterministic": False,  # CUDA: deterministic algorithms (slower); CPU is always deterministic
    "sync_bn": False,       # DDP on CUDA only
    "verify_data": True,
    "init_checkpoint": None,  # a gnc checkpoint of the same network: its weights replace the seeded init
}
# keys that do not change the trajectory and may differ between a run and its resumption
# (checkpoints: which epochs are kept; init_checkpoint: the identity holds its content's sha256 instead)
_IDENTITY_EXCLUDE = {"run_id", "verify_data", "checkpoints", "init_checkpoint"}
_TOP_LEVEL_ARCH_OPTS = sorted({k for opts in ARCH_OPTIONS.values() for k in opts})


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; nothing is published."""

    def __init__(self, run_id, epoch, step, value):
        self.run_id, self.epoch, self.step, self.value = run_id, epoch, step, value
        super().__init__(f"run {run_id!r}: non-finite training loss {value} at epoch {epoch}, step {step} "
                         f"(lower the learning rate or raise tau); no checkpoint published")


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT (Ctrl-C) or SIGTERM. ``str(exc)`` is one line saying what is saved;
    ``exit_code`` is 128 + the signal number (the shell's convention)."""

    def __init__(self, message: str, *, signal_name: str, saved_epoch: int | None):
        super().__init__(message)
        self.signal_name, self.saved_epoch = signal_name, saved_epoch
        self.exit_code = 128 + int(getattr(signal, signal_name, signal.SIGINT))


# ------------------------------------------------------------------------------------ spec

def normalize_spec(spec: dict) -> dict:
    """Defaults filled in, top-level arch options (``width`` ...) moved into ``arch_opts``, checked,
    and made JSON-clean (so it survives ``torch.load(weights_only=True)`` and JSON attributes)."""
    unknown_types = [k for k, v in spec.items() if not isinstance(k, str)]
    if unknown_types:
        raise ValueError(f"spec keys must be strings: {unknown_types}")
    out = {**DEFAULT_SPEC, **json.loads(json.dumps(spec, default=gio.json_default))}
    opts = dict(out.get("arch_opts") or {})
    for key in _TOP_LEVEL_ARCH_OPTS:
        if key in out:
            opts.setdefault(key, out.pop(key))
    out["arch_opts"] = opts
    for key, allowed in (("head", HEADS), ("loss", LOSSES), ("schedule", ("cosine", "constant", "step"))):
        if out[key] not in allowed:
            raise ValueError(f"spec {key} {out[key]!r} not in {allowed}")
    _parse_augmentation(out["augmentation"])
    if int(out["epochs"]) < 0 or int(out["batch_size"]) < 1:
        raise ValueError("spec needs epochs >= 0 and batch_size >= 1")
    if out["init_checkpoint"] is not None and not (isinstance(out["init_checkpoint"], str) and out["init_checkpoint"]):
        raise ValueError(f"spec init_checkpoint must be a checkpoint path or null, got {out['init_checkpoint']!r}")
    problem = head_loss_problem(out["head"], out["loss"])
    if problem:
        raise ValueError(f"spec: {problem}")
    return out


def spec_identity(spec: dict, dataset_checksum: str | None, world_size: int, accel: Accel,
                  init_sha256: str | None) -> str:
    """Hash of everything that determines the trajectory (resume only into the same identity);
    speed options that change the arithmetic (any of :class:`Accel`) are part of it, and so is the
    content (sha256) of the initial checkpoint, when the run starts from one."""
    key = {k: v for k, v in spec.items() if k not in _IDENTITY_EXCLUDE}
    payload = {"spec": key, "data": dataset_checksum, "world": world_size, "format": FORMAT}
    if init_sha256 is not None:
        payload["init"] = init_sha256
    if accel != Accel():
        payload["accel"] = [accel.bf16, accel.channels_last, accel.compile]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _parse_augmentation(aug) -> set[str]:
    if aug in (None, "none", "", False):
        return set()
    parts = set(str(aug).split("-"))
    bad = parts - {"crop", "flip", "rotate"}
    if bad:
        raise ValueError(f"augmentation {aug!r}: unknown part(s) {sorted(bad)}; use none or a '-'-joined "
                         "subset of crop, flip, rotate")
    return parts


def learning_rate(spec: dict, epoch: int) -> float:
    """lr used during (0-based) ``epoch``; cosine = CosineAnnealingLR(T_max=epochs) stepped per epoch."""
    lr, n = float(spec["lr"]), max(1, int(spec["epochs"]))
    if spec["schedule"] == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / n))
    if spec["schedule"] == "step":
        return lr * 0.1 ** sum(epoch >= m for m in (n // 3, (2 * n) // 3) if m > 0)
    return lr


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1, np.uint64)[0]
               & 0x7FFFFFFFFFFFFFFF)


# ------------------------------------------------------------------------------------ data

def resolve_classes(spec: dict, num_classes: int) -> list[int]:
    """The original class indices of the run, in label order."""
    if spec.get("classes") is not None:
        classes = [int(c) for c in spec["classes"]]
        if spec.get("K") is not None and int(spec["K"]) != len(classes):
            raise ValueError(f"spec K={spec['K']} but {len(classes)} classes given")
        return classes
    K = num_classes if spec.get("K") is None else int(spec["K"])
    if K > num_classes:
        raise ValueError(f"spec K={K} but the dataset has only {num_classes} classes")
    if K == num_classes:
        return list(range(num_classes))
    return [int(c) for c in class_subset(num_classes, K, int(spec.get("class_subset_seed", 0)))]


def load_run_data(data_folder, classes: list[int] | None, *, verify: bool = True,
                  spec: dict | None = None) -> Prepared:
    """The prepared dataset restricted (and relabelled 0..K-1) to ``classes``, else to the spec's."""
    if classes is None:
        classes = resolve_classes(spec or {}, int(read_manifest(data_folder)["num_classes"]))
    return load_prepared(Path(data_folder), classes=classes, verify=verify)


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images N x C x H x W scaled to [0, 1], exact: the moments of
    per-channel histograms of the 256 grey levels (chunked, so memory stays small) in float64."""
    c = x.shape[1]
    counts = np.zeros((c, 256), dtype=np.int64)
    for i in range(0, x.shape[0], chunk):
        block = np.asarray(x[i:i + chunk])
        for ch in range(c):
            counts[ch] += np.bincount(block[:, ch].reshape(-1), minlength=256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum(axis=1).astype(np.float64)
    mean = (counts * levels).sum(axis=1) / total
    var = (counts * (levels[None, :] - mean[:, None]) ** 2).sum(axis=1) / total
    return [float(m) for m in mean], [float(s) for s in np.sqrt(var)]


# ------------------------------------------------------------------------------------ augmentation

def augment(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply crop (zero padding, integer shift), horizontal flip, then rotation — in one grid_sample.

    The torchvision chain RandomCrop(pad) -> RandomHorizontalFlip -> RandomRotation(nearest, fill 0)
    maps an output pixel q (coordinates relative to the image centre) to the source pixel
    F R q + s: rotate back, flip, shift. ``x``: float (n, C, H, W) in [0, 1], padding is 0 (black).
    """
    if not params:
        return x
    n, _, h, w = x.shape
    dev, dt = x.device, torch.float32
    a = torch.eye(2, device=dev, dtype=dt).expand(n, 2, 2).clone()
    if "angle" in params:
        r = torch.deg2rad(params["angle"].to(dt))
        cos, sin = torch.cos(r), torch.sin(r)
        a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    if "flip" in params:
        sign = 1.0 - 2.0 * params["flip"].to(dt)
        a = a * torch.stack([sign, torch.ones_like(sign)], -1)[:, :, None]
    t = torch.zeros(n, 2, device=dev, dtype=dt)
    if "shift" in params:
        t = params["shift"].to(dt)
    # pixel coordinates -> normalized [-1, 1] coordinates (align_corners=False): divide by (w/2, h/2)
    scale = torch.tensor([w / 2.0, h / 2.0], device=dev, dtype=dt)
    a_n = a * scale[None, None, :] / scale[None, :, None]
    theta = torch.cat([a_n, (t / scale)[:, :, None]], dim=2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).to(x.dtype)


# ------------------------------------------------------------------------------------ speed options

@dataclass(frozen=True)
class Accel:
    """The speed options of the training step: ``bf16`` = ``torch.autocast(device.type, bfloat16)``
    around the forward pass (heads and loss stay float32), ``channels_last`` = model and batches in
    channels-last memory format, ``compile`` = ``torch.compile`` (inductor) of the model."""

    bf16: bool = False
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def for_run(cls, spec: dict, dev: torch.device) -> Accel:
        """What a run takes by default (see the module docstring)."""
        cuda = dev.type == "cuda"
        return cls(bf16=cuda and bool(spec["bf16"]), channels_last=cuda and bool(spec["channels_last"]),
                   compile=bool(spec["compile"]))

    def autocast(self, dev: torch.device):
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16)

    def memory_format(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in channels-last format if set (in place; parameters keep their identity)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def compiled(self, net: torch.nn.Module) -> torch.nn.Module:
        return torch.compile(net) if self.compile else net

    @classmethod
    def parse(cls, text: str) -> Accel:
        """``"bf16,channels_last"`` -> Accel(bf16=True, channels_last=True); ``"none"`` -> fp32."""
        names = {t.strip() for t in text.split(",") if t.strip() and t.strip() != "none"}
        bad = names - {"bf16", "channels_last", "compile"}
        if bad:
            raise ValueError(f"unknown speed option(s) {sorted(bad)}; use bf16, channels_last, compile or none")
        return cls(**{n: True for n in names})

    def label(self) -> str:
        on = [name for name in ("bf16", "channels_last", "compile") if getattr(self, name)]
        return " + ".join(on) if on else "fp32"


def dist_backend(dev: torch.device) -> str:
    """The torch.distributed backend for ``dev``: NCCL on CUDA (needs GPUs), gloo elsewhere."""
    return "nccl" if dev.type == "cuda" else "gloo"


def _configure_cuda(spec: dict, dev: torch.device) -> None:
    """cuDNN autotuning (or deterministic algorithms) and TF32 matmuls; nothing to do on a CPU."""
    if dev.type != "cuda":
        return
    if spec["deterministic"]:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = not spec["deterministic"]
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


# ------------------------------------------------------------------------------------ batches and one step

class ResidentBatches:
    """The training set resident on the device as uint8; the batches of one epoch.

    :meth:`epoch` yields (x, y) on the device: a permutation from a generator seeded by (seed,
    epoch, 1), augmentation parameters from one seeded by (seed, epoch, 2) drawn for the global
    batch (so every rank agrees), then rank ``rank`` of ``world`` keeps its contiguous shard.
    ``steps`` = n // batch_size (drop_last, as the reference; at least one smaller batch).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, seed: int, augmentation="none",
                 pad: int | None = None, degrees: float = 15.0, rank: int = 0, world: int = 1,
                 channels_last: bool = False):
        self.x, self.y, self.seed = x, y, int(seed)
        self.n = int(y.shape[0])
        self.parts = _parse_augmentation(augmentation)
        self.pad = int(pad) if pad is not None else int(x.shape[2]) // 8
        self.degrees, self.channels_last = float(degrees), bool(channels_last)
        self.steps = max(1, self.n // int(batch_size))
        self.global_batch = min(int(batch_size), self.n)
        self.lo, self.hi = (rank * self.global_batch) // world, ((rank + 1) * self.global_batch) // world

    @classmethod
    def for_spec(cls, x, y, spec: dict, *, rank: int = 0, world: int = 1, channels_last: bool = False):
        return cls(x, y, batch_size=int(spec["batch_size"]), seed=int(spec["seed"]), augmentation=spec["augmentation"],
                   pad=spec["aug_pad"], degrees=float(spec["aug_degrees"]), rank=rank, world=world,
                   channels_last=channels_last)

    def _augment_params(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Random parameters for ``n`` samples (drawn for the global batch so every rank agrees)."""
        out, dev = {}, self.x.device
        if "crop" in self.parts and self.pad > 0:
            out["shift"] = torch.randint(-self.pad, self.pad + 1, (n, 2), generator=generator, device=dev)
        if "flip" in self.parts:
            out["flip"] = torch.randint(0, 2, (n,), generator=generator, device=dev).bool()
        if "rotate" in self.parts and self.degrees > 0:
            out["angle"] = (torch.rand(n, generator=generator, device=dev) * 2 - 1) * self.degrees
        return out

    def epoch(self, epoch: int):
        dev, gb = self.x.device, self.global_batch
        g_perm = torch.Generator().manual_seed(_seed(self.seed, epoch, 1))
        perm = torch.randperm(self.n, generator=g_perm).to(dev)
        g_aug = torch.Generator(device=dev).manual_seed(_seed(self.seed, epoch, 2))
        for step in range(self.steps):
            idx = perm[step * gb:(step + 1) * gb]
            params = self._augment_params(len(idx), g_aug)
            idx = idx[self.lo:self.hi]
            x = augment(self.x[idx].float().div_(255.0), {k: v[self.lo:self.hi] for k, v in params.items()})
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.y[idx]


def make_optimizer(params, spec: dict) -> torch.optim.SGD:
    """SGD with the spec's momentum, Nesterov (only with a momentum) and weight decay; the foreach
    implementation on every device (on a CPU torch defaults to a per-tensor loop: same values, slower)."""
    momentum = float(spec["momentum"])
    return torch.optim.SGD(params, lr=float(spec["lr"]), momentum=momentum, foreach=True,
                           nesterov=bool(spec["nesterov"]) and momentum > 0, weight_decay=float(spec["weight_decay"]))


def train_step(net, opt, x, y, spec: dict, *, autocast=None, world_size: int = 1, global_batch: int | None = None):
    """One optimizer step on a prepared batch; returns (loss, logits), both detached (no host sync)."""
    with autocast if autocast is not None else contextlib.nullcontext():
        logits = net(x, y)
    loss = compute_loss(spec["loss"], logits, y, tau=float(spec["tau"]),
                        hardmax_scale=float(spec["hardmax_scale"]), world_size=world_size,
                        global_batch=global_batch if global_batch is not None else len(y))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logits.detach()


# ------------------------------------------------------------------------------------ helpers

def _run_logger(log, rank: int) -> logging.Logger:
    """The logger ``log``, one writing timestamped lines to the text handle ``log``, or (None) the
    ``gnc.train`` logger; ranks > 0 of a distributed run log warnings only."""
    if rank > 0:
        log = logging.getLogger(f"gnc.train.rank{rank}")
        log.setLevel(logging.WARNING)
    elif log is None:
        log = logging.getLogger("gnc.train")
    elif not hasattr(log, "warning"):
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log = logging.Logger("gnc.train")  # not in the logging tree: only this handler
        log.addHandler(handler)
    return log


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def pick_device(device=None, local_rank: int = 0) -> torch.device:
    """Explicit device, else CUDA (honouring CUDA_VISIBLE_DEVICES; cuda:LOCAL_RANK under torchrun), else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _rng_state() -> dict:
    np_state = np.random.get_state()
    st = {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
    }
    if torch.cuda.is_available():
        st["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    v = json.loads(st["python"])
    random.setstate((v[0], tuple(v[1]), v[2]))
    n = st["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in st and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(st["cuda"])


def _save_atomic(obj, path: Path) -> None:
    with gio.atomic_path(path, suffix=".tmp.pt") as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint (or state) with ``weights_only=True``; a clear error names a bad file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling / zip error means a corrupt file
        text = str(exc)
        if "Weights only load failed" in text:  # an object outside the allow-list: refuse, with a safe hint
            why = next((ln.strip() for ln in text.splitlines() if "Unsupported" in ln), "")
            why = why.split(". Please use")[0]
            raise CheckpointError(
                f"checkpoint {path} refused: it holds pickled objects that are not checkpoint data "
                f"({why or type(exc).__name__}); it was read with weights_only=True, so nothing in it ran. "
                f"A gnc checkpoint holds only tensors, numbers, strings, lists and dicts; do not load this "
                f"file with weights_only=False unless you made it yourself") from exc
        raise CheckpointError(f"checkpoint {path} is corrupt or not a gnc checkpoint: "
                              f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"checkpoint {path} is not a gnc checkpoint (no 'model' entry)")
    return obj


class CheckpointError(ValueError):
    """A checkpoint or training state file cannot be read."""


# ------------------------------------------------------------------------------------ state

class _StateStore:
    """``work_dir/state.pt`` (+ ``state.prev.pt``) and ``work_dir/ckpt/epoch=E.pt``."""

    def __init__(self, work_dir: Path):
        self.dir = Path(work_dir)
        self.state = self.dir / "state.pt"
        self.prev = self.dir / "state.prev.pt"
        self.ckpt_dir = self.dir / "ckpt"

    def ckpt(self, epoch: int) -> Path:
        return self.ckpt_dir / f"epoch={epoch}.pt"

    def write(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.state.exists():
            os.replace(self.state, self.prev)
        _save_atomic(state, self.state)

    def candidates(self, log: logging.Logger, identity: str):
        """Valid states of this identity, newest first."""
        found = []
        for path in (self.state, self.prev):
            if not path.exists():
                continue
            try:
                st = load_checkpoint(path)
                if st.get("format") != FORMAT:
                    raise CheckpointError("not a gnc training state")
            except CheckpointError as exc:
                log.warning(f"training state {path} is unreadable ({type(exc).__name__}: {exc}); ignoring it")
                continue
            if st.get("identity") != identity:
                log.warning(f"training state {path} belongs to a different run spec/dataset "
                            f"({st.get('identity')} != {identity}); ignoring it")
                continue
            found.append((path, st))
        found.sort(key=lambda ps: -int(ps[1]["epoch"]))
        return found

    def clear(self) -> None:
        for p in (self.state, self.prev):
            p.unlink(missing_ok=True)
        if self.ckpt_dir.exists():
            shutil.rmtree(self.ckpt_dir)


# ------------------------------------------------------------------------------------ training

def train_run(spec: dict, data_folder, work_dir, out_ckpts: dict, *, threads: int = 1, log=None,
              device=None, accel: Accel | None = None) -> dict:
    """Train one run; publish ``out_ckpts`` ({epoch: path}); return a summary dict.

    ``accel``: the speed options (default :meth:`Accel.for_run`: the spec's, on CUDA).
    Raises :class:`NonFiniteLossError` (nothing published) when the loss becomes NaN/inf, and
    :class:`TrainingInterrupted` on SIGINT / SIGTERM.
    """
    spec = normalize_spec(spec)
    threads = max(1, int(threads))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))  # set by torchrun
    dev = pick_device(device, int(os.environ.get("LOCAL_RANK", rank)))
    lg = _run_logger(log, rank)
    trainer = _Trainer(spec, data_folder=Path(data_folder), work_dir=Path(work_dir),
                       out_ckpts={int(k): Path(v) for k, v in out_ckpts.items()}, lg=lg, dev=dev, world=world,
                       rank=rank, threads=threads, accel=accel or Accel.for_run(spec, dev))
    own_pg = world > 1 and not dist.is_initialized()  # join torchrun's process group unless in one
    if own_pg:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(dist_backend(dev))
    try:
        with _sigterm_raises(trainer):
            return trainer.run()
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        raise trainer.interrupted("SIGINT") from None
    finally:
        if own_pg:
            dist.destroy_process_group()


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


@contextlib.contextmanager
def _sigterm_raises(trainer: _Trainer):
    """SIGTERM (a scheduler's cancel or time limit, ``kill``) raises the trainer's interruption, as
    Ctrl-C does. Signal handlers can only be set from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise trainer.interrupted("SIGTERM")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class _Trainer:
    """One training job: the run's data, model, optimizer, history and state store, and the steps
    of :meth:`run` (load, build, resume, train epochs, publish)."""

    def __init__(self, spec: dict, *, data_folder: Path, work_dir: Path, out_ckpts: dict[int, Path],
                 lg: logging.Logger, dev: torch.device, world: int, rank: int, threads: int, accel: Accel):
        self.spec, self.data_folder, self.work_dir, self.out_ckpts = spec, data_folder, work_dir, out_ckpts
        self.lg, self.dev, self.world, self.rank, self.threads, self.accel = lg, dev, world, rank, threads, accel
        self.run_id = spec.get("run_id") or "run"
        self.is_main = rank == 0
        self.epochs = int(spec["epochs"])
        self.store = _StateStore(work_dir)
        self.history = {k: [] for k in ("epoch", "loss", "train_acc", "lr", "images_per_s", "seconds")}
        self.saved_epoch: int | None = None  # the newest state written or resumed from
        self.running_epoch: int | None = None  # 1-based epoch in progress

    def run(self) -> dict:
        bad = [e for e in self.out_ckpts if e < 0 or e > self.epochs]
        if bad:
            raise ValueError(f"run {self.run_id}: checkpoint epochs {bad} outside 0..{self.epochs}")
        _configure_cuda(self.spec, self.dev)
        self.init = _read_init_checkpoint(self.spec)
        batches = self._load_data()
        self._build_model()
        start = self._resume()
        _barrier(self.world)  # every rank has decided before rank 0 removes anything
        if self.is_main and start == 0:
            self.store.clear()
        self.prov_base = _provenance_base(self.spec, self.data, self.dev, self.world, self.threads, self.init)
        if start == 0:
            self._write_ckpt(0)
        net = self._wrap()
        t_run = time.time()
        for epoch in range(start, self.epochs):
            self.running_epoch = epoch + 1
            lr, losses, correct, seconds = self._train_epoch(net, batches, epoch)
            self._end_epoch(epoch, lr, losses, correct, seconds, batches.steps * batches.global_batch)
            self.running_epoch = None
            elapsed = time.time() - t_run
            eta = elapsed / (epoch + 1 - start) * (self.epochs - epoch - 1)
            h = self.history
            self.lg.info(f"[{self.run_id}] epoch {epoch + 1}/{self.epochs} loss {h['loss'][-1]:.4f} "
                         f"train_acc {h['train_acc'][-1]:.4f} lr {lr:.4g} {h['images_per_s'][-1]:.0f} img/s "
                         f"epoch {seconds:.2f}s elapsed {_fmt_time(elapsed)} ETA {_fmt_time(eta)}")
        self._publish_all()
        return {"run_id": self.run_id, "epochs": self.epochs, "history": self.history, "classes": self.classes,
                "checkpoints": {e: str(p) for e, p in self.out_ckpts.items()}, "device": str(self.dev),
                "world_size": self.world, "resumed_from": start, "accel": self.accel.label()}

    def _load_data(self) -> ResidentBatches:
        spec, t_load = self.spec, time.time()
        self.data = data = load_run_data(self.data_folder, None, verify=bool(spec["verify_data"]), spec=spec)
        self.classes = data.classes
        K = len(self.classes)
        if spec.get("K") is None:
            spec["K"] = K
        spec["classes"] = self.classes
        n, self.in_shape = int(data.train_x.shape[0]), tuple(int(s) for s in data.train_x.shape[1:])
        if n == 0:
            raise ValueError(f"run {self.run_id}: no training samples for classes {self.classes}")
        self.input_stats = channel_stats(data.train_x)
        x = torch.from_numpy(np.ascontiguousarray(data.train_x)).to(self.dev)
        y = torch.from_numpy(data.train_y).to(self.dev)
        self.identity = spec_identity(spec, data.manifest.get("checksum"), self.world, self.accel,
                                      self.init.sha256 if self.init else None)
        backend = f" ({dist_backend(self.dev)})" if self.world > 1 else ""
        self.lg.info(f"[{self.run_id}] {n} training images {list(self.in_shape)}, K={K}, device {self.dev}, "
                     f"world {self.world}{backend}, threads {self.threads}, {self.accel.label()}, "
                     f"data loaded in {time.time() - t_load:.1f}s")
        return ResidentBatches.for_spec(x, y, spec, rank=self.rank, world=self.world,
                                        channels_last=self.accel.channels_last)

    def _build_model(self) -> None:
        spec, seed = self.spec, int(self.spec["seed"])
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self.model = build_model(spec["arch"], self.in_shape, int(spec["d"]), len(self.classes), spec["head"],
                                 tau=float(spec["tau"]), cmf_beta=float(spec["cmf_momentum"]), **spec["arch_opts"])
        self.model.set_input_stats(*self.input_stats)
        if self.init is not None:
            self.init.load_into(self.model, spec, self.classes, self.in_shape)
            self.lg.info(f"[{self.run_id}] initialized from {self.init.path} (sha256 {self.init.sha256[:12]}, "
                         f"run {self.init.run_id}, epoch {self.init.epoch})")
        self.model.to(self.dev)
        self.accel.memory_format(self.model)
        self.opt = make_optimizer(self.model.parameters(), spec)

    def _resume(self) -> int:
        """Load the newest usable state of this identity; return its epoch (0: fresh start)."""
        candidates = self.store.candidates(self.lg, self.identity)
        for path, st in candidates:
            missing = [e for e in self.out_ckpts if e <= int(st["epoch"]) and not self.store.ckpt(e).exists()]
            if missing:
                self.lg.warning(f"[{self.run_id}] state {path} (epoch {st['epoch']}) lacks checkpoint copies "
                                f"for epochs {missing}; not resuming from it")
                continue
            self.model.load_state_dict(st["model"])
            self.opt.load_state_dict(st["optimizer"])
            _set_rng_state(st["rng"])
            self.history = st["history"]
            self.saved_epoch = int(st["epoch"])
            self.lg.info(f"[{self.run_id}] resuming from {path} at epoch {self.saved_epoch}")
            return self.saved_epoch
        if candidates or self.store.state.exists() or self.store.prev.exists():
            self.lg.warning(f"[{self.run_id}] no usable training state in {self.work_dir}; starting from scratch")
        return 0

    def _wrap(self) -> torch.nn.Module:
        """DDP (buffers such as BN statistics and the CMF classes are synced from rank 0), then compile."""
        net = self.model
        if self.world > 1:
            cuda = self.dev.type == "cuda"
            if cuda and self.spec["sync_bn"]:
                net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            net = DistributedDataParallel(net, device_ids=[self.dev.index] if cuda else None)
        return self.accel.compiled(net)

    def _train_epoch(self, net, batches: ResidentBatches, epoch: int):
        """One epoch of steps; returns (lr, per-step losses on the CPU, correct count, seconds)."""
        lr = learning_rate(self.spec, epoch)
        for g in self.opt.param_groups:
            g["lr"] = lr
        net.train()
        t0 = time.time()
        autocast = self.accel.autocast(self.dev)
        losses = torch.zeros(batches.steps, device=self.dev, dtype=torch.float32)
        correct = torch.zeros((), device=self.dev, dtype=torch.int64)
        for step, (x, y) in enumerate(batches.epoch(epoch)):
            loss, logits = train_step(net, self.opt, x, y, self.spec, autocast=autocast, world_size=self.world,
                                      global_batch=batches.global_batch)
            losses[step] = loss
            correct += (logits.argmax(1) == y).sum()
        if self.world > 1:
            dist.all_reduce(losses)
            losses /= self.world
            dist.all_reduce(correct)
        loss_values = losses.cpu()  # waits for the device
        finite = torch.isfinite(loss_values)
        if not bool(finite.all()):
            bad_step = int((~finite).nonzero()[0])
            raise NonFiniteLossError(self.run_id, epoch + 1, bad_step, float(loss_values[bad_step]))
        return lr, loss_values, int(correct), time.time() - t0

    def _end_epoch(self, epoch: int, lr: float, losses: torch.Tensor, correct: int, seconds: float, seen: int):
        """Record the epoch in the history; write its checkpoint (if requested) and the state."""
        h = self.history
        h["epoch"].append(epoch + 1)
        h["loss"].append(float(losses.double().mean()))
        h["train_acc"].append(correct / seen)
        h["lr"].append(lr)
        h["images_per_s"].append(seen / seconds if seconds > 0 else float("inf"))
        h["seconds"].append(seconds)
        self._write_ckpt(epoch + 1)
        if self.is_main:
            self.store.write({**self._snapshot(epoch + 1), "identity": self.identity,
                              "optimizer": self.opt.state_dict(), "rng": _rng_state()})
        self.saved_epoch = epoch + 1
        _barrier(self.world)

    def _snapshot(self, epoch: int) -> dict:
        """What a checkpoint and the training state share."""
        model = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        return {"format": FORMAT, "model": model, "epoch": epoch, "spec": copy.deepcopy(self.spec),
                "history": copy.deepcopy(self.history)}

    def _write_ckpt(self, epoch: int) -> None:
        if self.is_main and epoch in self.out_ckpts:
            ckpt = {**self._snapshot(epoch), "classes": list(self.classes),
                    "class_names": list(self.data.class_names), "in_shape": list(self.in_shape),
                    "provenance": _provenance(self.prov_base, epoch)}
            _save_atomic(ckpt, self.store.ckpt(epoch))

    def _publish_all(self) -> None:
        if self.is_main:
            for e, dst in sorted(self.out_ckpts.items()):
                src = self.store.ckpt(e)
                if not src.exists():  # can only happen if work_dir was tampered with
                    raise CheckpointError(f"run {self.run_id}: checkpoint copy {src} missing in work_dir")
                _publish(src, dst)
            self.lg.info(f"[{self.run_id}] published {len(self.out_ckpts)} checkpoint(s); "
                         f"train time {_fmt_time(sum(self.history['seconds']))}")
        _barrier(self.world)

    def interrupted(self, signal_name: str) -> TrainingInterrupted:
        """The one line an interruption prints, as an exception."""
        during = f" during epoch {self.running_epoch}/{self.epochs}" if self.running_epoch else ""
        if self.saved_epoch:
            what = (f"state saved at epoch {self.saved_epoch} in {self.work_dir}; "
                    f"run the same command to resume")
        elif self.store.state.exists() or self.store.prev.exists():  # interrupted before it was read
            what = f"the earlier state in {self.work_dir} is kept; run the same command to resume"
        else:
            what = "no epoch was completed, so no state was saved; run the same command to start again"
        return TrainingInterrupted(f"[{self.run_id}] interrupted by {signal_name}{during}: {what}",
                                   signal_name=signal_name, saved_epoch=self.saved_epoch)


@dataclass
class InitCheckpoint:
    """The checkpoint a run starts from (spec ``init_checkpoint``): its path, content hash and data."""

    path: Path
    sha256: str
    ckpt: dict
    run_id: str
    epoch: int

    def load_into(self, model: torch.nn.Module, spec: dict, classes: list[int], in_shape) -> None:
        """Copy every parameter and buffer into ``model``; refuse (one message naming what differs) a
        checkpoint of another network or of other classes or input shape."""
        src = self.ckpt.get("spec", {})
        mine = {"arch": spec["arch"], "arch_opts": spec["arch_opts"], "head": spec["head"], "d": int(spec["d"]),
                "classes": list(classes), "in_shape": list(in_shape)}
        theirs = {"arch": src.get("arch"), "arch_opts": src.get("arch_opts"), "head": src.get("head"),
                  "d": src.get("d"), "classes": self.ckpt.get("classes"), "in_shape": self.ckpt.get("in_shape")}
        diff = [f"{k}: {theirs[k]!r} there, {mine[k]!r} here" for k in mine if theirs[k] != mine[k]]
        if diff:
            raise ValueError(f"run {spec.get('run_id') or 'run'}: init_checkpoint {self.path} is of another "
                             f"network or data ({'; '.join(diff)})")
        model.load_state_dict(self.ckpt["model"], strict=True)


def _read_init_checkpoint(spec: dict) -> InitCheckpoint | None:
    """The spec's ``init_checkpoint`` read (weights only) and hashed, or None."""
    if spec.get("init_checkpoint") is None:
        return None
    path = Path(spec["init_checkpoint"])
    if not path.is_file():
        raise FileNotFoundError(f"run {spec.get('run_id') or 'run'}: init_checkpoint {path} does not exist")
    ckpt = load_checkpoint(path)
    return InitCheckpoint(path, gio.sha256_file(path), ckpt, str(ckpt.get("spec", {}).get("run_id")),
                          int(ckpt.get("epoch", -1)))


def _publish(src: Path, dst: Path) -> None:
    """Atomically place ``src`` at ``dst``: a hard link where possible (no second copy on disk; the
    work copy is only ever replaced, never modified in place), else a copy."""
    with gio.atomic_path(dst, suffix=".tmp.pt") as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _provenance_base(spec, data: Prepared, dev, world, threads, init: InitCheckpoint | None = None) -> dict:
    base = dict(dataset_attrs(data.manifest))
    base.update({"gnc_seed": int(spec["seed"]), "gnc_device": device_description(dev), "gnc_world_size": world,
                 "gnc_threads": threads, "gnc_run_id": spec.get("run_id") or "run"})
    if init is not None:
        base.update({"gnc_init_checkpoint": str(init.path), "gnc_init_checkpoint_sha256": init.sha256,
                     "gnc_init_run_id": init.run_id, "gnc_init_epoch": init.epoch})
    return base


def _provenance(base: dict, epoch: int) -> dict:
    p = provenance(epoch=epoch)
    p.update({k: v for k, v in base.items() if v is not None})
    return {k: (v if isinstance(v, (str, int, float, bool)) else json.dumps(v, sort_keys=True, default=str))
            for k, v in p.items()}


# ------------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    """``python -m gnc.train --spec spec.json --data DIR --work-dir DIR --ckpt 0=out/e0.pt ...``
    (also what ``torchrun ... -m gnc.train`` runs)."""
    ap = argparse.ArgumentParser(prog="gnc.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", required=True, help="JSON file (or inline JSON) with the run spec")
    ap.add_argument("--data", required=True, help="prepared dataset folder")
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--ckpt", action="append", default=[], metavar="EPOCH=PATH")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None)
    ap.add_argument("--log", default=None, help="append the progress log to this file (default stderr)")
    ap.add_argument("--accel", default=None, metavar="OPTS",
                    help="speed options to use on any device, comma-separated from bf16, channels_last, compile "
                         "('none': fp32); default: the spec's bf16/channels_last on CUDA, compile if set")
    args = ap.parse_args(argv)
    accel = None if args.accel is None else Accel.parse(args.accel)
    spec = json.loads(args.spec if args.spec.lstrip().startswith("{") else Path(args.spec).read_text())
    out = {}
    for item in args.ckpt:
        e, _, p = item.partition("=")
        out[int(e)] = p
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    fh = open(args.log, "a") if args.log else None  # noqa: SIM115
    try:
        train_run(spec, args.data, args.work_dir, out, threads=args.threads, log=fh, device=args.device,
                  accel=accel)
    except TrainingInterrupted as exc:
        print(exc, file=sys.stderr)
        if fh:
            fh.write(time.strftime("%Y-%m-%d %H:%M:%S ") + str(exc) + "\n")
        return exc.exit_code
    finally:
        if fh:
            fh.close()
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.distributed")
    sys.exit(main())
