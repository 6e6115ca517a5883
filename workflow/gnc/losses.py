"""Training losses: cross-entropy on the head's logits and the reference code's HardMax loss.

HardMax (docs/methods.md §4, code version of Jiang et al.): on the cosine scores s_ik = cos(h_i, w_k),
subtract each sample's true-class score, mask the true class with -inf, take the single maximum over
the whole batch, multiply by ``scale`` (100 in the reference):

    L = scale * max_i max_{k != y_i} (s_ik - s_i,y_i)

It is the batch version of the HardMax objective max_k max_i max_{k' != k} <w_k' - w_k, h_ki>.
For cosine heads the scores are logits * tau. Under DistributedDataParallel each rank takes the
max over its own shard and the gradients are averaged (not the max over the global batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "hardmax")


def hardmax_loss(scores: torch.Tensor, y: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """scale * max over the batch of (s_ik - s_iy) for k != y_i. ``scores``: (B, K) cosines."""
    scores = scores.float()
    margin = scores - scores.gather(1, y[:, None])
    mask = F.one_hot(y, scores.shape[1]).bool()
    return scale * margin.masked_fill(mask, float("-inf")).max()


def compute_loss(name: str, logits: torch.Tensor, y: torch.Tensor, *, tau: float,
                 hardmax_scale: float = 100.0, world_size: int = 1, global_batch: int | None = None
                 ) -> torch.Tensor:
    """The training loss of one (shard of a) batch; hardmax needs a cosine head (checked on the spec).

    With ``world_size`` > 1 the CE loss is sum over the shard * world_size / global_batch, so that
    DDP's gradient averaging gives exactly the gradient of the mean over the global batch even when
    shards differ in size.
    """
    if name == "ce":
        if world_size > 1:
            return F.cross_entropy(logits.float(), y, reduction="sum") * (world_size / float(global_batch))
        return F.cross_entropy(logits.float(), y)
    if name == "hardmax":
        return hardmax_loss(logits.float() * tau, y, hardmax_scale)
    raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")
