"""Figures drawn from ``results/codes.nc`` (fig_assignment, fig_ufm_tau, fig_codes: they show what the file
holds; the study's config selects nothing for them) and from per-checkpoint feature files (fig_sphere).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ._common import (add_figure_legend, annotate_missing, axis_label, band_handle, code_value, figure_style,
                      finish_frame, fmt_setting, merge_missing, missing_points,
                      no_data_figure, panel_grid, plot_with_band, py, reduce_extra, source_records, spread)
from ._style import Style, categorical_colors, format_tau


# ----------------------------------------------------------------------------- fig 6: assignment

ASSIGNMENT_COLUMNS = ["dataset", "arch", "seed", "k", "k2", "class_k", "class_k2", "cosine"]


def _class_names(codes, ks) -> list[str]:
    """``codes.class_name`` of the classes ``ks`` ("class k" where it has none)."""
    if "class_name" not in codes.variables:
        return [f"class {k}" for k in ks]
    cn = codes["class_name"]
    cn = cn.isel({d: 0 for d in cn.dims if d != "k"})
    names = [str(cn.values[k]) if k < cn.sizes["k"] else "" for k in ks]
    return [f"class {k}" if name in ("", "nan", "None") else name for k, name in zip(ks, names)]


def fig_assignment(codes, *, max_seeds: int = 6):
    """Fig. 6 — heatmaps of ``codes.gram`` (cosines of the trained, normalized classifier rows at the last
    epoch) of the one grid point codes.nc holds, one per seed with data (the first ``max_seeds``), labelled
    with the class names of ``codes.class_name``."""
    sources = source_records(codes)
    if codes is None or "gram" not in codes.data_vars:
        return no_data_figure("assignment", "codes.nc has no 'gram' variable (no small-K assignment runs)",
                              ASSIGNMENT_COLUMNS, sources=sources)
    g = codes["gram"]
    if g.size == 0 or not bool(g.notnull().any()):
        return no_data_figure("assignment", "no Gram matrix values for this selection", ASSIGNMENT_COLUMNS,
                              sources=sources)
    facet_dims = [d for d in g.dims if d not in ("seed", "k", "k2")]  # e.g. dataset, arch
    at = np.argwhere(g.notnull().any(dim=["seed", "k", "k2"]).transpose(*facet_dims).values)
    if len(at) > 1:
        raise ValueError(f"codes.nc: 'gram' must hold the matrices of one grid point; {len(at)} have values")
    g = g.isel(dict(zip(facet_dims, at[0])))
    facet = {d: g[d].item() for d in facet_dims}
    seed_idx = list(np.flatnonzero(g.notnull().any(dim=["k", "k2"]).values))
    notes = [f"first {max_seeds} of {len(seed_idx)} seeds shown"] if len(seed_idx) > max_seeds else []
    seed_vals = [py(g["seed"].values[i]) for i in seed_idx[:max_seeds]]
    rows = []
    with figure_style():
        # square panels sized for the largest K present (class names along both axes)
        diag = np.diagonal(g.transpose("seed", "k", "k2").values, axis1=1, axis2=2)
        kmax = int(max(1, (~np.isnan(diag)).sum(axis=-1).max()))
        panel = min(max(2.8, 0.45 * kmax + 1.4), 7.0)
        fig, axes = panel_grid(len(seed_vals), len(seed_vals), panel_w=panel, panel_h=panel, extra_w=0.3)
        for j, (si, seed) in enumerate(zip(seed_idx, seed_vals)):
            axes[j].set_gid(f"gram|0|{j}")
            m = g.isel(seed=si).transpose("k", "k2").values.astype(float)
            ks = [k for k in range(m.shape[0]) if not math.isnan(m[k, k]) or np.isfinite(m[k]).any()]
            mm, names = m[np.ix_(ks, ks)], _class_names(codes, ks)
            _draw_gram(fig, axes[j], mm, names, f"seed {seed}", first=j == 0, last=j == len(seed_vals) - 1)
            rows += [{**facet, "seed": seed, "k": ka, "k2": kb, "class_k": names[a], "class_k2": names[b],
                      "cosine": float(mm[a, b])}
                     for a, ka in enumerate(ks) for b, kb in enumerate(ks) if not math.isnan(mm[a, b])]
        fig.suptitle(_assignment_title(codes, facet, len(ks)), fontsize=12)
    frame = pd.DataFrame(rows)
    frame = frame[[c for c in ASSIGNMENT_COLUMNS if c in frame.columns]
                  + [c for c in frame.columns if c not in ASSIGNMENT_COLUMNS]]
    return fig, finish_frame(frame, "assignment", seeds=seed_vals, notes=notes, sources=sources)


def _draw_gram(fig, ax, mm: np.ndarray, names: list[str], title: str, *, first: bool, last: bool):
    """One heatmap: class names on the axes (rows on the first panel of a row only), the cosines written
    in the cells when K ≤ 10, the colour bar after the last panel of a row."""
    n = len(names)
    image = ax.imshow(mm, vmin=-1, vmax=1, cmap="RdBu_r", aspect="equal", interpolation="nearest")
    ax.grid(False)
    ax.set_xticks(range(n), names, rotation=40, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(n), names if first else [], fontsize=9)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="both", length=0)
    if n <= 10:
        for a in range(n):
            for b in range(n):
                if not math.isnan(mm[a, b]):
                    ax.text(b, a, f"{mm[a, b]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if abs(mm[a, b]) > 0.6 else "0.15")
    if last:
        fig.colorbar(image, ax=ax, shrink=0.8, label="cos(ŵ_k, ŵ_k′)")
    ax.set_title(title)


def _assignment_title(codes, facet: dict, K: int) -> str:
    """The grid point of the Gram matrices (codes.nc records it in ``gnc_assignment_setting``)."""
    recorded = json.loads(codes.attrs.get("gnc_assignment_setting", "{}"))
    setting = {**facet, **recorded}
    setting.setdefault("K", K)
    if "tau" in setting:
        setting["tau"] = float(setting["tau"])
    for key in ("d", "K"):
        if key in setting:
            setting[key] = int(setting[key])
    return f"Assignment — {fmt_setting(setting)}: cosine Gram matrix of the trained classifier (last checkpoint)"


# ----------------------------------------------------------------------------- fig 7: UFM tau -> 0

UFM_COLUMNS = ["metric", "d", "K", "tau", "value", "lower", "upper", "n"]
UFM_VARS = ("ufm_ovr", "ufm_distance_to_code", "ufm_min_angle")
UFM_PANELS = {  # metric: (title, y label or None for the variable's axis label)
    "ufm_ovr_ratio": ("one-vs-rest distance vs best code", "ρ_ovr(UFM) / ρ_ovr(softmax code)"),
    "ufm_distance_to_code": ("distance to the code", None),
    "ufm_min_angle": ("minimum angle", None),
}
#: the status marks of the ratio panel: (variable, flag value marked, legend label, marker)
UFM_MARKS = (("ufm_stuck", 1, "stuck: the start at the code reaches a lower loss",
              dict(marker="o", markersize=10, markerfacecolor="none", markeredgecolor="red")),
             ("ufm_converged", 0, "still changing after the last round", dict(marker="x", color="0.4", markersize=8)))


def fig_ufm_tau(codes):
    """Fig. 7 — the UFM τ → 0 study: ``ufm_ovr / softmax_value`` vs τ (log x, decreasing to the right;
    1 = the best softmax code), ``ufm_distance_to_code`` vs τ, and ``ufm_min_angle`` vs τ with the
    softmax code's min angle dashed. One colour per (d, K); any extra dims (e.g. seeds) are averaged
    with a min–max band.  Where ``codes.nc`` holds them, the ratio panel also shows the run started at
    the softmax code (dotted, ``ufm_probe_ovr``), τ where the continuation is stuck in a worse local
    minimum (``ufm_stuck``: red ring) and τ where it had not stopped changing (``ufm_converged`` = 0:
    grey cross).  The UFM temperature is the coordinate ``ufm_tau`` (``tau`` in the CSV)."""
    sources = source_records(codes)
    codes, names, long = _ufm_values(codes)
    if not names:
        return no_data_figure("ufm_tau", "codes.nc has no UFM variables (ufm_ovr, ufm_distance_to_code, "
                              "ufm_min_angle)", UFM_COLUMNS, sources=sources)
    if long.empty:
        return no_data_figure("ufm_tau", "no UFM values for this selection", UFM_COLUMNS, sources=sources)
    settings = sorted({(int(a), int(b)) for a, b in zip(long["d"], long["K"])})
    colors = dict(zip(settings, categorical_colors(len(settings), "Dark2")))  # evenly spaced hues past 8
    missing = missing_points(codes, names, ("tau", "d", "K"), setting_dims=("d", "K"))
    frame = _ufm_frame(codes, long, settings, missing)
    panels = [m for m in UFM_PANELS if (frame["metric"] == m).any()]
    if not panels:
        return no_data_figure("ufm_tau", "UFM values exist but none can be drawn (softmax-code values missing)",
                              UFM_COLUMNS, sources=sources)
    with figure_style():
        fig, axes = panel_grid(len(panels), panel_w=3.8, panel_h=3.1, extra_w=1.6)
        for ax, m in zip(axes, panels):
            _draw_ufm_panel(ax, m, frame, settings, colors, codes)
        add_figure_legend(fig, _ufm_handles(codes, settings, colors, frame), title="setting")
        fig.suptitle("UFM (spherical, cross-entropy) as τ → 0 versus the softmax code", fontsize=13)
        annotate_missing(fig, missing)
    frame = finish_frame(frame, "ufm_tau", missing=merge_missing(missing), sources=sources)
    return fig, frame


def _ufm_values(codes):
    """(codes.nc restricted to the UFM variables and the per-(d, K) references, its UFM temperature
    renamed ``tau``; the UFM variables present; their long frame over (tau, d, K) with ``metric``)."""
    if codes is not None and "ufm_tau" in codes.dims:
        keep = [v for v in codes.data_vars if "ufm_tau" in codes[v].dims or set(codes[v].dims) <= {"d", "K"}]
        codes = codes[keep].rename({"ufm_tau": "tau"})
    names = [v for v in UFM_VARS if codes is not None and v in codes.data_vars]
    parts = []
    for v in names:
        da = codes[v]
        if not {"tau", "d", "K"} <= set(da.dims) or da.size == 0:
            continue
        # mean and min–max over any dims but (tau, d, K), e.g. the seeds of a UFM solve
        df = spread(da, [d for d in da.dims if d not in ("tau", "d", "K")]).to_dataframe().reset_index()
        df = df[[c for c in df.columns if c in ("tau", "d", "K", "value", "lower", "upper", "n")]]
        df = df[df["n"] > 0].reset_index(drop=True)
        df["metric"] = v
        parts.append(df)
    return codes, names, pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _ufm_frame(codes, long: pd.DataFrame, settings, missing: list) -> pd.DataFrame:
    """The plotted rows: per (d, K) the UFM value relative to the softmax code (``ufm_ovr_ratio``), the
    distance and angle, and the softmax code's minimum angle; a softmax value codes.nc lacks is added to
    ``missing``."""
    rows = []
    for (dd, kk) in settings:
        sm = code_value(codes, "softmax_value", dd, kk)
        sel = long[(long["d"] == dd) & (long["K"] == kk)]
        ovr = sel[sel["metric"] == "ufm_ovr"]
        if len(ovr):
            if sm is None:
                missing.append({"d": dd, "K": kk, "metrics": ["softmax_value"],
                                "what": "softmax-code value not in codes.nc; ratio not drawn"})
            else:
                r = ovr.assign(metric="ufm_ovr_ratio")
                r[["value", "lower", "upper"]] /= sm
                rows.append(r)
        for v in ("ufm_distance_to_code", "ufm_min_angle"):
            part = sel[sel["metric"] == v]
            if len(part):
                rows.append(part)
        if (sel["metric"] == "ufm_min_angle").any():
            ang = code_value(codes, "softmax_min_angle", dd, kk)
            if ang is not None:
                rows.append(pd.DataFrame([{"metric": "softmax_min_angle", "d": dd, "K": kk, "tau": np.nan,
                                           "value": ang, "lower": ang, "upper": ang, "n": 1}]))
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=UFM_COLUMNS)
    return frame[UFM_COLUMNS].sort_values(["metric", "d", "K", "tau"]).reset_index(drop=True)


def _draw_ufm_panel(ax, m: str, frame: pd.DataFrame, settings, colors, codes):
    """One panel versus τ (log axis, decreasing): a line per (d, K); the ratio panel with the probe and
    status markers and the line at 1, the angle panel with the softmax code's angle dashed; the
    distance panel on a log axis when its values span more than a factor 50."""
    ax.set_gid(f"{m}|0")
    for s in settings:
        part = frame[(frame["metric"] == m) & (frame["d"] == s[0]) & (frame["K"] == s[1])].sort_values("tau")
        if not len(part):
            continue
        plot_with_band(ax, part["tau"].to_numpy(float), part, colors[s], "n", marker="o")
        if m == "ufm_ovr_ratio":
            _ufm_status_marks(ax, codes, s, colors[s])
        if m == "ufm_min_angle":
            ref = frame[(frame["metric"] == "softmax_min_angle") & (frame["d"] == s[0]) & (frame["K"] == s[1])]
            if len(ref):
                ax.axhline(float(ref["value"].iloc[0]), color=colors[s], linestyle="--", linewidth=1.2)
    title, ylabel = UFM_PANELS[m]
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("temperature τ (log scale, → 0)")
    ax.set_ylabel(ylabel or axis_label(m, codes))
    ax.set_title(title)
    if m == "ufm_ovr_ratio":
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0)
    if m == "ufm_distance_to_code":
        vals = frame.loc[frame["metric"] == m, "value"]
        if len(vals) and (vals > 0).all() and vals.max() / max(vals.min(), 1e-300) > 50:
            ax.set_yscale("log")


def _ufm_handles(codes, settings, colors, frame: pd.DataFrame) -> list:
    """Legend: a colour per (d, K), the softmax-code line and whichever status marks codes.nc has."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[s], marker="o", label=f"d = {s[0]}, K = {s[1]}") for s in settings]
    handles.append(Line2D([], [], color="black", linestyle="--", label="softmax code (best found)"))
    if "ufm_probe_ovr" in codes.data_vars:
        handles.append(Line2D([], [], color="0.3", linestyle=":", label="UFM started at the softmax code"))
    handles += [Line2D([], [], linestyle="none", label=label, **mark)
                for var, _, label, mark in UFM_MARKS if var in codes.data_vars]
    if (frame["n"] > 1).any():
        handles.append(band_handle("min–max over runs"))
    return handles


def _ufm_status_marks(ax, codes, setting, color):
    """Probe curve and stuck / not-converged markers of one (d, K) on the ratio panel."""
    sm = code_value(codes, "softmax_value", *setting)
    if sm is None:
        return
    at = {"d": setting[0], "K": setting[1]}
    if "ufm_probe_ovr" in codes.data_vars:
        pr = codes["ufm_probe_ovr"].sel(at).dropna("tau")
        ax.plot(pr["tau"].values, pr.values / sm, color=color, linestyle=":", linewidth=1.2)
    ratio = codes["ufm_ovr"].sel(at) / sm
    for var, bad, _, mark in UFM_MARKS:
        if var in codes.data_vars:
            pts = ratio.where(codes[var].sel(at) == bad).dropna("tau")
            ax.plot(pts["tau"].values, pts.values, linestyle="none", **mark)



# ----------------------------------------------------------------------------- fig 8: codes vs Tammes

CODES_COLUMNS = ["metric", "d", "K", "value", "differs", "verdict"]
CODE_VARS = ("softmax_value", "tammes_ovr", "softmax_min_angle", "tammes_angle")
CODES_PANELS = (  # (name, metrics, title, y label or None for the variable's axis label)
    ("ovr", ("softmax_value", "tammes_ovr"), "ρ_ovr: softmax code vs Tammes code", "one-vs-rest distance ρ_ovr"),
    ("gain", ("ovr_gain",), "gain of the softmax code", "ρ_ovr(softmax) − ρ_ovr(Tammes)"),
    ("angle", ("softmax_min_angle", "tammes_angle"), "minimum angle between code vectors", None))


#: marker of each verdict on the gain panel
VERDICT_MARKERS = {"same": dict(marker="o", markersize=10, markerfacecolor="none", markeredgecolor="black"),
                   "differ": dict(marker="D", markersize=8, color="black"),
                   "undecided": dict(marker="s", markersize=9, markerfacecolor="none", markeredgecolor="0.45")}


def _verdicts(codes) -> dict:
    """{(d, K): "same" | "differ" | "undecided"} from ``codes.verdict`` (flag values), {} when absent."""
    if codes is None or "verdict" not in codes.data_vars:
        return {}
    v = codes["verdict"]
    meanings = str(v.attrs.get("flag_meanings", "")).split()
    flags = v.transpose("d", "K").values
    return {(int(v["d"].values[i]), int(v["K"].values[j])): meanings[int(flags[i, j])]
            for i, j in np.argwhere(np.isfinite(flags)) if 0 <= int(flags[i, j]) < len(meanings)}


def fig_codes(codes, *, tol: float = 1e-3, style: Style | None = None):
    """Fig. 8 — best softmax code vs best Tammes code as functions of K, one colour per d: ρ_ovr of both
    (solid softmax code, dashed Tammes drawn on top, so it shows where the two coincide; × the paper's
    line), the gain ``softmax_value − tammes_ovr``, and both minimum angles.  The gain panel marks every
    (d, K) with its verdict from ``codes.nc`` (``verdict``: same ○, differ ◆, undecided □; column
    ``verdict``, ``differs`` = verdict is differ); ``tol`` is dotted on the gain panel.  Extra dims of a
    variable are reduced by their maximum."""
    sources = source_records(codes)
    names = [v for v in (*CODE_VARS, "paper_optimal") if codes is not None and v in codes.data_vars]
    main = [v for v in names if v in CODE_VARS]
    if not main:
        return no_data_figure("codes", "codes.nc has none of softmax_value, tammes_ovr, softmax_min_angle, "
                              "tammes_angle", CODES_COLUMNS, sources=sources)
    verdicts = _verdicts(codes)
    notes = (["Markers: verdict per (d, K) (same / differ / undecided; evidence in codes.nc)"] if verdicts
             else [])
    long = _code_values(codes, names, notes)
    settings = sorted({(int(a), int(b)) for a, b, m in zip(long["d"], long["K"], long["metric"]) if m in CODE_VARS})
    if not settings:
        return no_data_figure("codes", "no code values for this selection", CODES_COLUMNS, sources=sources)
    frame, missing = _codes_frame(long, settings, main, verdicts)
    style = style or Style.from_datasets(codes)
    dvals = sorted({s[0] for s in settings})
    Kvals = sorted({s[1] for s in settings})
    panels = [p for p in CODES_PANELS if frame["metric"].isin(p[1]).any()]
    with figure_style():
        fig, axes = panel_grid(len(panels), panel_w=3.9, panel_h=3.2, extra_w=1.8)
        for ax, (pname, ms, title, ylabel) in zip(axes, panels):
            ax.set_gid(f"{pname}|0")
            for dd in dvals:
                _draw_code_lines(ax, pname, ms, frame[frame["d"] == dd], style.d_color(dd))
            _format_codes_axis(ax, pname, Kvals, tol)
            ax.set_ylabel(ylabel or axis_label("softmax_min_angle", codes, label="minimum pairwise angle"))
            ax.set_title(title)
        add_figure_legend(fig, _codes_handles(dvals, style, verdicts, frame), title="feature dim.")
        fig.suptitle("Softmax code vs Tammes code", fontsize=13)
        annotate_missing(fig, missing)
    frame = finish_frame(frame, "codes", missing=merge_missing(missing), notes=notes, sources=sources,
                         selection={"tol": tol})
    return fig, frame


def _code_values(codes, names, notes: list) -> pd.DataFrame:
    """Long frame (d, K, value, metric) of the code variables over (d, K); a variable with more dims is
    reduced by its maximum, and ``notes`` says so."""
    parts = []
    for v in names:
        da, extra = reduce_extra(codes[v], keep=("d", "K"))
        if extra:
            notes.append(f"{v}: maximum over {', '.join(extra)}")
        if set(da.dims) != {"d", "K"} or da.size == 0:
            continue
        df = da.transpose("d", "K").rename("value").to_dataframe().reset_index()[["d", "K", "value"]]
        df = df[df["value"].notna()].reset_index(drop=True)
        df["metric"] = v
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["d", "K", "value", "metric"])


def _codes_frame(long: pd.DataFrame, settings, main, verdicts: dict):
    """The plotted rows of the settings (with the gain ``ovr_gain`` and each point's verdict and
    ``differs``) and the missing-point records of settings lacking one of the ``main`` variables."""
    piv = long.pivot_table(index=["d", "K"], columns="metric", values="value", aggfunc="first")
    differs, gain_rows, missing = {}, [], []
    for s in settings:
        row = piv.loc[s] if s in piv.index else pd.Series(dtype=float)
        lacking = [v for v in main if pd.isna(row.get(v, np.nan))]
        if lacking:
            missing.append({"d": s[0], "K": s[1], "metrics": lacking})
        a, b = row.get("softmax_value", np.nan), row.get("tammes_ovr", np.nan)
        if pd.notna(a) and pd.notna(b):
            differs[s] = verdicts.get(s) == "differ"
            gain_rows.append({"metric": "ovr_gain", "d": s[0], "K": s[1], "value": float(a - b)})
    frame = pd.concat([long, pd.DataFrame(gain_rows)], ignore_index=True)
    frame = frame[frame.apply(lambda r: (int(r["d"]), int(r["K"])) in set(settings), axis=1)]
    frame = frame.astype({"d": int, "K": int})
    frame["differs"] = [differs.get((int(a), int(b))) for a, b in zip(frame["d"], frame["K"])]
    frame["differs"] = frame["differs"].astype("boolean")
    frame["verdict"] = [verdicts.get((int(a), int(b))) for a, b in zip(frame["d"], frame["K"])]
    return frame[CODES_COLUMNS].sort_values(["metric", "d", "K"]).reset_index(drop=True), missing


def _draw_code_lines(ax, pname: str, ms, rows: pd.DataFrame, col):
    """The lines of one d on one panel (solid softmax code, dashed Tammes code), the verdict markers on
    the gain panel, the paper's value on the ρ_ovr panel."""
    for m, ls in zip(ms, ("-", "--")):
        part = rows[rows["metric"] == m].sort_values("K")
        if not len(part):
            continue
        # the solid line wide and light underneath, the dashed one on top: both visible where equal
        ax.plot(part["K"].to_numpy(float), part["value"].to_numpy(float), color=col, linestyle=ls,
                marker="o" if ls == "-" else None, markersize=3.5,
                linewidth=2.6 if ls == "-" else 1.3, alpha=0.55 if ls == "-" else 1.0,
                zorder=2 if ls == "-" else 3)
        if m != "ovr_gain":
            continue
        for v, mk in VERDICT_MARKERS.items():
            sel = part[part["verdict"] == v]
            if len(sel):
                ax.plot(sel["K"].to_numpy(float), sel["value"].to_numpy(float), linestyle="none", zorder=4,
                        **mk)
    if pname == "ovr":
        part = rows[rows["metric"] == "paper_optimal"]
        if len(part):
            ax.plot(part["K"].to_numpy(float), part["value"].to_numpy(float), linestyle="none", marker="x",
                    color="0.25", markersize=7)


def _format_codes_axis(ax, pname: str, Kvals: list, tol: float):
    """K axis (log when K spans more than a factor 20); the gain panel with its zero line and the
    tolerance dotted."""
    if len(Kvals) > 1 and Kvals[-1] / max(Kvals[0], 1) > 20:
        ax.set_xscale("log")
    elif len(Kvals) <= 12:
        ax.set_xticks(Kvals)
    ax.set_xlabel("number of classes K")
    if pname == "gain":
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.axhline(tol, color="0.5", linewidth=0.8, linestyle=":")


def _codes_handles(dvals, style: Style, verdicts: dict, frame: pd.DataFrame) -> list:
    """Legend: a colour per d, the two line styles, the verdict markers, the paper's value."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=style.d_color(dd), marker="o", label=f"d = {dd}") for dd in dvals]
    handles += [Line2D([], [], color="0.3", linestyle="-", label="softmax code"),
                Line2D([], [], color="0.3", linestyle="--", label="Tammes code")]
    if verdicts:
        handles += [Line2D([], [], linestyle="none", label=f"verdict: {v}", **mk) for v, mk in VERDICT_MARKERS.items()]
    if (frame["metric"] == "paper_optimal").any():
        handles.append(Line2D([], [], linestyle="none", marker="x", color="0.25", label="paper's 'Optimal'"))
    return handles


# ----------------------------------------------------------------------------- fig 9: sphere pictures

SPHERE_COLUMNS = ["panel", "kind", "k", "class_name", "sample", "x", "y", "z", "hemisphere", "px", "py"]
SPHERE_VIEWS = {2: [("", None)], 3: [("front", 1.0), ("back", -1.0)]}  # (hemisphere, sign of z shown)


def _normalize_rows(a: np.ndarray) -> np.ndarray:
    """Unit rows, NaN for a zero or missing row (a class with no sample is drawn as absent); unlike
    gnc.maths.normalize_rows, which refuses such rows, a figure shows what exists."""
    a = np.asarray(a, dtype=np.float64)
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, a / n, np.nan)


def sphere_points(features, *, n_features: int = 400, seed: int = 0, center: bool = False):
    """Normalized classifier rows, normalized class means (of the normalized train features; centred by
    the mean of class means when ``center``) and a reproducible random sample of normalized features.
    Returns dict W (K,d), means (K,d), sample_idx, H (n,d), y (n,)."""
    W = np.asarray(features["W"].transpose("k", "component").values, dtype=np.float64)
    H = np.asarray(features["train_h"].transpose("train_sample", "component").values, dtype=np.float64)
    y = np.asarray(features["train_y"].values).astype(int)
    Wn = _normalize_rows(W)
    Hn = _normalize_rows(H)
    K = W.shape[0]
    means = np.full((K, W.shape[1]), np.nan)
    for k in range(K):
        sel = y == k
        if sel.any():
            means[k] = Hn[sel].mean(axis=0)
    if center:
        means = means - np.nanmean(means, axis=0, keepdims=True)
    means = _normalize_rows(means)
    rng = np.random.default_rng(seed)
    n = min(int(n_features), H.shape[0])
    idx = np.sort(rng.choice(H.shape[0], size=n, replace=False)) if n > 0 else np.zeros(0, dtype=int)
    return {"W": Wn, "means": means, "sample_idx": idx, "H": Hn[idx], "y": y[idx]}


def _names_from(ds, K: int) -> list[str]:
    """The class names of a features file (variable ``class_name``), else "class k"."""
    if "class_name" in ds.variables and ds["class_name"].size >= K:
        return [str(v) for v in ds["class_name"].values[:K]]
    return [f"class {k}" for k in range(K)]


def fig_sphere(features, *, n_features: int = 400, seed: int = 0, center: bool = False):
    """Fig. 9 — sphere pictures. ``features``: a mapping {panel title: features Dataset (``train_h``,
    ``train_y``, ``W``)}, e.g. one run each. d = 2: the unit circle; d = 3: two orthographic
    disks, the front hemisphere (z ≥ 0, seen from +z) and the back one (z < 0, seen from −z, plotted at
    (−x, y)). Stars: ŵ_k; circles: normalized class means; dots: ``n_features`` random training features
    (numpy seed ``seed``). Panels with d ∉ {2, 3} say so; if none can be drawn the no-data figure is
    returned."""
    from matplotlib.figure import Figure

    panels = [(str(k), v) for k, v in (features or {}).items() if v is not None]
    sources = source_records(*[p[1] for p in panels]) if panels else []
    usable, skipped = _sphere_usable(panels)
    if not usable:
        reason = "; ".join(f"{n}: {r}" for n, r in skipped) or "no features files given"
        return no_data_figure("sphere", reason, SPHERE_COLUMNS, sources=sources)
    rows = []
    missing = [{"panel": n, "metrics": "all", "what": r} for n, r in skipped]
    widths = [1 if dd == 2 else 2 for _, _, dd in usable]
    with figure_style():
        # one sub-figure per panel (its title: the run), one disk per view (its title: the hemisphere)
        fig = Figure(figsize=(3.3 * sum(widths) + 0.4, 4.4), layout="constrained")
        subfigs = np.atleast_1d(fig.subfigures(1, len(usable), width_ratios=widths, wspace=0.04))
        for sub_fig, (name, ds, dd) in zip(subfigs, usable):
            pts = sphere_points(ds, n_features=n_features, seed=seed, center=center)
            K = pts["W"].shape[0]
            missing += [{"panel": name, "k": k, "metrics": ["class_mean"], "what": "no training samples"}
                        for k in range(K) if np.isnan(pts["means"][k]).any()]
            names = _names_from(ds, K)
            sub_fig.suptitle(name, fontsize=11.5)
            axes = np.atleast_1d(sub_fig.subplots(1, len(SPHERE_VIEWS[dd])))
            for ax, (view, sign) in zip(axes, SPHERE_VIEWS[dd]):
                rows += _draw_sphere_view(ax, name, pts, names, dd, view, sign)
        _sphere_legend(fig, n_features)
        fig.suptitle("Normalized classifier and class means on the sphere (last checkpoint)", fontsize=12.5)
        annotate_missing(fig, missing)
    frame = pd.DataFrame(rows, columns=SPHERE_COLUMNS)
    frame = finish_frame(frame, "sphere", missing=merge_missing(missing), sources=sources,
                         selection={"n_features": n_features, "seed": seed, "center": center})
    return fig, frame


def _sphere_usable(panels) -> tuple[list, list]:
    """(name, dataset, d) of the panels that can be drawn, and (name, reason) of the others."""
    usable, skipped = [], []
    for name, ds in panels:
        if not all(v in ds.variables for v in ("W", "train_h", "train_y")):
            skipped.append((name, "features file lacks W / train_h / train_y"))
            continue
        dd = int(ds["W"].sizes.get("component", ds["W"].shape[-1]))
        if dd in (2, 3):
            usable.append((name, ds, dd))
        else:
            skipped.append((name, f"d = {dd}: sphere pictures need d = 2 or 3"))
    return usable, skipped


def _project(p: np.ndarray, dd: int, sign):
    """Plot coordinates of unit vectors in one view, and which of them the view shows: d = 2 all of them;
    d = 3 the hemisphere of ``sign`` (z ≥ 0 or z < 0), seen from outside (x mirrored for the back)."""
    if dd == 2:
        return p[:, 0], p[:, 1], np.ones(len(p), dtype=bool)
    on = (p[:, 2] >= 0) if sign > 0 else (p[:, 2] < 0)
    return sign * p[:, 0], p[:, 1], on


def _draw_sphere_view(ax, name: str, pts: dict, names: list[str], dd: int, view: str, sign) -> list[dict]:
    """One disk: the unit circle, the sampled features, the class means and the classifier vectors
    (labelled when K ≤ 12) that the view shows. Returns their rows."""
    from matplotlib.patches import Circle

    K = pts["W"].shape[0]
    colors = categorical_colors(K, "colorblind")
    ax.set_gid(f"sphere|{name}|{view or 'circle'}")
    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="0.35", linewidth=1.0))
    ax.set_aspect("equal")
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_axis_off()
    rows = []
    px, pyy, on = _project(pts["H"], dd, sign)
    for k in range(K):
        m = on & (pts["y"] == k)
        if m.any():
            ax.scatter(px[m], pyy[m], s=7, color=colors[k], alpha=0.35, linewidths=0)
    for i in np.flatnonzero(on):
        rows.append(_sphere_row(name, "feature", int(pts["y"][i]), names, int(pts["sample_idx"][i]), pts["H"][i],
                                dd, view, px[i], pyy[i]))
    mx, my, mon = _project(pts["means"], dd, sign)
    for k in np.flatnonzero(mon & ~np.isnan(mx)):
        ax.plot(mx[k], my[k], marker="o", markersize=7.5, color=colors[k], markeredgecolor="black",
                markeredgewidth=0.8, linestyle="none")
        rows.append(_sphere_row(name, "class_mean", k, names, k, pts["means"][k], dd, view, mx[k], my[k]))
    wx, wy, won = _project(pts["W"], dd, sign)
    for k in np.flatnonzero(won):
        ax.plot([0, wx[k]], [0, wy[k]], color=colors[k], linewidth=1.0, alpha=0.8)
        ax.plot(wx[k], wy[k], marker="*", markersize=13, color=colors[k], markeredgecolor="black",
                markeredgewidth=0.7, linestyle="none")
        if K <= 12:
            _label_vector(ax, names[k], wx[k], wy[k])
        rows.append(_sphere_row(name, "classifier", k, names, k, pts["W"][k], dd, view, wx[k], wy[k]))
    if view:
        ax.set_title(f"{view}: z ≥ 0, seen from +z" if sign > 0 else f"{view}: z < 0, seen from −z", fontsize=10)
    return rows


def _label_vector(ax, label: str, x: float, y: float):
    """A class label next to its classifier vector, away from the centre so it does not cover the marker."""
    r = math.hypot(x, y)
    ux, uy = (x / r, y / r) if r > 0.15 else (0.0, 1.0)
    ax.annotate(label, (x, y), xytext=(13 * ux, 13 * uy), textcoords="offset points",
                ha="left" if ux > 0.35 else ("right" if ux < -0.35 else "center"),
                va="bottom" if uy > 0.35 else ("top" if uy < -0.35 else "center"), fontsize=8.5,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))


def _sphere_legend(fig, n_features: int):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="*", markersize=12, color="0.5", markeredgecolor="black", linestyle="none",
                      label="classifier ŵ_k"),
               Line2D([], [], marker="o", markersize=7, color="0.5", markeredgecolor="black", linestyle="none",
                      label="class mean (normalized)"),
               Line2D([], [], marker="o", markersize=3, color="0.5", alpha=0.5, linestyle="none",
                      label=f"training features (≤ {n_features} sampled)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)


def _sphere_row(panel, kind, k, names, sample, p, dd, view, px, py_):
    return {"panel": panel, "kind": kind, "k": int(k), "class_name": names[int(k)], "sample": int(sample),
            "x": float(p[0]), "y": float(p[1]), "z": float(p[2]) if dd == 3 else np.nan,
            "hemisphere": view, "px": float(px), "py": float(py_)}
