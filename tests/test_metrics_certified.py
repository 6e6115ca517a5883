"""The metrics stage publishes only certified GNC2 distances: an uncertified class is NaN, flagged in
``ovr_certified``, and :func:`gnc.metrics.require_certified` (called by the metrics job) raises naming it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_metrics import make_features

import gnc.metrics.ovr as ovr_mod
from gnc.metrics import UncertifiedError, checkpoint_metrics, ovr_distances, require_certified

torch.set_num_threads(1)


def test_certified_flag_present_and_one():
    ds_in = make_features(12, 4, head="normalized", seed=1)
    ds = require_certified(checkpoint_metrics(ds_in), "ok")
    assert ds.ovr_certified.dims == ("k",) and (ds.ovr_certified.values == 1).all()
    np.testing.assert_allclose(ds.ovr_dist.values, ovr_distances(ds_in.W.values).dist, atol=1e-12)


def test_uncertified_class_fails_the_metrics(monkeypatch):
    def broken(Wn, k, cols=None):
        raise FloatingPointError("simulated failure")

    monkeypatch.setattr(ovr_mod, "_nnls_min_norm", broken)  # exact fallback unavailable
    ds_in = make_features(12, 4, head="normalized", seed=1)
    with pytest.warns(RuntimeWarning, match="could not be certified"):
        ds = checkpoint_metrics(ds_in, ovr_kwargs={"max_iter": 1})  # Wolfe capped: some classes fail
    bad = np.flatnonzero(ds.ovr_certified.values == 0)
    assert bad.size and np.isnan(ds.ovr_dist.values[bad]).all() and np.isnan(float(ds.gnc2))
    with pytest.raises(UncertifiedError, match=rf"epoch 7: GNC2 one-vs-rest distance of class\(es\) \[{bad[0]}"):
        require_certified(ds, "epoch 7")
    # stacked over epochs (as the job concatenates them) the check still names the class
    with pytest.raises(UncertifiedError):
        require_certified(ds.expand_dims(epoch=[7]), "run")
