"""Shared test set-up: one torch thread per test process, torchvision through the compat shim."""
import copy
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from gnc._torchvision_compat import ensure  # noqa: E402

ensure()

#: a small but complete study: digits only, a few epochs — used by the workflow tests
TINY_CONFIG = {
    "datasets": {"digits": {"source": "digits"}},
    "train": {"epochs": 6, "checkpoints": [0, 2, 6], "batch_size": 64, "lr": 0.05, "width": 8},
    "experiments": {
        "easy": {"dataset": "digits", "arch": ["smallcnn"], "tau": [0.1], "d": [3], "K": [5], "seed": [0]},
        "circle": {"dataset": "digits", "arch": ["smallcnn"], "tau": [0.1], "d": [2], "K": [4], "seed": [0]},
    },
    "codes": {"restarts": 4, "time_budget": 5, "ufm_tau": [1.0, 0.1], "ufm_steps": 300},
}


@pytest.fixture
def tiny_config():
    return copy.deepcopy(TINY_CONFIG)


# the tiny training task of test_train and test_gpu_paths (its dataset builder, SPEC and checkpoints live in
# test_train; imported in the fixtures, so that only the modules using them load the trainer)

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny prepared dataset (test_train.make_prepared), one per test module."""
    from test_train import make_prepared

    return make_prepared(tmp_path_factory.mktemp("data") / "synthetic" / "test")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """One uninterrupted fp32 run of test_train.SPEC with checkpoints CKPTS: (outputs, log text, summary)."""
    import io

    from gnc.train import train_run
    from test_train import SPEC, outs

    base = tmp_path_factory.mktemp("ref")
    log = io.StringIO()
    summary = train_run(SPEC, data, base / "work", outs(base / "out"), log=log)
    return outs(base / "out"), log.getvalue(), summary
