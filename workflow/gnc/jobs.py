"""Glue for Snakemake ``script:`` jobs: logging to the rule's log file, thread limits, errors.

Every script in ``workflow/scripts`` does::

    from gnc.jobs import job
    with job(snakemake) as log:
        ...library calls...

which (1) sets torch/OpenMP/BLAS threads to the rule's ``threads`` (two jobs with 2 torch threads
each on 2 cores run 4x slower each than one — see the README), (2) sends Python logging and
warnings to the rule's log file, and (3) writes any exception with its traceback to the log before
re-raising, so ``snakemake`` shows the message and the log names the cause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from pathlib import Path


def set_threads(n: int, torch: bool = True) -> None:
    """Thread limits for the BLAS libraries and, unless ``torch=False``, for torch (which it imports)."""
    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    if not torch:
        return
    try:
        import torch

        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(max(1, min(n, 4)))
        except RuntimeError:
            pass  # already set in this process
    except ImportError:  # pragma: no cover
        pass


@contextlib.contextmanager
def job(smk, torch: bool = True):
    log_path = Path(smk.log[0]) if len(smk.log) else None
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))  # keep an interrupted attempt's log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    logging.captureWarnings(True)
    set_threads(getattr(smk, "threads", 1), torch=torch)  # torch=False: a job that never uses torch
    log = logging.getLogger(f"gnc.{smk.rule}")
    try:  # rule, wildcards, resolved config, run spec, seed, start time -> every provenance() of this job
        from .provenance import job_context, set_job_context

        set_job_context(**job_context(smk))
    except Exception as exc:  # noqa: BLE001 - provenance must never stop a job
        log.warning("no job provenance context: %s", exc)
    start = time.time()
    log.info("rule %s, wildcards %s, threads %s", smk.rule, dict(smk.wildcards.items()), smk.threads)
    try:
        yield log
    except BaseException as exc:
        log.error("FAILED: %s: %s\n%s", type(exc).__name__, exc, traceback.format_exc())
        raise
    log.info("done in %.1f s", time.time() - start)
