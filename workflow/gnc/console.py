"""The workflow's console in the Snakemake main process: Snakemake's per-job blocks off, failures kept.

The profiles set ``quiet: [rules, host]``, so per job a run prints the job's own start and end lines
(:mod:`gnc.jobs`), the training progress and Snakemake's ``x of N steps (p%) done``, not the 7-10-line
block (input, output, log, jobid, reason, wildcards, resources) Snakemake prints when a job starts, nor
its header (host, user, versions). Quietness ``progress`` would drop the step count, so it stays off.
Whenever ``rules`` is quiet, :func:`quiet_scheduler` also drops lines that the job's own lines already
say or that tell a user nothing, and :func:`keep_job_errors` puts back the error block of a failed job,
which that quietness drops too.
"""

from __future__ import annotations

import logging
import re
import sys

#: name of the handler :func:`keep_job_errors` adds (added once, however often the Snakefile is read)
HANDLER_NAME = "gnc-job-errors"

#: Snakemake's scheduler lines that :func:`quiet_scheduler` drops
SCHEDULER_CHATTER = re.compile(r"^(Select jobs to execute\.\.\.|Execute \d+ jobs\.\.\.)$")

#: start of the message of a job's last log line when it was interrupted (``gnc.jobs.job``)
INTERRUPTED = "INTERRUPTED: "


def _last_line(path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _was_interrupted(logs) -> bool:
    """True when every log of the job ends with the job's interruption line."""
    return bool(logs) and all(f": {INTERRUPTED}" in _last_line(p) for p in logs)


def _is_job_error(record: logging.LogRecord) -> bool:
    from snakemake_interface_logger_plugins.common import LogEvent

    event = getattr(record, "event", None)
    if event == LogEvent.JOB_ERROR:
        return not _was_interrupted(getattr(record, "log", None) or [])
    return event == LogEvent.GROUP_ERROR


def _rules_quiet(output_settings) -> bool:
    """``rules`` is quiet and ``all`` is not: the case both functions below act on."""
    from snakemake.settings.enums import Quietness

    quiet = set(getattr(output_settings, "quiet", None) or ())
    return Quietness.RULES in quiet and Quietness.ALL not in quiet


def keep_job_errors(logger: logging.Logger, output_settings) -> logging.Handler | None:
    """Print Snakemake's error block of every failed job (with its log when ``show-failed-logs``) although
    ``--quiet rules`` is set. Returns the handler added, or None when nothing needs adding: ``rules`` not
    quiet (Snakemake prints the block itself), ``all`` quiet (the user asked for silence), or added before."""
    from snakemake.logging import ColorizingTextHandler, DefaultFormatter

    if not _rules_quiet(output_settings) or any(h.name == HANDLER_NAME for h in logger.handlers):
        return None
    handler = ColorizingTextHandler(
        nocolor=getattr(output_settings, "nocolor", False),
        stream=sys.stdout if getattr(output_settings, "stdout", False) else sys.stderr,
        formatter=DefaultFormatter(quiet=set(), show_failed_logs=getattr(output_settings, "show_failed_logs", False)),
    )
    handler.addFilter(_is_job_error)
    handler.name = HANDLER_NAME
    logger.addHandler(handler)
    return handler


def _not_chatter(record: logging.LogRecord) -> bool:
    """False for Snakemake's ``Finished jobid`` events and the scheduler's selection lines."""
    from snakemake_interface_logger_plugins.common import LogEvent

    return getattr(record, "event", None) != LogEvent.JOB_FINISHED and not (
        isinstance(record.msg, str) and SCHEDULER_CHATTER.match(record.msg))


def quiet_scheduler(logger: logging.Logger, output_settings):
    """When ``rules`` is quiet (and not ``all``), add a filter to Snakemake's console handlers (not its log
    file's) that drops ``Finished jobid`` and the scheduler's ``Select jobs to execute...`` /
    ``Execute N jobs...`` lines. Returns the filter, or None when nothing was added (other quietness, or
    added before)."""
    if not _rules_quiet(output_settings):
        return None
    added = None
    for handler in logger.handlers:  # the log file keeps every line
        if (handler.name != HANDLER_NAME and not isinstance(handler, logging.FileHandler)
                and _not_chatter not in handler.filters):
            handler.addFilter(_not_chatter)
            added = _not_chatter
    return added
