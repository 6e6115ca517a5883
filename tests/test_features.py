"""gnc.features: extraction from a trained checkpoint on real data (scikit-learn digits)."""

import io
import json

import numpy as np
import pytest
import torch

from gnc.features import extract_features, model_from_checkpoint
from gnc.train import CheckpointError, train_run

CLASSES = [7, 2, 9, 0, 4]
SPEC = {"run_id": "feat", "arch": "smallcnn", "width": 8, "head": "normalized", "tau": 0.1, "d": 4, "seed": 0,
        "epochs": 8, "batch_size": 64, "lr": 0.05, "classes": CLASSES}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from gnc.data import prepare

    folder = tmp_path_factory.mktemp("datasets") / "digits" / "v"
    prepare("digits", {"source": "digits"}, folder)
    return folder


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    out = {0: base / "epoch=0.pt", 8: base / "epoch=8.pt"}
    train_run(SPEC, digits, base / "work", out, log=io.StringIO())
    return out


@pytest.fixture(scope="module")
def final_features(trained, digits):
    return extract_features(trained[8], digits, batch_size=100)


def test_shapes_and_attributes(final_features, digits):
    from gnc.data import load_prepared

    ds = final_features
    p = load_prepared(digits, classes=CLASSES)
    assert ds["train_h"].dims == ("train_sample", "component") and ds["train_h"].shape == (len(p.train_y), 4)
    assert ds["test_h"].dims == ("test_sample", "component") and ds["test_h"].shape == (len(p.test_y), 4)
    assert ds["W"].dims == ("k", "component") and ds["W"].shape == (5, 4)
    assert ds["b"].dims == ("k",) and float(abs(ds["b"]).sum()) == 0.0
    np.testing.assert_array_equal(ds["train_y"].values, p.train_y)
    np.testing.assert_array_equal(ds["test_y"].values, p.test_y)
    assert ds["class_index"].values.tolist() == CLASSES
    assert ds["class_name"].values.tolist() == [str(c) for c in CLASSES]
    assert ds.attrs["head"] == "normalized" and ds.attrs["tau"] == 0.1 and ds.attrs["epoch"] == 8
    assert json.loads(ds.attrs["spec"])["classes"] == CLASSES
    assert ds.attrs["gnc_dataset"] == "digits" and "gnc_code_version" in ds.attrs
    assert json.loads(ds.attrs["gnc_train_provenance"])["gnc_run_id"] == "feat"
    assert ds["train_h"].dtype == np.float32


def test_features_equal_direct_forward_in_eval_mode(final_features, trained, digits):
    from gnc.data import load_prepared

    ck = torch.load(trained[8], weights_only=True)
    model, _ = model_from_checkpoint(ck)
    p = load_prepared(digits, classes=CLASSES)
    with torch.no_grad():
        h = model.features(torch.from_numpy(p.train_x[:37])).numpy()
        W = ck["model"]["head.weight"].numpy()
    np.testing.assert_allclose(final_features["train_h"].values[:37], h, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(final_features["W"].values, W)
    # raw, not normalized
    norms = np.linalg.norm(final_features["train_h"].values, axis=1)
    assert not np.allclose(norms, 1.0)


def test_train_accuracy_consistent_with_history(final_features, trained):
    ds = final_features
    h, W = ds["train_h"].values.astype(np.float64), ds["W"].values.astype(np.float64)
    cos = (h / np.linalg.norm(h, axis=1, keepdims=True)) @ (W / np.linalg.norm(W, axis=1, keepdims=True)).T
    acc = float((cos.argmax(1) == ds["train_y"].values).mean())
    hist = json.loads(ds.attrs["history"])
    assert len(hist["train_acc"]) == 8
    # the running accuracy of the last epoch (train mode, no augmentation, lr nearly 0) vs the final
    # model in eval mode: close, and the net has learned far beyond chance (0.2)
    assert hist["train_acc"][-1] > 0.8
    assert abs(acc - hist["train_acc"][-1]) < 0.08
    test_h = ds["test_h"].values
    test_acc = float(((test_h / np.linalg.norm(test_h, axis=1, keepdims=True)) @ W.T).argmax(1)
                     .__eq__(ds["test_y"].values).mean())
    assert test_acc > 0.6


def test_initial_checkpoint_is_near_chance(trained, digits):
    ds = extract_features(trained[0], digits)
    assert ds.attrs["epoch"] == 0
    logits = ds["train_h"].values @ ds["W"].values.T
    assert (logits.argmax(1) == ds["train_y"].values).mean() < 0.6


def test_netcdf_roundtrip(final_features, tmp_path):
    from gnc.io import open_netcdf, write_netcdf

    write_netcdf(final_features, tmp_path / "f.nc")
    back = open_netcdf(tmp_path / "f.nc")
    np.testing.assert_array_equal(back["train_h"].values, final_features["train_h"].values)
    assert back.attrs["head"] == "normalized" and back["class_index"].values.tolist() == CLASSES


def test_corrupt_checkpoint_error_names_file(trained, digits, tmp_path):
    bad = tmp_path / "epoch=3.pt"
    bad.write_bytes(trained[8].read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="epoch=3.pt"):
        extract_features(bad, digits)
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        extract_features(missing, digits)


def test_cmf_and_linear_heads(digits, tmp_path):
    for head in ("cmf", "linear"):
        p = tmp_path / f"{head}.pt"
        train_run({**SPEC, "head": head, "epochs": 1, "run_id": head}, digits, tmp_path / head, {1: p},
                  log=io.StringIO())
        ds = extract_features(p, digits)
        ck = torch.load(p, weights_only=True)
        if head == "cmf":
            np.testing.assert_array_equal(ds["W"].values, ck["model"]["head.C"].numpy())
            np.testing.assert_allclose(np.linalg.norm(ds["W"].values, axis=1), 1.0, rtol=1e-5)
        else:
            np.testing.assert_array_equal(ds["b"].values, ck["model"]["head.fc.bias"].numpy())
        assert ds.attrs["head"] == head
