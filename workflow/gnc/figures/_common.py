"""Shared machinery of the figure functions: selection on sparse grids, missing-point bookkeeping,
the "no data" figure, saving (PNG + PDF + tidy CSV + provenance sidecar) and captions.

Vocabulary
----------
*grid point*: one combination of coordinates a figure draws (e.g. one (setting, τ, seed) curve).
A figure's grid is the set of settings that have *some* of its data; a grid point of that grid with
no value (NaN in the netCDF, or a requested coordinate value absent from the file) is *missing*.
Settings of the sparse study grid that were never run at all are simply not part of the figure.

Every figure function returns ``(fig, frame)``; ``frame.attrs`` carries
``figure`` (kind), ``missing`` (list of dict records), ``selection`` (fixed coordinates chosen),
``seeds``, ``notes``, ``no_data`` and ``sources`` (paths + gnc_* attributes of the input files).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import operator
import os
import textwrap
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import atomic_path, rst_escape, sha256_file, write_json_atomic, write_text_atomic
from ..provenance import merge_dataset_attrs, provenance, read_attrs
from ._style import format_tau, rc_params
from .registry import NAME_DIMS, REGISTRY, SETTING_DIMS, as_list, same_value

# Short axis labels (the netCDF long_name may be long); units come from the variable's attrs.
SHORT_LABELS = {  # the variables a panel labels from this table (the others set their own label)
    "gnc1": r"GNC1  $\mathrm{tr}(\Sigma_W\Sigma_B^{+})/K$", "gnc2": r"GNC2  $\rho_{\mathrm{ovr}}(\hat W)$",
    "gnc3": r"GNC3  mean $1-\cos(\hat w_k, \bar h_k)$", "nc1": "NC1",
    "train_acc": "train accuracy", "test_acc": "test accuracy",
    "ncc_train_acc": "NCC train accuracy", "ncc_test_acc": "NCC test accuracy",
    "ufm_distance_to_code": "UFM distance to softmax code", "ufm_min_angle": "UFM min angle",
}
ACCURACY_VARS = {"train_acc", "test_acc", "ncc_train_acc", "ncc_test_acc"}
DIM_NAMES = {"arch": "architecture", "tau": "τ"}  # the other dims by their own name


# ----------------------------------------------------------------------------- small helpers

def py(value):
    """numpy scalar -> plain python (JSON-friendly)."""
    return value.item() if isinstance(value, np.generic) else value


def fmt_value(dim: str, value) -> str:
    value = py(value)
    if dim == "tau":
        return format_tau(value)
    if isinstance(value, float) and value.is_integer() and dim in ("d", "K", "seed", "epoch"):
        return str(int(value))
    return str(value)


def fmt_coords(rec: Mapping, dims: Sequence[str] | None = None) -> str:
    """'glyphs, smallcnn, d=10, τ=1/10': the names of a record by their value, the other dims as dim=value."""
    return ", ".join(str(rec[d]) if d in NAME_DIMS else f"{DIM_NAMES.get(d, d)}={fmt_value(d, rec[d])}"
                     for d in (dims or rec.keys()) if d in rec)


def select(ds, **sel):
    """Restrict ``ds`` to the requested coordinate values (lists keep the dim; floats match with a
    relative tolerance). Returns ``(sub, absent)`` where ``absent[dim]`` lists requested values that
    are not in the file at all (they become missing grid points, not errors)."""
    absent: dict[str, list] = {}
    for dim, wanted in sel.items():
        if wanted is None or dim not in ds.dims:
            continue
        coord = list(ds[dim].values)
        idx = []
        for w in as_list(wanted):
            hit = [i for i, c in enumerate(coord) if same_value(c, w)]
            if hit:
                idx.append(hit[0])
            else:
                absent.setdefault(dim, []).append(py(w))
        ds = ds.isel({dim: idx})
    return ds, absent


def reduce_extra(da, keep: Sequence[str]):
    """Reduce every dim of ``da`` not in ``keep`` (e.g. run dims of a code value) by its maximum."""
    extra = [d for d in da.dims if d not in keep]
    if not extra:
        return da, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = da.max(dim=extra, skipna=True)
    return out, extra


def axis_label(var: str, ds=None, *, percent: bool = False, label: str | None = None) -> str:
    """The label of a variable's axis: its short label and unit (angles in degrees)."""
    text = label or SHORT_LABELS.get(var, var)
    units = ds[var].attrs.get("units") if ds is not None and var in ds.variables else None
    if percent:
        return f"{text} [%]"
    unitless = units in (None, "", "1", "-", "dimensionless")
    if (unitless and var.endswith("angle")) or str(units).lower() in ("degree", "degrees", "deg", "°"):
        return f"{text} [degrees]"
    return text if unitless else f"{text} [{units}]"


def source_records(*datasets) -> list[dict]:
    """{"path", "attrs": gnc_* attributes} of each input dataset (None skipped)."""
    return [{"path": str(ds.encoding["source"]) if ds.encoding.get("source") else None,
             "attrs": {k: py(v) for k, v in ds.attrs.items() if str(k).startswith("gnc_")}}
            for ds in datasets if ds is not None]


def finish_frame(frame: pd.DataFrame, kind: str, *, missing=None, selection=None, seeds=None, notes=None,
                 sources=None, no_data: bool = False) -> pd.DataFrame:
    """``frame`` with the attributes every figure frame carries (see the module docstring), JSON-friendly."""
    frame = frame.reset_index(drop=True)
    frame.attrs.update(figure=kind, missing=[{k: py(v) for k, v in m.items()} for m in missing or []],
                       selection={k: py(v) for k, v in (selection or {}).items()},
                       seeds=[py(s) for s in seeds or []], notes=list(notes or []), sources=list(sources or []),
                       no_data=bool(no_data))
    return frame


# ----------------------------------------------------------------------------- figures

def figure_style():
    """The rcParams context every figure is drawn and saved in."""
    import matplotlib as mpl

    return mpl.rc_context(rc_params())


def no_data_figure(kind: str, reason: str = "", columns: Sequence[str] = (), *, sources=None,
                   selection=None):
    """The figure drawn when none of a figure's data exist in this study (never an exception)."""
    with figure_style():
        fig, (ax,) = panel_grid(1, panel_w=7.0, panel_h=2.1)
        ax.set_axis_off()
        ax.set_gid("no-data")
        text = f"{REGISTRY[kind].title}\n\nNo data for this figure in this study."
        if reason:
            text += "\n" + textwrap.fill(reason, 90)
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, transform=ax.transAxes,
                bbox=dict(boxstyle="round,pad=0.6", fc="#f4f4f4", ec="#999999"))
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    frame = finish_frame(frame, kind, missing=[{"reason": reason or "no data"}], selection=selection,
                         sources=sources, no_data=True)
    return fig, frame


def panel_grid(n: int, ncols: int = 4, panel_w: float = 3.4, panel_h: float = 2.8, extra_w: float = 0.0,
               extra_h: float = 0.5):
    """A pyplot-free Figure with ``n`` panels (inches each) in rows of at most ``ncols`` and a
    constrained layout; unused cells hidden. Returns the figure and the list of the ``n`` axes."""
    from matplotlib.figure import Figure

    ncols = min(ncols, n)
    nrows = int(math.ceil(n / ncols))
    fig = Figure(figsize=(ncols * panel_w + extra_w, nrows * panel_h + extra_h), layout="constrained")
    flat = list(fig.subplots(nrows, ncols, squeeze=False).reshape(-1))
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]


def spread(da, over: Sequence[str]):
    """Dataset of ``value`` (mean), ``lower`` (min), ``upper`` (max) and ``n`` (count of values) over the
    dims ``over`` of ``da`` (e.g. its seeds), NaN skipped; with no dims to reduce, ``da`` itself."""
    import xarray as xr

    over = list(over)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if over:
            return xr.Dataset({"value": da.mean(over, skipna=True), "lower": da.min(over, skipna=True),
                               "upper": da.max(over, skipna=True), "n": da.notnull().sum(over)})
        return xr.Dataset({"value": da, "lower": da, "upper": da, "n": da.notnull().astype(int)})


def plot_with_band(ax, x, part: pd.DataFrame, color, count: str, **line):
    """A line of ``part["value"]`` versus ``x``, with the ``lower``–``upper`` band where some point
    aggregates two or more values (column ``count``)."""
    ax.plot(x, part["value"].to_numpy(float), color=color, **line)
    if (part[count] > 1).any():
        ax.fill_between(x, part["lower"].to_numpy(float), part["upper"].to_numpy(float), color=color, alpha=0.18,
                        linewidth=0)


def band_handle(label: str):
    """The legend entry of the min–max bands."""
    from matplotlib.patches import Patch

    return Patch(color="0.6", alpha=0.35, label=label)


def code_value(codes, var: str, d, K) -> float | None:
    """A code value of ``codes.nc`` at (d, K) (max over any extra dims), or None."""
    if codes is None or var not in codes.data_vars or not {"d", "K"} <= set(codes[var].dims):
        return None
    sub, absent = select(codes[[var]], d=[d], K=[K])
    if absent:
        return None
    v = float(reduce_extra(sub[var].isel(d=0, K=0, drop=True), keep=())[0])  # max over any extra dims
    return None if math.isnan(v) else v


def fmt_setting(rec: Mapping) -> str:
    """The fixed coordinates of a setting, in the order titles and captions name them."""
    return fmt_coords(rec, SETTING_DIMS)


def add_figure_legend(fig, handles, *, title=None):
    """One legend per figure, right of the axes (constrained layout keeps room for it)."""
    if handles:
        fig.legend(handles=handles, loc="outside right center", title=title, frameon=False)


def annotate_missing(fig, missing: list[dict]):
    """A discreet footer saying that some grid points are missing (the caption lists them)."""
    if missing:
        plural = "s" if len(missing) > 1 else ""
        fig.supxlabel(f"{len(missing)} missing grid point{plural} (listed in the caption)", fontsize=9,
                      color="#a33", x=0.01, ha="left")


# ----------------------------------------------------------------------------- missing points

def missing_points(ds, names: Sequence[str], grid_dims: Sequence[str],
                   setting_dims: Sequence[str]) -> list[dict]:
    """Grid points (combinations of ``grid_dims``) of the variables ``names`` of ``ds`` whose values are
    all NaN over the remaining dims.

    The expected grid is: each combination of ``setting_dims`` that has data for some name, times every
    value of the other grid dims that has data somewhere for that name. So with ``setting_dims=("d", "K")``
    and ``grid_dims=("tau", "d", "K")`` a (d, K) never run is not reported, but a τ missing for a (d, K)
    that was run is. Returns records ``{dim: value, ..., "metrics": [...]}``."""
    names = [n for n in names if n in ds.data_vars]
    if not names:
        return []
    setting_has = functools.reduce(operator.or_, (_has_data(ds[n], setting_dims) for n in names))
    out: list[dict] = []
    for name in names:
        has = _has_data(ds[name], grid_dims)
        for d in has.dims:
            if d not in setting_dims:  # only the values with data somewhere
                has = has.isel({d: has.any([x for x in has.dims if x != d]).values})
        miss = (~has & setting_has).transpose(*has.dims)
        out += [{**{d: py(miss[d].values[i]) for d, i in zip(miss.dims, ix)}, "metrics": [name]}
                for ix in np.argwhere(miss.values)]
    return merge_missing(out)


def _has_data(da, dims: Sequence[str]):
    """Whether ``da`` has a value, per combination of those of ``dims`` it has."""
    other = [d for d in da.dims if d not in dims]
    return da.notnull().any(dim=other) if other else da.notnull()


def merge_missing(records: list[dict]) -> list[dict]:
    """Merge records that differ only in their metric list."""
    merged: dict[str, dict] = {}
    for rec in records:
        key = json.dumps({k: v for k, v in rec.items() if k != "metrics"}, sort_keys=True, default=str)
        if key not in merged:
            merged[key] = dict(rec)
            continue
        old, new = merged[key]["metrics"], rec.get("metrics", "all")
        merged[key]["metrics"] = "all" if "all" in (old, new) else sorted(set(old) | set(new))
    return list(merged.values())


def caption_gap_note(frame: pd.DataFrame, *, limit: int = 12) -> str:
    """One sentence listing the missing grid points of a figure (``frame.attrs["missing"]``), the seeds of
    otherwise identical points grouped; "" when nothing is missing."""
    records = frame.attrs.get("missing", [])
    if frame.attrs.get("no_data"):
        reason = records[0].get("reason", "") if records else ""
        return f"No data for this figure in this study{': ' + reason if reason else ''}."
    if not records:
        return ""
    groups: dict[str, dict] = {}
    for rec in records:
        base = {k: v for k, v in rec.items() if k != "seed"}
        key = json.dumps(base, sort_keys=True, default=str)
        g = groups.setdefault(key, {"base": base, "seeds": []})
        if "seed" in rec:
            g["seeds"].append(rec["seed"])
    items = [_missing_item(g["base"], g["seeds"]) for g in groups.values()]
    note = f"Missing grid points ({len(records)}): " + "; ".join(items[:limit])
    if len(items) > limit:
        note += f"; and {len(items) - limit} more (see the provenance sidecar)"
    return note + "."


def _missing_item(base: dict, seeds: list) -> str:
    """One missing grid point (its seeds listed together), with its metrics and reason."""
    base = dict(base)
    metrics = base.pop("metrics", "all")
    what = base.pop("what", None)
    reason = base.pop("reason", None)
    text = fmt_coords(base)
    if seeds:
        text += f"{', ' if text else ''}seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in sorted(seeds))}"
    details = [", ".join(metrics)] if metrics not in (None, "all") else []
    details += [x for x in (what, reason) if x]
    if details:
        text += f" ({'; '.join(details)})"
    return text.strip()


# ----------------------------------------------------------------------------- captions

def _levels(frame: pd.DataFrame, col: str) -> list:
    if col not in frame.columns:
        return []
    vals = frame[col].dropna().unique().tolist()
    try:
        return sorted(vals)
    except TypeError:
        return sorted(vals, key=str)


def figure_caption(kind: str, frame: pd.DataFrame) -> str:
    """Caption text stating what the figure shows and its setting (dataset, architecture, variant, d, K,
    τ, seeds, epochs), read from exactly the plotted data (the figure's ``frame``), plus its notes and
    the missing-grid-point note."""
    parts = [f"{REGISTRY[kind].title}. {REGISTRY[kind].description}"]
    if frame.attrs.get("no_data"):
        parts.append(caption_gap_note(frame))
        return " ".join(p for p in parts if p)
    seeds: list = []
    if len(frame):
        setting = _setting_texts(frame)
        if setting:
            parts.append("Setting: " + "; ".join(setting) + ".")
        seeds = frame.attrs.get("seeds") or _levels(frame, "seed")
    parts.append(_seed_sentence(frame.attrs.get("seed_text"), seeds))
    if len(frame):
        parts.append(_epoch_sentence(kind, _levels(frame, "epoch")))
        if kind == "sphere":
            parts.append(_sphere_sentence(frame))
    for note in frame.attrs.get("notes", []):
        parts.append(note if note.endswith(".") else note + ".")
    parts.append(caption_gap_note(frame))
    return " ".join(p for p in parts if p)


def _setting_texts(frame: pd.DataFrame) -> list[str]:
    """'dataset glyphs', 'τ ∈ {1/10, 1}', ...: the levels of each setting dim in the frame, else the
    value the figure fixed (``frame.attrs["selection"]``)."""
    fixed = frame.attrs.get("selection", {})
    out = []
    for dim in SETTING_DIMS:
        vals = _levels(frame, dim)
        if not vals and dim in fixed and fixed[dim] is not None:
            vals = [fixed[dim]]
        if vals:
            out.append(_setting_text(dim, vals))
    return out


def _seed_sentence(seed_text: str | None, seeds: list) -> str:
    """Which seeds the figure shows and how they are combined (figures without a seed text: the heatmaps)."""
    if seed_text:
        many = "mean" in seed_text or ";" in seed_text or seed_text.startswith("seeds")
        return seed_text[0].upper() + seed_text[1:] + (
            " (a line is the mean over the seeds that have the point; where two or more do, a band shows their "
            "min–max)." if many else ".")
    shown = ", ".join(str(py(x)) for x in seeds)
    return f"Seed{'s' if len(seeds) > 1 else ''} {shown} (one heatmap each)." if seeds else ""


def _epoch_sentence(kind: str, epochs: list) -> str:
    if not epochs:
        return ""
    ep = [int(e) for e in epochs]
    if kind in ("d_sweep", "k_sweep"):
        return f"Last checkpoint of each run: epoch{'s' if len(ep) > 1 else ''} {', '.join(str(e) for e in ep)}."
    return f"Epochs {ep[0]}–{ep[-1]} ({len(ep)} checkpoints)." if len(ep) > 1 else f"Epoch {ep[0]}."


def _sphere_sentence(frame: pd.DataFrame) -> str:
    sel = frame.attrs.get("selection", {})
    return (f"Panels: {'; '.join(frame['panel'].unique())}. At most {sel.get('n_features', '?')} features sampled per panel "
            f"(seed {sel.get('seed', '?')}); class means "
            f"{'centred by the global mean' if sel.get('center') else 'not centred'}.")


def _setting_text(dim: str, vals: list) -> str:
    """'τ = 1/10', 'd ∈ {2, 3}', 'architecture smallcnn', 'architectures resnet8, smallcnn'."""
    shown = [fmt_value(dim, v) for v in vals]
    if dim in ("tau", "d", "K"):
        name = DIM_NAMES.get(dim, dim)
        return f"{name} = {shown[0]}" if len(shown) == 1 else f"{name} ∈ {{{', '.join(shown)}}}"
    plural = "s" if len(shown) > 1 and dim != "dataset" else ""
    return f"{DIM_NAMES.get(dim, dim)}{plural} {', '.join(shown)}"


# ----------------------------------------------------------------------------- saving

NO_DATES = {"png": {"Software": None}, "pdf": {"CreationDate": None}}  # savefig metadata per format

def save_figure(fig, frame: pd.DataFrame, out_prefix: str | os.PathLike, *, sources: Sequence = (),
                caption: str | None = None, dpi: int = 150, formats: Sequence[str] = ("png", "pdf")) -> dict[str, Path]:
    """Write ``<prefix>.<format>`` for each of ``formats``, ``<prefix>.csv`` (exactly the plotted data) and
    ``<prefix>.provenance.json`` (gnc provenance, the input files' attributes and checksums, selection and
    missing grid points), each atomically; with ``caption`` (plain text) also ``<prefix>.caption.rst``
    (RST-escaped). ``sources``: extra input files to record. Returns the written paths by key."""
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    # matplotlib's PDF backend subsets fonts with fontTools, which logs every table at INFO
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    written: dict[str, Path] = {}
    with figure_style():
        for fmt in formats:
            written[fmt] = Path(f"{prefix}.{fmt}")
            with atomic_path(written[fmt]) as tmp:
                # no timestamps in the files; "tight": rotated tick labels and outside legends are never clipped
                fig.savefig(tmp, format=fmt, dpi=dpi, metadata=NO_DATES.get(fmt), bbox_inches="tight",
                            pad_inches=0.08)
    written["csv"] = Path(f"{prefix}.csv")
    with atomic_path(written["csv"]) as tmp:
        frame.to_csv(tmp, index=False)
    by_path: dict[str, dict] = {}  # {path: {"attrs": merged gnc_* attributes, "sha256": checksum}}
    extra = [{"path": str(s), "attrs": _file_attrs(s)} for s in sources]
    for rec in [*frame.attrs.get("sources", []), *extra]:
        entry = by_path.setdefault(rec.get("path") or f"<in-memory {len(by_path)}>", {"attrs": {}})
        entry["attrs"].update(rec.get("attrs") or {})
        if rec.get("path") and Path(rec["path"]).is_file():
            entry["sha256"] = sha256_file(rec["path"])
    prov = provenance(
        figure=frame.attrs.get("figure"),
        figure_files={k: str(v) for k, v in written.items()},
        selection=frame.attrs.get("selection") or None,
        seeds=frame.attrs.get("seeds") or None,
        missing=frame.attrs.get("missing") or None,
        notes=frame.attrs.get("notes") or None,
        no_data=int(bool(frame.attrs.get("no_data"))),
        sources=by_path or None,
        caption=caption,
    )
    # the datasets behind the inputs, as aligned lists (name, version, checksum, path)
    prov.update(merge_dataset_attrs(*(entry["attrs"] for entry in by_path.values())))
    written["provenance"] = Path(f"{prefix}.provenance.json")
    write_json_atomic(written["provenance"], prov)
    if caption is not None:
        written["caption"] = Path(f"{prefix}.caption.rst")
        write_text_atomic(written["caption"], rst_escape(caption.rstrip()) + "\n")
    return written


def _file_attrs(path) -> dict:
    """The gnc_* attributes of a netCDF input ({} for other files, or when it cannot be read: provenance
    must not break figure saving)."""
    p = Path(path)
    if p.suffix != ".nc" or not p.is_file():
        return {}
    try:
        attrs = read_attrs(p)
    except Exception:  # noqa: BLE001
        return {}
    return {k: py(v) for k, v in attrs.items() if str(k).startswith("gnc_")}
