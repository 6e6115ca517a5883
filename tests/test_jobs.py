"""The console and log file of a Snakemake job (gnc.jobs): a quiet console, no third-party INFO."""
import logging

from gnc.jobs import handlers_for


def _record(name, level, console=False):
    rec = logging.LogRecord(name, level, __file__, 1, "message", None, None)
    if console:
        rec.console = True
    return rec


def _passes(handler, rec):
    return bool(handler.filter(rec))


def test_console_shows_start_end_progress_and_warnings_only(tmp_path):
    console, file = handlers_for("metrics", tmp_path / "logs" / "m.log")
    try:
        cases = [  # (record, on the console, in the log file)
            (_record("gnc.metrics", logging.INFO, console=True), True, True),   # job start / end
            (_record("gnc.metrics", logging.INFO), False, True),                 # details: log only
            (_record("fontTools.subset", logging.INFO), False, False),           # third-party chatter
            (_record("matplotlib.font_manager", logging.DEBUG), False, False),
            (_record("py.warnings", logging.WARNING), True, True),
            (_record("torch", logging.ERROR), True, True),
        ]
        for rec, on_console, in_file in cases:
            assert _passes(console, rec) == on_console, rec.name
            assert _passes(file, rec) == in_file, rec.name
    finally:
        file.close()
    train_console, train_file = handlers_for("train", tmp_path / "t.log")
    train_file.close()
    assert _passes(train_console, _record("gnc.train", logging.INFO))  # the per-epoch progress line
    assert not _passes(train_console, _record("fontTools.subset", logging.INFO))
    assert handlers_for("study", None)[1:] == []  # no log file: console only
