"""What the workflow prints (gnc.console, the profiles' `quiet`, study files given with `study=`).

The real-workflow tests run `python -m snakemake` on a copy of the workflow, so the workflow profile
profiles/default (quiet: [rules, host]) applies as it does for a user typing `snakemake`.
"""
from __future__ import annotations

import logging
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from snakemake.settings.enums import Quietness
from snakemake_interface_logger_plugins.common import LogEvent

import _provstudy as S
from gnc.config import ConfigError, merge_over_default
from gnc.console import HANDLER_NAME, keep_job_errors, quiet_scheduler

RUN = "digits/normalized-ce/smallcnn/tau1e-30-d2-K4-s0"  # logits = cos / 1e-30 overflow: fails at step 1
FAILING = {
    "datasets": {"digits": {"source": "digits", "max_per_class": 40}},
    "train": {"epochs": 1, "checkpoints": [1], "batch_size": 64, "lr": 0.05, "width": 8},
    "experiments": {"x": {"dataset": "digits", "arch": ["smallcnn"], "tau": [1e-30], "d": [2], "K": [4],
                          "seed": [0]}},
}


def _settings(*quiet, show_failed_logs=True):
    return SimpleNamespace(quiet=set(quiet), show_failed_logs=show_failed_logs, nocolor=True, stdout=False)


def _job_error(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("line one\nValueError: the cause\n")
    rec = logging.LogRecord("snakemake", logging.ERROR, __file__, 1, "", None, None)
    rec.__dict__.update(event=LogEvent.JOB_ERROR, rule_name="train", rule_msg="", msg="", jobid=3, input=[],
                        output=["out.nc"], log=[str(log)], conda_env=None, shellcmd=None, aux={})
    return rec


def test_job_errors_are_printed_when_rules_are_quiet(tmp_path):
    logger = logging.Logger("snakemake-test")
    handler = keep_job_errors(logger, _settings(Quietness.RULES, Quietness.HOST))
    assert handler is not None and handler.name == HANDLER_NAME
    assert keep_job_errors(logger, _settings(Quietness.RULES)) is None  # added once
    err = _job_error(tmp_path)
    assert handler.filter(err)
    text = handler.format(err)
    assert "Error in rule train:" in text and "train.log" in text and "ValueError: the cause" in text
    # everything else is left to Snakemake's own handler and its quiet settings
    info = logging.LogRecord("snakemake", logging.INFO, __file__, 1, "job", None, None)
    info.event = LogEvent.JOB_INFO
    plain = logging.LogRecord("snakemake", logging.ERROR, __file__, 1, "MissingInputException", None, None)
    assert not handler.filter(info) and not handler.filter(plain)
    # rules not quiet: Snakemake prints the block itself; all quiet: the user asked for silence
    assert keep_job_errors(logging.Logger("a"), _settings()) is None
    assert keep_job_errors(logging.Logger("b"), _settings(Quietness.HOST)) is None
    assert keep_job_errors(logging.Logger("c"), _settings(Quietness.RULES, Quietness.ALL)) is None


def test_an_interrupted_job_gets_no_error_block(tmp_path):
    """Ctrl-C / SIGTERM: the job's own INTERRUPTED line (what was saved, how to resume) is enough."""
    handler = keep_job_errors(logging.Logger("e"), _settings(Quietness.RULES))
    err = _job_error(tmp_path)
    log = tmp_path / "train.log"
    log.write_text("2026-11-26 03:28:05,805 INFO gnc.train: start train run=r (threads 1)\n"
                   "2026-11-26 03:28:05,805 ERROR gnc.train: INTERRUPTED: [r] interrupted by SIGINT during epoch "
                   "10/400: state saved at epoch 9 in w; run the same command to resume\n")
    assert not handler.filter(err)
    log.write_text(log.read_text() + "2026-11-26 03:29:00,000 ERROR gnc.train: FAILED: OSError: disk full\n")
    assert handler.filter(err)  # interrupted, resumed, then failed: the block is shown
    err.log = []
    assert handler.filter(err)  # no log to look at


def test_without_show_failed_logs_the_block_names_the_log_only(tmp_path):
    handler = keep_job_errors(logging.Logger("d"), _settings(Quietness.RULES, show_failed_logs=False))
    text = handler.format(_job_error(tmp_path))
    assert "train.log" in text and "ValueError: the cause" not in text


def _record(msg, event=None):
    rec = logging.LogRecord("snakemake", logging.INFO, __file__, 1, msg, None, None)
    if event is not None:
        rec.event = event
    return rec


def test_scheduler_chatter_is_dropped_from_the_console_only(tmp_path):
    logger = logging.Logger("smk")
    console, logfile = logging.StreamHandler(), logging.FileHandler(tmp_path / "smk.log")
    logger.addHandler(console)
    logger.addHandler(logfile)
    f = quiet_scheduler(logger, _settings(Quietness.RULES, Quietness.HOST))
    assert f is not None and f in console.filters and f not in logfile.filters
    assert quiet_scheduler(logger, _settings(Quietness.RULES)) is None  # added once
    for dropped in (_record("Select jobs to execute..."), _record("Execute 2 jobs...", LogEvent.JOB_STARTED),
                    _record("Finished jobid: 3 (Rule: train)", LogEvent.JOB_FINISHED)):
        assert not console.filter(dropped) and logfile.filter(dropped)
    for kept in (_record("", LogEvent.PROGRESS), _record("Execute the plan"), _record("Complete log(s): x")):
        assert console.filter(kept)
    assert quiet_scheduler(logging.Logger("a"), _settings()) is None
    assert quiet_scheduler(logging.Logger("b"), _settings(Quietness.HOST)) is None
    assert quiet_scheduler(logging.Logger("c"), _settings(Quietness.RULES, Quietness.ALL)) is None
    logfile.close()


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory):
    """The default profile's console of a real run whose training job fails (plus its dry runs)."""
    wd = tmp_path_factory.mktemp("console")
    S.copy_workflow(wd)
    S.write_config(wd, FAILING)
    target = f"results/runs/{RUN}/history.nc"
    run = S.snakemake(wd, "--cores", "1", target, check=False)
    dry = S.snakemake(wd, "-n", "--cores", "1", target)
    full = S.snakemake(wd, "-n", "--cores", "1", target, "--quiet", "host")  # --quiet takes 1+ values: last
    return wd, run, dry, full


def test_console_of_a_run_one_line_per_job_start_and_end(failing_run):
    wd, run, _, _ = failing_run
    out = run.stdout + run.stderr
    assert run.returncode != 0
    # our lines: one when the job starts, one when it ends; Snakemake's progress count
    assert len(re.findall(r"INFO gnc.prepare_dataset: start prepare_dataset name=digits", out)) == 1
    assert len(re.findall(r"INFO gnc.prepare_dataset: done prepare_dataset name=digits .* in [\d.]+ s", out)) == 1
    assert re.search(r"^1 of 2 steps \(50%\) done$", out, re.M)
    # no block per job, no header
    before_error = out[:out.index("Error in rule train:")]
    assert not re.search(r"^\s*(local)?rule \w+:$", before_error, re.M), out
    assert "    jobid:" not in before_error and "    wildcards:" not in out and "Snakemake version" not in out
    # no scheduler chatter: the job's own end line says what "Finished jobid" would
    assert "Finished jobid" not in out and "Select jobs to execute" not in out
    assert not re.search(r"^Execute \d+ jobs\.\.\.$", out, re.M)
    # the failure: one line from the job, Snakemake's error block with the log holding the traceback once
    assert len(re.findall(r"^.*Traceback \(most recent call last\)", out, re.M)) == 1, out
    assert re.search(rf"ERROR gnc.train: FAILED: NonFiniteLossError: .* \(traceback in results/logs/train/{RUN}.log\)$",
                     out, re.M), out


def test_console_of_a_failed_job_names_it_and_shows_its_log(failing_run):
    wd, run, _, _ = failing_run
    out = run.stdout + run.stderr
    log = f"results/logs/train/{RUN}.log"
    assert (wd / log).is_file()
    block = out[out.index("Error in rule train:"):]
    assert log in block and "NonFiniteLossError" in block  # the block, then the log (show-failed-logs)
    assert "Exiting because a job execution failed" in out


def test_dry_run_lists_counts_and_reasons_and_full_blocks_on_request(failing_run):
    _, _, dry, full = failing_run
    quiet, verbose = dry.stdout + dry.stderr, full.stdout + full.stderr
    assert re.search(r"^train\s+1$", quiet, re.M) and "Reasons:" in quiet
    assert not re.search(r"^\s*(local)?rule train:$", quiet, re.M)
    # `--quiet host` on the command line replaces the profile's `quiet`: Snakemake's blocks are back
    assert re.search(r"^\s*(local)?rule train:$", verbose, re.M) and "    reason: " in verbose


# ----------------------------------------------------------------------------------- study=FILE

def test_study_file_yaml_error_names_file_line_and_column(tmp_path):
    bad = tmp_path / "my-study.yaml"
    bad.write_text("results: out\ndatasets:\n  digits: {source: digits\nexperiments: {}\n")
    with pytest.raises(ConfigError) as err:
        merge_over_default({"study": str(bad)}, S.ROOT / "config.yaml")
    msg = str(err.value)
    assert msg.startswith(f"{bad}:4:12: YAML syntax error:") and "line 3, column 11" in msg, msg


def test_study_file_with_command_line_keys_on_top(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text("results: a\ndatasets: {digits: {source: digits}}\nexperiments: {}\n")
    cfg = {"study": str(own), "results": "b"}
    assert not merge_over_default(cfg, S.ROOT / "config.yaml")  # a study of its own
    assert cfg == {"results": "b", "datasets": {"digits": {"source": "digits"}}, "experiments": {}}
    # a study file without datasets/experiments is merged over the default study, as --configfile is
    part = tmp_path / "part.yaml"
    part.write_text("codes: {time_budget: 2}\n")
    cfg = {"study": str(part)}
    assert merge_over_default(cfg, S.ROOT / "config.yaml")
    assert cfg["codes"]["time_budget"] == 2 and "tau_sweep" in cfg["experiments"] and "study" not in cfg


def test_yaml_errors_through_snakemake(tmp_path):
    """`--config study=FILE` and a broken default config.yaml: file, line and column; `--configfile FILE`:
    Snakemake reads it before the workflow starts and names neither (documented in the README)."""
    wd = tmp_path / "wd"
    S.copy_workflow(wd)
    bad = wd / "my-study.yaml"
    bad.write_text("results: out\ndatasets:\n  digits: {source: digits\nexperiments: {}\n")
    p = S.snakemake(wd, "-n", configfile="my-study.yaml", check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "Config file is not valid JSON or YAML" in out
    assert "my-study.yaml" not in out.split("Config file is not valid")[1]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(wd / "Snakefile"), "--directory", str(wd), "-n"]
    p = subprocess.run([*cmd, "--config", f"study={bad}"],
                       capture_output=True, text=True, cwd=wd, timeout=300)
    assert p.returncode == 1 and f"{bad}:4:12: YAML syntax error" in p.stderr, p.stderr[-2000:]
    (wd / "config.yaml").write_text("results: out\ntrain: [1,\n")  # the default study, read by our code
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=wd,
                       timeout=300)
    assert p.returncode == 1 and "config.yaml:3:1: YAML syntax error" in p.stderr, p.stderr[-2000:]


# ----------------------------------------------------------------------------------- gnc.jobs

def test_a_failing_job_prints_one_line_and_keeps_the_traceback_in_its_log(tmp_path, capsys, monkeypatch):
    from gnc.jobs import job

    log = tmp_path / "logs" / "metrics.log"
    smk = SimpleNamespace(log=[str(log)], rule="metrics", wildcards={"run": "r"}, threads=1, config={},
                          params=SimpleNamespace(), input=[], output=[])
    root = logging.getLogger()  # job() configures the root logger: pytest's own handlers come back after
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    with pytest.raises(SystemExit) as exit_:
        with job(smk, torch=False):
            raise ValueError("bad class 3")
    for h in root.handlers:
        h.close()
    logging.captureWarnings(False)
    assert exit_.value.code == 1
    console = capsys.readouterr().err.splitlines()
    failed = [line for line in console if "FAILED" in line]
    assert len(failed) == 1 and failed[0].endswith(f"FAILED: ValueError: bad class 3 (traceback in {log})")
    assert not any("Traceback" in line for line in console)
    text = log.read_text()
    assert "FAILED: ValueError: bad class 3" in text and "Traceback (most recent call last)" in text
    assert 'raise ValueError("bad class 3")' in text
