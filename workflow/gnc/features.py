"""Feature extraction from a checkpoint: raw penultimate features h and the classifier (W, b).

``extract_features(ckpt_path, data_folder)`` rebuilds the model from the checkpoint's spec, loads
its weights (``weights_only=True``), and runs the train and test splits of the run's class subset
(the one recorded in the checkpoint, relabelled 0..K-1 in that order) through it in eval mode,
without augmentation. Returns an ``xr.Dataset`` with the variables of :data:`FEATURE_VARS`:
``train_h (train_sample, component)`` (float32), ``train_y (train_sample)``, ``test_h``, ``test_y``
likewise, ``W (k, component)`` as the head uses it (CMF: the class-mean buffer; normalized head: the
raw parameter) and ``b (k)``; coordinates ``k`` (0..K-1), ``class_index (k)`` (original class index),
``class_name (k)``; attributes ``head``, ``tau``, ``epoch``, ``arch``, ``d``, ``K``, ``loss``, ``seed``,
``run_id``, ``spec`` (JSON), ``history`` (JSON), the checkpoint's training provenance
(``gnc_train_provenance``, JSON), the dataset attributes and the extraction's own provenance (``gnc_*``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .models import build_model
from .provenance import dataset_attrs, device_description, provenance
from .results import label_coords
from .train import CheckpointError, load_checkpoint, load_run_data, normalize_spec, pick_device


#: long_name of each variable of a features file (all dimensionless)
FEATURE_VARS = {
    "train_h": "raw penultimate feature h of a training sample (not normalized)",
    "train_y": "label of a training sample (class position 0..K-1)",
    "test_h": "raw penultimate feature h of a test sample (not normalized)",
    "test_y": "label of a test sample (class position 0..K-1)",
    "W": "classifier rows w_k as used by the head (not normalized)",
    "b": "classifier bias b_k (zero for the normalized and CMF heads)",
}


def model_from_checkpoint(ckpt: dict, device="cpu"):
    """Rebuild the model of a loaded checkpoint dict and load its weights (eval mode)."""
    spec = normalize_spec(ckpt["spec"])
    in_shape = ckpt.get("in_shape")
    if in_shape is None:
        raise CheckpointError("checkpoint has no in_shape")
    model = build_model(spec["arch"], in_shape, int(spec["d"]), len(ckpt["classes"]), spec["head"],
                        tau=float(spec["tau"]), cmf_beta=float(spec["cmf_momentum"]), **spec["arch_opts"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), spec


@torch.no_grad()
def _features(model, x: np.ndarray, batch_size: int, device) -> np.ndarray:
    out = np.empty((x.shape[0], model.d), dtype=np.float32)
    for i in range(0, x.shape[0], batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(device)
        out[i:i + len(xb)] = model.features(xb).float().cpu().numpy()
    return out


def extract_features(ckpt_path, data_folder, *, batch_size: int = 1024, threads: int = 1):
    """Features of one checkpoint on the train and test splits (see the module docstring), on the
    device :func:`gnc.train.pick_device` picks."""
    torch.set_num_threads(max(1, int(threads)))
    dev = pick_device(None)
    ckpt_path = Path(ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    missing = [k for k in ("spec", "classes", "epoch") if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {ckpt_path} lacks {missing}")
    try:
        model, spec = model_from_checkpoint(ckpt, dev)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {ckpt_path}: cannot rebuild the model: {exc}") from exc
    classes = [int(c) for c in ckpt["classes"]]
    data = load_run_data(data_folder, classes)

    # full fp32 on GPUs too: TF32 convolutions/matmuls would add ~1e-3 relative noise to the features
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        train_h = _features(model, data.train_x, batch_size, dev)
        test_h = _features(model, data.test_x, batch_size, dev)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    W, b = model.classifier_weights()
    K, d = len(classes), model.d
    attrs = {
        "head": spec["head"], "tau": float(spec["tau"]), "epoch": int(ckpt["epoch"]), "arch": spec["arch"],
        "d": d, "K": K, "loss": spec["loss"], "seed": int(spec["seed"]), "run_id": spec.get("run_id") or "run",
        "spec": json.dumps(spec, sort_keys=True), "history": json.dumps(ckpt.get("history", {}), sort_keys=True),
        "checkpoint": str(ckpt_path),
        "gnc_train_provenance": json.dumps(ckpt.get("provenance", {}), sort_keys=True),
    }
    attrs.update({k: v for k, v in dataset_attrs(data.manifest).items() if v is not None})
    attrs.update(provenance(device=device_description(dev), stage="features"))
    ds = xr.Dataset(
        {
            "train_h": (("train_sample", "component"), train_h),
            "train_y": (("train_sample",), data.train_y.astype(np.int64)),
            "test_h": (("test_sample", "component"), test_h),
            "test_y": (("test_sample",), data.test_y.astype(np.int64)),
            "W": (("k", "component"), W.float().cpu().numpy()),
            "b": (("k",), b.float().cpu().numpy()),
        },
        coords={"k": np.arange(K), "component": np.arange(d),
                "class_index": (("k",), np.asarray(classes, dtype=np.int64)),
                "class_name": (("k",), np.asarray(data.class_names, dtype=object).astype(str))},
        attrs=attrs,
    )
    for name, long_name in FEATURE_VARS.items():
        ds[name].attrs.update(long_name=long_name, units="1")
    return label_coords(ds)
