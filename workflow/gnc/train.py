"""The training loop: resident data, own seeded batching, resumable state, atomic checkpoints.

``train_run(spec, data_folder, work_dir, out_ckpts)`` trains one run and publishes the checkpoints
``out_ckpts = {epoch: path}`` (epoch 0 = the initial model, before any step).

Design
------
* The whole (class-subset) training set sits in one uint8 tensor on the device; batches are drawn
  with a permutation from a generator seeded by (seed, epoch), converted to float on the fly and
  augmented on the device (random crop with zero padding, horizontal flip, rotation — one batched
  ``grid_sample``). No DataLoader, no workers. Because every random draw of an epoch comes from
  generators seeded by (seed, epoch), the trajectory depends only on the state at the epoch start.
* Deterministic: on CPU the same run twice gives bit-identical model tensors (timings and the
  provenance timestamp of course differ).
* Resumable: at the end of every epoch the full state (model, optimizer, schedule position, RNG
  states, history, spec identity) is written atomically to ``work_dir/state.pt`` (the previous
  one kept as ``state.prev.pt``), and requested epoch checkpoints to ``work_dir/ckpt/epoch=E.pt``.
  ``work_dir`` must not be a declared Snakemake output (Snakemake deletes those after a failure).
  A restarted job resumes from the newest valid state with the same identity; a corrupt state is
  reported in the log and the previous one (or a fresh start) is used. A job killed at any moment
  and restarted produces the same checkpoints as an uninterrupted one (tested with SIGKILL).
* Only at the end are the checkpoints copied atomically to the ``out_ckpts`` paths.
* Data parallel: launched by ``torchrun`` (WORLD_SIZE > 1) every rank takes one contiguous shard of
  every global batch (``batch_size`` is global), gloo on CPU / nccl on CUDA, only rank 0 writes.
  The CE loss is scaled so the averaged gradient is exactly that of the global-batch mean; CMF
  class sums are all-reduced. BatchNorm statistics are per rank (as in the reference, which does
  not use SyncBN) unless ``sync_bn`` is set (CUDA only).

Checkpoint (loadable with ``torch.load(weights_only=True)``)::

    {"format": 1, "model": state_dict, "epoch": E, "spec": spec, "history": {...}, "classes": [...],
     "class_names": [...], "in_shape": [C, H, W], "provenance": {gnc_* attributes}}

``history`` holds per-epoch lists: epoch, loss, train_acc (running, on augmented batches, during
the epoch), lr, images_per_s, seconds.

Test hooks (environment variables, used by the test-suite only): ``GNC_TRAIN_HANG_AT="E:S"`` makes
the loop write ``work_dir/hang.marker`` and sleep at step S of epoch E (1-based epoch, 0-based
step) so a test can SIGKILL it mid-epoch; ``GNC_TRAIN_STOP_AFTER=E`` raises
:class:`TrainingInterrupted` after the state of epoch E is written.
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
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import io as gio
from .losses import LOSSES, compute_loss
from .models import HEADS, build_model

FORMAT = 1

DEFAULT_SPEC: dict[str, Any] = {
    "run_id": None,
    "arch": "smallcnn",
    "arch_opts": {},
    "head": "normalized",
    "loss": "ce",
    "tau": 0.1,
    "d": 10,
    "K": None,              # None: all classes of the dataset (or len(classes))
    "classes": None,        # original class indices, in label order; None: gnc.data.class_subset
    "class_subset_seed": 0,  # seed of gnc.data.class_subset when K < number of classes and classes is None
    "seed": 0,
    "epochs": 10,
    "batch_size": 128,
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "schedule": "cosine",   # cosine (per-epoch, T_max = epochs) | constant | step (x0.1 at 1/3, 2/3)
    "augmentation": "none",  # none | any '-'-joined subset of crop, flip, rotate (e.g. crop-flip-rotate)
    "aug_pad": None,        # crop padding in pixels; None: H // 8 (4 for 32x32, as for CIFAR)
    "aug_degrees": 15.0,
    "cmf_momentum": 0.9,    # CMF beta: C <- beta*C + (1-beta)*S
    "hardmax_scale": 100.0,
    "bf16": True,           # bf16 autocast, CUDA only
    "channels_last": True,  # CUDA only
    "compile": False,
    "deterministic": False,  # CUDA: deterministic algorithms (slower); CPU is always deterministic
    "sync_bn": False,       # DDP on CUDA only
    "verify_data": True,
}
# keys that do not change the trajectory and may differ between a run and its resumption
_IDENTITY_EXCLUDE = {"run_id", "verify_data", "checkpoints"}  # checkpoints: which epochs are kept
_TOP_LEVEL_ARCH_OPTS = ("width", "depth", "bn", "groups", "width_per_group")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; nothing is published."""

    def __init__(self, run_id, epoch, step, value):
        self.run_id, self.epoch, self.step, self.value = run_id, epoch, step, value
        super().__init__(f"run {run_id!r}: non-finite training loss {value} at epoch {epoch}, step {step} "
                         f"(lower the learning rate or raise tau); no checkpoint published")


class TrainingInterrupted(RuntimeError):
    """Raised by the GNC_TRAIN_STOP_AFTER test hook."""


# ------------------------------------------------------------------------------------ spec

def normalize_spec(spec: dict) -> dict:
    """Defaults filled in, top-level arch options (``width`` ...) moved into ``arch_opts``, checked,
    and made JSON-clean (so it survives ``torch.load(weights_only=True)`` and JSON attributes)."""
    unknown_types = [k for k, v in spec.items() if not isinstance(k, str)]
    if unknown_types:
        raise ValueError(f"spec keys must be strings: {unknown_types}")
    out = {**DEFAULT_SPEC, **json.loads(json.dumps(spec, default=_json_default))}
    opts = dict(out.get("arch_opts") or {})
    for key in _TOP_LEVEL_ARCH_OPTS:
        if key in out:
            opts.setdefault(key, out.pop(key))
    out["arch_opts"] = opts
    if out["head"] not in HEADS:
        raise ValueError(f"spec head {out['head']!r} not in {HEADS}")
    if out["loss"] not in LOSSES:
        raise ValueError(f"spec loss {out['loss']!r} not in {LOSSES}")
    if out["schedule"] not in ("cosine", "constant", "step"):
        raise ValueError(f"spec schedule {out['schedule']!r} not in (cosine, constant, step)")
    _parse_augmentation(out["augmentation"])
    if int(out["epochs"]) < 0 or int(out["batch_size"]) < 1:
        raise ValueError("spec needs epochs >= 0 and batch_size >= 1")
    if out["loss"] == "hardmax" and out["head"] == "linear":
        raise ValueError("the hardmax loss needs a cosine head (normalized or cmf)")
    return out


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray, tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"spec value not JSON serialisable: {type(o)}")


def spec_identity(spec: dict, dataset_checksum: str | None, world_size: int) -> str:
    """Hash of everything that determines the trajectory (resume only into the same identity)."""
    key = {k: v for k, v in spec.items() if k not in _IDENTITY_EXCLUDE}
    blob = json.dumps({"spec": key, "data": dataset_checksum, "world": world_size, "format": FORMAT},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _parse_augmentation(aug) -> set[str]:
    if aug in (None, "none", "", False):
        return set()
    if aug in ("cifar", "standard"):
        return {"crop", "flip", "rotate"}
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

@dataclass
class _Data:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list
    manifest: dict
    classes: list[int]


def resolve_classes(spec: dict, num_classes: int) -> list[int]:
    """The original class indices of the run, in label order."""
    if spec.get("classes") is not None:
        classes = [int(c) for c in spec["classes"]]
        if spec.get("K") is not None and int(spec["K"]) != len(classes):
            raise ValueError(f"spec K={spec['K']} but {len(classes)} classes given")
        if len(set(classes)) != len(classes) or min(classes) < 0 or max(classes) >= num_classes:
            raise ValueError(f"spec classes must be distinct indices in [0, {num_classes}): {classes}")
        return classes
    K = num_classes if spec.get("K") is None else int(spec["K"])
    if K > num_classes:
        raise ValueError(f"spec K={K} but the dataset has only {num_classes} classes")
    if K == num_classes:
        return list(range(num_classes))
    from .data import class_subset

    return [int(c) for c in class_subset(num_classes, K, int(spec.get("class_subset_seed", 0)))]


def load_run_data(data_folder, classes: list[int] | None, *, verify: bool = True,
                  spec: dict | None = None) -> _Data:
    """Load the prepared dataset restricted (and relabelled 0..K-1) to the run's classes."""
    folder = Path(data_folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{folder}: not a prepared dataset (no manifest.json)")
    num = json.loads(manifest_path.read_text()).get("num_classes")
    if classes is None:
        classes = resolve_classes(spec or {}, int(num))
    from .data import load_prepared

    p = load_prepared(folder, classes=classes, verify=verify)
    manifest = dict(p.manifest)
    manifest.setdefault("path", str(folder))
    return _Data(np.asarray(p.train_x), np.asarray(p.train_y, dtype=np.int64), np.asarray(p.test_x),
                 np.asarray(p.test_y, dtype=np.int64), [str(n) for n in p.class_names], manifest,
                 [int(c) for c in classes])


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images N x C x H x W scaled to [0, 1].

    Exact: per-channel histograms of the 256 grey levels (chunked, so memory stays small), then the
    moments from the histogram in float64.
    """
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

def augment_params(n: int, *, parts: set[str], pad: int, degrees: float, generator: torch.Generator,
                   device) -> dict[str, torch.Tensor]:
    """Random parameters for ``n`` samples (drawn for the global batch so every rank agrees)."""
    out = {}
    if "crop" in parts and pad > 0:
        out["shift"] = torch.randint(-pad, pad + 1, (n, 2), generator=generator, device=device)
    if "flip" in parts:
        out["flip"] = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    if "rotate" in parts and degrees > 0:
        out["angle"] = (torch.rand(n, generator=generator, device=device) * 2 - 1) * degrees
    return out


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


# ------------------------------------------------------------------------------------ optimizer

class SGD:
    """SGD with momentum / Nesterov / weight decay: the arithmetic of ``torch.optim.SGD`` (its foreach
    path, op for op; ``tests/test_train.py`` checks bit-equality), without its machinery.

    Why: the first call of any ``torch.optim.Optimizer`` method imports ``torch._dynamo`` (about 2 s
    of CPU per process on this machine, as much as importing torch), which every Snakemake training
    job would pay. Exposes what the trainer needs: ``param_groups`` (one group; set ``lr`` there),
    ``state`` ({param: {"momentum_buffer": tensor}}), ``step``, ``zero_grad``, ``state_dict``,
    ``load_state_dict`` (same layout as torch's, so either loads the other's state).
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 dampening: float = 0.0):
        params = list(params)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.param_groups = [{"params": params, "lr": float(lr), "momentum": float(momentum),
                              "dampening": float(dampening), "weight_decay": float(weight_decay),
                              "nesterov": bool(nesterov)}]
        self.state: dict = {}

    @torch.no_grad()
    def step(self) -> None:
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if g["weight_decay"] != 0:
                grads = torch._foreach_add(grads, params, alpha=g["weight_decay"])
            if g["momentum"] != 0:
                bufs = [self.state.get(p, {}).get("momentum_buffer") for p in params]
                if all(b is not None for b in bufs):
                    torch._foreach_mul_(bufs, g["momentum"])
                    torch._foreach_add_(bufs, grads, alpha=1 - g["dampening"])
                else:
                    for i, p in enumerate(params):
                        if bufs[i] is None:
                            bufs[i] = grads[i].clone().detach()
                            self.state.setdefault(p, {})["momentum_buffer"] = bufs[i]
                        else:
                            bufs[i].mul_(g["momentum"]).add_(grads[i], alpha=1 - g["dampening"])
                if g["nesterov"]:
                    torch._foreach_add_(grads, bufs, alpha=g["momentum"])
                else:
                    grads = bufs
            torch._foreach_add_(params, grads, alpha=-g["lr"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def state_dict(self) -> dict:
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        groups, start = [], 0
        for g in self.param_groups:
            groups.append({**{k: v for k, v in g.items() if k != "params"},
                           "params": list(range(start, start + len(g["params"])))})
            start += len(g["params"])
        state = {index[id(p)]: {k: v for k, v in st.items()} for p, st in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict) -> None:
        flat = [p for g in self.param_groups for p in g["params"]]
        if len(sd["param_groups"]) != len(self.param_groups) or \
                sum(len(g["params"]) for g in sd["param_groups"]) != len(flat):
            raise ValueError("optimizer state does not match the parameters")
        for g, sg in zip(self.param_groups, sd["param_groups"]):
            for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov"):
                if k in sg:
                    g[k] = sg[k]
        self.state = {}
        for i, st in sd["state"].items():
            p = flat[int(i)]
            self.state[p] = {k: (v.to(device=p.device, dtype=p.dtype, copy=True) if torch.is_tensor(v) else v)
                             for k, v in st.items()}


# ------------------------------------------------------------------------------------ one step

def make_batch(train_x: torch.Tensor, train_y: torch.Tensor, idx: torch.Tensor, params: dict,
               channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather a batch of resident uint8 images, convert to float in [0, 1] and augment, on the device."""
    x = augment(train_x[idx].float().div_(255.0), params)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, train_y[idx]


def train_step(net, opt, x, y, spec: dict, *, autocast=None, world_size: int = 1, global_batch: int | None = None):
    """One optimizer step on a prepared batch; returns (loss, logits), both detached (no host sync)."""
    with autocast if autocast is not None else contextlib.nullcontext():
        logits = net(x, y)
    loss = compute_loss(spec["loss"], logits, y, head=spec["head"], tau=float(spec["tau"]),
                        hardmax_scale=float(spec["hardmax_scale"]), world_size=world_size,
                        global_batch=global_batch if global_batch is not None else len(y))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logits.detach()


# ------------------------------------------------------------------------------------ helpers

class _Logger:
    """Writes to a logging.Logger, a text file handle, or (None) the ``gnc.train`` logger."""

    def __init__(self, log, quiet: bool = False):
        self.log = log if log is not None else logging.getLogger("gnc.train")
        self.quiet = quiet  # ranks > 0 of a distributed run: warnings only

    def info(self, msg: str) -> None:
        if self.quiet:
            return
        if hasattr(self.log, "info") and hasattr(self.log, "warning"):
            self.log.info(msg)
        else:
            self._write(msg)

    def warning(self, msg: str) -> None:
        if hasattr(self.log, "info") and hasattr(self.log, "warning"):
            self.log.warning(msg)
        else:
            self._write("WARNING: " + msg)

    def _write(self, msg: str) -> None:
        self.log.write(time.strftime("%Y-%m-%d %H:%M:%S ") + msg + "\n")
        self.log.flush()


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return world, rank, local


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


def _cpu_state_dict(model: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


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

    def candidates(self, log: _Logger, identity: str):
        """Valid states of this identity, newest first."""
        found = []
        for path in (self.state, self.prev):
            if not path.exists():
                continue
            try:
                st = torch.load(path, map_location="cpu", weights_only=True)
                if not isinstance(st, dict) or st.get("format") != FORMAT or "model" not in st:
                    raise ValueError("not a gnc training state")
            except Exception as exc:  # noqa: BLE001
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
            if p.exists():
                p.unlink()
        if self.ckpt_dir.exists():
            shutil.rmtree(self.ckpt_dir)


# ------------------------------------------------------------------------------------ training

def train_run(spec: dict, data_folder, work_dir, out_ckpts: dict, *, threads: int = 1, log=None,
              device=None) -> dict:
    """Train one run; publish ``out_ckpts`` ({epoch: path}); return a summary dict.

    Raises :class:`NonFiniteLossError` (nothing published) when the loss becomes NaN/inf.
    """
    spec = normalize_spec(spec)
    lg = _Logger(log)
    run_id = spec.get("run_id") or "run"
    threads = max(1, int(threads))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)

    world, rank, local_rank = _dist_env()
    dev = pick_device(device, local_rank)
    own_pg = False
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            own_pg = True
    is_main = rank == 0
    if not is_main:
        lg = _Logger(logging.getLogger("gnc.train.rank%d" % rank), quiet=True)

    try:
        return _train(spec, Path(data_folder), Path(work_dir), {int(k): Path(v) for k, v in out_ckpts.items()},
                      lg, dev, world, rank, is_main, run_id, threads)
    finally:
        if own_pg:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(spec, data_folder, work_dir, out_ckpts, lg, dev, world, rank, is_main, run_id, threads):
    epochs = int(spec["epochs"])
    bad = [e for e in out_ckpts if e < 0 or e > epochs]
    if bad:
        raise ValueError(f"run {run_id}: checkpoint epochs {bad} outside 0..{epochs}")
    cuda = dev.type == "cuda"
    if cuda:
        if spec["deterministic"]:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # ---- data
    t_load = time.time()
    manifest_num = json.loads((data_folder / "manifest.json").read_text()).get("num_classes")
    classes = resolve_classes(spec, int(manifest_num))
    data = load_run_data(data_folder, classes, verify=bool(spec["verify_data"]))
    K = len(classes)
    if spec.get("K") is None:
        spec["K"] = K
    spec["classes"] = classes
    n, in_shape = int(data.train_x.shape[0]), tuple(int(s) for s in data.train_x.shape[1:])
    if n == 0:
        raise ValueError(f"run {run_id}: no training samples for classes {classes}")
    mean, std = channel_stats(data.train_x)
    train_x = torch.from_numpy(np.ascontiguousarray(data.train_x)).to(dev)
    train_y = torch.from_numpy(data.train_y).to(dev)
    identity = spec_identity(spec, data.manifest.get("checksum"), world)
    lg.info(f"[{run_id}] {n} training images {list(in_shape)}, K={K}, device {dev}, world {world}, "
            f"threads {threads}, data loaded in {time.time() - t_load:.1f}s")

    # ---- model and optimizer
    seed = int(spec["seed"])
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    model = build_model(spec["arch"], in_shape, int(spec["d"]), K, spec["head"], tau=float(spec["tau"]),
                        cmf_beta=float(spec["cmf_momentum"]), **spec["arch_opts"])
    model.set_input_stats(mean, std)
    model.to(dev)
    channels_last = cuda and bool(spec["channels_last"]) and len(in_shape) == 3
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = SGD(model.parameters(), lr=float(spec["lr"]), momentum=float(spec["momentum"]),
              nesterov=bool(spec["nesterov"]) and float(spec["momentum"]) > 0, weight_decay=float(spec["weight_decay"]))

    # ---- resume
    store = _StateStore(work_dir)
    history = {k: [] for k in ("epoch", "loss", "train_acc", "lr", "images_per_s", "seconds")}
    start = 0
    candidates = store.candidates(lg, identity)
    for path, st in candidates:
        missing = [e for e in out_ckpts if e <= int(st["epoch"]) and not store.ckpt(e).exists()]
        if missing:
            lg.warning(f"[{run_id}] state {path} (epoch {st['epoch']}) lacks checkpoint copies for epochs "
                       f"{missing}; not resuming from it")
            continue
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        _set_rng_state(st["rng"])
        history = {k: list(v) for k, v in st["history"].items()}
        start = int(st["epoch"])
        lg.info(f"[{run_id}] resuming from {path} at epoch {start}")
        break
    else:
        if candidates or store.state.exists() or store.prev.exists():
            lg.warning(f"[{run_id}] no usable training state in {work_dir}; starting from scratch")
    if world > 1:  # every rank has decided before rank 0 removes anything
        import torch.distributed as dist

        dist.barrier()
    if is_main and start == 0:
        store.clear()

    prov_base = _provenance_base(spec, data, dev, world, threads)

    def write_ckpt(epoch: int):
        if is_main and epoch in out_ckpts:
            ckpt = {"format": FORMAT, "model": _cpu_state_dict(model), "epoch": epoch, "spec": copy.deepcopy(spec),
                    "history": {k: list(v) for k, v in history.items()}, "classes": list(classes),
                    "class_names": list(data.class_names), "in_shape": list(in_shape),
                    "provenance": _provenance(prov_base, epoch)}
            _save_atomic(ckpt, store.ckpt(epoch))

    if start == 0:
        write_ckpt(0)

    # ---- wrappers
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if cuda and spec["sync_bn"]:
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = DDP(net, device_ids=[dev.index] if cuda else None)  # buffers (BN, CMF) synced from rank 0
    if spec["compile"]:
        net = torch.compile(net)

    aug_parts = _parse_augmentation(spec["augmentation"])
    pad = int(spec["aug_pad"]) if spec["aug_pad"] is not None else in_shape[1] // 8
    bsz = int(spec["batch_size"])
    steps = max(1, n // bsz)  # drop_last, as the reference; at least one (smaller) batch
    gbatch = min(bsz, n)
    lo, hi = (rank * gbatch) // world, ((rank + 1) * gbatch) // world
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and bool(spec["bf16"]))
    hang = os.environ.get("GNC_TRAIN_HANG_AT")
    hang_at = tuple(int(v) for v in hang.split(":")) if hang else None
    stop_after = int(os.environ["GNC_TRAIN_STOP_AFTER"]) if os.environ.get("GNC_TRAIN_STOP_AFTER") else None
    t_run = time.time()

    for epoch in range(start, epochs):
        lr = learning_rate(spec, epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        net.train()
        t0 = time.time()
        g_perm = torch.Generator().manual_seed(_seed(seed, epoch, 1))
        perm = torch.randperm(n, generator=g_perm).to(dev)
        g_aug = torch.Generator(device=dev).manual_seed(_seed(seed, epoch, 2))
        losses = torch.zeros(steps, device=dev, dtype=torch.float32)
        correct = torch.zeros((), device=dev, dtype=torch.int64)
        for step in range(steps):
            idx = perm[step * gbatch:(step + 1) * gbatch]
            params = augment_params(len(idx), parts=aug_parts, pad=pad, degrees=float(spec["aug_degrees"]),
                                    generator=g_aug, device=dev)
            idx = idx[lo:hi]
            params = {k: v[lo:hi] for k, v in params.items()}
            x, y = make_batch(train_x, train_y, idx, params, channels_last)
            if hang_at is not None and (epoch + 1, step) == hang_at:
                _hang(work_dir)
            loss, logits = train_step(net, opt, x, y, spec, autocast=autocast, world_size=world,
                                      global_batch=gbatch)
            losses[step] = loss
            correct += (logits.argmax(1) == y).sum()
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(losses)
            losses /= world
            dist.all_reduce(correct)
        loss_values = losses.cpu()
        if cuda:
            torch.cuda.synchronize(dev)
        finite = torch.isfinite(loss_values)
        if not bool(finite.all()):
            bad_step = int((~finite).nonzero()[0])
            raise NonFiniteLossError(run_id, epoch + 1, bad_step, float(loss_values[bad_step]))
        seconds = time.time() - t0
        seen = steps * gbatch
        history["epoch"].append(epoch + 1)
        history["loss"].append(float(loss_values.double().mean()))
        history["train_acc"].append(int(correct) / seen)
        history["lr"].append(lr)
        history["images_per_s"].append(seen / seconds if seconds > 0 else float("inf"))
        history["seconds"].append(seconds)
        write_ckpt(epoch + 1)
        if is_main:
            store.write({"format": FORMAT, "identity": identity, "epoch": epoch + 1, "model": _cpu_state_dict(model),
                         "optimizer": opt.state_dict(), "rng": _rng_state(),
                         "history": {k: list(v) for k, v in history.items()}, "spec": copy.deepcopy(spec)})
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
        elapsed = time.time() - t_run
        done = epoch + 1 - start
        eta = elapsed / done * (epochs - epoch - 1)
        lg.info(f"[{run_id}] epoch {epoch + 1}/{epochs} loss {history['loss'][-1]:.4f} "
                f"train_acc {history['train_acc'][-1]:.4f} lr {lr:.4g} {history['images_per_s'][-1]:.0f} img/s "
                f"epoch {seconds:.2f}s elapsed {_fmt_time(elapsed)} ETA {_fmt_time(eta)}")
        if stop_after is not None and epoch + 1 == stop_after:
            raise TrainingInterrupted(f"GNC_TRAIN_STOP_AFTER={stop_after}")

    # ---- publish
    if is_main:
        for e, dst in sorted(out_ckpts.items()):
            src = store.ckpt(e)
            if not src.exists():  # can only happen if work_dir was tampered with
                raise CheckpointError(f"run {run_id}: checkpoint copy {src} missing in work_dir")
            _publish(src, dst)
        lg.info(f"[{run_id}] published {len(out_ckpts)} checkpoint(s); "
                f"train time {_fmt_time(sum(history['seconds']))}")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return {"run_id": run_id, "epochs": epochs, "history": history, "classes": classes,
            "checkpoints": {e: str(p) for e, p in out_ckpts.items()}, "device": str(dev), "world_size": world,
            "resumed_from": start}


def _publish(src: Path, dst: Path) -> None:
    """Atomically place ``src`` at ``dst``: a hard link where possible (no second copy on disk; the
    work copy is only ever replaced, never modified in place), else a copy."""
    with gio.atomic_path(dst, suffix=".tmp.pt") as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _hang(work_dir: Path) -> None:
    (Path(work_dir) / "hang.marker").write_text(str(os.getpid()))
    while True:  # until killed
        time.sleep(0.05)


def _provenance_base(spec, data: _Data, dev, world, threads) -> dict:
    from .provenance import dataset_attrs, device_description

    base = dict(dataset_attrs(data.manifest))
    base.update({"gnc_seed": int(spec["seed"]), "gnc_device": device_description(dev), "gnc_world_size": world,
                 "gnc_threads": threads, "gnc_run_id": spec.get("run_id") or "run"})
    return base


def _provenance(base: dict, epoch: int) -> dict:
    from .provenance import provenance

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
    args = ap.parse_args(argv)
    text = args.spec if args.spec.lstrip().startswith("{") else Path(args.spec).read_text()
    spec = json.loads(text)
    out = {}
    for item in args.ckpt:
        e, _, p = item.partition("=")
        out[int(e)] = p
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    fh = open(args.log, "a") if args.log else None  # noqa: SIM115
    try:
        train_run(spec, args.data, args.work_dir, out, threads=args.threads, log=fh, device=args.device)
    finally:
        if fh:
            fh.close()
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.distributed")
    sys.exit(main())
