r"""Streaming (batch-by-batch) accumulators for neural-collapse statistics.

Memory is O(K·d + d²) whatever the number of samples: the features are never held all at once.
Accumulation is in float64 on the device of the incoming batches' accumulator (CPU or CUDA);
batches may be numpy arrays or torch tensors of any float dtype.

**Two passes** (exact and numerically safe; no raw second moments):

1. ``update(h, y)`` — per-class sums s_k and counts n_k (and the global sum) → class means
   μ_k = s_k/n_k and the global mean μ_G = Σ s_k / N.
2. ``update_second(h, y)`` — with the final means: the pooled within-class scatter
   S_W = Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ (so Σ_W = S_W/N), nearest-class-centre (NCC)
   predictions argmin_k ||h − μ_k|| and the agreement with the classifier's predictions (NC4).
3. ``update_eval(h, y, split)`` — any other split (e.g. "test"): NCC accuracy with the *training*
   means and classifier accuracy.

Classifier decisions (when ``W`` is given, rows w_k): ``head="linear"`` → argmax_k <w_k, h> + b_k;
``"normalized"`` / ``"cmf"`` → argmax_k cos(w_k, h) (no bias). With ``normalize=True`` every
feature row is L2-normalized first (the GNC convention); zero rows then raise.

Errors are explicit: non-finite features raise :class:`FloatingPointError` naming the number of bad
rows of the batch; labels outside ``[0, K)`` raise :class:`ValueError`; after pass 1, classes
without samples raise :class:`ValueError` naming them; a second pass whose per-class counts differ
from the first raises :class:`ValueError` (the two passes must see the same data).

Example — in your own training loop::

    from gnc.metrics import NCStream

    acc = NCStream(K, d, normalize=True, W=model.fc.weight, head="normalized")
    with torch.no_grad():
        for x, y in train_loader:                # pass 1: class means
            acc.update(model.features(x), y)
        acc.end_first_pass()
        for x, y in train_loader:                # pass 2: scatter, NCC, NC4
            acc.update_second(model.features(x), y)
        for x, y in test_loader:                 # optional: NCC / classifier test accuracy
            acc.update_eval(model.features(x), y, split="test")
    stats = acc.result()                         # NCStats: means, Sigma_W, Sigma_B, accuracies, ...

or let :func:`gnc.metrics.measures.compute_metrics` run the passes and return an ``xr.Dataset``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
import numpy as np
import torch

__all__ = ["NCStream", "NCStats"]

_HEADS = ("normalized", "linear", "cmf")
_CLASS_CHUNK = 4096  # classes per chunk of the (batch × K) NCC / classifier score matrices


def as_float64(x, device) -> torch.Tensor:
    """numpy / torch → float64 torch tensor on ``device`` (no copy when already there)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)


def _labels(y, device, K: int) -> torch.Tensor:
    y = y.detach() if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    if y.dtype.is_floating_point and not torch.equal(y, y.round()):
        raise ValueError("labels must be integers")
    y = y.to(device=device, dtype=torch.long).reshape(-1)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= K):
        raise ValueError(f"labels must lie in [0, {K}), got range [{int(y.min())}, {int(y.max())}]")
    return y


@dataclass
class NCStats:
    """Summary statistics after both passes (float64 numpy arrays).

    ``Sigma_W = S_W/N`` and ``Sigma_B = (1/K) Σ_k (μ_k − μ_G)(μ_k − μ_G)ᵀ`` (unweighted over classes,
    Papyan et al.); ``mu_G`` is the sample mean (the mean of the class means when balanced).
    ``accuracy``/``ncc_accuracy`` map a split name ("train", "test", …) to a fraction;
    ``ncc_classifier_mismatch`` is NC4 on the training split.
    """

    counts: np.ndarray
    means: np.ndarray
    mu_G: np.ndarray
    Sigma_W: np.ndarray
    Sigma_B: np.ndarray
    N: int
    ncc_accuracy: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    ncc_classifier_mismatch: float = math.nan


class NCStream:
    """Two-pass streaming accumulator of NC / GNC statistics (see the module docstring).

    Parameters
    ----------
    num_classes, dim : K and d.
    normalize : L2-normalize every feature row first (GNC metrics) or use raw features (Papyan).
    W, b : optional classifier (K, d) and bias (K,) for classifier predictions (accuracy, NC4).
    head : ``"normalized"``, ``"cmf"`` (cosine decisions, no bias) or ``"linear"`` (W h + b).
    device : accumulation device (default: CPU; pass ``"cuda"`` to accumulate on the GPU).
    predictions : compute NCC / classifier predictions in the second pass and in ``update_eval``
        (cost O(batch·K·d) each; ``False`` leaves only the means and the scatter).
    """

    def __init__(self, num_classes: int, dim: int, *, normalize: bool = False, W=None, b=None,
                 head: str = "normalized", device=None, predictions: bool = True):
        if head not in _HEADS:
            raise ValueError(f"head must be one of {_HEADS}, got {head!r}")
        self.K, self.d = int(num_classes), int(dim)
        if self.K < 1 or self.d < 1:
            raise ValueError("num_classes and dim must be positive")
        self.normalize = bool(normalize)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.predictions = bool(predictions)
        dev, f64 = self.device, torch.float64
        self.sums = torch.zeros(self.K, self.d, dtype=f64, device=dev)
        self.counts = torch.zeros(self.K, dtype=torch.long, device=dev)
        self.S_W = torch.zeros(self.d, self.d, dtype=f64, device=dev)
        self.counts2 = torch.zeros(self.K, dtype=torch.long, device=dev)
        self.W = self.b = None
        if W is not None:
            Wt = as_float64(W, dev)
            if Wt.shape != (self.K, self.d):
                raise ValueError(f"W must have shape (K, d) = ({self.K}, {self.d}), got {tuple(Wt.shape)}")
            if not torch.isfinite(Wt).all():
                raise FloatingPointError("W contains non-finite values")
            if head == "linear":
                self.W = Wt
                self.b = as_float64(b, dev).reshape(self.K) if b is not None else torch.zeros(self.K, dtype=f64, device=dev)
            else:  # cosine decisions: argmax_k <ŵ_k, h> (the norm of h does not change the argmax)
                nrm = Wt.norm(dim=1, keepdim=True)
                if (nrm == 0).any():
                    raise ValueError("W has zero rows; cosine decisions are undefined")
                self.W = Wt / nrm
        self._means: torch.Tensor | None = None
        self._mnorm2: torch.Tensor | None = None
        self._eval: dict[str, list[int]] = {}  # split -> [n, ncc_correct, clf_correct, mismatch]
        self._batches = 0

    # ----------------------------------------------------------------------------- helpers
    def _prep(self, h, y):
        self._batches += 1
        h = as_float64(h, self.device)
        if h.ndim != 2 or h.shape[1] != self.d:
            raise ValueError(f"features must have shape (batch, {self.d}), got {tuple(h.shape)}")
        y = _labels(y, self.device, self.K)
        if y.shape[0] != h.shape[0]:
            raise ValueError(f"{h.shape[0]} feature rows but {y.shape[0]} labels")
        bad = ~torch.isfinite(h).all(1)
        if bad.any():
            raise FloatingPointError(f"{int(bad.sum())} feature row(s) with non-finite values in batch "
                                     f"{self._batches} (of {h.shape[0]} rows)")
        if self.normalize:
            nrm = h.norm(dim=1, keepdim=True)
            if (nrm == 0).any():
                raise FloatingPointError(f"{int((nrm == 0).sum())} zero feature row(s) in batch {self._batches}: "
                                         "cannot L2-normalize")
            h = h / nrm
        return h, y

    def _argmax_scores(self, h: torch.Tensor, A: torch.Tensor, shift: torch.Tensor | None, sign: float = 1.0):
        """argmax_k (sign·(h·A_kᵀ) + shift_k) by chunks of classes."""
        best_v = torch.full((h.shape[0],), -math.inf, dtype=h.dtype, device=h.device)
        best_i = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        for c0 in range(0, self.K, _CLASS_CHUNK):
            c1 = min(self.K, c0 + _CLASS_CHUNK)
            S = sign * (h @ A[c0:c1].T)
            if shift is not None:
                S = S + shift[c0:c1]
            v, i = S.max(1)
            upd = v > best_v  # strict: the lowest index wins ties, as in a single argmax
            best_v = torch.where(upd, v, best_v)
            best_i = torch.where(upd, i + c0, best_i)
        return best_i

    # ------------------------------------------------------------------------------ passes
    def update(self, h, y) -> None:
        """Pass 1: accumulate per-class sums and counts."""
        if self._means is not None:
            raise RuntimeError("update() after end_first_pass(); use update_second()/update_eval()")
        h, y = self._prep(h, y)
        self.sums.index_add_(0, y, h)
        self.counts += torch.bincount(y, minlength=self.K)

    def end_first_pass(self) -> None:
        """Fix the class means; raise if a class has no samples."""
        empty = (self.counts == 0).nonzero().squeeze(1).cpu().tolist()
        if empty:
            shown = ", ".join(map(str, empty[:20])) + (" ..." if len(empty) > 20 else "")
            raise ValueError(f"{len(empty)} class(es) without training samples: {shown}")
        self._means = self.sums / self.counts.unsqueeze(1).to(torch.float64)
        self._mnorm2 = (self._means * self._means).sum(1)

    def update_second(self, h, y) -> None:
        """Pass 2 (training split again): within-class scatter, NCC accuracy, classifier agreement."""
        if self._means is None:
            self.end_first_pass()
        h, y = self._prep(h, y)
        D = h - self._means[y]
        self.S_W += D.T @ D
        self.counts2 += torch.bincount(y, minlength=self.K)
        self._score(h, y, "train")

    def update_eval(self, h, y, split: str = "test") -> None:
        """Another split: NCC accuracy (training means) and classifier accuracy."""
        if split == "train":
            raise ValueError("use update_second() for the training split")
        if self._means is None:
            self.end_first_pass()
        h, y = self._prep(h, y)
        self._score(h, y, split)

    def _score(self, h, y, split):
        if not self.predictions:
            return
        rec = self._eval.setdefault(split, [0, 0, 0, 0])
        # nearest class mean: argmin_k ||h − μ_k||² = argmax_k (2<h, μ_k> − ||μ_k||²)
        ncc = self._argmax_scores(h, self._means, -self._mnorm2, sign=2.0)
        rec[0] += int(y.numel())
        rec[1] += int((ncc == y).sum())
        if self.W is not None:
            clf = self._argmax_scores(h, self.W, self.b)
            rec[2] += int((clf == y).sum())
            rec[3] += int((clf != ncc).sum())

    # ------------------------------------------------------------------------------ result
    def result(self) -> NCStats:
        """Summary statistics (numpy float64). Requires both passes over the training split."""
        if self._means is None:
            raise RuntimeError("call end_first_pass() first")
        means = self._means
        if not torch.equal(self.counts2, self.counts):
            raise ValueError("the second pass saw different per-class counts than the first "
                             f"({int(self.counts2.sum())} vs {int(self.counts.sum())} samples): "
                             "both passes must iterate over the same training data")
        N = int(self.counts.sum())
        mu_G = self.sums.sum(0) / N
        Mc = means - mu_G
        Sigma_B = Mc.T @ Mc / self.K
        Sigma_W = self.S_W / N
        stats = NCStats(counts=self.counts.cpu().numpy(), means=means.cpu().numpy(), mu_G=mu_G.cpu().numpy(),
                        Sigma_W=Sigma_W.cpu().numpy(), Sigma_B=Sigma_B.cpu().numpy(), N=N)
        for split, (n, ncc_ok, clf_ok, mism) in self._eval.items():
            stats.ncc_accuracy[split] = ncc_ok / n if n else math.nan
            if self.W is not None:
                stats.accuracy[split] = clf_ok / n if n else math.nan
                if split == "train":
                    stats.ncc_classifier_mismatch = mism / n if n else math.nan
        return stats

    def memory_bytes(self) -> int:
        """Bytes held by the accumulator tensors (O(K·d + d²))."""
        ts = [self.sums, self.counts, self.S_W, self.counts2, self.W, self.b, self._means, self._mnorm2]
        return int(sum(t.numel() * t.element_size() for t in ts if t is not None))
