"""gnc.recipe — the default training recipe and the rules on it that need no data, schema or torch
(shared by gnc.config, which validates studies, and by gnc.train, which runs them)."""

from __future__ import annotations

from typing import Any

#: the default training recipe; config ``train:`` and each experiment's ``train:`` override it
DEFAULT_RECIPE: dict[str, Any] = {
    "epochs": 30,
    "checkpoints": [0, 5, 10, 20, 30],
    "batch_size": 128,
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "schedule": "cosine",  # | constant | step (x0.1 at 1/3 and 2/3 of the epochs)
    "augmentation": "none",  # | any '-'-joined subset of crop, flip, rotate
    "head": "normalized",
    "cmf_momentum": 0.9,  # CMF beta: C <- beta*C + (1-beta)*S
    "loss": "ce",
    "width": 16,
    "class_subset_seed": 0,  # seed of gnc.data.class_subset (K < classes, no classes)
    "bf16": True,  # bf16 autocast and channels-last: on CUDA only (see gnc.train.Accel)
    "channels_last": True,
    "compile": False,
}


def head_loss_problem(head: str, loss: str) -> str | None:
    """The rule on head x loss (checked by the config and by gnc.train): HardMax is defined on cosine scores."""
    if loss == "hardmax" and head == "linear":
        return "the hardmax loss needs a cosine head: head 'normalized' or 'cmf'"
    return None
