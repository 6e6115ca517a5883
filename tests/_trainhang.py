"""Test helper: make the training loop of a *child* Python process hang at (epoch, step), so a test can
send it a signal in the middle of an epoch. Nothing of this is in gnc.train itself.

``hang_env(folder, epoch, step, marker)`` writes ``folder/sitecustomize.py`` and returns environment
variables for ``subprocess``: with them, a Python process that imports gnc.train (a Snakemake training
job; not ``python -m gnc.train``, which runs it as ``__main__``) wraps ``gnc.train.ResidentBatches.epoch``;
at step ``step`` (0-based) of epoch ``epoch`` (1-based) it writes ``marker`` and sleeps until killed.
"""

import os
from pathlib import Path

SITECUSTOMIZE = '''
import importlib.abc
import importlib.util
import os
import sys
import time


def _patch(train):
    epoch_, step_ = (int(v) for v in os.environ["GNC_TEST_HANG"].split(":"))
    marker = os.environ["GNC_TEST_HANG_MARKER"]
    real = train.ResidentBatches.epoch

    def epoch(self, e):
        for step, batch in enumerate(real(self, e)):
            if (e + 1, step) == (epoch_, step_):
                with open(marker, "w") as f:
                    f.write(str(os.getpid()))
                while True:
                    time.sleep(0.05)
            yield batch

    train.ResidentBatches.epoch = epoch


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "gnc.train":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("GNC_TEST_HANG"):
    sys.meta_path.insert(0, _Finder())
'''


def hang_env(folder: Path, epoch: int, step: int, marker: Path) -> dict:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    workflow = Path(__file__).resolve().parents[1] / "workflow"
    path = os.pathsep.join(p for p in (str(folder), str(workflow), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "GNC_TEST_HANG": f"{epoch}:{step}", "GNC_TEST_HANG_MARKER": str(marker)}
