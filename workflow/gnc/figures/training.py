"""Figures drawn from ``results/metrics.nc`` (training curves) and the codes they are compared with.

fig_tau_sweep, fig_arch_comparison  GNC1 / GNC2 / GNC3 / test accuracy vs epoch (hue τ / arch)
fig_d_sweep                         final-epoch GNC2 vs d, with the softmax-code values
fig_cmf                             train (solid) / test (dashed) accuracy per classifier variant
fig_ncc                             NCC train (solid) / test (dashed) accuracy vs epoch

Seeds are averaged: a line is the mean over the seeds that have the point, a band their min–max.
The returned frame holds one row per plotted point (``series`` = "trained" for curves, or the
reference line it belongs to) with the coordinates of the netCDF cell(s) it was drawn from.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from ._common import (ACCURACY_VARS, DIM_NAMES, PANEL_TITLES, SETTING_DIMS, add_figure_legend, annotate_missing, as_list,
                      axis_label, finish_frame, fmt_coords, fmt_value, long_frame, merge_missing, new_figure,
                      no_data_figure, py, reduce_extra, select, source_records)
from ._style import Style, rc_params

CURVE_COLUMNS = ["series", "metric", *SETTING_DIMS, "epoch", "value", "lower", "upper", "n_seeds"]
LOG_METRICS = {"gnc1", "gnc3", "gnc3_uncentered", "nc1"}
FOUR_PANELS = ("gnc1", "gnc2", "gnc3", "test_acc")


# ----------------------------------------------------------------------------- data preparation

def _default_value(has, dim: str, preferred=None):
    """The value of ``dim`` with the most data (``preferred`` wins when it has data)."""
    other = [d for d in has.dims if d != dim]
    counts = has.sum(dim=other) if other else has
    vals = list(has[dim].values)
    if preferred is not None:
        for pref in as_list(preferred):
            for i, v in enumerate(vals):
                if str(v) == str(pref) and counts.values[i] > 0:
                    return i
    if counts.values.max(initial=0) <= 0:
        return None
    return int(np.argmax(counts.values))


def _curves_data(metrics, names: Sequence[str], *, hue: str, facet_dims: Sequence[str], fixed: dict,
                 sel: dict, min_hue: int = 2, max_facets: int = 6, hue_descending: bool = False):
    """Select, aggregate over seeds and list missing grid points for curve figures.

    Returns None when none of ``names`` has any data in the selection, else a dict with
    frame (trained rows), facets (list of {dim: value}), hue_levels, seeds, missing, notes, selection.
    """
    names = [n for n in names if metrics is not None and n in metrics.data_vars]
    if not names:
        return None
    sub, absent = select(metrics[names], **sel)
    if any(sub.sizes[d] == 0 for d in sub.dims) or "epoch" not in sub.dims:
        return None
    if "seed" not in sub.dims:  # a study without a seed dimension: one implicit seed
        sub = sub.expand_dims(seed=[0], axis=-2)
    da = sub.to_array("metric")
    has = da.notnull()
    if not bool(has.any()):
        return None
    notes: list[str] = []
    selection: dict = {}
    # fixed dims: one value each
    for dim, preferred in fixed.items():
        if dim not in da.dims:
            continue
        if da.sizes[dim] > 1:
            i = _default_value(has, dim, preferred)
            if i is None:
                return None
            others = [py(v) for j, v in enumerate(da[dim].values) if j != i and bool(has.isel({dim: j}).any())]
            if others:
                notes.append(f"Other {DIM_NAMES.get(dim, dim)}s with data, not shown: "
                             f"{', '.join(fmt_value(dim, o) for o in others)}")
            da = da.isel({dim: [i]})
            has = has.isel({dim: [i]})
        selection[dim] = py(da[dim].values[0])
    facet_dims = [d for d in facet_dims if d in da.dims]
    reduce_dims = [d for d in da.dims if d not in facet_dims]
    present = has.any(dim=reduce_dims).transpose(*facet_dims)
    hue_has = has.any(dim=[d for d in da.dims if d not in facet_dims and d != hue]).transpose(*facet_dims, hue)
    n_hue = hue_has.sum(dim=hue).transpose(*facet_dims)
    combos = [tuple(int(i) for i in ix) for ix in np.argwhere(present.values)] if facet_dims else [()]
    if not combos:
        return None
    counts = {c: int(n_hue.values[c]) if facet_dims else int(n_hue.values) for c in combos}
    need = min(min_hue, max(counts.values()))
    dropped = [c for c in combos if counts[c] < need]
    combos = [c for c in combos if counts[c] >= need]
    if dropped:
        notes.append(f"{len(dropped)} setting(s) with a single {DIM_NAMES.get(hue, hue)} not shown")
    if len(combos) > max_facets:
        notes.append(f"only the first {max_facets} of {len(combos)} settings shown (select explicitly for others)")
        combos = combos[:max_facets]
    facets = []
    for c in combos:
        rec = {d: py(da[d].values[i]) for d, i in zip(facet_dims, c)}
        facets.append({"coords": rec, "index": dict(zip(facet_dims, c))})
    # hue levels with data in a kept facet
    hue_keep = np.zeros(da.sizes[hue], dtype=bool)
    for f in facets:
        hue_keep |= hue_has.isel(f["index"]).values.reshape(-1) if f["index"] else hue_has.values.reshape(-1)
    hue_idx = list(np.flatnonzero(hue_keep))
    hue_levels = [py(da[hue].values[i]) for i in hue_idx]
    if hue_descending:
        order = sorted(range(len(hue_levels)), key=lambda j: -float(hue_levels[j]))
        hue_idx = [hue_idx[j] for j in order]
        hue_levels = [hue_levels[j] for j in order]
    da = da.isel({hue: hue_idx})
    has = has.isel({hue: hue_idx})
    # seeds with data in kept facets
    seeds_all = list(da["seed"].values) if "seed" in da.dims else []
    seed_keep = np.zeros(len(seeds_all), dtype=bool)
    for f in facets:
        h = has.isel(f["index"]) if f["index"] else has
        if "seed" in h.dims:
            seed_keep |= h.any(dim=[d for d in h.dims if d != "seed"]).values
    seeds = [py(s) for s, k in zip(seeds_all, seed_keep) if k]
    if "seed" in da.dims:
        da = da.isel(seed=list(np.flatnonzero(seed_keep)))
        has = has.isel(seed=list(np.flatnonzero(seed_keep)))

    # aggregate over seeds (one row per plotted point)
    rows = []
    missing: list[dict] = []
    for dim, vals in absent.items():
        for v in vals:
            missing.append({dim: v, "metrics": "all", "what": "not in the results"})
    for f in facets:
        part = da.isel(f["index"]) if f["index"] else da
        hpart = has.isel(f["index"]) if f["index"] else has
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            agg = {
                "value": part.mean("seed", skipna=True),
                "lower": part.min("seed", skipna=True),
                "upper": part.max("seed", skipna=True),
                "n_seeds": hpart.sum("seed"),
            }
        import xarray as xr

        df = xr.Dataset(agg).to_dataframe().reset_index()
        df = df[df["n_seeds"] > 0]
        for d, v in f["coords"].items():
            df[d] = v
        rows.append(df)
        missing += _curve_missing(hpart, hue, f["coords"], names)
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    frame["series"] = "trained"
    for d in SETTING_DIMS:
        if d not in frame.columns:
            frame[d] = selection.get(d, np.nan)
    frame["n_seeds"] = frame["n_seeds"].astype(int)
    frame = frame[[c for c in CURVE_COLUMNS if c in frame.columns]]
    frame = frame.sort_values(["metric", *[d for d in facet_dims], hue, "epoch"], key=None).reset_index(drop=True)
    return {"frame": frame, "facets": [f["coords"] for f in facets], "hue_levels": hue_levels, "seeds": seeds,
            "missing": merge_missing(missing), "notes": notes, "selection": selection, "names": names,
            "facet_dims": facet_dims}


def _curve_missing(h, hue: str, facet: dict, names: Sequence[str]) -> list[dict]:
    """Missing (hue, seed) curves / epochs inside one facet; ``h`` is the boolean has-data array."""
    out = []
    other_fixed = [d for d in h.dims if d not in ("metric", hue, "seed", "epoch")]
    if other_fixed:
        h = h.any(dim=other_fixed)
    ref = h.any(dim=[hue, "seed"])  # (metric, epoch): epochs that exist for this facet
    epochs = h["epoch"].values
    metric_names = [str(m) for m in h["metric"].values]
    rv_all = ref.transpose("metric", "epoch").values
    for mi, m in enumerate(metric_names):  # a metric with no value at all in this setting
        if not rv_all[mi].any():
            out.append({**facet, "metrics": [m], "what": "no data in this setting"})
    for hv in h[hue].values:
        for sv in h["seed"].values:
            cur = h.sel({hue: hv, "seed": sv}).transpose("metric", "epoch").values
            rv = ref.transpose("metric", "epoch").values
            miss = rv & ~cur
            if not miss.any():
                continue
            base = {**facet, hue: py(hv), "seed": py(sv)}
            if not cur.any():
                out.append({**base, "metrics": "all", "what": "no data"})
                continue
            by_epochs: dict[tuple, list[str]] = {}
            for mi, m in enumerate(metric_names):
                if not miss[mi].any():
                    continue
                if not cur[mi].any():
                    by_epochs.setdefault(("all",), []).append(m)
                else:
                    by_epochs.setdefault(tuple(int(e) for e in epochs[miss[mi]]), []).append(m)
            for key, ms in by_epochs.items():
                rec = {**base, "metrics": ms}
                if key == ("all",):
                    rec["what"] = "no data"
                else:
                    rec["epochs"] = list(key)
                out.append(rec)
    return out


def _code_reference(codes, var: str, d, K):
    """A code value at (d, K) (max over any extra run dims), or None."""
    if codes is None or var not in getattr(codes, "data_vars", {}):
        return None
    da = codes[var]
    if "d" not in da.dims or "K" not in da.dims:
        return None
    sub, absent = select(da.to_dataset(name=var), d=[d], K=[K])
    if absent:
        return None
    val, _ = reduce_extra(sub[var].isel(d=0, K=0, drop=True), keep=())
    v = float(val.values) if val.size == 1 else float("nan")
    return None if math.isnan(v) else v


# ----------------------------------------------------------------------------- drawing helpers

def _hue_color(style: Style, hue: str, level):
    try:
        return style.color(hue, level)
    except KeyError:
        return None


def _plot_series(ax, part: pd.DataFrame, color, *, linestyle="-", label=None, marker=True):
    part = part.sort_values("epoch")
    x = part["epoch"].to_numpy(dtype=float)
    y = part["value"].to_numpy(dtype=float)
    mk = "o" if (marker and len(x) <= 25) else None
    ax.plot(x, y, color=color, linestyle=linestyle, marker=mk, markersize=3.5, label=label)
    if (part["n_seeds"] > 1).any():
        ax.fill_between(x, part["lower"].to_numpy(float), part["upper"].to_numpy(float), color=color, alpha=0.18,
                        linewidth=0)


def _format_metric_axis(ax, metric: str, ds):
    pct = metric in ACCURACY_VARS
    ax.set_ylabel(axis_label(metric, ds, percent=pct))
    ax.set_xlabel("epoch")
    if metric in LOG_METRICS:
        ax.set_yscale("log")
    if pct:
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        ax.set_ylim(-0.02, 1.02)


def _facet_text(facet: dict) -> str:
    return fmt_coords(facet)


def _legend_handles(style: Style, hue: str, levels, extra=()):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_hue_color(style, hue, lv), lw=2, label=style.label(hue, lv)) for lv in levels]
    return handles + list(extra)


# ----------------------------------------------------------------------------- fig 1 / fig 2

def _metric_grid_figure(kind: str, metrics, codes, *, hue: str, facet_dims, fixed, sel, style, names=FOUR_PANELS,
                        hue_descending=False, max_facets=6):
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    sources = source_records(metrics, codes)
    style = style or Style.from_datasets(metrics, codes)
    data = _curves_data(metrics, names, hue=hue, facet_dims=facet_dims, fixed=fixed, sel=sel,
                        hue_descending=hue_descending, max_facets=max_facets)
    if data is None:
        return no_data_figure(kind, f"none of {', '.join(names)} has values in metrics.nc for this selection",
                              CURVE_COLUMNS, sources=sources, selection={k: v for k, v in sel.items() if v is not None})
    frame = data["frame"]
    missing = list(data["missing"])
    notes = list(data["notes"])
    facets = data["facets"]
    panel_names = [n for n in names if n in data["names"]]
    ref_rows = []
    ref_handles = []
    with mpl.rc_context(rc_params()):
        fig, axes = new_figure(len(facets), len(panel_names), extra_w=1.6)
        for r, facet in enumerate(facets):
            fsel = frame
            for dcol, v in facet.items():
                fsel = fsel[_eq(fsel[dcol], v)]
            for c, metric in enumerate(panel_names):
                ax = axes[r, c]
                ax.set_gid(f"{metric}|{r}")
                msel = fsel[fsel["metric"] == metric]
                for lv in data["hue_levels"]:
                    part = msel[_eq(msel[hue], lv)]
                    if len(part):
                        _plot_series(ax, part, _hue_color(style, hue, lv), label=style.label(hue, lv))
                if metric == "gnc2":
                    refs = _gnc2_refs(codes, facet, data["selection"], missing)
                    for rrow in refs:
                        ax.axhline(rrow["value"], **REF_STYLE[rrow["series"]])
                        ref_rows.append(rrow)
                _format_metric_axis(ax, metric, metrics)
                title = PANEL_TITLES.get(metric, metric)
                ax.set_title(title if len(facets) == 1 else f"{title}\n{_facet_text(facet)}")
        used = {r["series"] for r in ref_rows}
        for series in ("softmax code", "paper 'Optimal'"):
            if series in used:
                ref_handles.append(Line2D([], [], label=REF_LABELS[series], **REF_STYLE[series]))
        if frame["n_seeds"].max() > 1:
            from matplotlib.patches import Patch

            ref_handles.append(Patch(color="0.6", alpha=0.35, label="min–max over seeds"))
        add_figure_legend(fig, _legend_handles(style, hue, data["hue_levels"], ref_handles),
                          title={"tau": "temperature", "arch": "architecture"}.get(hue, hue))
        fig.suptitle(_suptitle(kind, facets, data), fontsize=13)
        annotate_missing(fig, missing)
    if ref_rows:
        frame = pd.concat([frame, pd.DataFrame(ref_rows)], ignore_index=True)
    frame = frame[[c for c in CURVE_COLUMNS if c in frame.columns]]
    frame = finish_frame(frame, kind, missing=missing, selection=data["selection"], seeds=data["seeds"],
                         notes=notes, sources=sources)
    return fig, frame


REF_STYLE = {
    "softmax code": dict(color="black", linestyle="--", linewidth=1.4),
    "paper 'Optimal'": dict(color="0.45", linestyle=":", linewidth=1.6),
}
REF_LABELS = {
    "softmax code": "best softmax code found (ours)",
    "paper 'Optimal'": "paper's 'Optimal' line",
}


def _gnc2_refs(codes, facet: dict, selection: dict, missing: list) -> list[dict]:
    d = facet.get("d", selection.get("d"))
    K = facet.get("K", selection.get("K"))
    if d is None or K is None:
        return []
    out = []
    base = {dim: facet.get(dim, selection.get(dim, np.nan)) for dim in SETTING_DIMS}
    # a reference line does not depend on the hue dimension (tau / arch) or the variant
    sm = _code_reference(codes, "softmax_value", d, K)
    if sm is None:
        missing.append({"d": py(d), "K": py(K), "metrics": ["softmax_value"],
                        "what": "softmax-code value not in codes.nc" if codes is not None else "codes.nc not given"})
    else:
        out.append({**base, "series": "softmax code", "metric": "gnc2", "value": sm, "lower": sm, "upper": sm,
                    "n_seeds": 0, "epoch": np.nan})
    po = _code_reference(codes, "paper_optimal", d, K)
    if po is not None:
        out.append({**base, "series": "paper 'Optimal'", "metric": "gnc2", "value": po, "lower": po, "upper": po,
                    "n_seeds": 0, "epoch": np.nan})
    return out


def _eq(series: pd.Series, value) -> pd.Series:
    if isinstance(value, float) or series.dtype.kind == "f":
        try:
            return np.isclose(series.astype(float), float(value), rtol=1e-9, atol=0.0)
        except (TypeError, ValueError):
            pass
    return series.astype(str) == str(value)


def _suptitle(kind: str, facets, data) -> str:
    from ._common import FIGURE_TITLES

    parts = [FIGURE_TITLES.get(kind, kind)]
    common = {}
    if facets:
        for dim in facets[0]:
            vals = {str(f[dim]) for f in facets}
            if len(vals) == 1:
                common[dim] = facets[0][dim]
    common.update({k: v for k, v in data["selection"].items()})
    if common:
        parts.append(fmt_coords(common))
    seeds = data["seeds"]
    if len(seeds) > 1:
        parts.append(f"mean of seeds {', '.join(str(s) for s in seeds)}")
    elif seeds:
        parts.append(f"seed {seeds[0]}")
    return " — ".join(parts[:1]) + (": " + "; ".join(parts[1:]) if len(parts) > 1 else "")


def fig_tau_sweep(metrics, codes=None, *, variant=None, dataset=None, arch=None, d=None, K=None, taus=None,
                  seeds=None, epochs=None, style: Style | None = None, max_facets: int = 6):
    """Fig. 1 — GNC1 (log), GNC2 (+ softmax-code / paper lines), GNC3 (log), test accuracy vs epoch, one line
    per τ; one row of panels per (dataset, arch, d, K) setting that has ≥ 2 temperatures.

    ``variant`` defaults to "normalized-ce" (else the variant with most data). Any argument may be a
    value or a list; None = every value with data."""
    sel = dict(variant=variant, dataset=dataset, arch=arch, d=d, K=K, tau=taus, seed=seeds, epoch=epochs)
    return _metric_grid_figure("tau_sweep", metrics, codes, hue="tau", facet_dims=("dataset", "arch", "d", "K"),
                               fixed={"variant": "normalized-ce"}, sel=sel, style=style, hue_descending=True,
                               max_facets=max_facets)


def fig_arch_comparison(metrics, codes=None, *, variant=None, dataset=None, archs=None, tau=None, d=None, K=None,
                        seeds=None, epochs=None, style: Style | None = None, max_facets: int = 6):
    """Fig. 2 — the same four panels as :func:`fig_tau_sweep` with one line per architecture; one row per
    (dataset, τ, d, K) setting that has ≥ 2 architectures."""
    sel = dict(variant=variant, dataset=dataset, arch=archs, tau=tau, d=d, K=K, seed=seeds, epoch=epochs)
    return _metric_grid_figure("arch_comparison", metrics, codes, hue="arch",
                               facet_dims=("dataset", "tau", "d", "K"), fixed={"variant": "normalized-ce"}, sel=sel,
                               style=style, max_facets=max_facets)


# ----------------------------------------------------------------------------- fig 4 / fig 5

def _styled_panels_figure(kind: str, metrics, *, names, hue: str, facet_dims, fixed, sel, style, max_facets=6,
                          linestyles=("-", "--"), style_labels=("train", "test")):
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    sources = source_records(metrics)
    style = style or Style.from_datasets(metrics)
    data = _curves_data(metrics, names, hue=hue, facet_dims=facet_dims, fixed=fixed, sel=sel,
                        hue_descending=(hue == "tau"), max_facets=max_facets)
    if data is None:
        return no_data_figure(kind, f"none of {', '.join(names)} has values in metrics.nc for this selection",
                              CURVE_COLUMNS, sources=sources, selection={k: v for k, v in sel.items() if v is not None})
    frame = data["frame"]
    facets = data["facets"]
    n = len(facets)
    ncols = min(3, n)
    nrows = int(math.ceil(n / ncols))
    with mpl.rc_context(rc_params()):
        fig, axes = new_figure(nrows, ncols, panel_w=3.8, panel_h=3.0, extra_w=1.8)
        for i, facet in enumerate(facets):
            ax = axes[i // ncols, i % ncols]
            ax.set_gid(f"panel|{i}")
            fsel = frame
            for dcol, v in facet.items():
                fsel = fsel[_eq(fsel[dcol], v)]
            for metric, ls in zip(names, linestyles):
                msel = fsel[fsel["metric"] == metric]
                for lv in data["hue_levels"]:
                    part = msel[_eq(msel[hue], lv)]
                    if len(part):
                        _plot_series(ax, part, _hue_color(style, hue, lv), linestyle=ls)
            ax.set_xlabel("epoch")
            ax.set_ylabel("accuracy [%]")
            from matplotlib.ticker import PercentFormatter

            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(_facet_text(facet) or FIGURE_TITLE(kind))
        for j in range(n, nrows * ncols):
            axes[j // ncols, j % ncols].set_axis_off()
        extra = [Line2D([], [], color="0.3", linestyle=ls, label=lab) for ls, lab in zip(linestyles, style_labels)]
        if frame["n_seeds"].max() > 1:
            from matplotlib.patches import Patch

            extra.append(Patch(color="0.6", alpha=0.35, label="min–max over seeds"))
        add_figure_legend(fig, _legend_handles(style, hue, data["hue_levels"], extra),
                          title={"tau": "temperature", "arch": "architecture", "variant": "classifier"}.get(hue, hue))
        fig.suptitle(_suptitle(kind, facets, data), fontsize=13)
        annotate_missing(fig, data["missing"])
    frame = finish_frame(frame, kind, missing=data["missing"], selection=data["selection"], seeds=data["seeds"],
                         notes=data["notes"], sources=sources)
    return fig, frame


def FIGURE_TITLE(kind):
    from ._common import FIGURE_TITLES

    return FIGURE_TITLES.get(kind, kind)


def fig_cmf(metrics, *, variants=None, dataset=None, arch=None, tau=None, d=None, K=None, seeds=None, epochs=None,
            style: Style | None = None, max_facets: int = 6):
    """Fig. 4 — CMF vs learnable classifier: train (solid) and test (dashed) accuracy vs epoch, one colour per
    variant, one panel per (dataset, arch, τ, d, K) setting that has ≥ 2 variants."""
    sel = dict(variant=variants, dataset=dataset, arch=arch, tau=tau, d=d, K=K, seed=seeds, epoch=epochs)
    return _styled_panels_figure("cmf", metrics, names=("train_acc", "test_acc"), hue="variant",
                                 facet_dims=("dataset", "arch", "tau", "d", "K"), fixed={}, sel=sel, style=style,
                                 max_facets=max_facets)


def fig_ncc(metrics, *, hue: str = "arch", variant=None, dataset=None, arch=None, tau=None, d=None, K=None,
            seeds=None, epochs=None, style: Style | None = None, max_facets: int = 6):
    """Fig. 5 — nearest-class-centre accuracy, train (solid) and test (dashed) vs epoch; one colour per
    ``hue`` ("arch" or "tau"), one panel per remaining setting."""
    if hue not in ("arch", "tau", "variant", "dataset"):
        raise ValueError(f"hue must be arch, tau, variant or dataset, not {hue!r}")
    sel = dict(variant=variant, dataset=dataset, arch=arch, tau=tau, d=d, K=K, seed=seeds, epoch=epochs)
    facet_dims = [x for x in ("dataset", "arch", "tau", "d", "K") if x != hue]
    fixed = {} if hue == "variant" else {"variant": "normalized-ce"}
    return _styled_panels_figure("ncc", metrics, names=("ncc_train_acc", "ncc_test_acc"), hue=hue,
                                 facet_dims=facet_dims, fixed=fixed, sel=sel, style=style, max_facets=max_facets,
                                 style_labels=("NCC train", "NCC test"))


# ----------------------------------------------------------------------------- fig 3

D_SWEEP_COLUMNS = ["series", "metric", *SETTING_DIMS, "epoch", "value", "lower", "upper", "n_seeds"]


def fig_d_sweep(metrics, codes=None, *, variant=None, dataset=None, archs=None, tau=None, d=None, K=None,
                seeds=None, style: Style | None = None, max_facets: int = 4):
    """Fig. 3 — GNC2 at the final epoch vs d (left, with the softmax-code value of each (d, K) and the
    paper's line where known) and the fraction GNC2 / softmax-code value (right). One colour per
    architecture, one row per (dataset, τ, K) setting with ≥ 2 values of d. The final epoch of a setting
    is the last epoch where any seed has GNC2; lines are the mean over seeds at that epoch."""
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    sources = source_records(metrics, codes)
    style = style or Style.from_datasets(metrics, codes)
    sel = dict(variant=variant, dataset=dataset, arch=archs, tau=tau, K=K, d=d, seed=seeds)
    if metrics is None or "gnc2" not in metrics.data_vars or "epoch" not in metrics["gnc2"].dims:
        return no_data_figure("d_sweep", "metrics.nc has no gnc2 variable", D_SWEEP_COLUMNS, sources=sources)
    sub, absent = select(metrics[["gnc2"]], **sel)
    if "seed" not in sub.dims:
        sub = sub.expand_dims(seed=[0])
    da = sub["gnc2"]
    has = da.notnull()
    if da.size == 0 or not bool(has.any()):
        return no_data_figure("d_sweep", "no GNC2 values for this selection", D_SWEEP_COLUMNS, sources=sources,
                              selection={k: v for k, v in sel.items() if v is not None})
    notes: list[str] = []
    selection: dict = {}
    if da.sizes["variant"] > 1:
        i = _default_value(has, "variant", "normalized-ce")
        da = da.isel(variant=[i])
        has = has.isel(variant=[i])
    selection["variant"] = py(da["variant"].values[0])
    # last epoch with data per setting (any seed)
    long = long_frame(da)
    setting = ["variant", "dataset", "arch", "tau", "d", "K"]
    last = long.groupby(setting, dropna=False)["epoch"].max().rename("final_epoch").reset_index()
    long = long.merge(last, on=setting)
    at_final = long[long["epoch"] == long["final_epoch"]]
    agg = at_final.groupby(setting + ["epoch"], dropna=False)["value"].agg(["mean", "min", "max", "count"]).reset_index()
    agg = agg.rename(columns={"mean": "value", "min": "lower", "max": "upper", "count": "n_seeds"})
    # facets: (dataset, tau, K) with >= 2 d values (if any has)
    facet_dims = ["dataset", "tau", "K"]
    nd = agg.groupby(facet_dims)["d"].nunique().reset_index()
    need = min(2, int(nd["d"].max()))
    kept = nd[nd["d"] >= need]
    if len(kept) < len(nd):
        notes.append(f"{len(nd) - len(kept)} setting(s) with a single d not shown")
    if len(kept) > max_facets:
        notes.append(f"only the first {max_facets} of {len(kept)} settings shown")
        kept = kept.iloc[:max_facets]
    agg = agg.merge(kept[facet_dims], on=facet_dims)
    agg["series"] = "trained"
    agg["metric"] = "gnc2"
    missing: list[dict] = [{dim: v, "metrics": "all", "what": "not in the results"}
                           for dim, vals in absent.items() for v in vals]
    # seeds lacking the final epoch
    all_seeds = sorted(long["seed"].unique().tolist())
    for key, grp in at_final.groupby(setting + ["epoch"], dropna=False):
        rec = dict(zip(setting + ["epoch"], key))
        if not _row_in(kept, rec, facet_dims):
            continue
        for s in all_seeds:
            if s not in set(grp["seed"].tolist()):
                missing.append({**{k: py(rec[k]) for k in ("dataset", "arch", "tau", "d", "K")}, "seed": py(s),
                                "metrics": ["gnc2"], "epochs": [int(rec["epoch"])]})
    # (arch, d) combinations absent within a kept facet
    for _, f in kept.iterrows():
        fa = agg[(agg["dataset"] == f["dataset"]) & np.isclose(agg["tau"], f["tau"]) & (agg["K"] == f["K"])]
        for a in sorted(fa["arch"].unique()):
            for dval in sorted(fa["d"].unique()):
                if not ((fa["arch"] == a) & (fa["d"] == dval)).any():
                    missing.append({"dataset": py(f["dataset"]), "arch": py(a), "tau": py(f["tau"]), "d": py(dval),
                                    "K": py(f["K"]), "metrics": ["gnc2"], "what": "no data"})
    # references and fractions
    ref_rows = []
    frac_rows = []
    for _, f in kept.iterrows():
        fa = agg[(agg["dataset"] == f["dataset"]) & np.isclose(agg["tau"], f["tau"]) & (agg["K"] == f["K"])]
        for dval in sorted(fa["d"].unique()):
            base = {"variant": selection["variant"], "dataset": f["dataset"], "arch": np.nan, "tau": f["tau"],
                    "d": dval, "K": f["K"], "epoch": np.nan, "n_seeds": 0}
            sm = _code_reference(codes, "softmax_value", dval, f["K"])
            if sm is None:
                missing.append({"d": py(dval), "K": py(f["K"]), "metrics": ["softmax_value"],
                                "what": "softmax-code value not in codes.nc" if codes is not None else "codes.nc not given"})
            else:
                ref_rows.append({**base, "series": "softmax code", "metric": "gnc2", "value": sm, "lower": sm,
                                 "upper": sm})
                for _, r in fa[fa["d"] == dval].iterrows():
                    frac_rows.append({**r.to_dict(), "series": "trained", "metric": "gnc2_fraction",
                                      "value": r["value"] / sm, "lower": r["lower"] / sm, "upper": r["upper"] / sm})
            po = _code_reference(codes, "paper_optimal", dval, f["K"])
            if po is not None:
                ref_rows.append({**base, "series": "paper 'Optimal'", "metric": "gnc2", "value": po, "lower": po,
                                 "upper": po})
    frame = pd.concat([agg, pd.DataFrame(ref_rows), pd.DataFrame(frac_rows)], ignore_index=True)
    frame = frame[[c for c in D_SWEEP_COLUMNS if c in frame.columns]]
    frame["n_seeds"] = frame["n_seeds"].astype(int)
    seeds_used = sorted(at_final["seed"].unique().tolist())
    archs_all = sorted(agg["arch"].unique().tolist())
    with mpl.rc_context(rc_params()):
        fig, axes = new_figure(len(kept), 2, panel_w=4.0, panel_h=3.0, extra_w=1.8)
        for r, (_, f) in enumerate(kept.iterrows()):
            fsel = frame[(frame["dataset"] == f["dataset"]) & np.isclose(frame["tau"].astype(float), f["tau"])
                         & (frame["K"] == f["K"])]
            ax, axf = axes[r, 0], axes[r, 1]
            ax.set_gid(f"gnc2|{r}")
            axf.set_gid(f"gnc2_fraction|{r}")
            for a in archs_all:
                col = style.arch_color(a)
                for metric, target in (("gnc2", ax), ("gnc2_fraction", axf)):
                    part = fsel[(fsel["series"] == "trained") & (fsel["metric"] == metric) & (fsel["arch"] == a)]
                    part = part.sort_values("d")
                    if len(part):
                        x = part["d"].to_numpy(float)
                        target.plot(x, part["value"].to_numpy(float), color=col, marker="o")
                        if (part["n_seeds"] > 1).any():
                            target.fill_between(x, part["lower"].to_numpy(float), part["upper"].to_numpy(float),
                                                color=col, alpha=0.18, linewidth=0)
            for series, mk in (("softmax code", "s"), ("paper 'Optimal'", "x")):
                part = fsel[fsel["series"] == series].sort_values("d")
                if len(part):
                    st = dict(REF_STYLE[series])
                    ax.plot(part["d"].to_numpy(float), part["value"].to_numpy(float), marker=mk, **st)
            axf.axhline(1.0, color="black", linestyle="--", linewidth=1.0)
            ax.set_xlabel("feature dimension d")
            axf.set_xlabel("feature dimension d")
            ax.set_ylabel(axis_label("gnc2", metrics) + " (final epoch)")
            axf.set_ylabel("GNC2 / softmax-code value")
            facet_text = fmt_coords({"dataset": f["dataset"], "tau": f["tau"], "K": f["K"]})
            ax.set_title(f"GNC2 at the final epoch\n{facet_text}")
            axf.set_title(f"fraction of the softmax-code value\n{facet_text}")
            dvals = sorted(fsel["d"].dropna().unique())
            for a_ in (ax, axf):
                a_.set_xticks(dvals)
        handles = [Line2D([], [], color=style.arch_color(a), marker="o", label=str(a)) for a in archs_all]
        for series, mk in (("softmax code", "s"), ("paper 'Optimal'", "x")):
            if (frame["series"] == series).any():
                handles.append(Line2D([], [], marker=mk, label=REF_LABELS[series], **REF_STYLE[series]))
        add_figure_legend(fig, handles, title="architecture")
        seeds_txt = (f"mean of seeds {', '.join(str(s) for s in seeds_used)}" if len(seeds_used) > 1
                     else f"seed {seeds_used[0]}")
        fig.suptitle(f"Feature-dimension sweep: variant {selection['variant']}; {seeds_txt}", fontsize=13)
        annotate_missing(fig, missing)
    frame = finish_frame(frame, "d_sweep", missing=merge_missing(missing), selection=selection, seeds=seeds_used,
                         notes=notes, sources=sources)
    return fig, frame


def _row_in(kept: pd.DataFrame, rec: dict, dims) -> bool:
    m = np.ones(len(kept), dtype=bool)
    for d in dims:
        if d == "tau":
            m &= np.isclose(kept[d].astype(float), float(rec[d]))
        else:
            m &= (kept[d] == rec[d]).to_numpy()
    return bool(m.any())
