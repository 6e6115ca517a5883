"""gnc.recipe — the default training recipe and the rules on it that need no data, schema or torch
(shared by gnc.config, which validates studies, and by gnc.train / gnc.losses, which run them)."""

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
    "schedule": "cosine",
    "augmentation": "none",
    "head": "normalized",
    "cmf_momentum": 0.9,
    "loss": "ce",
    "width": 16,
    "class_subset_seed": 0,
    "bf16": True,
    "channels_last": True,
    "compile": False,
}


def head_loss_problem(head: str, loss: str) -> str | None:
    """The rule on head x loss (checked by the config and by gnc.train): HardMax is defined on cosine scores."""
    if loss == "hardmax" and head == "linear":
        return "the hardmax loss needs a cosine head: head 'normalized' or 'cmf'"
    return None
