"""The one list of figures, and which runs each figure of a study shows.

Everything else derives from :data:`REGISTRY`: the Snakemake rules (one per kind; inputs, report
category), the dispatch of :func:`gnc.figures.make_figure`, the titles and the captions.

A figure exists for a *comparison* (``compares``: the coordinate whose levels it puts side by side,
e.g. τ for the temperature sweep). :func:`plan_figures` reads the study's runs (their coordinates, as
the config expands them) and the ``figures:`` section of the config, and decides for each figure:

* the *setting* it shows — the value of every other coordinate (dataset, architecture, variant, d,
  K, τ): the config's choice (``figures: {tau_sweep: {dataset: glyphs, K: 100}}``) narrows the runs,
  and among the settings left the headline one is taken: most levels of the compared coordinate,
  then most seeds, then the largest K, then the largest d, then the first name, then the smallest τ;
* the runs it expects (to list those without data as missing, and only those);
* or that it is not drawn, and why — when no setting has two levels of what it compares.

This module is free of matplotlib and xarray: the workflow imports it when it parses the Snakefile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..grid import RUN_DIMS, same_tau
from ..io import write_text_atomic
from ._style import format_tau

DIM_WORDS = {"tau": "temperature τ", "arch": "architecture", "d": "feature dimension d", "K": "number of classes K",
             "variant": "classifier variant", "seed": "seed", "dataset": "dataset"}

#: the order in which titles, captions and the figure index name the coordinates of a setting: what
#: was trained (dataset, architecture, classifier head), then its sizes (d, K), then its temperature
SETTING_DIMS = ("dataset", "arch", "variant", "d", "K", "tau")
if set(SETTING_DIMS) != set(RUN_DIMS) - {"seed"}:
    raise ImportError("SETTING_DIMS must order exactly the run dimensions other than the seed")
NAME_DIMS = SETTING_DIMS[:3]  # named by their value ("glyphs"), not by "d = 10"


@dataclass(frozen=True)
class FigureSpec:
    kind: str
    function: str                       # name of the drawing function in gnc.figures
    inputs: tuple[str, ...]             # "metrics", "codes", "features" (positional order)
    title: str
    description: str                    # the caption's first sentences (what is drawn)
    category: str                       # report menu
    compares: str | None = None         # coordinate with >= 2 levels, or None (drawn whenever it has data)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # selection when the config says nothing
    needs: str = ""                     # runs the figure needs, when compares is None (see plan_figures)
    report_caption: str = "figure.rst"  # workflow/report/<file>


_CURVES = "1. Training dynamics"
_SWEEPS = "2. Sweeps at the final checkpoint"
_GEOMETRY = "3. Classifier geometry"
_CODES = "4. Softmax codes and Tammes"

REGISTRY: dict[str, FigureSpec] = {s.kind: s for s in [
    FigureSpec("tau_sweep", "fig_tau_sweep", ("metrics", "codes"), "Temperature sweep",
               "GNC1 (log scale), GNC2 (the smallest one-vs-rest distance of the normalized classifier; dashed: "
               "the best softmax code found for the same (d, K)), GNC3 (log scale) and test accuracy versus epoch, "
               "one colour per temperature τ (darker = smaller τ). The paper expects a larger GNC2, closer to the "
               "code, and a higher test accuracy at smaller τ.",
               _CURVES, compares="tau", defaults={"variant": "normalized-ce"}),
    FigureSpec("arch_comparison", "fig_arch_comparison", ("metrics", "codes"), "Architecture comparison",
               "The four panels of the temperature sweep (GNC1, GNC2 with the softmax-code value dashed, GNC3, "
               "test accuracy versus epoch) at one temperature, one colour per architecture.",
               _CURVES, compares="arch", defaults={"variant": "normalized-ce"}),
    FigureSpec("cmf", "fig_cmf", ("metrics",), "Classifier variants at one grid point",
               "Train accuracy and test accuracy versus epoch at one grid point, one colour per classifier "
               "variant: the learnable normalized classifier, the class-mean-feature (CMF) classifier, the "
               "HardMax loss and the linear head, whichever the study trained there. Each variant keeps its "
               "experiment's recipe (batch size, learning rate and epochs may differ; see the config).",
               _CURVES, compares="variant"),
    FigureSpec("ncc", "fig_ncc", ("metrics",), "Nearest-class-centre accuracy",
               "Accuracy of the nearest-class-centre rule on the normalized penultimate features, on the train "
               "split and on the test split, versus epoch, one colour per temperature τ. A train NCC accuracy "
               "near 100 % means the features have collapsed to their class means.",
               _CURVES, compares="tau", defaults={"variant": "normalized-ce"}),
    FigureSpec("nc", "fig_nc", ("metrics",), "Neural collapse NC1–NC4 with a linear head",
               "Papyan et al.'s panels for the linear classifier with weight decay: train error, NC1 = "
               "tr(Σ_W Σ_B⁺)/K (log scale), equinorm (coefficient of variation of the norms of the centred class "
               "means, solid, and of the classifier rows, dashed), equiangularity (standard deviation of the "
               "cosines), max-angle (mean |cos + 1/(K−1)|), self-duality NC3 and the mismatch NC4 between the "
               "network and the nearest-class-centre rule, versus epoch.",
               _CURVES, compares=None, defaults={"variant": "linear-ce"}, needs="linear"),
    FigureSpec("k_sweep", "fig_k_sweep", ("metrics", "codes"), "Number-of-classes sweep",
               "GNC1 (log scale), GNC2 with the best softmax-code value of each (d, K) (black squares, dashed), "
               "GNC3 (log scale) and test accuracy at each run's last checkpoint, versus the number of classes K.",
               _SWEEPS, compares="K", defaults={"variant": "normalized-ce"}),
    FigureSpec("d_sweep", "fig_d_sweep", ("metrics", "codes"), "Feature-dimension sweep",
               "GNC2 at each run's last checkpoint versus the feature dimension d with the best softmax-code value "
               "of each (d, K) (black squares, dashed), the fraction GNC2 / softmax-code value (1 = as good as the "
               "best code found) and the test accuracy. The paper reports that the gap to the code grows with d.",
               _SWEEPS, compares="d", defaults={"variant": "normalized-ce"}),
    FigureSpec("assignment", "fig_assignment", ("codes",), "Assignment of classes to code vectors",
               "Cosine Gram matrices cos(ŵ_k, ŵ_k') of the trained normalized classifier at the last checkpoint, "
               "one heatmap per seed, rows and columns labelled by class name. For K > d + 1 the softmax code is "
               "not equiangular, so which class sits next to which is a choice training makes: compare the seeds.",
               _GEOMETRY, compares="seed", needs="assignment"),
    FigureSpec("sphere", "fig_sphere", ("features",), "Classifier and class means on the sphere",
               "Normalized classifier rows ŵ_k (stars, labelled by class), normalized class means (circles) and "
               "a random sample of normalized training features (dots), coloured by class, at the last "
               "checkpoint. d = 2 is the unit circle; d = 3 is shown as two orthographic views, the front "
               "hemisphere (z ≥ 0, seen from +z) and the back one (z < 0, seen from −z).",
               _GEOMETRY, compares=None, needs="sphere"),
    FigureSpec("ufm_tau", "fig_ufm_tau", ("codes",), "UFM, τ → 0",
               "Unconstrained-feature model trained at decreasing temperature τ: one-vs-rest distance of the "
               "solution relative to the best softmax code (1 = optimal), its distance to that code, and its "
               "minimum angle (dashed: softmax code), versus τ on a log axis.",
               _CODES, report_caption="ufm_tau.rst"),
    FigureSpec("codes", "fig_codes", ("codes",), "Softmax code vs Tammes code",
               "Best softmax code vs best Tammes code as functions of K for several d: their one-vs-rest distances "
               "ρ_ovr (solid: softmax code, dashed: Tammes code), the gain of the softmax code, and their minimum "
               "pairwise angles; the gain panel marks each (d, K) with its verdict (circle: same, diamond: differ, "
               "square: undecided).",
               _CODES, report_caption="codes.rst"),
]}


# ----------------------------------------------------------------------------- selection

def same_value(a, b) -> bool:
    """Whether two coordinate values name the same level: as numbers when either is a float (within the
    tolerance of :func:`gnc.grid.same_tau`) or an integer, else as text."""
    try:
        if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
            return same_tau(float(a), float(b))
        if isinstance(a, (int, np.integer)) or isinstance(b, (int, np.integer)):
            return int(a) == int(b)
    except (TypeError, ValueError):
        pass
    return str(a) == str(b)


def as_list(value) -> list:
    """A selection value as a list of values (a string or a scalar is one value)."""
    return [value] if value is None or isinstance(value, (str, bytes)) or np.isscalar(value) else list(value)


def matches(run: Mapping, select: Mapping) -> bool:
    """Whether a run's coordinates satisfy a selection ({dim: value or list of values})."""
    return all(v is None or any(same_value(run.get(dim), w) for w in as_list(v)) for dim, v in select.items())


def _levels(values: Iterable) -> list:
    out: list = []
    for v in values:
        if not any(same_value(v, u) for u in out):
            out.append(v)
    try:
        return sorted(out)
    except TypeError:
        return sorted(out, key=str)


def headline(runs: Sequence[Mapping], compares: str | None) -> dict | None:
    """The headline setting of ``runs`` (all run dims but ``compares`` and the seed): most levels of
    ``compares``, then most seeds, then the largest K, then the largest d, then the first names, then
    the smallest τ."""
    groups: dict[tuple, list[Mapping]] = {}
    fixed = [d for d in RUN_DIMS if d not in (compares, "seed")]
    for r in runs:
        groups.setdefault(tuple(r.get(d) for d in fixed), []).append(r)
    if not groups:
        return None

    def rank(item):
        key, rs = item
        rec = dict(zip(fixed, key))
        n_levels = len(_levels(r.get(compares) for r in rs)) if compares else 1
        n_seeds = len(_levels(r.get("seed") for r in rs))
        return (-n_levels, -n_seeds, -(rec.get("K") or 0), -(rec.get("d") or 0),
                str(rec.get("dataset")), str(rec.get("arch")), str(rec.get("variant")), rec.get("tau") or 0)

    key, _ = sorted(groups.items(), key=rank)[0]
    return dict(zip(fixed, key))


@dataclass
class Plan:
    kind: str
    draw: bool
    select: dict = field(default_factory=dict)   # passed to the figure function
    expected: list = field(default_factory=list)  # coordinates of the runs the figure shows
    why: str = ""                                 # why it is not drawn

    def as_params(self) -> dict:
        """Keyword arguments of the figure function: the selection and the runs expected."""
        return {**self.select, "expected": [dict(r) for r in self.expected]}


def _describe(select: Mapping) -> str:
    return describe_setting(select) or "any setting"


def plan_figure(kind: str, runs: Sequence[Mapping], options: Mapping | None = None) -> Plan:
    """Decide what figure ``kind`` shows for a study whose runs have the coordinates ``runs``;
    ``options`` is the figure's entry of the config's ``figures:`` section."""
    spec = REGISTRY[kind]
    options = dict(options or {})
    unknown = set(options) - set(RUN_DIMS)
    if unknown:
        raise ValueError(f"figures.{kind}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(RUN_DIMS)}")
    if spec.inputs == ("codes",):  # shows what codes.nc holds
        if options:
            raise ValueError(f"figures.{kind}: this figure shows what codes.nc holds; it takes no selection")
        if spec.needs != "assignment":
            return Plan(kind, True)
        # codes.nc holds the Gram matrices of the first small-K grid point trained with several seeds
        groups: dict[tuple, set] = {}
        for r in runs:
            if r.get("K", 99) <= 16:
                groups.setdefault(tuple(r.get(d) for d in RUN_DIMS if d != "seed"), set()).add(r.get("seed"))
        if not any(len(s) > 1 for s in groups.values()):
            return Plan(kind, False, why="no grid point with K ≤ 16 trained with two or more seeds")
        return Plan(kind, True)
    wanted = {**spec.defaults, **options}
    pool = [r for r in runs if matches(r, wanted)]
    if spec.needs == "linear" and "variant" not in options:
        pool = [r for r in runs if str(r.get("variant", "")).startswith("linear") and matches(r, options)]
    if spec.needs == "sphere":
        pool = [r for r in pool if r.get("d") in (2, 3)]
        if not pool:
            return Plan(kind, False, why=f"no run with d = 2 or 3 ({_describe(wanted)})")
        picks = []
        for dval in sorted({r["d"] for r in pool}):
            sub = [r for r in pool if r["d"] == dval]
            best = headline(sub, None)
            picks.append(min((r for r in sub if matches(r, best)), key=lambda r: r["seed"]))
        return Plan(kind, True, select={}, expected=picks)
    if not pool:
        what = "a linear head" if spec.needs == "linear" else _describe(wanted)
        return Plan(kind, False, why=f"the study has no run with {what}")
    setting = headline(pool, spec.compares)
    chosen = [r for r in pool if matches(r, setting)]
    if spec.compares:
        levels = _levels(r.get(spec.compares) for r in chosen)
        if len(levels) < 2:
            return Plan(kind, False, why=f"no two runs that differ only in the {DIM_WORDS[spec.compares]} "
                                         f"(runs considered: {_describe(wanted)})")
        select = {**setting, spec.compares: levels}
    else:
        select = dict(setting)
    select["seed"] = _levels(r.get("seed") for r in chosen)
    return Plan(kind, True, select=select, expected=[{d: r.get(d) for d in RUN_DIMS} for r in chosen])


def plan_figures(runs: Sequence[Mapping], figures_config: Mapping | None = None) -> dict[str, Plan]:
    """:func:`plan_figure` for every registered figure (``figures_config`` = the config's ``figures:``)."""
    return {kind: plan_figure(kind, runs, (figures_config or {}).get(kind)) for kind in REGISTRY}


def _fmt(dim: str, value) -> str:
    return format_tau(value) if dim == "tau" else str(value)


def describe_setting(select: Mapping) -> str:
    """'dataset glyphs, arch smallcnn, variant normalized-ce, d = 10, K = 100, τ ∈ {1/10, 1}, seeds 0, 1'
    for a selection."""
    parts = []
    for dim in (*SETTING_DIMS, "seed"):
        v = select.get(dim)
        if v is None:
            continue
        vals = [_fmt(dim, x) for x in (v if isinstance(v, (list, tuple)) else [v])]
        name = "τ" if dim == "tau" else dim
        if dim == "seed":
            parts.append(f"seed{'s' if len(vals) != 1 else ''} {', '.join(vals)}")
        elif len(vals) != 1:
            parts.append(f"{name} ∈ {{{', '.join(vals)}}}")
        else:
            parts.append(f"{name} {vals[0]}" if dim in NAME_DIMS else f"{name} = {vals[0]}")
    return ", ".join(parts)


def figure_index_rst(plans: Mapping[str, Plan]) -> str:
    """reStructuredText for the report's front page: the figures drawn, with the setting each shows,
    and the figures not drawn, with the reason."""
    lines = []
    for p in plans.values():
        if not p.draw:
            continue
        shown = describe_setting(p.select)
        if p.kind == "sphere":
            shown = "; ".join(describe_setting(r) for r in p.expected)
        lines.append(f"- **{REGISTRY[p.kind].title}** (``{p.kind}``)" + (f": {shown}" if shown else ""))
    skipped = [p for p in plans.values() if not p.draw]
    if skipped:
        lines += ["", "Not drawn in this study:", ""]
        lines += [f"- **{REGISTRY[p.kind].title}** (``{p.kind}``): {p.why}." for p in skipped]
    lines += ["", "The setting of a figure is chosen in the config, e.g. "
                  "``figures: {tau_sweep: {dataset: glyphs, K: 100}}``."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- workflow paths

def sphere_features(plan: Plan, runs: Mapping[str, Any], out: str) -> dict[str, str]:
    """{panel title: last-checkpoint features file} of the runs the sphere figure shows; ``runs`` maps
    run ids to objects with ``coords`` and ``recipe["checkpoints"]`` (gnc.config.Run)."""
    files = {}
    for c in plan.expected:
        run_id = next(r for r, run in runs.items() if run.coords == c)
        title = f"{c['dataset']}, d={c['d']}, K={c['K']}, τ={format_tau(c['tau'])}, seed {c['seed']}"
        files[title] = f"{out}/runs/{run_id}/features/epoch={runs[run_id].recipe['checkpoints'][-1]}.nc"
    return files


def figure_inputs(kind: str, out: str, features: Mapping[str, str]) -> dict:
    """The named inputs of figure ``kind``'s rule."""
    return {need: list(features.values()) if need == "features" else f"{out}/{need}.nc"
            for need in REGISTRY[kind].inputs}


def figure_targets(plans: Mapping[str, Plan], out: str, formats: Sequence[str]) -> list[str]:
    """Every file of the figures drawn, in every format, and the index."""
    drawn = [f"{out}/figures/{kind}.{fmt}" for kind, p in plans.items() if p.draw for fmt in formats]
    return drawn + [f"{out}/figures/index.rst"]


def write_figure_index(plans: Mapping[str, Plan], path: str, log_path: str) -> None:
    """Write :func:`figure_index_rst` to ``path`` and a one-line summary to ``log_path``."""
    write_text_atomic(path, figure_index_rst(plans))
    drawn = sum(p.draw for p in plans.values())
    write_text_atomic(log_path, f"{drawn} of {len(plans)} figures drawn; see {path}\n")
