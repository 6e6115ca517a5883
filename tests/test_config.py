"""Config validation: every bad config stops with one message naming the field and the allowed values."""
import copy

import pytest
import yaml

from conftest import ROOT, TINY_CONFIG
from gnc.config import ConfigError, code_grid, expand_runs, load_study, validate_config


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
    ("missing image folder path", _set(["datasets", "mine"], {"source": "image_folder", "path": "/nonexistent/x"}),
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
    cfg["datasets"]["mine"] = {"source": "image_folder", "path": "/nonexistent/folder", "optional": True}
    cfg["experiments"]["mine"] = {"dataset": "mine", "arch": ["mlp"], "tau": [0.1], "d": [2], "K": [3]}
    cfg2, runs = load_study(cfg)
    assert "mine" not in cfg2["datasets"] and "mine" not in cfg2["experiments"]
    assert all(r.dataset == "digits" for r in runs.values())


@pytest.mark.parametrize("path", ["config.yaml", "config/paper.yaml"])
def test_shipped_configs_are_valid(path):
    if not (ROOT / path).exists():
        pytest.skip(f"{path} not written yet")
    cfg = yaml.safe_load((ROOT / path).read_text())
    cfg, runs = load_study(cfg)
    assert runs


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
