"""The comparison stage: softmax codes vs Tammes codes, and trained classifiers vs softmax codes.

``build_codes_file`` writes ``results/codes.nc`` with

* per (d, K): ``softmax_value`` (best known softmax-code value = the larger of the exact one-vs-rest
  values of our softmax-code and Tammes solutions), ``softmax_solver_value``, ``softmax_min_angle``,
  ``tammes_angle``, ``tammes_ovr``, ``codes_differ`` (1 where the two problems' solutions differ in
  value: the paper's conjecture that they share optima fails there, or a solver fell short),
  ``paper_optimal`` (the paper's dashed "Optimal" values, where it gives one), rattler counts, and the
  vectors ``tammes_code`` / ``softmax_code`` over (d, K, k, component), NaN-padded;
* per (tau, d, K): the UFM study ``ufm_ovr``, ``ufm_min_angle``, ``ufm_distance_to_code``;
* per trained run (variant, dataset, arch, tau, d, K, seed), final checkpoint: ``gnc2_fraction`` =
  GNC2 / softmax_value and ``code_distance`` = distance of the normalized classifier to the nearest
  softmax code up to rotation/reflection and relabeling (see :func:`gnc.codes.align_to_code`);
* the assignment question: ``gram`` (cosines of the trained classifier rows) over (seed, k, k2) for
  the small-K grid points trained with several seeds, with ``class_name`` (k).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .io import open_netcdf, write_netcdf
from .provenance import merge_dataset_attrs, provenance
from .results import RUN_DIMS, combine_runs, with_run_coords

#: the paper's dashed "Optimal" softmax-code lines (docs/methods.md §10; Jiang et al. notebooks) — (d, K) -> value
PAPER_OPTIMAL = {(10, 100): 0.61416, (20, 100): 0.8124, (30, 100): 0.8886, (10, 200): 0.5052,
                 (20, 200): 0.7211, (30, 200): 0.8053, (512, 10000): 0.7966}

DIFFER_TOL = 1e-6


def _unit(W):
    W = np.asarray(W, dtype=np.float64)
    return W / np.linalg.norm(W, axis=1, keepdims=True)


def min_angle_deg(W) -> float:
    Wn = _unit(W)
    G = Wn @ Wn.T
    np.fill_diagonal(G, -np.inf)
    return float(np.degrees(np.arccos(np.clip(G.max(), -1.0, 1.0))))


def _code_tables(tammes_sols, softmax_sols):
    from .metrics.ovr import ovr_distances

    grid = sorted({(s.d, s.K) for s in list(tammes_sols) + list(softmax_sols)})
    ds_ = sorted({d for d, _ in grid})
    Ks = sorted({K for _, K in grid})
    kmax, cmax = max(Ks), max(ds_)
    shape2 = (len(ds_), len(Ks))
    names = ["softmax_value", "softmax_solver_value", "softmax_min_angle", "tammes_angle", "tammes_ovr",
             "codes_differ", "paper_optimal", "softmax_rattlers", "tammes_rattlers", "softmax_seconds",
             "tammes_seconds", "softmax_gap"]
    tab = {n: np.full(shape2, np.nan) for n in names}
    vec = {n: np.full(shape2 + (kmax, cmax), np.nan) for n in ("softmax_code", "tammes_code")}
    tam = {(s.d, s.K): s for s in tammes_sols}
    soft = {(s.d, s.K): s for s in softmax_sols}
    best_codes = {}
    for (d, K) in grid:
        i, j = ds_.index(d), Ks.index(K)
        t, s = tam.get((d, K)), soft.get((d, K))
        cands = []
        if t is not None:
            r = ovr_distances(t.W)
            tab["tammes_angle"][i, j] = min_angle_deg(t.W)
            tab["tammes_ovr"][i, j] = r.value
            tab["tammes_rattlers"][i, j] = len(t.rattlers)
            tab["tammes_seconds"][i, j] = t.seconds
            vec["tammes_code"][i, j, :K, :d] = _unit(t.W)
            cands.append((r.value, t.W, r))
        if s is not None:
            r = ovr_distances(s.W)
            tab["softmax_solver_value"][i, j] = r.value
            tab["softmax_rattlers"][i, j] = len(s.rattlers)
            tab["softmax_seconds"][i, j] = s.seconds
            cands.append((r.value, s.W, r))
        if cands:
            value, W, r = max(cands, key=lambda c: c[0])
            tab["softmax_value"][i, j] = value
            tab["softmax_gap"][i, j] = float(np.max(r.gap))
            tab["softmax_min_angle"][i, j] = min_angle_deg(W)
            vec["softmax_code"][i, j, :K, :d] = _unit(W)
            best_codes[(d, K)] = _unit(W)
        if t is not None and s is not None:
            tab["codes_differ"][i, j] = float(abs(tab["tammes_ovr"][i, j] - tab["softmax_solver_value"][i, j])
                                              > DIFFER_TOL * max(1.0, abs(tab["softmax_value"][i, j])))
        if (d, K) in PAPER_OPTIMAL:
            tab["paper_optimal"][i, j] = PAPER_OPTIMAL[(d, K)]
    attrs = {
        "softmax_value": ("best known softmax-code value: max over our solutions of the exact min one-vs-rest distance", "1"),
        "softmax_solver_value": ("exact min one-vs-rest distance of the softmax-code solver's solution", "1"),
        "softmax_min_angle": ("min pairwise angle of the best softmax code", "degree"),
        "tammes_angle": ("min pairwise angle of the Tammes solution", "degree"),
        "tammes_ovr": ("exact min one-vs-rest distance of the Tammes solution", "1"),
        "codes_differ": ("1 where the Tammes solution's one-vs-rest value differs from the softmax code's", "1"),
        "paper_optimal": ("the paper's dashed 'Optimal' softmax-code value (not optimal)", "1"),
        "softmax_rattlers": ("number of rattlers (inactive classes) of the softmax-code solution", "1"),
        "tammes_rattlers": ("number of rattlers (vectors not in contact) of the Tammes solution", "1"),
        "softmax_seconds": ("wall time of the softmax-code solve", "s"),
        "tammes_seconds": ("wall time of the Tammes solve", "s"),
        "softmax_gap": ("largest per-class duality gap of the exact one-vs-rest distances (certificate)", "1"),
    }
    data = {n: xr.DataArray(tab[n], dims=("d", "K"), attrs={"long_name": attrs[n][0], "units": attrs[n][1]})
            for n in names}
    for n in vec:
        data[n] = xr.DataArray(vec[n], dims=("d", "K", "k", "component"),
                               attrs={"long_name": f"unit vectors of the {n.split('_')[0]} solution (rows k < K)",
                                      "units": "1"})
    ds = xr.Dataset(data, coords={"d": ds_, "K": Ks, "k": np.arange(kmax), "component": np.arange(cmax)})
    settings = {f"{s.problem}_d{s.d}_K{s.K}": {"settings": s.settings, "seed": s.seed}
                for s in list(tammes_sols) + list(softmax_sols)}
    ds.attrs["gnc_solver_settings"] = json.dumps(settings, sort_keys=True, default=str)
    return ds, best_codes


def _ufm_table(ufm_paths, best_codes):
    from .codes import align_to_code

    parts = []
    for p in ufm_paths:
        u = open_netcdf(p)
        d, K = int(u.attrs["d"]), int(u.attrs["K"])
        dist = []
        for t in u["tau"].values:
            W = u["ufm_W"].sel(tau=t).values
            dist.append(align_to_code(W, best_codes[(d, K)])[0] if (d, K) in best_codes else np.nan)
        part = xr.Dataset({
            "ufm_ovr": u["ufm_ovr"], "ufm_min_angle": u["ufm_min_angle"],
            "ufm_distance_to_code": xr.DataArray(np.asarray(dist), dims=["tau"], attrs={
                "long_name": "distance of the UFM classifier to the best softmax code up to rotation and relabeling",
                "units": "1"}),
        }).expand_dims(d=[d], K=[K])
        parts.append(part)
    if not parts:
        return xr.Dataset()
    return xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop")


def _trained(features: dict, runs: dict, metrics: xr.Dataset, codes_ds: xr.Dataset, best_codes):
    from .codes import align_to_code

    per_run, grams = [], {}
    for run_id, path in features.items():
        coords = runs[run_id]
        f = open_netcdf(path)
        W = f["W"].values
        d, K = coords["d"], coords["K"]
        sel = {k: coords[k] for k in RUN_DIMS}
        gnc2 = float(metrics["gnc2"].sel(**sel).dropna("epoch").isel(epoch=-1))
        value = float(codes_ds["softmax_value"].sel(d=d, K=K)) if (d, K) in best_codes else np.nan
        dist = align_to_code(W, best_codes[(d, K)])[0] if (d, K) in best_codes else np.nan
        ds = xr.Dataset({
            "gnc2_fraction": xr.DataArray(gnc2 / value if value == value else np.nan, attrs={
                "long_name": "GNC2 of the final classifier / best softmax-code value", "units": "1"}),
            "code_distance": xr.DataArray(dist, attrs={
                "long_name": "distance of the final normalized classifier to the nearest softmax code "
                             "(up to rotation/reflection and relabeling)", "units": "1"}),
        })
        per_run.append(with_run_coords(ds, coords))
        group = tuple(coords[k] for k in RUN_DIMS if k != "seed")
        Wn = _unit(W)
        grams.setdefault(group, []).append((coords["seed"], Wn @ Wn.T, list(f["class_name"].values)))
    out = combine_runs(per_run) if per_run else xr.Dataset()
    # assignment: the first small-K grid point trained with several seeds
    multi = sorted((g for g, v in grams.items() if len(v) > 1 and len(v[0][2]) <= 16),
                   key=lambda g: (g[RUN_DIMS.index("d")], g))
    if multi:
        g = multi[0]
        entries = sorted(grams[g], key=lambda e: e[0])
        K = len(entries[0][2])
        gram = xr.DataArray(np.stack([e[1] for e in entries]), dims=("seed", "k", "k2"),
                            coords={"seed": [e[0] for e in entries], "k": np.arange(K), "k2": np.arange(K)},
                            attrs={"long_name": "cosine between normalized classifier rows at the final epoch",
                                   "units": "1"})
        gram = gram.expand_dims(dataset=[g[RUN_DIMS.index("dataset")]], arch=[g[RUN_DIMS.index("arch")]])
        gram_ds = gram.to_dataset(name="gram").assign_coords(
            class_name=("k", np.asarray(entries[0][2]).astype(str)))
        attrs = dict(out.attrs)
        var_attrs = {v: dict(out[v].attrs) for v in out.data_vars}
        var_attrs["gram"] = dict(gram.attrs)
        out = xr.merge([out, gram_ds], join="outer", compat="no_conflicts", combine_attrs="drop")
        for v, a in var_attrs.items():
            out[v].attrs = a
        out.attrs = attrs
        out.attrs["gnc_assignment_setting"] = json.dumps(dict(zip(RUN_DIMS, map(str, g))))
    return out


def build_codes_file(*, tammes, softmax, ufm, metrics, features: dict, runs: dict, out) -> xr.Dataset:
    from . import codes

    tammes_sols = [codes.load_solution(p) for p in tammes]
    softmax_sols = [codes.load_solution(p) for p in softmax]
    codes_ds, best = _code_tables(tammes_sols, softmax_sols)
    m = open_netcdf(metrics)
    parts = [codes_ds, _ufm_table(ufm, best), _trained(features, runs, m, codes_ds, best)]
    ds = xr.merge([p for p in parts if len(p.data_vars)], join="outer", compat="no_conflicts",
                  combine_attrs="drop")
    if "gram" in ds and "k2" in ds.dims:
        ds = ds.reindex(k2=ds["k"].values)  # square (k, k2): k was padded to the longest code by the merge
    for p in parts:
        for v in p.data_vars:
            ds[v].attrs = dict(p[v].attrs)
    ds.attrs = {**provenance(stage="codes"), **codes_ds.attrs, **parts[2].attrs}
    ds.attrs.update(merge_dataset_attrs(m.attrs))
    write_netcdf(ds, out)
    return ds
