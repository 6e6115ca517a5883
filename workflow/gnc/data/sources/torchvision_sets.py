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

Integrity: every input file is verified against the source's checksum record (:mod:`gnc.data._files`;
the publisher's md5s are the constants torchvision carries). Classes that check md5s themselves (CIFAR,
SVHN, STL-10) are subclassed with the checksums we just verified, so torchvision's own check and reader
run unchanged, for the real files and for the small real-format files the tests write. MNIST family:
the published md5s are those of the ``.gz`` files; a ``.gz`` present is verified and decompressed next
to itself (as torchvision's download does); a plain IDX file without ``.gz`` is hashed and recorded.

``download: true`` calls torchvision's download (which verifies the archive md5) when files are
missing. Off by default; without it a missing file raises
:class:`~gnc.data.errors.DatasetNotFoundError` naming the expected path and how to get it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .._files import effective_record, gunzip_atomic, verify_file
from ..errors import DatasetNotFoundError
from .base import CHECKSUMS_SCHEMA, DOWNLOAD_SCHEMA, ROOT_SCHEMA, RawData, Source, resolve_root, torchvision


def _missing_message(kind: str, paths: list[Path], url: str | None) -> str:
    listing = ", ".join(str(p) for p in paths[:4]) + (" ..." if len(paths) > 4 else "")
    how = f" Get them with 'download: true' in the dataset spec (downloads {url})" if url else ""
    return (f"{kind}: raw files not found: {listing}.{how}, or place the files there yourself, or point "
            f"'root' (or $GNC_DATA_ROOT) at the folder that holds them.")


def _verified_class(base, md5s: dict[str, str]):
    """``base`` with the checksums we verified in its md5 lists (classes with ``train_list``: CIFAR,
    STL-10; files we do not read, STL-10's unlabelled part, are left out); other classes unchanged."""
    if not hasattr(base, "train_list"):
        return base
    bf = base.base_folder
    attrs = {lst: [[n, md5s[f"{bf}/{n}"]] for n, _ in getattr(base, lst) if f"{bf}/{n}" in md5s]
             for lst in ("train_list", "test_list")}
    if hasattr(base, "meta"):
        attrs["meta"] = {**base.meta, "md5": md5s[f"{bf}/{base.meta['filename']}"]}
    return type(f"Gnc{base.__name__}", (base,), attrs)


class TorchvisionSource(Source):
    """Common flow: files present (or downloaded) -> verified against the record -> read by the torchvision
    class ``tv_name``, whose train and test splits :meth:`splits` selects."""

    tv_name: str = ""
    url: str | None = None
    #: size in bytes of the publisher's file at ``url`` (None: not recorded)
    download_bytes: int | None = None
    classes: int = 10
    schema = {"root": ROOT_SCHEMA, "download": DOWNLOAD_SCHEMA, "checksums": CHECKSUMS_SCHEMA}

    def published(self, opts) -> dict[str, str | None]:
        """{path relative to root: publisher's checksum} of the files this source reads."""
        raise NotImplementedError

    def arrays(self, tr, te, opts) -> tuple:
        """torchvision's train and test datasets -> (train_x, train_y, test_x, test_y, names, extra_info)"""
        raise NotImplementedError

    def splits(self, opts) -> tuple[dict, dict]:
        return {"train": True}, {"train": False}

    def num_classes(self, opts):
        return self.classes

    def downloads(self, opts):
        return [(self.url, self.download_bytes)] if self.url else []

    def record(self, opts) -> dict[str, str | None]:
        return effective_record(self.published(opts), opts.get("checksums"))

    def identity(self, opts):
        return {"torchvision_class": self.tv_name, "checksums": self.record(opts)}

    def missing(self, opts) -> list[Path]:
        root = resolve_root(opts)
        return [root / n for n in self.published(opts) if not (root / n).is_file()]

    def unavailable(self, opts):
        missing = self.missing(opts)
        return _missing_message(self.kind, missing, self.url) if missing else None

    def download(self, tv, root: Path, opts) -> None:
        getattr(tv.datasets, self.tv_name)(str(root), download=True, **self.splits(opts)[0])

    def verify(self, root: Path, opts) -> dict:
        """{path relative to root: hash info} of the input files, each checked against the record."""
        record = self.record(opts)
        return {name: verify_file(root, name, record.get(name)) for name in self.published(opts)}

    def read(self, tv, root: Path, opts, md5s: dict[str, str]) -> tuple:
        cls = _verified_class(getattr(tv.datasets, self.tv_name), md5s)
        tr, te = (cls(str(root), download=False, **kw) for kw in self.splits(opts))
        return self.arrays(tr, te, opts)

    def load(self, opts):
        root, tv = resolve_root(opts), torchvision()
        if self.missing(opts):
            if not opts.get("download"):
                raise DatasetNotFoundError(self.unavailable(opts))
            self.download(tv, root, opts)
        files = self.verify(root, opts)  # a file the download did not provide: DatasetNotFoundError
        trx, try_, tex, tey, names, extra = self.read(tv, root, opts, {n: i["md5"] for n, i in files.items()})
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
    def __init__(self, kind: str, classes: int):
        self.kind, self.classes, self.tv_name = kind, classes, kind.upper()
        self.url, self.download_bytes = CIFAR_PUBLISHED[kind]["url"], CIFAR_PUBLISHED[kind]["bytes"]
        self.description = f"{self.tv_name} (python pickle batches), read with torchvision.datasets.{self.tv_name}"

    def published(self, opts):
        pub = CIFAR_PUBLISHED[self.kind]
        return {f"{pub['base_folder']}/{name}": md5 for name, md5 in pub["files"].items()}

    def arrays(self, tr, te, opts):
        label_key = "labels" if self.kind == "cifar10" else "fine_labels"
        trx, tex = tr.data.transpose(0, 3, 1, 2), te.data.transpose(0, 3, 1, 2)
        return trx, tr.targets, tex, te.targets, tr.classes, {"label_key": label_key}


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
#: download URL and total size in bytes of the four .gz files (None: not recorded)
MNIST_DOWNLOADS = {
    "MNIST": ("https://ossci-datasets.s3.amazonaws.com/mnist/", 9_912_422 + 28_881 + 1_648_877 + 4_542),
    "FashionMNIST": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", None),
    "KMNIST": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/", None),
}


class MnistFamily(TorchvisionSource):
    def __init__(self, kind: str, tv_name: str):
        self.kind, self.tv_name = kind, tv_name
        self.url, self.download_bytes = MNIST_DOWNLOADS[tv_name]
        self.description = f"{tv_name} IDX files (.gz or plain), read with torchvision.datasets.{tv_name}"

    def published(self, opts):
        return {f"{self.tv_name}/raw/{n}": md5 for n, md5 in MNIST_PUBLISHED[self.tv_name].items()}

    def idx_names(self, opts) -> list[str]:
        return [n[:-3] for n in MNIST_PUBLISHED[self.tv_name]]

    def missing(self, opts):
        raw = resolve_root(opts) / self.tv_name / "raw"
        return [raw / f"{n}.gz" for n in self.idx_names(opts)
                if not ((raw / n).is_file() or (raw / f"{n}.gz").is_file())]

    def verify(self, root, opts):
        record, checked = self.record(opts), {}
        for name in self.idx_names(opts):
            plain = f"{self.tv_name}/raw/{name}"
            gz = f"{plain}.gz"
            if (root / gz).is_file():
                checked[gz] = verify_file(root, gz, record.get(gz))
                if not (root / plain).is_file():
                    gunzip_atomic(root / gz, root / plain)
            checked[plain] = verify_file(root, plain, record.get(plain))
        return checked

    def arrays(self, tr, te, opts):
        return (tr.data.numpy()[:, None], tr.targets.numpy(), te.data.numpy()[:, None], te.targets.numpy(),
                tr.classes, {})


EMNIST_ZIP = "EMNIST/raw/gzip.zip"
EMNIST_ZIP_MD5 = "58c8d27c78d21e728a6bc7b3cc06412e"
EMNIST_NUM_CLASSES = {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 26, "digits": 10, "mnist": 10}


class Emnist(MnistFamily):
    description = ("EMNIST IDX files (or the published gzip.zip), read with torchvision.datasets.EMNIST; "
                   "images transposed upright by default; 'letters' relabelled 0..25 (a..z)")
    schema = {
        **TorchvisionSource.schema,
        "split": {"enum": list(EMNIST_NUM_CLASSES), "default": "balanced", "description": "EMNIST split"},
        "transpose": {"type": "boolean", "default": True,
                      "description": "transpose the images upright (EMNIST stores them transposed)"},
    }

    def __init__(self):
        self.kind, self.tv_name = "emnist", "EMNIST"
        self.url = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
        self.download_bytes = 561_753_746

    def num_classes(self, opts):
        return EMNIST_NUM_CLASSES[opts["split"]]

    def published(self, opts):
        return {EMNIST_ZIP: EMNIST_ZIP_MD5}

    def idx_names(self, opts):
        return [f"emnist-{opts['split']}-{s}-{t}-ubyte" for s in ("train", "test")
                for t in ("images-idx3", "labels-idx1")]

    def splits(self, opts):
        return {"split": opts["split"], "train": True}, {"split": opts["split"], "train": False}

    def missing(self, opts):
        return [] if (resolve_root(opts) / EMNIST_ZIP).is_file() else super().missing(opts)

    def verify(self, root, opts):
        """The IDX files, extracted from the published gzip.zip (verified first) when they are missing."""
        if not super().missing(opts) or not (root / EMNIST_ZIP).is_file():
            return super().verify(root, opts)
        info = verify_file(root, EMNIST_ZIP, self.record(opts).get(EMNIST_ZIP))
        raw = root / "EMNIST" / "raw"
        with zipfile.ZipFile(root / EMNIST_ZIP) as zf:
            for n in self.idx_names(opts):
                with zf.open(f"gzip/{n}.gz") as member:
                    gunzip_atomic(member, raw / n)
        return {**super().verify(root, opts), EMNIST_ZIP: info}

    def arrays(self, tr, te, opts):
        trx, try_, tex, tey, names, _ = super().arrays(tr, te, opts)
        if opts["transpose"]:
            trx, tex = trx.transpose(0, 1, 3, 2), tex.transpose(0, 1, 3, 2)
        if opts["split"] == "letters":  # labels 1..26, class 0 ('N/A') unused
            try_, tey, names = try_ - 1, tey - 1, names[1:]
        return trx, try_, tex, tey, names, {"transposed": bool(opts["transpose"])}


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

    def _splits(self, opts):
        return ["train", "test"] + (["extra"] if opts["include_extra"] else [])

    def published(self, opts):
        return {f"svhn/{s}_32x32.mat": SVHN_PUBLISHED[s] for s in self._splits(opts)}

    def downloads(self, opts):
        return [(f"{self.url}{s}_32x32.mat", SVHN_BYTES[s]) for s in self._splits(opts)]

    def download(self, tv, root, opts):
        for s in self._splits(opts):
            tv.datasets.SVHN(str(root / "svhn"), split=s, download=True)

    def read(self, tv, root, opts, md5s):
        base = tv.datasets.SVHN
        split_list = {s: [url, f, md5s.get(f"svhn/{f}", md5)] for s, (url, f, md5) in base.split_list.items()}
        cls = type("GncSVHN", (base,), {"split_list": split_list})
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

    def published(self, opts):
        return {f"stl10_binary/{n}": md5 for n, md5 in STL10_PUBLISHED.items()}

    def splits(self, opts):
        return {"split": "train"}, {"split": "test"}

    def arrays(self, tr, te, opts):
        return tr.data, tr.labels, te.data, te.labels, getattr(tr, "classes", None) or STL10_CLASSES, {}


def all_sources() -> list[Source]:
    return [Cifar("cifar10", 10), Cifar("cifar100", 100), MnistFamily("mnist", "MNIST"),
            MnistFamily("fashion_mnist", "FashionMNIST"), MnistFamily("kmnist", "KMNIST"), Emnist(), Svhn(),
            Stl10()]
