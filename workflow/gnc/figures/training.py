"""Figures drawn from ``results/metrics.nc`` (and the softmax-code values of ``results/codes.nc``).

Two drivers draw them: :func:`_curve_figure`, curves versus epoch with one colour per level of the
compared coordinate (τ, architecture or classifier variant), and :func:`_final_figure`, each run's value
at its last checkpoint versus K or d.

Each figure shows ONE setting: every coordinate but the compared one is fixed, by the keyword
arguments (``dataset="glyphs", K=100``, a value or a list) and, where they leave a choice, by
:func:`gnc.figures.registry.headline`; the title says the setting. Seeds are averaged over the seeds
that have the point: a line is their mean, a band (drawn only where two or more seeds exist) their
min–max. ``expected`` (the runs the study asked for, as coordinate dicts) lists the runs without data as
missing; without it nothing is called missing. ``style`` (a :class:`Style`) gives the colours, by default
those of the inputs. The returned frame has one row per plotted point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ._common import (ACCURACY_VARS, DIM_NAMES, add_figure_legend, annotate_missing, axis_label, band_handle,
                      code_value, figure_style, finish_frame, fmt_setting, fmt_value, no_data_figure, panel_grid,
                      plot_with_band, py, select, source_records, spread)
from ._style import Style
from .registry import REGISTRY, RUN_DIMS, headline, matches, same_value

SETTING_COLUMNS = [d for d in RUN_DIMS if d != "seed"]
CURVE_COLUMNS = ["series", "metric", *SETTING_COLUMNS, "epoch", "value", "lower", "upper", "n_seeds", "seeds"]
LOG_METRICS = {"gnc1", "gnc3", "gnc3_uncentered", "nc1"}
HUE_TITLES = {"tau": "temperature", "arch": "architecture", "variant": "classifier"}
REF_STYLE = {
    "softmax code": dict(color="black", linestyle="--", linewidth=1.4),
    "paper 'Optimal'": dict(color="0.45", linestyle=":", linewidth=1.6),
}
REF_LABELS = {"softmax code": "best softmax code found", "paper 'Optimal'": "paper's 'Optimal' line"}


@dataclass(frozen=True)
class Panel:
    title: str
    lines: tuple[tuple[str, str, str], ...]   # (metric, linestyle, legend label or "")
    ylabel: str | None = None
    log: bool = False
    percent: bool = False

    @property
    def metrics(self) -> list[str]:
        return [m for m, _, _ in self.lines]


def _panel(metric: str, title: str, **kw) -> Panel:
    kw.setdefault("percent", metric in ACCURACY_VARS)
    return Panel(title, ((metric, "-", ""),), log=metric in LOG_METRICS, **kw)


GNC_PANELS = (_panel("gnc1", "GNC1 (variability collapse)"), _panel("gnc2", "GNC2 (one-vs-rest distance)"),
              _panel("gnc3", "GNC3 (self-duality)"), _panel("test_acc", "test accuracy"))
NC_PANELS = (
    _panel("train_error", "train error", ylabel="train error [%]", percent=True),
    _panel("nc1", "NC1 (variability collapse)"),
    Panel("equinorm", (("nc2_equinorm_means", "-", "class means"), ("nc2_equinorm_weights", "--", "classifier")),
          ylabel="std / mean of the norms"),
    Panel("equiangularity", (("nc2_equiangular_means", "-", "class means"),
                             ("nc2_equiangular_weights", "--", "classifier")), ylabel="std of the cosines"),
    Panel("max-angle", (("nc2_maxangle_means", "-", "class means"), ("nc2_maxangle_weights", "--", "classifier")),
          ylabel="mean |cos + 1/(K−1)|"),
    _panel("nc3", "NC3 (self-duality)", ylabel="‖W/‖W‖ − M/‖M‖‖²"),
    _panel("nc4", "NC4 (mismatch with NCC)", ylabel="mismatch [%]", percent=True),
)


# ----------------------------------------------------------------------------- data

def _with_derived(metrics):
    if metrics is not None and "train_acc" in metrics.data_vars and "train_error" not in metrics.data_vars:
        metrics = metrics.assign(train_error=1.0 - metrics["train_acc"])
    return metrics


def _pick_setting(metrics, names, compares, sel, defaults):
    """(sub-dataset of one setting, its runs with data, setting) or None when nothing has data."""
    sub, _ = select(metrics[names], **{k: v for k, v in sel.items() if v is not None})
    if any(sub.sizes[d] == 0 for d in sub.dims):
        return None
    if "seed" not in sub.dims:  # a study without a seed dimension: one implicit seed
        sub = sub.expand_dims(seed=[0])
    has = sub.to_array("metric").notnull()
    dims = [d for d in RUN_DIMS if d in has.dims]
    has = has.any(dim=[d for d in has.dims if d not in dims]).transpose(*dims)
    runs = [{d: py(has[d].values[i]) for d, i in zip(dims, ix)} for ix in np.argwhere(has.values)]  # with data
    if not runs:
        return None
    preferred = [r for r in runs if matches(r, {k: v for k, v in defaults.items() if sel.get(k) is None})]
    setting = headline(preferred or runs, compares)
    chosen = [r for r in runs if matches(r, setting)]
    sub, _ = select(sub, **{k: [v] for k, v in setting.items()})
    return sub, chosen, setting


def _missing(expected, chosen, hue) -> list[dict]:
    got = [{k: r[k] for k in ("seed", hue) if k in r} for r in chosen]
    out = []
    for e in expected or []:
        key = {k: e[k] for k in ("seed", hue) if k in e}
        if not any(matches(g, key) for g in got):
            out.append({**{k: py(v) for k, v in e.items()}, "metrics": "all", "what": "no data"})
    return out


def _seed_text(frame: pd.DataFrame, hue: str | None) -> str:
    """'seed 0', 'mean of seeds 0, 1, 2' or, when the lines have different seeds, which line has which
    (levels with the same seeds grouped: 'seeds: τ=1, 1/5: 0; τ=1/10: 0, 1, 2')."""
    trained = frame[frame["series"] == "trained"]
    per = trained.groupby(hue if hue else "series", sort=False)["seeds"].agg(
        lambda s: tuple(sorted(set(",".join(s).split(",")), key=int)))
    groups: dict[tuple, list] = {}
    for level, seeds in per.items():
        groups.setdefault(seeds, []).append(level)
    if len(groups) == 1:
        seeds = next(iter(groups))
        return f"seed {seeds[0]}" if len(seeds) == 1 else f"mean of seeds {', '.join(seeds)}"
    name = DIM_NAMES.get(hue, hue)
    return "seeds: " + "; ".join(f"{name}={', '.join(fmt_value(hue, v) for v in levels)}: {', '.join(seeds)}"
                                 for seeds, levels in groups.items())


def _title(kind: str, setting: Mapping, frame: pd.DataFrame, hue: str | None, suffix: str = "") -> str:
    fixed = {k: v for k, v in setting.items() if k not in (hue, "seed")}
    return f"{REGISTRY[kind].title} — {fmt_setting(fixed)}; {_seed_text(frame, hue)}{suffix}"


def _wrap_title(text: str, fig, fontsize: float = 12) -> str:
    """Break a title between its parts (at " — " and "; ") so that each line fits the figure's width."""
    width = max(30, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))
    parts = [p for p in re.split(r"(?<= — )|(?<=; )", text) if p]
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(line.rstrip() for line in lines)


def _format_axis(ax, panel: Panel, ds, xlabel: str):
    ax.set_ylabel(panel.ylabel or axis_label(panel.metrics[0], ds, percent=panel.percent))
    ax.set_xlabel(xlabel)
    if panel.log:
        ax.set_yscale("log")
    if panel.percent:
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_title(panel.title)


def _color(style: Style, hue: str | None, level, setting: Mapping):
    return style.arch_color(setting.get("arch", "")) if hue is None else style.color(hue, level)


def _sweep_grid(n_panels: int):
    """The panel grid of every figure of this module (rows of four, room for the legend on the right)."""
    return panel_grid(n_panels, panel_w=3.3, panel_h=2.8, extra_w=1.9, extra_h=0.6)


def _finish_sweep(frame: pd.DataFrame, kind: str, *, hue: str | None, setting: Mapping, chosen, missing,
                  sources) -> pd.DataFrame:
    """The plotted rows in CSV column order, with the setting, seeds, missing runs and seed text."""
    frame = frame[[c for c in CURVE_COLUMNS if c in frame.columns]]
    frame = finish_frame(frame, kind, missing=missing, selection=dict(setting),
                         seeds=sorted({r["seed"] for r in chosen}), sources=sources)
    frame.attrs["seed_text"] = _seed_text(frame, hue)
    return frame


# ----------------------------------------------------------------------------- curves vs epoch

def _curve_figure(kind: str, metrics, codes=None, *, hue: str | None, panels: Sequence[Panel], expected=None,
                  style: Style | None = None, **sel):
    spec, sel = REGISTRY[kind], _sel(sel)
    sources = source_records(metrics, codes)
    metrics = _with_derived(metrics)
    names = [m for p in panels for m in p.metrics if metrics is not None and m in metrics.data_vars]
    picked = _pick_setting(metrics, names, hue, sel, spec.defaults) if names else None
    if picked is None:
        return no_data_figure(kind, f"none of {', '.join(dict.fromkeys(m for p in panels for m in p.metrics))} "
                                    f"has values in metrics.nc for this selection", CURVE_COLUMNS,
                              sources=sources, selection={k: v for k, v in sel.items() if v is not None})
    sub, chosen, setting = picked
    style = style or Style.from_datasets(metrics, codes)
    levels = sorted({r[hue] for r in chosen}, key=lambda v: -float(v) if hue == "tau" else str(v)) if hue else [None]
    frame = _curve_frame(sub, chosen, setting, hue, levels)
    missing = _missing(expected, chosen, hue or "seed")
    ref_rows = []
    with figure_style():
        fig, axes = _sweep_grid(len(panels))
        for ax, panel in zip(axes, panels):
            ref_rows += _draw_curve_panel(ax, panel, frame, levels, hue, style, setting, codes, missing, metrics)
        handles = _curve_handles(panels, levels, hue, style, setting, ref_rows, frame)
        add_figure_legend(fig, handles, title=HUE_TITLES.get(hue, hue) if hue else None)
        fig.suptitle(_wrap_title(_title(kind, setting, frame, hue), fig), fontsize=12)
        annotate_missing(fig, missing)
    if ref_rows:
        frame = pd.concat([frame, pd.DataFrame(ref_rows)], ignore_index=True)
    frame = _finish_sweep(frame, kind, hue=hue, setting=setting, chosen=chosen, missing=missing, sources=sources)
    return fig, frame


def _curve_frame(sub, chosen, setting: Mapping, hue: str | None, levels: list) -> pd.DataFrame:
    """Per level of ``hue`` and per epoch: mean / min / max over the seeds that have the point."""
    rows = []
    for lv in levels:
        runs = [r for r in chosen if hue is None or matches(r, {hue: lv})]
        seeds = sorted({r["seed"] for r in runs})
        part, _ = select(sub, **({hue: [lv]} if hue else {}), seed=seeds)
        da = part.to_array("metric")
        da = da.squeeze([d for d in da.dims if d not in ("metric", "seed", "epoch")], drop=True)
        df = spread(da, ["seed"]).rename(n="n_seeds").to_dataframe().reset_index()
        df = df[df["n_seeds"] > 0].copy()
        df["seeds"] = ",".join(str(s) for s in seeds)
        for d in SETTING_COLUMNS:
            df[d] = lv if d == hue else setting.get(d, np.nan)
        rows.append(df)
    frame = pd.concat(rows, ignore_index=True)
    frame["series"] = "trained"
    frame["n_seeds"] = frame["n_seeds"].astype(int)
    return frame


def _draw_curve_panel(ax, panel: Panel, frame, levels, hue, style, setting, codes, missing, metrics) -> list[dict]:
    """One panel: a line per level and metric of the panel, the code references on the GNC2 panel
    (returned as rows; a missing code value is added to ``missing``)."""
    ax.set_gid(panel.metrics[0])
    for metric, ls, _ in panel.lines:
        msel = frame[frame["metric"] == metric]
        for lv in levels:
            part = msel if hue is None else msel[msel[hue].map(lambda v: same_value(v, lv)).astype(bool)]
            if len(part):
                part = part.sort_values("epoch")
                x = part["epoch"].to_numpy(dtype=float)
                plot_with_band(ax, x, part, _color(style, hue, lv, setting), "n_seeds", linestyle=ls,
                               marker="o" if len(x) <= 25 else None, markersize=3.5)
    refs = _gnc2_refs(codes, setting, missing) if panel.metrics == ["gnc2"] else []
    for rrow in refs:
        ax.axhline(rrow["value"], **REF_STYLE[rrow["series"]])
    _format_axis(ax, panel, metrics, "epoch")
    return refs


def _curve_handles(panels, levels, hue, style, setting, ref_rows, frame) -> list:
    """Legend: a colour per level, a line style per labelled line, the references drawn, the band."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_color(style, hue, lv, setting), lw=2, label=style.label(hue, lv))
               for lv in levels] if hue else []
    styles = {(ls, lab) for p in panels for _, ls, lab in p.lines if lab}
    handles += [Line2D([], [], color="0.3", linestyle=ls, label=lab) for ls, lab in sorted(styles)]
    for series in REF_STYLE:
        if any(r["series"] == series for r in ref_rows):
            handles.append(Line2D([], [], label=REF_LABELS[series], **REF_STYLE[series]))
    if (frame["n_seeds"] > 1).any():
        handles.append(band_handle("min–max over seeds"))
    return handles


def _gnc2_refs(codes, setting: Mapping, missing: list) -> list[dict]:
    d, K = setting.get("d"), setting.get("K")
    if d is None or K is None:
        return []
    base = {dim: setting.get(dim, np.nan) for dim in SETTING_COLUMNS}
    out = []
    for series, var in (("softmax code", "softmax_value"), ("paper 'Optimal'", "paper_optimal")):
        v = code_value(codes, var, d, K)
        if v is not None:
            out.append({**base, "series": series, "metric": "gnc2", "value": v, "lower": v, "upper": v,
                        "n_seeds": 0, "epoch": np.nan})
        elif var == "softmax_value":
            missing.append(_no_code_value(codes, d, K))
    return out


def _no_code_value(codes, d, K) -> dict:
    """The missing-point record of a softmax-code value that codes.nc lacks."""
    return {"d": py(d), "K": py(K), "metrics": ["softmax_value"],
            "what": "softmax-code value not in codes.nc" if codes is not None else "codes.nc not given"}


def _sel(kw: Mapping) -> dict:
    unknown = set(kw) - set(RUN_DIMS) - {"epoch"}
    if unknown:
        raise TypeError(f"unknown selection keyword(s) {sorted(unknown)}; use {', '.join(RUN_DIMS)} or epoch")
    return dict(kw)


def fig_tau_sweep(metrics, codes=None, **options):
    """GNC1 (log), GNC2 (+ softmax-code / paper lines), GNC3 (log), test accuracy vs epoch, one line per τ."""
    return _curve_figure("tau_sweep", metrics, codes, hue="tau", panels=GNC_PANELS, **options)


def fig_arch_comparison(metrics, codes=None, **options):
    """The four panels of :func:`fig_tau_sweep` at one τ, one line per architecture."""
    return _curve_figure("arch_comparison", metrics, codes, hue="arch", panels=GNC_PANELS, **options)


_ACC = (_panel("train_acc", "train accuracy"), _panel("test_acc", "test accuracy"))
_NCC = (_panel("ncc_train_acc", "NCC train accuracy"), _panel("ncc_test_acc", "NCC test accuracy"))


def fig_cmf(metrics, **options):
    """Train and test accuracy vs epoch at one grid point, one line per classifier variant."""
    return _curve_figure("cmf", metrics, hue="variant", panels=_ACC, **options)


def fig_ncc(metrics, **options):
    """NCC train and test accuracy vs epoch, one line per τ."""
    return _curve_figure("ncc", metrics, hue="tau", panels=_NCC, **options)


def fig_nc(metrics, **options):
    """Papyan et al.'s panels for one linear-head setting: train error, NC1, equinorm, equiangularity,
    max-angle, NC3 and NC4 versus epoch (class means solid, classifier rows dashed)."""
    return _curve_figure("nc", metrics, hue=None, panels=NC_PANELS, **options)


# ----------------------------------------------------------------------------- last checkpoint vs K or d

def _final_figure(kind: str, metrics, codes, *, x: str, panels: Sequence[Panel], expected=None,
                  style: Style | None = None, **sel):
    """Each run's value at its last checkpoint with data, mean / min–max over seeds, versus ``x``."""
    spec, sel = REGISTRY[kind], _sel(sel)
    sources = source_records(metrics, codes)
    names = [m for p in panels for m in p.metrics if m != "gnc2_fraction"]
    names = [m for m in names if metrics is not None and m in metrics.data_vars and "epoch" in metrics[m].dims]
    picked = _pick_setting(metrics, names, x, sel, spec.defaults) if names else None
    if picked is None:
        return no_data_figure(kind, f"none of {', '.join(names) or 'its metrics'} has values in metrics.nc for "
                                    f"this selection", CURVE_COLUMNS, sources=sources)
    sub, chosen, setting = picked
    style = style or Style.from_datasets(metrics, codes)
    missing = _missing(expected, chosen, x)
    per_run = _last_values(sub, chosen, names, x)
    fraction = any("gnc2_fraction" in p.metrics for p in panels)
    ref_rows = _code_refs_vs_x(per_run, x, setting, codes, missing, fraction)
    frame = _final_frame(per_run, ref_rows, x, setting)
    xlabel = {"K": "number of classes K", "d": "feature dimension d"}[x]
    color = style.arch_color(setting.get("arch", ""))
    with figure_style():
        fig, axes = _sweep_grid(len(panels))
        for ax, panel in zip(axes, panels):
            _draw_final_panel(ax, panel, frame, x, color, metrics, xlabel)
        add_figure_legend(fig, _final_handles(frame, setting, color))
        fig.suptitle(_wrap_title(_title(kind, setting, frame, x, "; last checkpoint of each run"), fig), fontsize=12)
        annotate_missing(fig, missing)
    frame = _finish_sweep(frame, kind, hue=x, setting=setting, chosen=chosen, missing=missing, sources=sources)
    return fig, frame


def _last_values(sub, chosen, names, x: str) -> list[dict]:
    """One row per (run, metric): the value at the run's last checkpoint with data."""
    per_run = []
    for r in chosen:
        cell, _ = select(sub, **{x: [r[x]], "seed": [r["seed"]]})
        for m in names:
            s = cell[m]
            s = s.squeeze([d for d in s.dims if d != "epoch"], drop=True).dropna("epoch")
            if s.size:
                per_run.append({x: r[x], "seed": r["seed"], "metric": m, "epoch": int(s["epoch"].values[-1]),
                                "value": float(s.values[-1])})
    return per_run


def _code_refs_vs_x(per_run: list[dict], x: str, setting: Mapping, codes, missing: list, fraction: bool) -> list[dict]:
    """The softmax-code value at each ``x`` (rows returned; missing ones added to ``missing``); with
    ``fraction``, each run's GNC2 divided by it is appended to ``per_run`` as ``gnc2_fraction``."""
    runs = pd.DataFrame(per_run)
    ref_rows = []
    for xv in sorted(runs[x].unique()):
        d, K = (xv, setting["K"]) if x == "d" else (setting["d"], xv)
        sm = code_value(codes, "softmax_value", d, K)
        if sm is None:
            missing.append(_no_code_value(codes, d, K))
            continue
        ref_rows.append({x: xv, "series": "softmax code", "metric": "gnc2", "value": sm})
        if not fraction:
            continue
        g = runs[(runs["metric"] == "gnc2") & (runs[x] == xv)]
        for _, r in g.iterrows():
            per_run.append({**r.to_dict(), "metric": "gnc2_fraction", "value": r["value"] / sm})
    return ref_rows


def _final_frame(per_run: list[dict], ref_rows: list[dict], x: str, setting: Mapping) -> pd.DataFrame:
    """Mean / min / max over the seeds of each (metric, x), then the code references, with the setting."""
    runs = pd.DataFrame(per_run)
    agg = runs.groupby(["metric", x]).agg(value=("value", "mean"), lower=("value", "min"), upper=("value", "max"),
                                          n_seeds=("seed", "nunique"), epoch=("epoch", "max"),
                                          seeds=("seed", lambda s: ",".join(str(v) for v in sorted(s)))).reset_index()
    agg["series"] = "trained"
    frame = pd.concat([agg, pd.DataFrame(ref_rows)], ignore_index=True)
    for d in SETTING_COLUMNS:
        if d != x:
            frame[d] = setting.get(d, np.nan)
    frame["n_seeds"] = frame["n_seeds"].fillna(0).astype(int)
    return frame


def _draw_final_panel(ax, panel: Panel, frame: pd.DataFrame, x: str, color, metrics, xlabel: str):
    """One panel versus ``x``: the trained runs (line and band), the code values on the GNC2 panel, the
    line at 1 on the fraction panel."""
    m = panel.metrics[0]
    ax.set_gid(m)
    part = frame[(frame["series"] == "trained") & (frame["metric"] == m)].sort_values(x)
    if len(part):
        plot_with_band(ax, part[x].to_numpy(float), part, color, "n_seeds", marker="o")
    if m == "gnc2":
        ref = frame[frame["series"] == "softmax code"].sort_values(x)
        if len(ref):
            ax.plot(ref[x].to_numpy(float), ref["value"].to_numpy(float), marker="s", markersize=5,
                    **REF_STYLE["softmax code"])
    if m == "gnc2_fraction":
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0)
    _format_axis(ax, panel, metrics, xlabel)
    ax.set_xticks(sorted(frame[x].dropna().unique()))


def _final_handles(frame: pd.DataFrame, setting: Mapping, color) -> list:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color, marker="o", label=f"trained ({setting.get('arch')})")]
    if (frame["series"] == "softmax code").any():
        handles.append(Line2D([], [], marker="s", label=REF_LABELS["softmax code"], **REF_STYLE["softmax code"]))
    if (frame["n_seeds"] > 1).any():
        handles.append(band_handle("min–max over seeds"))
    return handles


def fig_k_sweep(metrics, codes=None, **options):
    """GNC1, GNC2 (+ softmax-code value of each (d, K)), GNC3 and test accuracy at the last checkpoint vs K."""
    return _final_figure("k_sweep", metrics, codes, x="K", panels=GNC_PANELS, **options)


def fig_d_sweep(metrics, codes=None, **options):
    """GNC2 (+ softmax-code value of each (d, K)), GNC2 / code value and test accuracy at the last checkpoint
    vs d."""
    panels = (GNC_PANELS[1], Panel("fraction of the softmax-code value", (("gnc2_fraction", "-", ""),),
                                   ylabel="GNC2 / softmax-code value"), GNC_PANELS[3])
    return _final_figure("d_sweep", metrics, codes, x="d", panels=panels, **options)
