"""Datasets read with torchvision's own dataset classes: CIFAR-10/100, MNIST, Fashion-MNIST, KMNIST,
EMNIST, SVHN, STL-10.

Where the files live: ``<root>/`` as torchvision lays them out (``root`` from the spec, else
``$GNC_DATA_ROOT``, else ``resources/raw``)::

    cifar10        <root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    cifar100       <root>/cifar-100-python/{train,test,meta}
    mnist          <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    fashion_mnist  <root>/FashionMNIST/raw/...   (same names)
    kmnist         <root>/KMNIST/raw/...
    emnist         <root>/EMNIST/raw/emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte[.gz]
                   or <root>/EMNIST/raw/gzip.zip (the published archive)
    svhn           <root>/svhn/{train,test[,extra]}_32x32.mat
    stl10          <root>/stl10_binary/{train_X,train_y,test_X,test_y}.bin

Integrity, and why the test files pass: torchvision checks CIFAR / SVHN / STL-10 files against md5
constants in its classes. We verify every input file ourselves against a *checksum record*: the
publisher's checksums (the same constants torchvision carries) updated with the spec's
``checksums`` overrides; a mismatch raises :class:`~gnc.data.errors.SourceChecksumError` naming the
file. We then instantiate a subclass of torchvision's class whose md5 attributes hold the checksums
we just verified, so torchvision's own integrity check and its reader run unchanged: the code path
is the same for the real files and for the small real-format files the tests write (which declare
their md5s under ``checksums``). MNIST-family files: the published md5s are those of the ``.gz``
files; when ``.gz`` files are present they are verified and decompressed next to themselves (what
torchvision's download does); plain IDX files without ``.gz`` are hashed and recorded (verified
only if ``checksums`` names them).

``download: true`` calls torchvision's download (which verifies the archive md5) when files are
missing. Off by default; without it a missing file raises
:class:`~gnc.data.errors.DatasetNotFoundError` naming the expected path and how to get it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .._files import effective_record, gunzip_atomic, missing_files, verify_file, verify_record
from ..errors import DatasetNotFoundError
from .base import CHECKSUMS_SCHEMA, DOWNLOAD_SCHEMA, ROOT_SCHEMA, RawData, Source, resolve_root


def _tv():
    from ..._torchvision_compat import import_torchvision  # deferred: torch, only to load

    return import_torchvision()


def _missing_message(kind: str, paths: list[Path], url: str | None, extra: str = "") -> str:
    listing = ", ".join(str(p) for p in paths[:4]) + (" ..." if len(paths) > 4 else "")
    how = f" Get them with 'download: true' in the dataset spec (downloads {url})" if url else ""
    return (f"{kind}: raw files not found: {listing}.{how}, or place the files there yourself, or point "
            f"'root' (or $GNC_DATA_ROOT) at the folder that holds them.{extra}")


class TorchvisionSource(Source):
    """Common flow: ensure files (download or error) -> verify record -> read with torchvision."""

    tv_name: str = ""
    url: str | None = None
    schema = {"root": ROOT_SCHEMA, "download": DOWNLOAD_SCHEMA, "checksums": CHECKSUMS_SCHEMA}

    # -- to implement
    def published(self, opts) -> dict[str, str | None]:
        """{path relative to root: publisher's checksum} of the files this source reads."""
        raise NotImplementedError

    def read(self, tv, root: Path, opts, md5s: dict[str, str]) -> tuple:
        """-> (train_x, train_y, test_x, test_y, class_names, extra_info)"""
        raise NotImplementedError

    def download(self, tv, root: Path, opts) -> None:
        raise NotImplementedError

    #: size in bytes of the publisher's file at ``url`` (None: not recorded)
    download_bytes: int | None = None

    # -- shared
    def downloads(self, opts):
        return [(self.url, self.download_bytes)] if self.url else []

    def record(self, opts) -> dict[str, str | None]:
        return effective_record(self.published(opts), opts.get("checksums"))

    def required_files(self, opts) -> list[str]:
        return list(self.published(opts))

    def identity(self, opts):
        return {"torchvision_class": self.tv_name, "checksums": self.record(opts)}

    def available(self, opts):
        return not missing_files(resolve_root(opts), self.required_files(opts))

    def unavailable_reason(self, opts):
        return _missing_message(self.kind, missing_files(resolve_root(opts), self.required_files(opts)), self.url)

    def ensure_files(self, tv, root: Path, opts) -> None:
        missing = missing_files(root, self.required_files(opts))
        if not missing:
            return
        if not opts.get("download"):
            raise DatasetNotFoundError(_missing_message(self.kind, missing, self.url))
        self.download(tv, root, opts)
        missing = missing_files(root, self.required_files(opts))
        if missing:
            raise DatasetNotFoundError(_missing_message(self.kind, missing, self.url, " (download did not provide them)"))

    def load(self, opts):
        root = resolve_root(opts)
        tv = _tv()
        self.ensure_files(tv, root, opts)
        record = self.record(opts)
        files = verify_record(root, record, self.required_files(opts))
        md5s = {name: info["md5"] for name, info in files.items()}
        trx, try_, tex, tey, names, extra = self.read(tv, root, opts, md5s)
        info = {"reader": f"torchvision.datasets.{self.tv_name}", "torchvision_version": tv.__version__,
                "root": str(root), "files": files, **extra}
        return RawData(np.ascontiguousarray(trx, np.uint8), np.asarray(try_, np.int64),
                       np.ascontiguousarray(tex, np.uint8), np.asarray(tey, np.int64), list(names), info)


# ------------------------------------------------------------------------------------------ CIFAR

CIFAR_PUBLISHED = {
    "cifar10": {
        "base_folder": "cifar-10-batches-py",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "bytes": 170_498_071,
        "files": {
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
    },
    "cifar100": {
        "base_folder": "cifar-100-python",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "bytes": 169_001_437,
        "files": {
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
    },
}


class Cifar(TorchvisionSource):
    def __init__(self, kind: str):
        self.kind = kind
        self.tv_name = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}[kind]
        self.url = CIFAR_PUBLISHED[kind]["url"]
        self.download_bytes = CIFAR_PUBLISHED[kind]["bytes"]
        self.description = f"{self.tv_name} (python pickle batches), read with torchvision.datasets.{self.tv_name}"

    def num_classes(self, opts):
        return 10 if self.kind == "cifar10" else 100

    def published(self, opts):
        pub = CIFAR_PUBLISHED[self.kind]
        return {f"{pub['base_folder']}/{name}": md5 for name, md5 in pub["files"].items()}

    def _subclass(self, tv, md5s):
        base = getattr(tv.datasets, self.tv_name)
        bf = base.base_folder
        return type(f"Gnc{self.tv_name}", (base,), {
            "train_list": [[n, md5s[f"{bf}/{n}"]] for n, _ in base.train_list],
            "test_list": [[n, md5s[f"{bf}/{n}"]] for n, _ in base.test_list],
            "meta": {**base.meta, "md5": md5s[f"{bf}/{base.meta['filename']}"]},
        })

    def download(self, tv, root, opts):
        getattr(tv.datasets, self.tv_name)(str(root), train=True, download=True)

    def read(self, tv, root, opts, md5s):
        cls = self._subclass(tv, md5s)
        tr = cls(str(root), train=True, download=False)
        te = cls(str(root), train=False, download=False)
        return (tr.data.transpose(0, 3, 1, 2), tr.targets, te.data.transpose(0, 3, 1, 2), te.targets,
                list(tr.classes), {"label_key": "labels" if self.kind == "cifar10" else "fine_labels"})


# ------------------------------------------------------------------------------------ MNIST family

MNIST_PUBLISHED = {
    "MNIST": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "KMNIST": {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
}
MNIST_URLS = {
    "MNIST": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "FashionMNIST": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "KMNIST": "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
}
#: total size in bytes of the four .gz files (where recorded)
MNIST_BYTES = {"MNIST": 9_912_422 + 28_881 + 1_648_877 + 4_542}


def ensure_idx_files(kind: str, raw: Path, rel_raw: str, names: list[str], record: dict) -> dict:
    """Make the uncompressed IDX files ``names`` exist in ``raw``: verify ``<name>.gz`` against the
    record and decompress it when present; otherwise use (and hash) the plain file.

    Returns {path relative to root: hash info} of the files checked.
    """
    checked = {}
    for name in names:
        gz, plain = raw / f"{name}.gz", raw / name
        rel_gz, rel_plain = f"{rel_raw}/{name}.gz", f"{rel_raw}/{name}"
        if gz.is_file():
            checked[rel_gz] = verify_file(gz, record.get(rel_gz), label=rel_gz)
            if not plain.is_file():
                gunzip_atomic(gz, plain)
        checked[rel_plain] = verify_file(plain, record.get(rel_plain), label=rel_plain)
    return checked


class MnistFamily(TorchvisionSource):
    def __init__(self, kind: str, tv_name: str):
        self.kind = kind
        self.tv_name = tv_name
        self.url = MNIST_URLS[tv_name]
        self.download_bytes = MNIST_BYTES.get(tv_name)
        self.description = f"{tv_name} IDX files (.gz or plain), read with torchvision.datasets.{tv_name}"

    def num_classes(self, opts):
        return 10

    def published(self, opts):
        return {f"{self.tv_name}/raw/{n}": md5 for n, md5 in MNIST_PUBLISHED[self.tv_name].items()}

    def idx_names(self, opts) -> list[str]:
        return [n[:-3] for n in MNIST_PUBLISHED[self.tv_name]]

    def raw_folder(self, opts) -> Path:
        return resolve_root(opts) / self.tv_name / "raw"

    def missing_idx(self, opts) -> list[Path]:
        raw = self.raw_folder(opts)
        return [raw / f"{n}.gz" for n in self.idx_names(opts)
                if not ((raw / n).is_file() or (raw / f"{n}.gz").is_file())]

    def available(self, opts):
        return not self.missing_idx(opts)

    def unavailable_reason(self, opts):
        return _missing_message(self.kind, self.missing_idx(opts), self.url)

    def download(self, tv, root, opts):
        getattr(tv.datasets, self.tv_name)(str(root), train=True, download=True)

    def instantiate(self, tv, root: Path, opts, train: bool):
        return getattr(tv.datasets, self.tv_name)(str(root), train=train, download=False)

    def prepare_raw(self, opts) -> dict:
        """Hook run before the IDX files are checked (EMNIST extracts its archive here)."""
        return {}

    def load(self, opts):
        root = resolve_root(opts)
        tv = _tv()
        extra_files = self.prepare_raw(opts)
        missing = self.missing_idx(opts)
        if missing:
            if not opts.get("download"):
                raise DatasetNotFoundError(_missing_message(self.kind, missing, self.url))
            self.download(tv, root, opts)
        files = ensure_idx_files(self.kind, self.raw_folder(opts), f"{self.tv_name}/raw", self.idx_names(opts),
                                 self.record(opts))
        files.update(extra_files)
        tr, te = self.instantiate(tv, root, opts, True), self.instantiate(tv, root, opts, False)
        info = {"reader": f"torchvision.datasets.{self.tv_name}", "torchvision_version": tv.__version__,
                "root": str(root), "files": files}
        trx, try_, tex, tey, names = (tr.data.numpy()[:, None], tr.targets.numpy().astype(np.int64),
                                      te.data.numpy()[:, None], te.targets.numpy().astype(np.int64),
                                      list(tr.classes))
        trx, try_, tex, tey, names = self.postprocess(opts, trx, try_, tex, tey, names, info)
        return RawData(np.ascontiguousarray(trx), try_, np.ascontiguousarray(tex), tey, names, info)

    def postprocess(self, opts, trx, try_, tex, tey, names, info):
        return trx, try_, tex, tey, names


EMNIST_ZIP_MD5 = "58c8d27c78d21e728a6bc7b3cc06412e"
EMNIST_SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
EMNIST_NUM_CLASSES = {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 26, "digits": 10, "mnist": 10}


class Emnist(MnistFamily):
    description = ("EMNIST IDX files (or the published gzip.zip), read with torchvision.datasets.EMNIST; "
                   "images transposed upright by default; 'letters' relabelled 0..25 (a..z)")
    schema = {
        **TorchvisionSource.schema,
        "split": {"enum": list(EMNIST_SPLITS), "default": "balanced", "description": "EMNIST split"},
        "transpose": {"type": "boolean", "default": True,
                      "description": "transpose the images upright (EMNIST stores them transposed)"},
    }

    def __init__(self):
        self.kind = "emnist"
        self.tv_name = "EMNIST"
        self.url = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
        self.download_bytes = 561_753_746

    def num_classes(self, opts):
        return EMNIST_NUM_CLASSES[opts["split"]]

    def published(self, opts):
        return {"EMNIST/raw/gzip.zip": EMNIST_ZIP_MD5}

    def idx_names(self, opts):
        return [f"emnist-{opts['split']}-{s}-{t}-ubyte" for s in ("train", "test")
                for t in ("images-idx3", "labels-idx1")]

    def available(self, opts):
        return super().available(opts) or (self.raw_folder(opts) / "gzip.zip").is_file()

    def prepare_raw(self, opts):
        raw = self.raw_folder(opts)
        if not self.missing_idx(opts) or not (raw / "gzip.zip").is_file():
            return {}
        rel = "EMNIST/raw/gzip.zip"
        info = verify_file(raw / "gzip.zip", self.record(opts).get(rel), label=rel)
        with zipfile.ZipFile(raw / "gzip.zip") as zf:
            for n in self.idx_names(opts):
                tmp = raw / f".{n}.gz.part"
                tmp.write_bytes(zf.read(f"gzip/{n}.gz"))
                try:
                    gunzip_atomic(tmp, raw / n)
                finally:
                    tmp.unlink(missing_ok=True)
        return {rel: info}

    def download(self, tv, root, opts):
        tv.datasets.EMNIST(str(root), split=opts["split"], train=True, download=True)

    def instantiate(self, tv, root, opts, train):
        return tv.datasets.EMNIST(str(root), split=opts["split"], train=train, download=False)

    def postprocess(self, opts, trx, try_, tex, tey, names, info):
        if opts["transpose"]:
            trx, tex = trx.transpose(0, 1, 3, 2), tex.transpose(0, 1, 3, 2)
        if opts["split"] == "letters":  # labels 1..26, class 0 ('N/A') unused
            try_, tey, names = try_ - 1, tey - 1, names[1:]
        info["transposed"] = bool(opts["transpose"])
        return trx, try_, tex, tey, names


# ------------------------------------------------------------------------------------------ SVHN

SVHN_PUBLISHED = {
    "train": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test": "eb5a983be6a315427106f1b164d9cef3",
    "extra": "a93ce644f1a588dc4d68dda5feec44a7",
}
SVHN_BYTES = {"train": 182_040_794, "test": 64_275_384, "extra": 1_329_278_602}


class Svhn(TorchvisionSource):
    kind = "svhn"
    tv_name = "SVHN"
    url = "http://ufldl.stanford.edu/housenumbers/"
    description = "SVHN cropped digits (.mat), read with torchvision.datasets.SVHN; files in <root>/svhn/"
    schema = {
        **TorchvisionSource.schema,
        "include_extra": {"type": "boolean", "default": False,
                          "description": "append the 531,131 'extra' images to the train split"},
    }

    def num_classes(self, opts):
        return 10

    def _splits(self, opts):
        return ["train", "test"] + (["extra"] if opts["include_extra"] else [])

    def published(self, opts):
        return {f"svhn/{s}_32x32.mat": SVHN_PUBLISHED[s] for s in self._splits(opts)}

    def _subclass(self, tv, md5s):
        base = tv.datasets.SVHN
        split_list = {s: [url, fname, md5s.get(f"svhn/{fname}", md5)] for s, (url, fname, md5) in base.split_list.items()}
        return type("GncSVHN", (base,), {"split_list": split_list})

    def downloads(self, opts):
        return [(f"{self.url}{s}_32x32.mat", SVHN_BYTES[s]) for s in self._splits(opts)]

    def download(self, tv, root, opts):
        for s in self._splits(opts):
            tv.datasets.SVHN(str(root / "svhn"), split=s, download=True)

    def read(self, tv, root, opts, md5s):
        cls = self._subclass(tv, md5s)
        parts = {s: cls(str(root / "svhn"), split=s, download=False) for s in self._splits(opts)}
        trx = np.concatenate([parts[s].data for s in parts if s != "test"])
        try_ = np.concatenate([parts[s].labels for s in parts if s != "test"])
        return trx, try_, parts["test"].data, parts["test"].labels, [str(i) for i in range(10)], {}


# ------------------------------------------------------------------------------------------ STL-10

STL10_PUBLISHED = {
    "train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
    "train_y.bin": "5a34089d4802c674881badbb80307741",
    "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
    "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e",
}
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


class Stl10(TorchvisionSource):
    kind = "stl10"
    tv_name = "STL10"
    url = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
    download_bytes = 2_640_397_119
    description = ("STL-10 labelled train/test (96x96x3 binary files), read with torchvision.datasets.STL10 "
                   "(the unlabelled part is not needed)")

    def num_classes(self, opts):
        return 10

    def published(self, opts):
        return {f"stl10_binary/{n}": md5 for n, md5 in STL10_PUBLISHED.items()}

    def _subclass(self, tv, md5s):
        return type("GncSTL10", (tv.datasets.STL10,), {
            "train_list": [[n, md5s[f"stl10_binary/{n}"]] for n in ("train_X.bin", "train_y.bin")],
            "test_list": [[n, md5s[f"stl10_binary/{n}"]] for n in ("test_X.bin", "test_y.bin")],
        })

    def download(self, tv, root, opts):
        tv.datasets.STL10(str(root), split="train", download=True)

    def read(self, tv, root, opts, md5s):
        cls = self._subclass(tv, md5s)
        tr = cls(str(root), split="train", download=False)
        te = cls(str(root), split="test", download=False)
        names = list(getattr(tr, "classes", None) or STL10_CLASSES)
        return tr.data, tr.labels.astype(np.int64), te.data, te.labels.astype(np.int64), names, {}


def all_sources() -> list[Source]:
    return [Cifar("cifar10"), Cifar("cifar100"), MnistFamily("mnist", "MNIST"),
            MnistFamily("fashion_mnist", "FashionMNIST"), MnistFamily("kmnist", "KMNIST"), Emnist(), Svhn(),
            Stl10()]
