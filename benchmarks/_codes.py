"""Test codes for the benchmarks: random unit vectors and a "trained-like" code (repulsion)."""

from __future__ import annotations

import numpy as np
import torch


def random_code(K: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((K, d))
    return W / np.linalg.norm(W, axis=1, keepdims=True)


def repulsion_code(K: int, d: int, steps: int = 300, seed: int = 0, neighbours: int = 32,
                   refresh: int = 25, s: float = 8.0, lr: float = 0.2) -> np.ndarray:
    """Random unit vectors, then ``steps`` steps of Riesz-s repulsion from the nearest neighbours.

    Each row moves along the tangent of the Riesz force Σ_j (w_k − w_j)/||w_k − w_j||^(s+2) of its
    ``neighbours`` nearest rows, by ``lr``·(its nearest-neighbour distance)·(1 − t/steps), and is
    re-normalized: a cheap surrogate of the Tammes / softmax-code dynamics that produces the
    near-uniform, many-active-constraints structure of trained classifiers. Neighbour lists are
    refreshed every ``refresh`` steps (one tiled K×K product each); float32 (generation only).
    """
    W = torch.as_tensor(random_code(K, d, seed), dtype=torch.float32)
    n = min(neighbours, K - 1)
    nbr = None
    for t in range(steps):
        if nbr is None or t % refresh == 0:
            idx = []
            for b0 in range(0, K, 2048):
                S = W[b0:b0 + 2048] @ W.T
                S[torch.arange(S.shape[0]), torch.arange(b0, b0 + S.shape[0])] = -2.0
                idx.append(torch.topk(S, n, dim=1).indices)
            nbr = torch.cat(idx)
        diff = W.unsqueeze(1) - W[nbr]  # (K, n, d)
        dist = diff.norm(dim=2).clamp_min(1e-6)
        F = (diff / dist.unsqueeze(2) ** (s + 2)).sum(1)
        F = F - (F * W).sum(1, keepdim=True) * W  # tangent part
        step = lr * (1 - t / steps) * dist.min(1).values
        W = W + step.unsqueeze(1) * F / F.norm(dim=1, keepdim=True).clamp_min(1e-30)
        W = W / W.norm(dim=1, keepdim=True)
    return W.double().numpy()
