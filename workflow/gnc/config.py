"""Study configuration: schema validation with clear messages, defaults, and grid expansion.

The Snakefile calls :func:`load_study` once at start-up; every error raised here is a
:class:`ConfigError` whose message names the offending field (as a dotted path, e.g.
``experiments.tau_sweep.tau[0]``) and what is allowed, so a bad config stops the run before any job.

A *run* is one training job: (dataset, variant, arch, tau, d, K, seed) plus the resolved recipe.
Its id is a path fragment ``<dataset>/<variant>/<arch>/tau<tau>-d<d>-K<K>-s<seed>``; the variant names
the classifier head and loss (``normalized-ce``, ``cmf-ce``, ``linear-ce``, ``normalized-hardmax``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import data as gdata
from .data.sources.base import DEFAULT_ROOT_ENV, ROOT_SCHEMA
from .grid import ID_DIGITS, RUN_DIMS, fmt_num, same_tau
from .recipe import DEFAULT_RECIPE, head_loss_problem

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"

class ConfigError(ValueError):
    """A configuration problem; the message names the field and the allowed values."""


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def _describe(error) -> str:
    v, value = error.validator, error.instance
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        what = f"unknown key(s) {', '.join(map(repr, extra))}"
        what += f"; allowed keys: {', '.join(allowed)}" if allowed else ""
    elif v == "enum":
        what = f"{value!r} is not allowed; allowed values: {', '.join(map(str, error.validator_value))}"
    elif v == "type":
        what = f"{value!r} should be of type {error.validator_value}"
    elif v in _BOUNDS:
        desc = error.schema.get("description", "")
        what = f"{value!r} must be {_BOUNDS[v]} {error.validator_value}" + (f" ({desc})" if desc else "")
    elif v in ("minItems", "minProperties"):
        what = f"must not be empty ({error.message})"
    elif v == "uniqueItems":
        what = f"values must be unique ({value!r})"
    else:
        what = error.message
    return f"config field {_path(error.absolute_path)}: {what}"


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _fill_defaults(instance, schema, root):
    """Fill JSON-schema ``default`` values (objects only), recursively, following local $refs."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[1:]
        target = root
        for r in ref:
            target = target[r]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(instance[key], sub, root)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for key in instance:
                if key not in schema.get("properties", {}):
                    _fill_defaults(instance[key], addl, root)


def validate_config(config: dict, skipped: dict | None = None) -> dict:
    """Validate against the JSON schema and the cross-field rules; return a copy with defaults, without
    the optional datasets whose source is unavailable and their experiments (``skipped``, when given,
    receives {dataset: reason} for those)."""
    import jsonschema  # here, not at the top: every job imports config (gnc.jobs) and none validates

    cfg = copy.deepcopy(dict(config))
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        msgs = [_describe(e) for e in errors[:5]]
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(msgs) + more)
    _fill_defaults(cfg, schema, schema)
    _check_semantics(cfg, {} if skipped is None else skipped)
    return cfg


def recipe_for(cfg: dict, exp: dict) -> dict:
    return {**DEFAULT_RECIPE, **(cfg.get("train") or {}), **(exp.get("train") or {})}


def recipe_at_K(recipe: dict, K: int, where: str = "train") -> dict:
    """The recipe of one run with K classes. With ``epochs_at_K: K0`` the recipe's ``epochs`` and
    ``checkpoints`` are those of a run with K0 classes, and a run with K classes trains
    ``round(epochs * K0 / K)`` epochs with every checkpoint epoch scaled alike: on nested class subsets
    with the same number of samples per class an epoch has ~K/K0 times the SGD steps of the K0 run, so
    every K gets about the same number of steps (and checkpoints at the same step counts). The key
    itself is resolved here and never reaches the training spec."""
    rec = dict(recipe)
    k0 = rec.pop("epochs_at_K", None)
    if k0 is None or int(k0) == int(K):
        return rec
    factor = int(k0) / int(K)
    rec["epochs"] = max(1, int(round(rec["epochs"] * factor)))
    scaled = [int(round(c * factor)) for c in rec["checkpoints"]]
    if len(set(scaled)) != len(scaled):
        raise ConfigError(f"config field {where}.checkpoints: scaled to K = {K} (epochs_at_K = {k0}) the "
                          f"checkpoint epochs {rec['checkpoints']} become {scaled}, which repeat; "
                          f"space them further apart")
    rec["checkpoints"] = [min(c, rec["epochs"]) for c in scaled]
    return rec


def _check_recipe(recipe: dict, where: str) -> None:
    ck = recipe["checkpoints"]
    if list(ck) != sorted(ck):
        raise ConfigError(f"config field {where}.checkpoints: epochs must be increasing, got {ck}")
    if ck[-1] > recipe["epochs"]:
        raise ConfigError(f"config field {where}.checkpoints: epoch {ck[-1]} is beyond epochs = "
                          f"{recipe['epochs']}; allowed values: 0..{recipe['epochs']}")
    problem = head_loss_problem(recipe["head"], recipe["loss"])
    if problem:
        raise ConfigError(f"config field {where}.loss: {problem}")


def _default_raw_root(name: str, spec: dict, resources: str) -> None:
    """Raw files of downloadable sources default to ``<resources>/raw`` (unless the spec's ``root`` or
    $GNC_DATA_ROOT says otherwise): set ``root`` so the jobs and the messages use that folder."""
    kind = spec.get("source", name)
    props = gdata.SPEC_SCHEMA.get(kind, {}).get("properties", {})
    if props.get("root") == ROOT_SCHEMA and not spec.get("root") and not os.environ.get(DEFAULT_ROOT_ENV):
        spec["root"] = f"{resources}/raw"


def _check_distinct_taus(taus: list, where: str) -> None:
    for i, a in enumerate(taus):
        for b in taus[:i]:
            if same_tau(a, b):
                raise ConfigError(f"config field {where}: {a!r} and {b!r} are the same temperature (run ids name "
                                  f"tau to {ID_DIGITS} significant digits: tau{fmt_num(a)}); give distinct values")


def _check_semantics(cfg: dict, skipped: dict) -> None:
    if cfg.get("train"):
        _check_recipe({**DEFAULT_RECIPE, **cfg["train"]}, "train")
    for name in list(cfg["datasets"]):
        spec = cfg["datasets"][name]
        optional = bool(spec.get("optional", False))
        _default_raw_root(name, spec, cfg["resources"])
        try:
            # cheap: reads no data, but checks the source exists (paths, packages, option values)
            gdata.num_classes(name, spec)
            gdata.version_id(name, spec)
        except (ValueError, FileNotFoundError, KeyError, TypeError, ImportError) as exc:
            if not optional:
                raise ConfigError(f"config field datasets.{name}: {exc}") from None
            del cfg["datasets"][name]
            dropped = [e for e, x in cfg["experiments"].items() if x["dataset"] == name]
            for e in dropped:
                del cfg["experiments"][e]
            reason = str(exc).removeprefix(f"dataset {name!r}: ")
            skipped[name] = f"{reason} (experiments skipped with it: {', '.join(dropped) or 'none'})"
    if not cfg["experiments"]:
        raise ConfigError("config field experiments: no experiment left to run (all use skipped optional datasets)")
    _check_distinct_taus(cfg.get("codes", {}).get("ufm_tau", []), "codes.ufm_tau")
    for ename, exp in cfg["experiments"].items():
        where = f"experiments.{ename}"
        _check_distinct_taus(exp["tau"], f"{where}.tau")
        if exp["dataset"] not in cfg["datasets"]:
            raise ConfigError(f"config field {where}.dataset: {exp['dataset']!r} is not defined under "
                              f"datasets; allowed values: {', '.join(cfg['datasets'])}")
        _check_recipe(recipe_for(cfg, exp), f"{where}.train")
        n = gdata.num_classes(exp["dataset"], cfg["datasets"][exp["dataset"]])
        if exp.get("classes") is not None:
            if exp["K"] != [len(exp["classes"])]:
                raise ConfigError(f"config field {where}.K: with explicit classes K must be "
                                  f"[{len(exp['classes'])}], got {exp['K']}")
            bad = [c for c in exp["classes"] if isinstance(c, int) and not 0 <= c < n]
            if bad:
                raise ConfigError(f"config field {where}.classes: indices {bad} out of range; allowed values: 0..{n - 1}")
        for i, K in enumerate(exp["K"]):
            if K > n:
                raise ConfigError(f"config field {where}.K[{i}]: K = {K} is larger than the {n} classes of "
                                  f"dataset {exp['dataset']!r}; allowed values: 2..{n}")


# --------------------------------------------------------------------------------- grid expansion

def variant_of(recipe: dict) -> str:
    head = recipe["head"]
    if head == "cmf":
        head = f"cmf{fmt_num(recipe['cmf_momentum'])}"
    return f"{head}-{recipe['loss']}"


@dataclass
class Run:
    run_id: str
    experiment: list[str]
    dataset: str
    variant: str
    arch: str
    tau: float
    d: int
    K: int
    seed: int
    recipe: dict = field(default_factory=dict)
    init_run: str | None = None   # run whose final checkpoint initializes this one (recipe init_from)

    @property
    def coords(self) -> dict:
        return {dim: getattr(self, dim) for dim in RUN_DIMS}

    def spec(self) -> dict:
        """Everything that defines the training job (JSON-able); passed to gnc.train."""
        return {"run_id": self.run_id, "dataset": self.dataset, "variant": self.variant, "arch": self.arch,
                "tau": self.tau, "d": self.d, "K": self.K, "seed": self.seed, **self.recipe}


def expand_runs(cfg: dict) -> dict[str, Run]:
    """All training runs of the study, keyed by run id (sorted). Raises ConfigError when two
    experiments train the same grid point with different recipes."""
    runs: dict[str, Run] = {}
    for ename, exp in cfg["experiments"].items():
        recipe = recipe_for(cfg, exp)
        variant = variant_of(recipe)
        grid = itertools.product(exp["arch"], exp["tau"], exp["d"], exp["K"], exp.get("seed", [0]))
        for arch, tau, d, K, seed in grid:
            rid = f"{exp['dataset']}/{variant}/{arch}/tau{fmt_num(tau)}-d{d}-K{K}-s{seed}"
            rec = recipe_at_K(recipe, K, f"experiments.{ename}.train")
            if exp.get("classes") is not None:
                rec["classes"] = list(exp["classes"])
                rid += "-c" + hashlib.sha256(json.dumps(rec["classes"]).encode()).hexdigest()[:6]
            if rid not in runs:
                runs[rid] = Run(rid, [ename], exp["dataset"], variant, arch, float(tau), int(d), int(K), int(seed),
                                rec)
                continue
            if runs[rid].recipe != rec:
                diff = sorted(k for k in rec if runs[rid].recipe.get(k) != rec[k])
                raise ConfigError(f"config field experiments.{ename}.train: run {rid} is also in experiment "
                                  f"{runs[rid].experiment[0]!r} with a different recipe (fields: "
                                  f"{', '.join(diff)}); give one of them another variant or grid point")
            runs[rid].experiment.append(ename)
    _resolve_init_from(cfg, runs)
    return dict(sorted(runs.items()))


#: recipe keys that change the network's parameters and buffers: a run initialized from another must agree
_ARCH_KEYS = ("head", "width", "depth", "bn", "groups", "width_per_group", "class_subset_seed")


def _resolve_init_from(cfg: dict, runs: dict[str, Run]) -> None:
    """Recipe ``init_from: <experiment>``: each run starts from the final checkpoint of the named
    experiment's run at its grid point (dataset, arch, tau, d, K, seed, classes), which must have the
    same network (head and architecture options) and train from scratch itself. Replaces the key by
    ``init_checkpoint`` (the checkpoint's path under ``results``) and sets :attr:`Run.init_run`."""
    exps = cfg["experiments"]
    for rid, run in runs.items():
        name = run.recipe.pop("init_from", None)
        if name is None:
            continue
        where = f"experiments.{run.experiment[0]}.train.init_from"
        if name not in exps:
            raise ConfigError(f"config field {where}: {name!r} is not an experiment of this study; allowed "
                              f"values: {', '.join(e for e in exps if e not in run.experiment)}")
        if name in run.experiment:
            raise ConfigError(f"config field {where}: an experiment cannot start from its own runs ({name!r})")
        if recipe_for(cfg, exps[name]).get("init_from") is not None:
            raise ConfigError(f"config field {where}: experiment {name!r} itself starts from another "
                              f"experiment's checkpoint; init_from must name an experiment trained from scratch")
        point = {k: v for k, v in run.coords.items() if k != "variant"}
        found = [r for r in runs.values() if name in r.experiment and r.run_id != rid
                 and {k: v for k, v in r.coords.items() if k != "variant"} == point
                 and r.recipe.get("classes") == run.recipe.get("classes")]
        if not found:
            offered = sorted({f"{r.dataset} {r.arch} tau={fmt_num(r.tau)} d={r.d} K={r.K} seed={r.seed}"
                              for r in runs.values() if name in r.experiment})
            raise ConfigError(f"config field {where}: experiment {name!r} has no run at the grid point of {rid} "
                              f"(same dataset, arch, tau, d, K, seed, classes); it trains: {'; '.join(offered)}")
        init = found[0]
        diff = [k for k in _ARCH_KEYS if init.recipe.get(k) != run.recipe.get(k)]
        if diff:
            raise ConfigError(f"config field {where}: run {init.run_id} of experiment {name!r} has another network "
                              f"than {rid} (" + ", ".join(f"{k}: {init.recipe.get(k)!r} vs {run.recipe.get(k)!r}"
                                                          for k in diff) + "), so its weights cannot initialize it")
        run.init_run = init.run_id
        run.recipe["init_checkpoint"] = (f"{cfg.get('results', 'results')}/runs/{init.run_id}/ckpt/"
                                         f"epoch={init.recipe['checkpoints'][-1]}.pt")


def code_grid(cfg: dict, runs: dict[str, Run]) -> list[tuple[int, int]]:
    """(d, K) pairs for the codes stage: every (d, K) trained plus ``codes.extra``; d >= 2."""
    pairs = {(r.d, r.K) for r in runs.values() if r.d >= 2}
    pairs |= {(int(e["d"]), int(e["K"])) for e in cfg.get("codes", {}).get("extra", [])}
    return sorted(pairs)


def load_study(config: dict, skipped: dict | None = None) -> tuple[dict, dict[str, Run]]:
    """The validated config (:func:`validate_config`) and its runs (:func:`expand_runs`)."""
    cfg = validate_config(config, skipped)
    return cfg, expand_runs(cfg)


def read_config_file(path: str | Path) -> dict:
    """A study config file as a dict. Raises ConfigError naming the file (and, for YAML syntax errors,
    the line and column) when it is missing, unreadable, empty or not a mapping of keys."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and what != context and cmark is not None:  # where the unfinished construct starts
            what += f" ({context} that starts at line {cmark.line + 1}, column {cmark.column + 1})"
        raise ConfigError(f"{where}: YAML syntax error: {what}") from None
    if obj is None:
        raise ConfigError(f"{path}: the config file is empty (a study needs at least 'datasets' and "
                          f"'experiments'; see config.yaml)")
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}:1: the config file must be a mapping of keys (results, datasets, "
                          f"experiments, ...), not a {type(obj).__name__}")
    return obj


#: keys that make a config a study of its own; a config without them is merged over the default study
STUDY_KEYS = ("datasets", "experiments")


#: ``snakemake --config study=FILE``: the study file, read by :func:`read_config_file` (so a YAML error
#: names the file, line and column; Snakemake's own ``--configfile`` reader names neither)
STUDY_FILE_KEY = "study"


def merge_over_default(config: dict, default_path: str | Path) -> bool:
    """Complete ``config`` in place with the default study when it defines neither ``datasets`` nor
    ``experiments`` (e.g. ``snakemake --config results=X`` alone): the default file's keys first, then
    ``config``'s on top (nested mappings merged key by key). Returns True when it merged.

    ``study: FILE`` in ``config`` is replaced by that file's keys, with ``config``'s other keys on top.
    A config with ``datasets`` or ``experiments`` is a study of its own and is left as it is."""
    if STUDY_FILE_KEY in config:
        study = read_config_file(str(config[STUDY_FILE_KEY]))
        del config[STUDY_FILE_KEY]
        _put_over(study, config)
    if any(k in config for k in STUDY_KEYS):
        return False
    _put_over(read_config_file(default_path), config)
    return True


def _put_over(base: dict, config: dict) -> None:
    """``config`` becomes ``base`` with ``config``'s keys on top (nested mappings merged key by key)."""
    _deep_update(base, copy.deepcopy(dict(config)))
    config.clear()
    config.update(base)


def _deep_update(base: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def main(argv: list[str] | None = None) -> int:
    """``python -m gnc.config FILE...``: check study config files (YAML syntax with file and line, the
    schema, the datasets, the grid) without Snakemake; prints the number of runs per file."""
    ap = argparse.ArgumentParser(prog="python -m gnc.config", description=main.__doc__.split(":", 1)[1])
    ap.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    status = 0
    for f in args.files:
        skipped: dict[str, str] = {}
        try:
            cfg, runs = load_study(read_config_file(f), skipped)
        except ConfigError as exc:
            print(f"{exc}" if str(exc).startswith(str(f)) else f"{f}: {exc}", file=sys.stderr)
            status = 1
            continue
        skipped = "".join(f"; skipped dataset {n!r}: {why}" for n, why in skipped.items())
        print(f"{f}: ok, {len(runs)} run(s) in {len(cfg['experiments'])} experiment(s){skipped}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
