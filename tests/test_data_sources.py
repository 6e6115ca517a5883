"""Every gnc.data source on small files written here in the real on-disk formats, read through the
same code path users run (torchvision's dataset classes, the checksum records, extraction)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import pickle
import shutil
import struct
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from gnc import data as gd
from gnc.data import DatasetNotFoundError, SourceChecksumError

torch.set_num_threads(1)
RNG = np.random.default_rng(12345)


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def prep(tmp_path, name, spec):
    out = tmp_path / "prepared" / name / gd.version_id(name, spec)
    m = gd.prepare(name, spec, out)
    return m, gd.load_prepared(out)


def ids(p, split: str) -> np.ndarray:
    """The recorded sample ids of a prepared split (ids in the source's own order)."""
    return np.load(Path(p.manifest["path"]) / f"{split}_ids.npy")


# ------------------------------------------------------------------------------------------ digits

def test_digits_matches_sklearn_and_split_is_stratified(tmp_path):
    from sklearn.datasets import load_digits

    m, p = prep(tmp_path, "digits", {"test_fraction": 0.2, "split_seed": 7})
    b = load_digits()
    x_all = np.rint(b.images * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(p.train_x[:, 0], x_all[ids(p, "train")])
    np.testing.assert_array_equal(p.test_y, b.target[ids(p, "test")])
    assert sorted(np.concatenate([ids(p, "train"), ids(p, "test")]).tolist()) == list(range(1797))
    n_per_class = np.bincount(b.target)
    assert m["counts"]["test"]["per_class"] == [int(round(0.2 * n)) for n in n_per_class]
    assert p.train_x.max() == 255 and p.train_x.min() == 0


# ------------------------------------------------------------------------------------------ CIFAR

def write_cifar10(root: Path, n_per_batch=6, n_test=5) -> dict:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    truth = {"train_x": [], "train_y": []}
    for b in range(1, 6):
        data = RNG.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = RNG.integers(0, 10, size=n_per_batch).tolist()
        with open(base / f"data_batch_{b}", "wb") as fh:
            pickle.dump({"batch_label": f"training batch {b} of 5", "labels": labels, "data": data,
                         "filenames": [f"img_{b}_{i}.png" for i in range(n_per_batch)]}, fh)
        truth["train_x"].append(data)
        truth["train_y"] += labels
    test = RNG.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    test_labels = RNG.integers(0, 10, size=n_test).tolist()
    with open(base / "test_batch", "wb") as fh:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": test_labels, "data": test}, fh)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"num_cases_per_batch": n_per_batch, "label_names": names, "num_vis": 3072}, fh)
    checksums = {f"cifar-10-batches-py/{f.name}": md5(f) for f in base.iterdir()}
    return {"train_x": np.concatenate(truth["train_x"]).reshape(-1, 3, 32, 32), "train_y": truth["train_y"],
            "test_x": test.reshape(-1, 3, 32, 32), "test_y": test_labels, "names": names, "checksums": checksums}


def test_cifar10_real_format(tmp_path):
    root = tmp_path / "raw"
    t = write_cifar10(root)
    spec = {"root": str(root), "checksums": t["checksums"]}
    m, p = prep(tmp_path, "cifar10", spec)
    np.testing.assert_array_equal(p.train_x, t["train_x"])
    np.testing.assert_array_equal(p.train_y, t["train_y"])
    np.testing.assert_array_equal(p.test_x, t["test_x"])
    assert p.class_names == t["names"] and p.train_x.shape[1:] == (3, 32, 32)
    files = m["source"]["files"]
    assert all(info["verified"] for info in files.values()) and len(files) == 7
    upper = {rel: value.upper() for rel, value in t["checksums"].items()}  # hex digits of either case
    m = gd.prepare("cifar10", {"root": str(root), "checksums": upper}, tmp_path / "upper")
    assert all(info["verified"] for info in m["source"]["files"].values())


def test_cifar_checksum_mismatch_names_the_file(tmp_path):
    root = tmp_path / "raw"
    t = write_cifar10(root)
    # without overrides the published md5s apply: our test files are not the real CIFAR
    with pytest.raises(SourceChecksumError, match="cifar-10-batches-py/data_batch_1"):
        gd.prepare("cifar10", {"root": str(root)}, tmp_path / "out")
    # a corrupted file is caught against the declared checksums too
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04corrupt")
    with pytest.raises(SourceChecksumError) as ei:
        gd.prepare("cifar10", {"root": str(root), "checksums": t["checksums"]}, tmp_path / "out")
    assert "test_batch" in str(ei.value) and t["checksums"]["cifar-10-batches-py/test_batch"] in str(ei.value)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_cifar_missing_files_message(tmp_path):
    with pytest.raises(DatasetNotFoundError) as ei:
        gd.prepare("cifar10", {"root": str(tmp_path / "empty")}, tmp_path / "out")
    msg = str(ei.value)
    assert str(tmp_path / "empty" / "cifar-10-batches-py" / "data_batch_1") in msg
    assert "download: true" in msg and "cifar-10-python.tar.gz" in msg
    assert not gd.available("cifar10", {"root": str(tmp_path / "empty")})


def test_cifar100_real_format(tmp_path):
    base = tmp_path / "raw" / "cifar-100-python"
    base.mkdir(parents=True)
    fine_names = [f"class_{i:02d}" for i in range(100)]
    tr = RNG.integers(0, 256, size=(12, 3072), dtype=np.uint8)
    tr_y = RNG.integers(0, 100, size=12).tolist()
    te = RNG.integers(0, 256, size=(4, 3072), dtype=np.uint8)
    te_y = RNG.integers(0, 100, size=4).tolist()
    for name, data, labels in (("train", tr, tr_y), ("test", te, te_y)):
        with open(base / name, "wb") as fh:
            pickle.dump({"filenames": ["x"] * len(labels), "batch_label": name, "fine_labels": labels,
                         "coarse_labels": [v // 5 for v in labels], "data": data}, fh)
    with open(base / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": fine_names, "coarse_label_names": [f"super_{i}" for i in range(20)]}, fh)
    spec = {"root": str(tmp_path / "raw"), "checksums": {f"cifar-100-python/{n}": md5(base / n) for n in ("train", "test", "meta")}}
    m, p = prep(tmp_path, "cifar100", spec)
    assert p.class_names == fine_names and m["num_classes"] == 100
    np.testing.assert_array_equal(p.train_x, tr.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(p.test_y, te_y)
    sub = gd.load_prepared(Path(m["files"] and (tmp_path / "prepared" / "cifar100" / m["version"])),
                           classes=gd.class_subset(100, 30, seed=0))
    assert len(sub.class_names) == 30 and all(0 <= y < 30 for y in sub.train_y)


# ------------------------------------------------------------------------------------------ MNIST family (IDX)

def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.tobytes()


def write_idx_set(raw: Path, prefix_names: dict, n_train=20, n_test=8, k=10, compress=True, label_offset=0):
    raw.mkdir(parents=True, exist_ok=True)
    truth = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = RNG.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = RNG.integers(0, k, size=n).astype(np.uint8) + label_offset
        truth[split] = (x, y)
        for kind, arr in (("images", x), ("labels", y)):
            name = prefix_names[(split, kind)]
            data = idx_bytes(arr)
            if compress:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
    return truth


MNIST_NAMES = {("train", "images"): "train-images-idx3-ubyte", ("train", "labels"): "train-labels-idx1-ubyte",
               ("test", "images"): "t10k-images-idx3-ubyte", ("test", "labels"): "t10k-labels-idx1-ubyte"}


@pytest.mark.parametrize("kind,folder,compress", [("mnist", "MNIST", True), ("fashion_mnist", "FashionMNIST", False),
                                                  ("kmnist", "KMNIST", True)])
def test_mnist_family_idx(tmp_path, kind, folder, compress):
    raw = tmp_path / "raw" / folder / "raw"
    truth = write_idx_set(raw, MNIST_NAMES, compress=compress)
    spec = {"root": str(tmp_path / "raw")}
    if compress:  # the published md5s are those of the .gz files
        spec["checksums"] = {f"{folder}/raw/{f.name}": md5(f) for f in raw.glob("*.gz")}
        with pytest.raises(SourceChecksumError, match=r"\.gz"):
            gd.prepare(kind, {"root": str(tmp_path / "raw")}, tmp_path / "bad")
    m, p = prep(tmp_path, kind, spec)
    np.testing.assert_array_equal(p.train_x[:, 0], truth["train"][0])
    np.testing.assert_array_equal(p.train_y, truth["train"][1])
    np.testing.assert_array_equal(p.test_x[:, 0], truth["test"][0])
    assert p.train_x.shape[1:] == (1, 28, 28) and len(p.class_names) == 10
    assert (raw / "train-images-idx3-ubyte").is_file()  # decompressed next to the .gz, as torchvision does
    verified = [n for n, i in m["source"]["files"].items() if i["verified"]]
    assert len(verified) == (4 if compress else 0)


def test_mnist_missing_message(tmp_path):
    with pytest.raises(DatasetNotFoundError) as ei:
        gd.prepare("mnist", {"root": str(tmp_path)}, tmp_path / "out")
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in str(ei.value)


def test_emnist_letters_from_published_zip_layout(tmp_path):
    raw = tmp_path / "raw" / "EMNIST" / "raw"
    names = {(s, k): f"emnist-letters-{s}-{k}-idx{3 if k == 'images' else 1}-ubyte"
             for s in ("train", "test") for k in ("images", "labels")}
    stage = tmp_path / "stage" / "gzip"
    truth = write_idx_set(stage, names, k=26, label_offset=1)  # letters are labelled 1..26
    raw.mkdir(parents=True)
    with zipfile.ZipFile(raw / "gzip.zip", "w") as zf:
        for f in sorted(stage.iterdir()):
            zf.write(f, f"gzip/{f.name}")
    spec = {"root": str(tmp_path / "raw"), "split": "letters", "checksums": {"EMNIST/raw/gzip.zip": md5(raw / "gzip.zip")}}
    m, p = prep(tmp_path, "emnist", spec)
    assert p.class_names == list("abcdefghijklmnopqrstuvwxyz")
    np.testing.assert_array_equal(p.train_y, truth["train"][1].astype(np.int64) - 1)
    np.testing.assert_array_equal(p.train_x[:, 0], truth["train"][0].transpose(0, 2, 1))  # upright
    assert m["source"]["files"]["EMNIST/raw/gzip.zip"]["verified"]


# ------------------------------------------------------------------------------------------ SVHN, STL-10

def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "raw" / "svhn"
    root.mkdir(parents=True)
    truth = {}
    for split, n in (("train", 7), ("test", 3)):
        x = RNG.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = RNG.integers(1, 11, size=(n, 1)).astype(np.uint8)  # SVHN labels 1..10, 10 = digit 0
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        truth[split] = (x, y)
    spec = {"root": str(tmp_path / "raw"), "checksums": {f"svhn/{s}_32x32.mat": md5(root / f"{s}_32x32.mat") for s in truth}}
    m, p = prep(tmp_path, "svhn", spec)
    x, y = truth["train"]
    np.testing.assert_array_equal(p.train_x, x.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(p.train_y, np.where(y[:, 0] == 10, 0, y[:, 0]))


def test_stl10_bin(tmp_path):
    base = tmp_path / "raw" / "stl10_binary"
    base.mkdir(parents=True)
    truth = {}
    for split, n in (("train", 4), ("test", 2)):
        x = RNG.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)  # stored column-major per channel
        y = RNG.integers(1, 11, size=n).astype(np.uint8)
        x.transpose(0, 1, 3, 2).tofile(base / f"{split}_X.bin")
        y.tofile(base / f"{split}_y.bin")
        truth[split] = (x, y)
    (base / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    spec = {"root": str(tmp_path / "raw"),
            "checksums": {f"stl10_binary/{s}_{k}.bin": md5(base / f"{s}_{k}.bin") for s in truth for k in "Xy"}}
    m, p = prep(tmp_path, "stl10", spec)
    np.testing.assert_array_equal(p.train_x, truth["train"][0])
    np.testing.assert_array_equal(p.test_y, truth["test"][1].astype(np.int64) - 1)
    assert p.class_names == [f"c{i}" for i in range(10)]


# ------------------------------------------------------------------------------------------ Fashion-MNIST (Debian)

def test_fashion_mnist_debian_layout_with_declared_checksums(tmp_path):
    path = tmp_path / "usr-share-datasets-fashion-mnist"
    truth = write_idx_set(path, MNIST_NAMES, compress=True)
    with pytest.raises(SourceChecksumError, match="train-images-idx3-ubyte.gz"):
        gd.prepare("fashion_mnist_debian", {"root": str(path)}, tmp_path / "bad")  # not Debian's files
    spec = {"root": str(path), "checksums": {f.name: md5(f) for f in path.glob("*.gz")}}
    m, p = prep(tmp_path, "fashion_mnist_debian", spec)
    np.testing.assert_array_equal(p.test_x[:, 0], truth["test"][0])
    assert p.class_names[0] == "T-shirt/top"


def test_fashion_mnist_debian_missing_package_message(tmp_path):
    spec = {"root": str(tmp_path / "nowhere")}
    assert not gd.available("fashion_mnist_debian", spec)
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        gd.prepare("fashion_mnist_debian", spec, tmp_path / "out")


@pytest.mark.skipif(not gd.available("fashion_mnist_debian", {}), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_installed(tmp_path):
    m, p = prep(tmp_path, "fashion_mnist_debian", {"max_per_class": {"train": 30, "test": 10}})
    assert m["subsample"]["train_available"]["total"] == 60000
    assert m["subsample"]["test_available"]["per_class"] == [1000] * 10
    assert p.train_x.shape == (300, 1, 28, 28)
    assert all(info["verified"] for info in m["source"]["files"].values())


# ------------------------------------------------------------------------------------------ Tiny-ImageNet

def write_tiny(root: Path, wnids=("n01443537", "n01629819", "n01641577"), n_train=3, n_val=2) -> Path:
    from PIL import Image

    top = root / "tiny-imagenet-200"
    (top / "val" / "images").mkdir(parents=True)
    (top / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (top / "words.txt").write_text("".join(f"{w}\tthing {i}, other name\n" for i, w in enumerate(wnids))
                                   + "n99999999\tunused entry\n")
    for w in wnids:
        (top / "train" / w / "images").mkdir(parents=True)
        (top / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(n_train):
            arr = RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
            img = Image.fromarray(arr) if i else Image.fromarray(arr[..., 0])  # one greyscale JPEG per class
            img.save(top / "train" / w / "images" / f"{w}_{i}.JPEG", quality=90)
    lines = []
    for j in range(n_val * len(wnids)):
        Image.fromarray(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(top / "val" / "images" / f"val_{j}.JPEG")
        lines.append(f"val_{j}.JPEG\t{wnids[j % len(wnids)]}\t0\t0\t63\t63")
    (top / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    archive = root / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(top.rglob("*")):
            zf.write(f, f.relative_to(root).as_posix())
    shutil.rmtree(top)
    return archive


def decode(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)


def test_tiny_imagenet_archive_extract_and_read(tmp_path):
    root = tmp_path / "raw"
    archive = write_tiny(root)
    spec = {"root": str(root), "checksums": {"tiny-imagenet-200.zip": md5(archive)}}
    m, p = prep(tmp_path, "tiny_imagenet", spec)
    top = root / "tiny-imagenet-200"
    assert (top / "train").is_dir() and not list(root.glob(".tiny-imagenet-200.extract.*"))
    assert p.class_names == ["thing 0", "thing 1", "thing 2"]
    assert m["class_ids"] == ["n01443537", "n01629819", "n01641577"]
    assert p.train_x.shape == (9, 3, 64, 64) and p.test_x.shape == (6, 3, 64, 64)
    # independent decode of the same files
    np.testing.assert_array_equal(p.train_x[0], decode(top / "train" / "n01443537" / "images" / "n01443537_0.JPEG"))
    np.testing.assert_array_equal(p.test_x[4], decode(top / "val" / "images" / "val_4.JPEG"))
    np.testing.assert_array_equal(p.test_y, [j % 3 for j in range(6)])
    assert m["source"]["archive"]["verified"]
    # the published md5 is checked when no override is given
    shutil.rmtree(top)
    with pytest.raises(SourceChecksumError, match="90528d7ca1a48142e341f4ef8d21d0de"):
        gd.prepare("tiny_imagenet", {"root": str(root)}, tmp_path / "bad")
    # resizing option
    m32, p32 = prep(tmp_path, "tiny_imagenet", {**spec, "size": 32})
    assert p32.train_x.shape[1:] == (3, 32, 32) and m32["version"] != m["version"]


def test_tiny_imagenet_download_over_http(tmp_path):
    served = tmp_path / "served"
    archive = write_tiny(served, n_train=1, n_val=1)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tiny-imagenet-200.zip"
        root = tmp_path / "raw"
        spec = {"root": str(root), "checksums": {"tiny-imagenet-200.zip": md5(archive)}, "url": url}
        with pytest.raises(DatasetNotFoundError, match="download: true"):
            gd.prepare("tiny_imagenet", spec, tmp_path / "o1")
        m, p = prep(tmp_path, "tiny_imagenet", {**spec, "download": True})
        assert (root / "tiny-imagenet-200.zip").is_file() and p.train_x.shape == (3, 3, 64, 64)
        assert m["version"] == gd.version_id("tiny_imagenet", spec)  # download/url are not content
    finally:
        server.shutdown()


# ------------------------------------------------------------------------------------------ image folders

def test_image_folder_single_tree_png(tmp_path):
    from PIL import Image

    root = tmp_path / "pets"
    truth = {}
    for c in ("cat", "dog", "emu"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            arr = RNG.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
            truth[(c, i)] = arr
    (root / "dog" / "notes.txt").write_text("not an image")
    spec = {"source": "image_folder", "root": str(root), "size": 16, "test_fraction": 0.4}
    assert gd.num_classes("pets", spec) == 3
    m, p = prep(tmp_path, "pets", spec)
    assert p.class_names == ["cat", "dog", "emu"]
    assert m["counts"]["test"]["per_class"] == [2, 2, 2] and m["counts"]["train"]["per_class"] == [3, 3, 3]
    rel = m["source"]["samples"]
    for x, y, i in zip(p.train_x, p.train_y, ids(p, "train")):
        c, fname = rel[i].split("/")
        assert p.class_names[y] == c
        np.testing.assert_array_equal(x, truth[(c, int(fname[0]))].transpose(2, 0, 1))
    # greyscale, resized: shape and a closed-form check on a constant image
    m2, p2 = prep(tmp_path, "pets", {**spec, "size": 8, "channels": 1})
    assert p2.train_x.shape[1:] == (1, 8, 8)


def test_image_folder_train_val_jpeg_and_crop(tmp_path):
    from PIL import Image

    root = tmp_path / "tree"
    for split, classes in (("train", ("a", "b", "c")), ("val", ("a", "c"))):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(2):
                img = np.zeros((20, 40, 3), np.uint8)
                img[:, 6:34] = 200  # centre band: a centre crop (20x20) then resize to 10 sees only the band
                Image.fromarray(img).save(root / split / c / f"{i}.jpg", quality=95)
    m, p = prep(tmp_path, "tree", {"source": "image_folder", "root": str(root), "size": 10})
    assert p.class_names == ["a", "b", "c"] and m["counts"]["test"]["per_class"] == [2, 0, 2]
    np.testing.assert_array_equal(p.test_y, [0, 0, 2, 2])
    assert abs(p.train_x.astype(int) - 200).max() <= 6  # JPEG noise only
    _, ps = prep(tmp_path, "tree", {"source": "image_folder", "root": str(root), "size": 10, "resize": "stretch"})
    assert ps.train_x[..., 0].astype(int).mean() < 100  # stretching keeps the black margins
    (root / "val" / "zebra").mkdir()
    with pytest.raises(gd.SpecError, match="zebra"):
        gd.prepare("tree", {"source": "image_folder", "root": str(root), "size": 10}, tmp_path / "z")


def test_image_folder_missing_path_message(tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    spec = {"source": "image_folder", "root": str(missing)}
    with pytest.raises(DatasetNotFoundError, match=str(missing)):
        gd.version_id("mine", spec)
    with pytest.raises(DatasetNotFoundError, match=str(missing)):
        gd.prepare("mine", spec, tmp_path / "out")
    assert not gd.available("mine", spec)


def test_published_checksums_match_torchvision_constants():
    """Our copies of the publishers' md5s (used without importing torchvision) equal torchvision's."""
    from gnc._torchvision_compat import import_torchvision
    from gnc.data.sources import torchvision_sets as T

    tv = import_torchvision().datasets
    for kind, cls in (("cifar10", tv.CIFAR10), ("cifar100", tv.CIFAR100)):
        pub = T.CIFAR_PUBLISHED[kind]
        assert pub["base_folder"] == cls.base_folder and pub["url"] == cls.url
        assert pub["files"] == {**dict(cls.train_list), **dict(cls.test_list), cls.meta["filename"]: cls.meta["md5"]}
    for name in ("MNIST", "FashionMNIST", "KMNIST"):
        assert T.MNIST_PUBLISHED[name] == dict(getattr(tv, name).resources)
    assert T.EMNIST_ZIP_MD5 == tv.EMNIST.md5
    assert T.SVHN_PUBLISHED == {s: v[2] for s, v in tv.SVHN.split_list.items()}
    stl = dict(tv.STL10.train_list + tv.STL10.test_list)
    assert all(stl[n] == md5 for n, md5 in T.STL10_PUBLISHED.items())
