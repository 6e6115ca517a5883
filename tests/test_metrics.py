"""Tests of gnc.metrics accumulators / measures against an independent dense numpy computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import xarray as xr

from gnc.io import open_netcdf, write_netcdf
from gnc.metrics import (SCALAR_METRICS, NCStream, checkpoint_metrics, compute_metrics, ovr_distances,
                         pairwise_cosine_stats, trace_pinv)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------- helpers

def make_features(K, d, n_train=20, n_test=7, head="normalized", seed=0, noise=0.6, bias_scale=0.0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((K, d)) * rng.uniform(0.5, 2.0, size=(K, 1))
    centers = W + 0.3 * rng.standard_normal((K, d))
    ytr = np.repeat(np.arange(K), n_train)
    ytr = ytr[rng.permutation(len(ytr))][: len(ytr) - 3]  # slightly imbalanced
    yte = rng.integers(0, K, size=K * n_test)
    htr = 3.0 * centers[ytr] + noise * rng.standard_normal((len(ytr), d))
    hte = 3.0 * centers[yte] + noise * rng.standard_normal((len(yte), d))
    b = bias_scale * rng.standard_normal(K)
    return features_ds(htr, ytr, hte, yte, W, b, head)


def features_ds(htr, ytr, hte, yte, W, b, head, tau=0.1):
    return xr.Dataset(
        {"train_h": (("train_sample", "component"), htr), "train_y": ("train_sample", ytr),
         "test_h": (("test_sample", "component"), hte), "test_y": ("test_sample", yte),
         "W": (("k", "component"), W), "b": ("k", b)},
        attrs={"head": head, "tau": tau})


def dense_reference(ds, pinv_rcond=1e-10):
    """Every metric computed directly from the full arrays (independent of the library)."""
    htr, ytr = ds.train_h.values, ds.train_y.values
    hte, yte = ds.test_h.values, ds.test_y.values
    W, b, head = ds.W.values, ds.b.values, ds.attrs["head"]
    K = W.shape[0]
    unit = lambda X: X / np.linalg.norm(X, axis=1, keepdims=True)
    out = {}

    def stats(h):
        mu = np.stack([h[ytr == k].mean(0) for k in range(K)])
        muG = h.mean(0)
        D = h - mu[ytr]
        SW = D.T @ D / len(h)
        SB = (mu - muG).T @ (mu - muG) / K
        return mu, muG, SW, SB

    def nc1(SW, SB):
        return float(np.trace(SW @ np.linalg.pinv(SB, rcond=pinv_rcond, hermitian=True))) / K

    # GNC: normalized features and classifier
    g = unit(htr)
    mu, muG, SW, SB = stats(g)
    Wn = unit(W)
    out["gnc1"] = nc1(SW, SB)
    c_cent = np.sum(unit(mu - muG) * Wn, 1)
    out["gnc3"] = float(np.mean(1 - c_cent))
    out["gnc3_uncentered"] = float(np.mean(1 - np.sum(unit(mu) * Wn, 1)))
    out["gnc3_per_class"] = 1 - c_cent
    C = Wn @ Wn.T
    np.fill_diagonal(C, -np.inf)
    out["gnc2_lower"] = 1 - C.max()
    out["gnc2_upper"] = math.sqrt(2 - 2 * C.max())
    out["min_angle"] = math.degrees(math.acos(C.max()))

    def ncc(h, means):
        dist = ((h[:, None, :] - means[None, :, :]) ** 2).sum(2)
        return dist.argmin(1)

    out["ncc_train_acc"] = float(np.mean(ncc(g, mu) == ytr))
    out["ncc_test_acc"] = float(np.mean(ncc(unit(hte), mu) == yte))

    # classifier decisions
    def clf(h):
        return (h @ W.T + b).argmax(1) if head == "linear" else (unit(h) @ Wn.T).argmax(1)

    out["train_acc"] = float(np.mean(clf(htr) == ytr))
    out["test_acc"] = float(np.mean(clf(hte) == yte))

    # Papyan: raw features
    mu, muG, SW, SB = stats(htr)
    out["nc1"] = nc1(SW, SB)
    Mc = mu - muG
    cv = lambda x: np.std(x) / np.mean(x)
    out["nc2_equinorm_means"] = cv(np.linalg.norm(Mc, axis=1))
    out["nc2_equinorm_weights"] = cv(np.linalg.norm(W, axis=1))
    off = ~np.eye(K, dtype=bool)
    for name, X in (("means", Mc), ("weights", W)):
        cos = (unit(X) @ unit(X).T)[off]
        out[f"nc2_equiangular_{name}"] = float(np.std(cos))
        out[f"nc2_maxangle_{name}"] = float(np.mean(np.abs(cos + 1 / (K - 1))))
    out["nc3"] = float(np.sum((W / np.linalg.norm(W) - Mc / np.linalg.norm(Mc)) ** 2))
    out["nc4"] = float(np.mean(ncc(htr, mu) != clf(htr)))
    return out


def assert_matches(ds, ref, atol=1e-9):
    for name, value in ref.items():
        got = ds[name].values
        np.testing.assert_allclose(got, value, rtol=1e-9, atol=atol, err_msg=name)


# ------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("K,d,head,bias", [(12, 4, "normalized", 0.0), (5, 9, "linear", 2.0), (9, 9, "cmf", 0.0)])
def test_checkpoint_metrics_against_dense(K, d, head, bias):
    ds_in = make_features(K, d, head=head, seed=K + d, bias_scale=bias)
    ds = checkpoint_metrics(ds_in, batch_size=13)
    assert_matches(ds, dense_reference(ds_in))
    # GNC2 is the exact one-vs-rest distance of the normalized classifier
    res = ovr_distances(ds_in.W.values)
    assert abs(float(ds.gnc2) - res.value) < 1e-12 and float(ds.gnc2_gap) < 1e-9
    np.testing.assert_allclose(ds.ovr_dist.values, res.dist, atol=1e-12)
    assert float(ds.gnc2_lower) <= float(ds.gnc2) + 1e-12 <= float(ds.gnc2_upper) + 2e-12
    assert abs(float(ds.gnc2_mean) - res.dist.mean()) < 1e-12
    # names, dims and CF attributes
    for name in SCALAR_METRICS:
        assert ds[name].dims == () and np.isfinite(ds[name].values), name
        assert ds[name].attrs["units"] in ("1", "degree") and ds[name].attrs["long_name"]
    for name in ("ovr_dist", "ovr_gap", "gnc3_per_class"):
        assert ds[name].dims == ("k",) and ds[name].attrs["units"] == "1"
    assert ds.min_angle.attrs["units"] == "degree"


def test_bias_matters_for_linear_head():
    ds_in = make_features(6, 8, head="linear", seed=3, bias_scale=25.0, noise=2.0)
    ds = checkpoint_metrics(ds_in)
    ref = dense_reference(ds_in)
    no_bias = dense_reference(ds_in.assign(b=("k", np.zeros(6))))
    assert ref["nc4"] != no_bias["nc4"]  # the test can distinguish
    assert_matches(ds, ref)


def test_streaming_batches_equal_dense_and_torch_float32():
    ds_in = make_features(10, 5, seed=1)
    one = checkpoint_metrics(ds_in, batch_size=10**6)
    many = checkpoint_metrics(ds_in, batch_size=7)
    for name in SCALAR_METRICS:
        np.testing.assert_allclose(many[name].values, one[name].values, rtol=1e-11, atol=1e-13, err_msg=name)
    # NCStream fed torch float32 batches in another order of batch sizes
    htr = torch.as_tensor(ds_in.train_h.values, dtype=torch.float32)
    ytr = torch.as_tensor(ds_in.train_y.values)
    acc = NCStream(10, 5, normalize=False)
    cuts = [0, 1, 17, 60, 61, len(ytr)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        acc.update(htr[a:b], ytr[a:b])
    for a, b in zip(cuts[:-1], cuts[1:]):
        acc.update_second(htr[a:b], ytr[a:b])
    st = acc.result()
    h64 = htr.double().numpy()
    y = ytr.numpy()
    mu = np.stack([h64[y == k].mean(0) for k in range(10)])
    D = h64 - mu[y]
    np.testing.assert_allclose(st.means, mu, atol=1e-12)
    np.testing.assert_allclose(st.Sigma_W, D.T @ D / len(y), atol=1e-12)
    assert st.N == len(y) and (st.counts == np.bincount(y, minlength=10)).all()
    assert acc.memory_bytes() < 8 * (3 * 10 * 5 + 5 * 5 + 10 * 10)


@pytest.mark.parametrize("kind", ["simplex", "cross-polytope"])
def test_perfect_collapse(kind):
    if kind == "simplex":  # K <= d+1: Papyan's ETF, mu_G = 0
        K, d = 5, 8
        M = np.eye(K) - 1 / K
        U, _, _ = np.linalg.svd(M)
        W = np.zeros((K, d))
        W[:, : K - 1] = M @ U[:, : K - 1]
    else:  # K = 2d > d+1: a softmax code
        d = 3
        W = np.vstack([np.eye(d), -np.eye(d)])
        K = 2 * d
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    W = 2.0 * W / np.linalg.norm(W, axis=1, keepdims=True) @ Q.T
    ytr = np.repeat(np.arange(K), 4)
    yte = np.arange(K)
    ds = checkpoint_metrics(features_ds(W[ytr], ytr, W[yte], yte, W, np.zeros(K), "normalized"))
    for name in ("nc1", "gnc1", "nc3", "nc4", "gnc3", "gnc3_uncentered", "nc2_equinorm_means",
                 "nc2_equinorm_weights"):
        assert abs(float(ds[name])) < 1e-12, (name, float(ds[name]))
    for name in ("ncc_train_acc", "ncc_test_acc", "train_acc", "test_acc"):
        assert float(ds[name]) == 1.0
    if kind == "simplex":
        assert float(ds.nc2_maxangle_weights) < 1e-12 and float(ds.nc2_equiangular_means) < 1e-12
        assert abs(float(ds.gnc2) - K / (K - 1)) < 1e-9
    else:
        assert abs(float(ds.gnc2) - 1.0) < 1e-9 and abs(float(ds.min_angle) - 90) < 1e-9


def test_errors_are_explicit():
    ds_in = make_features(6, 3, seed=2)
    ytr = ds_in.train_y.values.copy()
    ytr[ytr == 4] = 0
    with pytest.raises(ValueError, match=r"class\(es\) without training samples: 4"):
        checkpoint_metrics(ds_in.assign(train_y=("train_sample", ytr)))
    h = ds_in.train_h.values.copy()
    h[[3, 8, 9], 1] = np.nan
    with pytest.raises(FloatingPointError, match="3 row"):
        checkpoint_metrics(ds_in.assign(train_h=(("train_sample", "component"), h)))
    acc = NCStream(6, 3)
    with pytest.raises(FloatingPointError, match="2 feature row"):
        acc.update(np.array([[1.0, np.inf, 0], [0, 0, 1], [np.nan, 0, 0]]), [0, 1, 2])
    with pytest.raises(ValueError, match="labels must lie"):
        acc.update(np.ones((2, 3)), [0, 6])
    acc = NCStream(2, 3, normalize=True)
    with pytest.raises(FloatingPointError, match="zero feature row"):
        acc.update(np.zeros((1, 3)), [0])
    # the two passes must see the same data
    acc = NCStream(2, 2)
    acc.update(np.eye(2), [0, 1])
    acc.update_second(np.eye(2)[:1], [0])
    with pytest.raises(ValueError, match="second pass"):
        acc.result()


def test_trace_pinv_cutoff_and_never_negative():
    rng = np.random.default_rng(4)
    d, K = 8, 4
    A = rng.standard_normal((d, K - 1))
    SB = A @ A.T / K + 1e-17 * np.eye(d)  # rank K-1 plus round-off level noise
    B = rng.standard_normal((d, d))
    SW = B @ B.T
    got = trace_pinv(SW, SB, rtol=1e-10, max_rank=K - 1)
    U, s, _ = np.linalg.svd(A @ A.T / K)
    P = U[:, : K - 1] @ np.diag(1 / s[: K - 1]) @ U[:, : K - 1].T
    assert abs(got - np.trace(SW @ P)) < 1e-9 * abs(got)
    # an indefinite round-off in Sigma_W never makes the result negative
    assert trace_pinv(-1e-18 * np.eye(d), SB, rtol=1e-10) == 0.0
    with pytest.warns(RuntimeWarning):
        assert math.isnan(trace_pinv(SW, np.zeros((d, d))))


def test_pairwise_cosine_stats_tiled():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((37, 5))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    cos = (Xn @ Xn.T)[~np.eye(37, dtype=bool)]
    s, a = pairwise_cosine_stats(X, shift=1 / 36, max_block_elems=50)
    assert abs(s - cos.std()) < 1e-13 and abs(a - np.mean(np.abs(cos + 1 / 36))) < 1e-13


def test_compute_metrics_own_loop_and_missing_test():
    ds_in = make_features(7, 4, seed=9)
    h, y = ds_in.train_h.values, ds_in.train_y.values

    def batches(split):
        if split == "test":
            return None
        return ((torch.as_tensor(h[i:i + 16]), torch.as_tensor(y[i:i + 16])) for i in range(0, len(y), 16))

    with pytest.warns(RuntimeWarning, match="no test split"):
        ds = compute_metrics(batches, ds_in.W.values, head="normalized")
    assert math.isnan(float(ds.test_acc)) and "comment" in ds.test_acc.attrs
    ref = checkpoint_metrics(ds_in)
    for name in ("gnc1", "nc1", "nc4", "train_acc", "ncc_train_acc"):
        np.testing.assert_allclose(ds[name].values, ref[name].values, rtol=1e-11, err_msg=name)


def test_netcdf_roundtrip(tmp_path):
    exact = checkpoint_metrics(make_features(8, 3, seed=5))
    write_netcdf(exact, tmp_path / "m.nc")
    back = open_netcdf(tmp_path / "m.nc")
    assert back.gnc1.attrs["units"] == "1" and float(back.gnc2) == float(exact.gnc2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stream_matches_cpu():
    ds_in = make_features(9, 5, seed=13)
    cpu = checkpoint_metrics(ds_in, batch_size=17)
    gpu = checkpoint_metrics(ds_in, batch_size=17, device="cuda")
    for name in SCALAR_METRICS:
        np.testing.assert_allclose(gpu[name].values, cpu[name].values, rtol=1e-10, atol=1e-12, err_msg=name)
