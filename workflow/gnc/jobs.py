"""Glue for Snakemake ``script:`` jobs. Every script in ``workflow/scripts`` runs its library calls in
``with job(snakemake) as log:``, which sets torch/OpenMP/BLAS threads to the rule's ``threads`` (two jobs
with 2 torch threads each on 2 cores run 4x slower each than one), sets the provenance context of the job
and routes logging:

- log file: the ``gnc.*`` loggers from INFO, every other library's from WARNING, tracebacks;
- console (stderr), one line each: the job's start and end, the INFO lines of the rules in
  :data:`CONSOLE_INFO_RULES` (training progress), warnings and errors.

A failed job prints ``FAILED: <error>: <message> (traceback in <log>)`` and exits with status 1 (Snakemake
then prints its error block with the log); an interrupted one (Ctrl-C, SIGTERM in training) prints
``INTERRUPTED: <what was saved; how to resume>`` and exits with 128 + the signal number.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from .config import expand_runs
from .console import INTERRUPTED
from .provenance import set_job_context, utcnow


def set_threads(n: int, torch: bool = True) -> None:
    """Thread limits for the BLAS libraries and, unless ``torch=False``, for torch (which it imports)."""
    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    if not torch:
        return
    import torch  # deferred: torch-free jobs (the figures) call this with torch=False

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(max(1, min(n, 4)))
    except RuntimeError:
        pass  # already set in this process


def job_context(smk) -> dict[str, Any]:
    """What a Snakemake ``script:`` job knows about itself (None: not known): rule, wildcards, the resolved
    study config (``snakemake.config`` is the config after :func:`gnc.config.load_study`), the run's
    resolved spec and seed for jobs with a ``run`` wildcard (else the seed of ``params.options``), the
    fingerprint of its code and what that covers (``params.code``), and the job's start time (now)."""
    wildcards, config = dict(smk.wildcards.items()), dict(smk.config or {})
    run = expand_runs(config).get(wildcards["run"]) if "run" in wildcards and config.get("experiments") else None
    opts, code = getattr(smk.params, "options", None) or {}, getattr(smk.params, "code", None) or {}
    return {"rule": smk.rule, "started": utcnow(), "wildcards": wildcards or None, "config": config or None,
            "run_config": run.spec() if run else None, "seed": run.seed if run else opts.get("seed"),
            "code_fingerprint": code.get("fingerprint"),
            "code_scope": {k: v for k, v in code.items() if k != "fingerprint"} if code else None}


#: rules whose INFO lines are progress a user watches on the console (one line per epoch)
CONSOLE_INFO_RULES = frozenset({"train"})

_CONSOLE = {"console": True}  # ``extra`` of the job's start and end lines


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _OneLine(logging.Formatter):
    """:data:`LOG_FORMAT` without the traceback of ``exc_info``/``stack_info`` (left to the log file)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None  # the log file formats them
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def handlers_for(rule: str, log_path: Path | None) -> list[logging.Handler]:
    """The console and (with ``log_path``) log-file handlers of a job (see the module docstring)."""
    own = f"gnc.{rule}"
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_OneLine(LOG_FORMAT))
    console.addFilter(lambda r: r.levelno >= logging.WARNING or getattr(r, "console", False)
                      or (rule in CONSOLE_INFO_RULES and (r.name == own or r.name.startswith(own + "."))))
    handlers: list[logging.Handler] = [console]
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(log_path, mode="a")  # keep an interrupted attempt's log
        file.addFilter(lambda r: r.levelno >= logging.WARNING or r.name == "gnc" or r.name.startswith("gnc."))
        handlers.append(file)
    return handlers


@contextlib.contextmanager
def job(smk, torch: bool = True):
    log_path = Path(smk.log[0]) if len(smk.log) else None
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT,
                        handlers=handlers_for(smk.rule, log_path), force=True)
    logging.captureWarnings(True)
    set_threads(getattr(smk, "threads", 1), torch=torch)  # torch=False: a job that never uses torch
    log = logging.getLogger(f"gnc.{smk.rule}")
    try:  # rule, wildcards, resolved config, run spec, seed, start time -> every provenance() of this job
        set_job_context(**job_context(smk))
    except Exception as exc:  # noqa: BLE001 - provenance must never stop a job
        log.warning("no job provenance context: %s", exc)
    start = time.time()
    what = smk.rule + "".join(f" {k}={v}" for k, v in smk.wildcards.items())
    log.info("start %s (threads %s)", what, smk.threads, extra=_CONSOLE)
    try:
        yield log
    except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: one line (gnc.train's says what was saved)
        log.error("%s%s", INTERRUPTED, exc or "interrupted by SIGINT; run the same command to rerun the job")
        raise SystemExit(getattr(exc, "exit_code", 130)) from None
    except SystemExit as exc:  # sys.exit() in the job: its status stands
        if exc.code not in (None, 0):
            log.error("FAILED: exit status %s", exc.code)
        raise
    except BaseException as exc:  # the traceback once, in the log; the console gets one line
        where = f" (traceback in {log_path})" if log_path is not None else ""
        log.error("FAILED: %s: %s%s", type(exc).__name__, exc, where, exc_info=log_path is not None)
        if log_path is None:
            raise
        raise SystemExit(1) from None
    log.info("done %s in %.1f s", what, time.time() - start, extra=_CONSOLE)
