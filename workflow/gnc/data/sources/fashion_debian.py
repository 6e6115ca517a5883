"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (offline, 70,000 28×28 images).

The package installs ``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.
Debian re-compressed the files, so their md5s differ from upstream's (torchvision's constants); the
checksums we verify against are the package's own (``/var/lib/dpkg/info/dataset-fashion-mnist.md5sums``
when the package is installed, else the constants below, recorded from version
0.0~git20200523.55506a9-1). The ``.gz`` files are decompressed into a temporary
``<tmp>/FashionMNIST/raw/`` and read with torchvision's ``FashionMNIST`` class.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .._files import effective_record, gunzip_atomic, verify_file
from ..errors import DatasetNotFoundError
from .base import CHECKSUMS_SCHEMA, RawData, Source, torchvision

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_PATH = "/usr/share/datasets/fashion-mnist"
DPKG_MD5SUMS = Path("/var/lib/dpkg/info/dataset-fashion-mnist.md5sums")
DEBIAN_MD5 = {  # dataset-fashion-mnist 0.0~git20200523.55506a9-1
    "train-images-idx3-ubyte.gz": "cf8536b0aa1a6ac5fa3f23001093305c",
    "train-labels-idx1-ubyte.gz": "10bea18fdb374794d4bb42e356e600c9",
    "t10k-images-idx3-ubyte.gz": "f78720b4224f21cce2f2ccf2d7a94c9a",
    "t10k-labels-idx1-ubyte.gz": "0d30e22e447f3c33dab9ed536400ac01",
}
FILES = tuple(DEBIAN_MD5)


def dpkg_md5sums() -> dict[str, str]:
    """md5s of the dataset files from the installed package's md5sums list (empty if not installed)."""
    try:
        lines = DPKG_MD5SUMS.read_text().splitlines()
    except OSError:
        return {}
    rows = (line.strip().partition("  ") for line in lines)
    return {Path(fname).name: md5 for md5, _, fname in rows if Path(fname).name in DEBIAN_MD5}


class FashionMnistDebian(Source):
    kind = "fashion_mnist_debian"
    description = ("Fashion-MNIST from the Debian package dataset-fashion-mnist, read with "
                   "torchvision.datasets.FashionMNIST")
    schema = {
        "root": {"type": "string", "default": DEBIAN_PATH,
                 "description": "folder with the package's .gz files (not part of the version)"},
        "checksums": CHECKSUMS_SCHEMA,
    }
    non_content = frozenset({"root"})

    def num_classes(self, opts):
        return 10

    def record(self, opts):
        published = dict(DEBIAN_MD5)
        if Path(opts["root"]) == Path(DEBIAN_PATH):
            published.update(dpkg_md5sums())
        return effective_record(published, opts.get("checksums"))

    def identity(self, opts):
        return {"package": DEBIAN_PACKAGE, "checksums": self.record(opts)}

    def unavailable(self, opts):
        missing = [Path(opts["root"]) / f for f in FILES if not (Path(opts["root"]) / f).is_file()]
        if missing:
            return (f"{self.kind}: {missing[0]} not found. Install the Debian package with "
                    f"`apt-get install {DEBIAN_PACKAGE}` (or use source 'fashion_mnist' with "
                    f"download: true).")
        return None

    def load(self, opts):
        path = Path(opts["root"])
        if self.unavailable(opts):
            raise DatasetNotFoundError(self.unavailable(opts))
        record = self.record(opts)
        files = {f: verify_file(path, f, record.get(f)) for f in FILES}
        tv = torchvision()
        with tempfile.TemporaryDirectory(prefix="gnc-fmnist-") as tmp:
            for f in FILES:
                gunzip_atomic(path / f, Path(tmp) / "FashionMNIST" / "raw" / f[:-3])
            tr = tv.datasets.FashionMNIST(tmp, train=True, download=False)
            te = tv.datasets.FashionMNIST(tmp, train=False, download=False)
        info = {"reader": "torchvision.datasets.FashionMNIST", "torchvision_version": tv.__version__,
                "package": DEBIAN_PACKAGE, "path": str(path), "files": files,
                "checksum_origin": "dpkg md5sums" if dpkg_md5sums() and path == Path(DEBIAN_PATH) else "constants"}
        return RawData(tr.data.numpy()[:, None], tr.targets.numpy(), te.data.numpy()[:, None],
                       te.targets.numpy(), list(tr.classes), info)
