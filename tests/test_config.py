"""Config validation: every bad config stops with one message naming the field and the allowed values."""
import copy
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, TINY_CONFIG
from gnc import data as gd
from gnc.config import (ConfigError, code_grid, expand_runs, load_study, main, merge_over_default,
                        read_config_file, validate_config)


def _bad(mutate):
    cfg = copy.deepcopy(TINY_CONFIG)
    mutate(cfg)
    return cfg


def _set(path, value):
    def mutate(cfg):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(cfg):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


E = ["experiments", "easy"]
# (name, mutation, words the message must contain)
BAD_CONFIGS = [
    ("unknown top-level key", _set(["trainning"], {}), ["trainning", "allowed keys"]),
    ("unknown experiment key", _set(E + ["taus"], [1.0]), ["experiments.easy", "taus"]),
    ("unknown recipe key", _set(["train", "learning_rate"], 0.1), ["train", "learning_rate"]),
    ("tau zero", _set(E + ["tau"], [0.0]), ["experiments.easy.tau[0]", "> 0"]),
    ("tau negative", _set(E + ["tau"], [0.1, -1.0]), ["experiments.easy.tau[1]", "> 0"]),
    ("tau as string", _set(E + ["tau"], ["0.1"]), ["experiments.easy.tau[0]", "number"]),
    ("d zero", _set(E + ["d"], [0]), ["experiments.easy.d[0]", ">= 1"]),
    ("d float", _set(E + ["d"], [2.5]), ["experiments.easy.d[0]", "integer"]),
    ("K too large", _set(E + ["K"], [11]), ["experiments.easy.K[0]", "10 classes", "2..10"]),
    ("K one", _set(E + ["K"], [1]), ["experiments.easy.K[0]", ">= 2"]),
    ("empty tau grid", _set(E + ["tau"], []), ["experiments.easy.tau", "empty"]),
    ("empty seed grid", _set(E + ["seed"], []), ["experiments.easy.seed", "empty"]),
    ("no experiments", _set(["experiments"], {}), ["experiments", "empty"]),
    ("no datasets", _set(["datasets"], {}), ["datasets", "empty"]),
    ("missing dataset key", _delete(E + ["dataset"]), ["experiments.easy", "dataset"]),
    ("undefined dataset", _set(E + ["dataset"], "cifar"), ["experiments.easy.dataset", "digits"]),
    ("unknown arch", _set(E + ["arch"], ["vgg"]), ["experiments.easy.arch[0]", "allowed values", "resnet18"]),
    ("unknown source", _set(["datasets", "digits", "source"], "imagenet21k"), ["datasets.digits.source", "allowed"]),
    ("checkpoints not increasing", _set(["train", "checkpoints"], [0, 6, 2]), ["checkpoints", "increasing"]),
    ("checkpoint beyond epochs", _set(["train", "checkpoints"], [0, 8]), ["checkpoints", "beyond", "epochs"]),
    ("epochs zero", _set(["train", "epochs"], 0), ["train.epochs", ">= 1"]),
    ("negative lr", _set(["train", "lr"], -0.1), ["train.lr", "> 0"]),
    ("unknown head", _set(["train", "head"], "arcface"), ["train.head", "normalized"]),
    ("momentum above 1", _set(["train", "momentum"], 1.5), ["train.momentum", "<= 1"]),
    ("duplicate taus", _set(E + ["tau"], [0.1, 0.1]), ["experiments.easy.tau", "unique"]),
    ("image folder given as path", _set(["datasets", "mine"], {"source": "image_folder", "path": "/x"}),
     ["datasets.mine", "'root'", "not 'path'"]),
    ("missing image folder path", _set(["datasets", "mine"], {"source": "image_folder", "root": "/nonexistent/x"}),
     ["datasets.mine", "/nonexistent/x"]),
    ("hardmax with linear head", _set(["train", "loss"], "hardmax") , None),  # valid: head stays normalized
    ("same run, two recipes", _set(["experiments", "again"], {**TINY_CONFIG["experiments"]["easy"],
                                                              "train": {"lr": 0.01}}), ["again", "different recipe", "lr"]),
]


@pytest.mark.parametrize("name,mutate,words", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_rejected_with_a_named_field(name, mutate, words):
    cfg = _bad(mutate)
    if words is None:
        validate_config(cfg)  # a valid variation, listed to keep the count honest
        return
    with pytest.raises(ConfigError) as err:
        load_study(cfg)
    msg = str(err.value)
    for w in words:
        assert w in msg, f"{name}: {w!r} not in message:\n{msg}"


def test_hardmax_with_linear_head_is_rejected():
    cfg = _bad(_set(["train", "loss"], "hardmax"))
    cfg["train"]["head"] = "linear"
    with pytest.raises(ConfigError, match="hardmax"):
        load_study(cfg)


def test_defaults_filled_and_runs_expanded():
    cfg, runs = load_study(TINY_CONFIG)
    assert cfg["metrics"]["pinv_rtol"] > 0 and cfg["codes"]["restarts"] == 4
    assert sorted(runs) == ["digits/normalized-ce/smallcnn/tau0.1-d2-K4-s0",
                            "digits/normalized-ce/smallcnn/tau0.1-d3-K5-s0"]
    r = runs["digits/normalized-ce/smallcnn/tau0.1-d3-K5-s0"]
    assert r.recipe["epochs"] == 6 and r.recipe["lr"] == 0.05 and r.spec()["tau"] == 0.1
    assert code_grid(cfg, runs) == [(2, 4), (3, 5)]


def test_shared_runs_are_trained_once():
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["experiments"]["more"] = {**cfg["experiments"]["easy"], "K": [5, 6]}
    runs = expand_runs(validate_config(cfg))
    assert len(runs) == 3
    assert runs["digits/normalized-ce/smallcnn/tau0.1-d3-K5-s0"].experiment == ["easy", "more"]


def test_optional_missing_dataset_is_skipped():
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["datasets"]["mine"] = {"source": "image_folder", "root": "/nonexistent/folder", "optional": True}
    cfg["experiments"]["mine"] = {"dataset": "mine", "arch": ["mlp"], "tau": [0.1], "d": [2], "K": [3]}
    skipped = {}
    cfg2, runs = load_study(cfg, skipped)
    assert "mine" not in cfg2["datasets"] and "mine" not in cfg2["experiments"]
    assert all(r.dataset == "digits" for r in runs.values())
    assert "/nonexistent/folder does not exist" in skipped["mine"] and "skipped with it: mine" in skipped["mine"]
    assert list(skipped) == ["mine"] and "mine" in cfg["datasets"]  # the caller's config is not changed


def test_an_available_optional_dataset_keeps_its_flag_and_its_version():
    """The resolved config (recorded as gnc_config) says the dataset is optional; the flag is a key of the
    study, not of the data, so the dataset's version is the same with and without it."""
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["datasets"]["digits"]["optional"] = True
    skipped = {}
    resolved, _ = load_study(cfg, skipped)
    assert resolved["datasets"]["digits"]["optional"] is True and skipped == {}
    from gnc import data

    assert data.version_id("digits", resolved["datasets"]["digits"]) == data.version_id("digits", {"source": "digits"})


@pytest.mark.parametrize("path", ["config.yaml", "config/paper.yaml"])
def test_shipped_configs_are_valid(path):
    if not (ROOT / path).exists():
        pytest.skip(f"{path} not written yet")
    cfg = yaml.safe_load((ROOT / path).read_text())
    cfg, runs = load_study(cfg)
    assert runs


# ------------------------------------------------------------------------------ config files

@pytest.mark.parametrize("text, where, words", [
    ("results: r\ndatasets: {digits: {source: digits}\nexperiments: [\n", ":3:", ["YAML syntax error"]),
    ("a: 1\n  b: 2\n", ":2:", ["YAML syntax error", "mapping values"]),
    ("", "", ["empty"]),
    ("# only a comment\n", "", ["empty"]),
    ("- a\n- b\n", ":1:", ["mapping of keys", "list"]),
])
def test_config_file_errors_name_the_file_and_line(tmp_path, text, where, words):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as ei:
        read_config_file(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}{where}"), msg
    for w in words:
        assert w in msg, msg
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_file(tmp_path / "missing.yaml")


def test_config_without_a_study_is_merged_over_the_default(tmp_path):
    default = tmp_path / "config.yaml"
    default.write_text(yaml.safe_dump(TINY_CONFIG))
    cfg = {"results": "elsewhere", "train": {"epochs": 4, "checkpoints": [0, 4]}}
    assert merge_over_default(cfg, default)
    assert cfg["results"] == "elsewhere" and cfg["experiments"] == TINY_CONFIG["experiments"]
    assert cfg["train"] == {**TINY_CONFIG["train"], "epochs": 4, "checkpoints": [0, 4]}  # merged key by key
    own = {"datasets": {"digits": {"source": "digits"}}, "experiments": {}}
    assert not merge_over_default(own, default) and own["experiments"] == {}  # a study of its own


def test_config_check_command(tmp_path, capsys):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(TINY_CONFIG))
    bad.write_text(yaml.safe_dump({**TINY_CONFIG, "trainning": {}}))
    assert main([str(good)]) == 0 and "2 run(s) in 2 experiment(s)" in capsys.readouterr().out
    assert main([str(bad)]) == 1 and "trainning" in capsys.readouterr().err


def test_raw_files_default_to_the_resources_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GNC_DATA_ROOT", raising=False)
    res = tmp_path / "res"
    cfg = {**copy.deepcopy(TINY_CONFIG), "resources": str(res)}
    cfg["datasets"]["c10"] = {"source": "cifar10"}
    cfg["experiments"]["c10"] = {"dataset": "c10", "arch": ["mlp"], "tau": [0.1], "d": [2], "K": [3]}
    with pytest.raises(ConfigError) as ei:  # the message names the folder the files are expected in
        load_study(cfg)
    assert str(res / "raw" / "cifar-10-batches-py") in str(ei.value)
    cfg["datasets"]["c10"]["download"] = True
    resolved, _ = load_study(cfg)
    assert resolved["datasets"]["c10"]["root"] == f"{res}/raw"
    plan = gd.download_plan("c10", resolved["datasets"]["c10"])
    assert plan == {"target": f"{res}/raw",
                    "files": [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", 170_498_071)]}
    # an explicit root or $GNC_DATA_ROOT wins
    cfg["datasets"]["c10"]["root"] = str(tmp_path / "mine")
    assert load_study(cfg)[0]["datasets"]["c10"]["root"] == str(tmp_path / "mine")
    del cfg["datasets"]["c10"]["root"]
    monkeypatch.setenv("GNC_DATA_ROOT", str(tmp_path / "env"))
    spec = load_study(cfg)[0]["datasets"]["c10"]
    assert "root" not in spec and gd.download_plan("c10", spec)["target"] == str(tmp_path / "env")


# ------------------------------------------------------------------------------ through Snakemake (dry runs)

def _dry_run(wd, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd), "-n", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=wd)


def test_snakemake_config_handling_and_plan_summary(tmp_path, monkeypatch):
    monkeypatch.delenv("GNC_DATA_ROOT", raising=False)
    # a study with a pending download and a skipped optional dataset: a short summary, before the jobs
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["resources"] = "res"
    cfg["datasets"]["c10"] = {"source": "cifar10", "download": True}
    cfg["datasets"]["face"] = {"source": "image_folder", "root": str(tmp_path / "no-faces"), "optional": True}
    cfg["experiments"]["c10"] = {"dataset": "c10", "arch": ["mlp"], "tau": [0.1], "d": [2], "K": [3]}
    cfg["experiments"]["face"] = {"dataset": "face", "arch": ["mlp"], "tau": [0.1], "d": [2], "K": [3]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    proc = _dry_run(tmp_path, "--configfile", str(tmp_path / "study.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if "gnc-study" in ln or ln.startswith("  download ")]
    assert lines == [
        "gnc-study: 1 download(s), 0.16 GiB:",
        "  download c10: https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (163 MiB) -> res/raw",
        f"gnc-study: skipped optional dataset 'face': image_folder: folder {tmp_path / 'no-faces'} does not "
        "exist (spec key 'root') (experiments skipped with it: face)",
    ], proc.stderr[:2000]
    # --config alone: merged over the default study
    proc = _dry_run(tmp_path, "--config", "results=elsewhere", "--quiet", "host")  # job blocks shown (outputs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gnc-study: results from the command line, over the default study" in proc.stderr
    assert "elsewhere/study.nc" in proc.stdout + proc.stderr
    # the default config.yaml with a syntax error: the message names the file and the line
    (tmp_path / "config.yaml").write_text("results: r\ndatasets:\n  digits: {source: digits\n")
    proc = _dry_run(tmp_path)
    assert proc.returncode != 0
    assert "config.yaml:4:1: YAML syntax error" in proc.stderr, proc.stderr[-2000:]


def test_epochs_at_K_gives_equal_steps_across_nested_K():
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["experiments"]["ks"] = {"dataset": "digits", "arch": ["smallcnn"], "tau": [0.1], "d": [4], "K": [2, 5, 10],
                                "train": {"epochs": 10, "checkpoints": [0, 2, 5, 10], "epochs_at_K": 10}}
    runs = expand_runs(validate_config(cfg))
    by_K = {r.K: r.recipe for r in runs.values() if "ks" in r.experiment}
    assert by_K[10]["epochs"] == 10 and by_K[10]["checkpoints"] == [0, 2, 5, 10]
    assert by_K[5]["epochs"] == 20 and by_K[5]["checkpoints"] == [0, 4, 10, 20]
    assert by_K[2]["epochs"] == 50 and by_K[2]["checkpoints"] == [0, 10, 25, 50]
    for K, rec in by_K.items():  # epochs x K (∝ SGD steps on equally sized classes) is the same for every K
        assert rec["epochs"] * K == 100 and "epochs_at_K" not in rec
    # the K = 10 run equals an unscaled run of the same grid point, so experiments share it
    cfg["experiments"]["plain"] = {"dataset": "digits", "arch": ["smallcnn"], "tau": [0.1], "d": [4], "K": [10],
                                   "train": {"epochs": 10, "checkpoints": [0, 2, 5, 10]}}
    runs = expand_runs(validate_config(cfg))
    assert runs["digits/normalized-ce/smallcnn/tau0.1-d4-K10-s0"].experiment == ["ks", "plain"]


def test_epochs_at_K_refuses_checkpoints_that_collide():
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["experiments"]["ks"] = {"dataset": "digits", "arch": ["smallcnn"], "tau": [0.1], "d": [4], "K": [10],
                                "train": {"epochs": 10, "checkpoints": [0, 1, 2, 10], "epochs_at_K": 2}}
    with pytest.raises(ConfigError, match="epochs_at_K"):
        expand_runs(validate_config(cfg))


# ------------------------------------------------------------------------------ init_from (warm start)

def _with_finetune(**train):
    """TINY_CONFIG plus an experiment `tune` at easy's grid point with the HardMax loss and ``train``."""
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["experiments"]["tune"] = {**cfg["experiments"]["easy"],
                                  "train": {"loss": "hardmax", "epochs": 3, "checkpoints": [0, 3], **train}}
    return cfg


def test_init_from_names_the_run_at_the_same_grid_point():
    cfg = _with_finetune(init_from="easy")
    cfg["results"] = "out"
    _, runs = load_study(cfg)
    tune = runs["digits/normalized-hardmax/smallcnn/tau0.1-d3-K5-s0"]
    assert tune.init_run == "digits/normalized-ce/smallcnn/tau0.1-d3-K5-s0"
    # the final checkpoint (easy's epochs = 6) under the study's results folder; the key itself is resolved
    assert tune.spec()["init_checkpoint"] == "out/runs/digits/normalized-ce/smallcnn/tau0.1-d3-K5-s0/ckpt/epoch=6.pt"
    assert "init_from" not in tune.recipe and "init_from" not in tune.spec()
    # every other run trains from scratch
    assert all(r.init_run is None and "init_checkpoint" not in r.recipe for r in runs.values() if r is not tune)


BAD_INIT = [
    ("names nothing", _with_finetune(init_from="nosuch"),
     ["experiments.tune.train.init_from", "'nosuch' is not an experiment", "allowed values: easy, circle"]),
    ("names itself", _with_finetune(init_from="tune"), ["experiments.tune.train.init_from", "its own runs"]),
    ("no run at the grid point", _with_finetune(init_from="circle"),
     ["experiments.tune.train.init_from", "'circle' has no run at the grid point", "d=2 K=4"]),
    ("another network", _with_finetune(init_from="easy", width=16),
     ["experiments.tune.train.init_from", "another network", "width: 8 vs 16"]),
    ("another head", _with_finetune(init_from="easy", head="cmf", loss="ce"),
     ["experiments.tune.train.init_from", "head: 'normalized' vs 'cmf'"]),
    ("a chain", None, ["experiments.tune.train.init_from", "'again' itself starts from", "trained from scratch"]),
    ("not a name", _with_finetune(init_from=""), ["experiments.tune.train.init_from"]),
]


@pytest.mark.parametrize("name,cfg,words", BAD_INIT, ids=[b[0] for b in BAD_INIT])
def test_init_from_that_names_no_compatible_run_is_rejected(name, cfg, words):
    if cfg is None:  # tune -> again -> circle
        cfg = _with_finetune(init_from="again")
        cfg["experiments"]["again"] = {**cfg["experiments"]["circle"],
                                       "train": {"loss": "hardmax", "init_from": "circle"}}
    with pytest.raises(ConfigError) as err:
        load_study(cfg)
    msg = str(err.value)
    assert msg.count("\n") <= 1, msg  # one message
    for w in words:
        assert w in msg, f"{name}: {w!r} not in message:\n{msg}"


def test_snakemake_trains_the_init_run_first(tmp_path):
    """The fine-tuned run's training job takes the init run's checkpoints as input, so Snakemake trains
    that run first (and retrains this one when they change)."""
    cfg = _with_finetune(init_from="easy")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/runs/digits/normalized-hardmax/smallcnn/tau0.1-d3-K5-s0/history.nc"
    # --quiet host: the job blocks (rule, wildcards) are what this test reads; the profile hides them
    proc = _dry_run(tmp_path, target, "--quiet", "host", "--configfile", str(tmp_path / "study.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    jobs = [blk for blk in out.split("rule ") if blk.startswith("train:")]
    runs = sorted(ln.split("run=")[1].strip() for blk in jobs for ln in blk.splitlines() if "run=" in ln)
    assert runs == ["digits/normalized-ce/smallcnn/tau0.1-d3-K5-s0",
                    "digits/normalized-hardmax/smallcnn/tau0.1-d3-K5-s0"], out[-3000:]
    tune = next(blk for blk in jobs if "run=digits/normalized-hardmax" in blk)
    assert "results/runs/digits/normalized-ce/smallcnn/tau0.1-d3-K5-s0/ckpt" in tune, tune
