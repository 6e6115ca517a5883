"""gnc.data core: manifest, checksums, versions, integrity errors, class subsets, relabelling, CLI."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from gnc import data as gd
from gnc.data import DatasetIntegrityError, SpecError
from gnc.data.core import FORMAT_VERSION

torch.set_num_threads(1)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "digits" / gd.version_id("digits", {})
    gd.prepare("digits", {}, out)
    return out


def fresh_copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------ manifest

def test_manifest_contents_and_checksums(digits_dir):
    m = json.loads((digits_dir / "manifest.json").read_text())
    assert m["name"] == "digits" and m["version"] == digits_dir.name == gd.version_id("digits", {})
    assert m["source"]["kind"] == "digits"
    assert m["classes"] == [str(i) for i in range(10)] and m["num_classes"] == 10
    assert m["shape"] == [1, 8, 8]
    # every array file is listed with its sha256, computed independently here
    assert set(m["files"]) == {"train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy", "train_ids.npy", "test_ids.npy"}
    for fname, digest in m["files"].items():
        assert sha256(digits_dir / fname) == digest
    lines = "".join(f"{m['files'][f]}  {f}\n" for f in sorted(m["files"]))
    assert m["checksum"] == hashlib.sha256(lines.encode()).hexdigest()
    # counts agree with the arrays
    ytr, yte = np.load(digits_dir / "train_y.npy"), np.load(digits_dir / "test_y.npy")
    assert m["counts"]["train"]["per_class"] == np.bincount(ytr, minlength=10).tolist()
    assert m["counts"]["test"]["total"] == len(yte)
    assert m["counts"]["train"]["total"] + m["counts"]["test"]["total"] == 1797
    assert m["provenance"]["gnc_code_version"] and "gnc_versions" in m["provenance"]
    assert m["source"]["files"]["sklearn/datasets/data/digits.csv.gz"]["sha256"]
    x = np.load(digits_dir / "train_x.npy")
    assert x.dtype == np.uint8 and x.shape == (len(ytr), 1, 8, 8)
    assert ytr.dtype == np.int64


def test_folder_without_manifest_is_not_prepared(digits_dir, tmp_path):
    d = fresh_copy(digits_dir, tmp_path)
    (d / "manifest.json").unlink()
    with pytest.raises(DatasetIntegrityError, match="manifest.json"):
        gd.verify_prepared(d)
    with pytest.raises(DatasetIntegrityError):
        gd.load_prepared(d)


@pytest.mark.parametrize("fname,how", [("train_x.npy", "flip"), ("test_y.npy", "truncate"),
                                       ("train_ids.npy", "delete")])
def test_tampering_is_detected_and_named(digits_dir, tmp_path, fname, how):
    d = fresh_copy(digits_dir, tmp_path)
    p = d / fname
    expected = json.loads((d / "manifest.json").read_text())["files"][fname]
    if how == "flip":
        b = bytearray(p.read_bytes())
        b[-1] ^= 0x01
        p.write_bytes(bytes(b))
    elif how == "truncate":
        p.write_bytes(p.read_bytes()[:-8])
    else:
        p.unlink()
    with pytest.raises(DatasetIntegrityError) as ei:
        gd.verify_prepared(d)
    msg = str(ei.value)
    assert fname in msg and expected in msg
    if how != "delete":
        assert sha256(p) in msg  # both hashes named
    with pytest.raises(DatasetIntegrityError):
        gd.load_prepared(d)
    if how == "flip":
        gd.load_prepared(d, verify=False)  # verify=False skips hashing (the caller's choice)


def test_tampered_manifest_checksum(digits_dir, tmp_path):
    d = fresh_copy(digits_dir, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["checksum"] = "0" * 64
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetIntegrityError, match="checksum"):
        gd.verify_prepared(d)


def test_prepare_removes_stale_manifest_first(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    gd.prepare("digits", {"max_per_class": 3}, out)
    assert (out / "manifest.json").exists()

    from gnc.data.sources import SOURCES

    def boom(opts):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(SOURCES["digits"], "load", boom)
    with pytest.raises(RuntimeError):
        gd.prepare("digits", {"max_per_class": 4}, out)
    assert not (out / "manifest.json").exists()  # the half-updated folder does not look prepared


# ------------------------------------------------------------------------------------------ versions

def test_version_format_and_stability():
    v = gd.version_id("digits", {})
    assert v.startswith(f"v{FORMAT_VERSION}-") and len(v.split("-")[1]) == 12
    # defaults given explicitly, or the source named explicitly, give the same version
    assert gd.version_id("digits", {"test_fraction": 0.25, "split_seed": 0, "source": "digits"}) == v
    assert gd.version_id("digits", None) == v
    # the dataset name is a folder level, not part of the version
    assert gd.version_id("my_digits", {"source": "digits"}) == v
    # equivalent spellings of the sub-sampling option
    assert gd.version_id("digits", {"max_per_class": 5}) == gd.version_id("digits", {"max_per_class": {"train": 5, "test": 5}})


def test_version_ignores_subsample_seed_without_subsampling():
    assert gd.version_id("digits", {"subsample_seed": 2}) == gd.version_id("digits", {})


@pytest.mark.parametrize("change", [{"test_fraction": 0.3}, {"split_seed": 1}, {"max_per_class": 50},
                                    {"max_per_class": {"train": 50}}, {"max_per_class": 50, "subsample_seed": 2}])
def test_version_changes_with_options(change):
    base = {"max_per_class": 50} if "subsample_seed" in change else {}
    assert gd.version_id("digits", change) != gd.version_id("digits", base)


def test_version_changes_with_glyph_options_but_not_with_non_content_keys():
    base = gd.version_id("glyphs", {})
    for change in ({"num_classes": 50}, {"seed": 1}, {"rotation": 5.0}, {"fonts": ["DejaVuSans.ttf"]},
                   {"train_per_font": 2}):
        assert gd.version_id("glyphs", change) != base, change
    cifar = gd.version_id("cifar10", {})
    assert gd.version_id("cifar10", {"root": "/somewhere/else", "download": True}) == cifar
    assert gd.version_id("cifar10", {"checksums": {"cifar-10-batches-py/test_batch": "0" * 32}}) != cifar


def test_version_changes_when_input_files_change(tmp_path):
    from PIL import Image

    root = tmp_path / "tree"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(root / c / "0.png")
    spec = {"source": "image_folder", "root": str(root)}
    v1 = gd.version_id("mine", spec)
    assert gd.version_id("mine", spec) == v1
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "a" / "1.png")
    v2 = gd.version_id("mine", spec)
    assert v2 != v1
    moved = tmp_path / "moved"
    shutil.copytree(root, moved, copy_function=shutil.copy2)  # same relative paths, sizes, mtimes
    assert gd.version_id("mine", {**spec, "root": str(moved)}) == v2


def test_version_is_cheap(monkeypatch):
    """A version id renders nothing and reads no data (after the digits file's hash is cached): every
    loader, renderer and file hasher fails if called."""
    from gnc.data.sources import SOURCES, digits, glyphs

    gd.version_id("digits", {})  # hashes the scikit-learn file once (cached by path, size, mtime)

    def forbidden(*args, **kwargs):
        raise AssertionError("version_id must not load, render or hash data")

    for src in SOURCES.values():
        monkeypatch.setattr(type(src), "load", forbidden)
    for name in ("render_samples", "render_master", "similarity_matrix", "derive_classes"):
        monkeypatch.setattr(glyphs, name, forbidden)
    monkeypatch.setattr(digits, "hash_file", forbidden)
    ids = {gd.version_id(name, {key: s}) for s in range(20) for name, key in (("glyphs", "seed"), ("digits", "split_seed"))}
    assert len(ids) == 40  # and each option value gives its own version


# ------------------------------------------------------------------------------------------ spec

def test_spec_errors():
    with pytest.raises(SpecError, match="unknown source"):
        gd.version_id("nope", {})
    with pytest.raises(SpecError, match="test_fractoin"):
        gd.version_id("digits", {"test_fractoin": 0.2})
    with pytest.raises(SpecError, match="test_fraction"):
        gd.version_id("digits", {"test_fraction": 1.5})
    with pytest.raises(SpecError, match="num_classes"):
        gd.num_classes("glyphs", {"num_classes": 10_000})
    with pytest.raises(SpecError, match="root"):
        gd.version_id("x", {"source": "image_folder"})
    # every source names the folder of its raw files 'root'
    for spec in ({"source": "image_folder", "path": "/x"}, {"source": "fashion_mnist_debian", "path": "/x"},
                 {"source": "cifar10", "path": "/x"}):
        with pytest.raises(SpecError, match="'root'.*not 'path'"):
            gd.version_id("x", spec)


def test_num_classes_cheap_values():
    assert gd.num_classes("digits", {}) == 10
    assert gd.num_classes("glyphs", {}) == 100
    assert gd.num_classes("glyphs", {"num_classes": 37}) == 37
    # downloadable sources: with download on, missing raw files are fine at this stage
    assert gd.num_classes("cifar100", {"download": True}) == 100
    assert gd.num_classes("tiny_imagenet", {"download": True}) == 200
    assert gd.num_classes("emnist", {"split": "letters", "download": True}) == 26
    assert gd.num_classes("emnist", {"split": "byclass", "download": True}) == 62


def test_num_classes_reports_unavailable_sources(tmp_path):
    """Config validation learns early (stat only) that a source cannot be prepared here."""
    with pytest.raises(gd.DatasetNotFoundError) as ei:
        gd.num_classes("cifar100", {"root": str(tmp_path)})
    assert str(tmp_path / "cifar-100-python" / "train") in str(ei.value) and "download: true" in str(ei.value)
    with pytest.raises(gd.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        gd.num_classes("fashion_mnist_debian", {"root": str(tmp_path)})
    with pytest.raises(gd.DatasetNotFoundError, match="tiny-imagenet-200.zip"):
        gd.num_classes("tiny_imagenet", {"root": str(tmp_path)})
    # the version stays computable (e.g. for a dataset prepared before the raw files were removed)
    assert gd.version_id("cifar100", {"root": str(tmp_path)}) == gd.version_id("cifar100", {})


def test_spec_schema_is_valid_json_schema():
    import jsonschema

    for kind, schema in gd.SPEC_SCHEMA.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["source"]["const"] == kind
        json.dumps(schema)  # serialisable for the config schema


# ------------------------------------------------------------------------------------------ subsets

def test_class_subset_nested_and_deterministic():
    full = gd.class_subset(100, 100, seed=3)
    assert sorted(full) == list(range(100))
    for k in (1, 10, 37, 99):
        s = gd.class_subset(100, k, seed=3)
        assert s == full[:k] and len(set(s)) == k
    assert gd.class_subset(100, 10, seed=3) == gd.class_subset(100, 10, seed=3)
    assert gd.class_subset(100, 10, seed=4) != gd.class_subset(100, 10, seed=3)
    with pytest.raises(ValueError):
        gd.class_subset(10, 11, 0)


def test_load_prepared_relabels_in_given_order(digits_dir):
    full = gd.load_prepared(digits_dir)
    sel = [7, 2, 9]
    sub = gd.load_prepared(digits_dir, classes=sel)
    assert sub.class_names == ["7", "2", "9"] and sub.classes == sel
    for split in ("train", "test"):
        y_full, x_full = getattr(full, f"{split}_y"), getattr(full, f"{split}_x")
        mask = np.isin(y_full, sel)
        expected_y = np.array([sel.index(v) for v in y_full[mask]], dtype=np.int64)
        np.testing.assert_array_equal(getattr(sub, f"{split}_y"), expected_y)
        np.testing.assert_array_equal(getattr(sub, f"{split}_x"), x_full[mask])
    assert sub.manifest["path"] == str(digits_dir)
    with pytest.raises(ValueError):
        gd.load_prepared(digits_dir, classes=[1, 1])
    with pytest.raises(ValueError):
        gd.load_prepared(digits_dir, classes=[10])


def test_balanced_subsample_and_recorded_ids(tmp_path):
    m = gd.prepare("digits", {"max_per_class": {"train": 20, "test": 5}, "subsample_seed": 1}, tmp_path / "d")
    assert m["counts"]["train"]["per_class"] == [20] * 10 and m["counts"]["test"]["per_class"] == [5] * 10
    assert m["subsample"]["max_per_class"] == {"train": 20, "test": 5}
    p = gd.load_prepared(tmp_path / "d")
    train_ids, test_ids = np.load(tmp_path / "d" / "train_ids.npy"), np.load(tmp_path / "d" / "test_ids.npy")
    from sklearn.datasets import load_digits

    b = load_digits()
    # ids point back into load_digits(): the images and labels there are the ones stored
    np.testing.assert_array_equal(b.target[train_ids], p.train_y)
    np.testing.assert_array_equal(np.rint(b.images[test_ids] * 255 / 16).astype(np.uint8), p.test_x[:, 0])
    assert len(set(train_ids) & set(test_ids)) == 0
    # the same seed chooses the same samples; another seed others
    m2 = gd.prepare("digits", {"max_per_class": {"train": 20, "test": 5}, "subsample_seed": 1}, tmp_path / "e")
    assert m2["checksum"] == m["checksum"]
    m3 = gd.prepare("digits", {"max_per_class": {"train": 20, "test": 5}, "subsample_seed": 2}, tmp_path / "f")
    assert m3["checksum"] != m["checksum"]


def test_provenance_cli_verifies_prepared_dataset(digits_dir):
    from gnc.data import verify_datasets
    from gnc.provenance import dataset_attrs

    p = gd.load_prepared(digits_dir)
    assert verify_datasets(dataset_attrs(p.manifest)) == []


def test_cli(capsys):
    from gnc.data.__main__ import main

    assert main(["list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(rows) == set(gd.SOURCES) and "digits                 available" in rows["digits"]
    assert main(["schema", "glyphs"]) == 0
    assert json.loads(capsys.readouterr().out) == gd.SPEC_SCHEMA["glyphs"]
    with pytest.raises(SystemExit):
        main(["schema", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
