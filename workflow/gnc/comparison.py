"""The comparison stage: ``results/codes.nc`` -- softmax codes vs Tammes codes, the UFM tau -> 0
study, and trained classifiers vs softmax codes.

``build_codes_file`` writes, over the code grid (d, K):

* from the refine stage (:mod:`gnc.codes.cross`, one file per (d, K)): the best Tammes code and the best
  softmax code over the pool {Tammes solution, softmax-code solution, trained classifiers, their
  polishes} (``tammes_code``, ``softmax_code`` over (d, K, code_row, component), NaN-padded), the
  verdict ``verdict`` (same / differ / undecided) and the values in :data:`_TABLE` (both objectives of
  both codes, one-vs-rest values certified to their duality gaps, the verdict's evidence, rattlers);
* the Tammes code against the best known packing (``best_known_angle``, ``best_known_status``; the
  sources in the attribute ``gnc_best_known_sources``) and the paper's dashed lines ``paper_optimal``;
* over (ufm_tau, d, K): the UFM study (``ufm_*``, see :func:`gnc.codes.ufm.ufm_tau_sweep`);
* per trained run (variant, dataset, arch, tau, d, K, seed), final checkpoint: ``gnc2_fraction`` =
  GNC2 / softmax_value and ``code_distance`` to the softmax code;
* the assignment question: ``gram`` (cosines of the trained classifier rows) over (seed, k, k2) for
  the first small-K grid point trained with several seeds, with ``class_name`` on the class index k.

Every distance between codes is :func:`gnc.codes.compare.code_distance`: the RMS distance per vector
after the best rotation/reflection and relabelling.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .codes import cross, known
from .codes.compare import code_distance
from .codes.cross import GAP_TOL
from .grid import RUN_DIMS
from .io import open_netcdf, write_netcdf
from .provenance import merge_dataset_attrs, provenance
from .results import combine_runs, merge_outer, with_run_coords

#: (name, long_name, units) of the per-(d, K) variables, and the attribute of the refine file they come from
_TABLE = [
    ("softmax_value", "rho_ovr of the best softmax code (exact, certified to softmax_gap)", "1", "softmax_ovr"),
    ("softmax_gap", "certified duality gap of softmax_value", "1", "softmax_ovr_gap"),
    ("softmax_min_angle", "minimum pairwise angle of the best softmax code", "degree", "softmax_angle"),
    ("tammes_angle", "minimum pairwise angle of the best Tammes code", "degree", "tammes_angle"),
    ("tammes_ovr", "rho_ovr of the best Tammes code (exact, certified to tammes_ovr_gap)", "1", "tammes_ovr"),
    ("tammes_ovr_gap", "certified duality gap of tammes_ovr", "1", "tammes_ovr_gap"),
    ("angle_gain", "tammes_angle - softmax_min_angle (>= 0)", "degree", "angle_gain"),
    ("ovr_gain", "softmax_value - tammes_ovr (>= 0)", "1", "ovr_gain"),
    ("code_align_distance", "RMS distance per vector between the best Tammes and softmax codes after the best "
                            "rotation/reflection and relabelling", "1", "align_distance"),
    ("tammes_kkt_residual", "first-order (KKT) residual of the Tammes code for the Tammes problem", "1", "tammes_kkt"),
    ("softmax_kkt_residual", "first-order (KKT) residual of the softmax code for the joint max-min problem", "1",
     "softmax_kkt"),
    ("tammes_rattlers", "vectors of the Tammes code not in contact (tolerance 1e-6 in cosine)", "1", "tammes_rattlers"),
    ("softmax_rattlers", "classes of the softmax code whose one-vs-rest distance exceeds rho_ovr by > 1e-6", "1",
     "softmax_rattlers"),
    ("refine_seconds", "wall time of the refine stage (evaluation and polishes)", "s", "seconds"),
]

_BEST_KNOWN = ("matches", "beats", "trails", "no table available")


def _check_certified(d, K, name, value, gap):
    if not (np.isfinite(value) and np.isfinite(gap) and gap <= GAP_TOL * max(1.0, abs(value))):
        raise ValueError(f"codes.nc: {name} at (d={d}, K={K}) is not certified: value {value!r}, duality gap "
                         f"{gap!r} > {GAP_TOL:g}; refusing to publish it")


def _code_tables(refined: list[xr.Dataset]):
    """The per-(d, K) variables of codes.nc from the refine files, and {(d, K): best softmax code}."""
    ds_ = sorted({int(r.attrs["d"]) for r in refined})
    Ks = sorted({int(r.attrs["K"]) for r in refined})
    var_attrs = {name: {"long_name": ln, "units": u} for name, ln, u, _ in _TABLE}
    var_attrs.update(best_known_angle={
        "long_name": "best known Tammes angle (sources: attribute gnc_best_known_sources)", "units": "degree"},
        best_known_status={
        "long_name": f"Tammes code vs the best known packing (within {known.BEST_KNOWN_TOL_DEG:g} degree)",
        "units": "1", "flag_values": np.arange(len(_BEST_KNOWN), dtype=np.int8),
        "flag_meanings": " ".join(m.replace(" ", "_") for m in _BEST_KNOWN)},
        paper_optimal={"long_name": "the paper's dashed 'Optimal' softmax-code value (not optimal)", "units": "1"},
        verdict={
        "long_name": "do the softmax-code and Tammes problems share their best code here (evidence: "
                     "attribute gnc_verdict_evidence)", "units": "1",
        "flag_values": np.arange(len(cross.VERDICTS), dtype=np.int8), "flag_meanings": " ".join(cross.VERDICTS),
        "same_tol": cross.SAME_TOL, "angle_tol_deg": cross.ANGLE_TOL, "ovr_tol": cross.OVR_TOL,
        "kkt_tol": cross.KKT_TOL, "active_tol": cross.ACTIVE_TOL,
        "rule": "same: code_align_distance <= same_tol; differ: both KKT residuals <= kkt_tol and angle_gain > "
                "angle_tol_deg and ovr_gain > ovr_tol + softmax_gap + tammes_ovr_gap; undecided: otherwise"})
    tab = {n: np.full((len(ds_), len(Ks)), np.nan) for n in var_attrs}
    vec = {n: np.full((len(ds_), len(Ks), max(Ks), max(ds_)), np.nan) for n in ("softmax_code", "tammes_code")}
    best_codes, evidence, sources = {}, {}, {}
    for r in refined:
        a = r.attrs
        d, K = int(a["d"]), int(a["K"])
        i, j = ds_.index(d), Ks.index(K)
        _check_certified(d, K, "softmax_value", a["softmax_ovr"], a["softmax_ovr_gap"])
        _check_certified(d, K, "tammes_ovr", a["tammes_ovr"], a["tammes_ovr_gap"])
        status, angle, source = known.compare_with_best_known(d, K, float(a["tammes_angle"]))
        sources[f"({d},{K})"] = source
        row = {**{name: float(a[key]) for name, _, _, key in _TABLE}, "best_known_angle": angle,
               "best_known_status": _BEST_KNOWN.index(status), "verdict": cross.VERDICTS.index(a["verdict"]),
               "paper_optimal": known.PAPER_OPTIMAL_LINES.get((d, K), np.nan)}
        for n, v in row.items():
            tab[n][i, j] = v
        for n in vec:
            vec[n][i, j, :K, :d] = r[n].values
        best_codes[(d, K)] = r["softmax_code"].values
        evidence[f"({d},{K})"] = {"verdict": a["verdict"], "reason": a["reason"],
                                  "tammes_source": a["tammes_source"], "softmax_source": a["softmax_source"],
                                  "pool": json.loads(a["pool"])}
    for flag in ("best_known_status", "verdict"):  # -1 at grid points without a refine file
        tab[flag] = np.nan_to_num(tab[flag], nan=-1).astype(np.int8)
    data = {n: xr.DataArray(tab[n], dims=("d", "K"), attrs=at) for n, at in var_attrs.items()}
    for n in vec:
        data[n] = xr.DataArray(vec[n], dims=("d", "K", "code_row", "component"), attrs={
            "long_name": f"unit vectors of the best {n.split('_')[0]} code (rows < K, components < d)", "units": "1"})
    coords = {"d": ("d", ds_, {"long_name": "feature dimension", "units": "1"}),
              "K": ("K", Ks, {"long_name": "number of classes", "units": "1"}),
              "code_row": ("code_row", np.arange(max(Ks)), {"long_name": "row index of a code", "units": "1"}),
              "component": ("component", np.arange(max(ds_)), {"long_name": "vector component", "units": "1"})}
    ds = xr.Dataset(data, coords=coords)
    ds.attrs["gnc_verdict_evidence"] = json.dumps(evidence, sort_keys=True)
    ds.attrs["gnc_best_known_sources"] = json.dumps(sources, sort_keys=True)
    return ds, best_codes


def _ufm_table(ufm_paths, best_codes):
    parts = []
    for p in ufm_paths:
        u = open_netcdf(p)
        d, K = int(u.attrs["d"]), int(u.attrs["K"])
        dist = [code_distance(u["ufm_W"].sel(ufm_tau=t).values, best_codes[(d, K)]) if (d, K) in best_codes
                else np.nan for t in u["ufm_tau"].values]
        part = u.drop_vars(["ufm_W"]).drop_dims(["code_row", "component"], errors="ignore")
        part["ufm_distance_to_code"] = xr.DataArray(np.asarray(dist), dims=["ufm_tau"], attrs={
            "long_name": "RMS distance per vector of the UFM classifier to the best softmax code after the best "
                         "rotation/reflection and relabelling", "units": "1"})
        parts.append(part.expand_dims(d=[d], K=[K]))
    return merge_outer(parts) if parts else xr.Dataset()


def _trained(features: dict, runs: dict, metrics: xr.Dataset, codes_ds: xr.Dataset, best_codes):
    per_run, seeds = [], {}
    for run_id, path in features.items():
        coords = runs[run_id]
        f = open_netcdf(path)
        d, K = coords["d"], coords["K"]
        gnc2 = float(metrics["gnc2"].sel({k: coords[k] for k in RUN_DIMS}).dropna("epoch").isel(epoch=-1))
        value = float(codes_ds["softmax_value"].sel(d=d, K=K)) if (d, K) in best_codes else np.nan
        dist = code_distance(f["W"].values, best_codes[(d, K)]) if (d, K) in best_codes else np.nan
        ds = xr.Dataset({
            "gnc2_fraction": xr.DataArray(gnc2 / value, attrs={
                "long_name": "GNC2 of the final classifier / best softmax-code value", "units": "1"}),
            "code_distance": xr.DataArray(dist, attrs={
                "long_name": "RMS distance per vector of the final normalized classifier to the best softmax code "
                             "after the best rotation/reflection and relabelling", "units": "1"}),
        })
        per_run.append(with_run_coords(ds, coords))
        seeds.setdefault(tuple(coords[k] for k in RUN_DIMS if k != "seed"), []).append(
            (coords["seed"], f["W"].values, f["class_name"].values))
    out = combine_runs(per_run) if per_run else xr.Dataset()
    # assignment: the first small-K grid point trained with several seeds
    multi = sorted((g for g, v in seeds.items() if len(v) > 1 and g[RUN_DIMS.index("K")] <= 16),
                   key=lambda g: (g[RUN_DIMS.index("d")], g))
    if multi:
        g = multi[0]
        entries = sorted(seeds[g], key=lambda e: e[0])
        W = np.stack([w for _, w, _ in entries])
        W = W / np.linalg.norm(W, axis=2, keepdims=True)
        K = W.shape[1]
        one = {"units": "1"}
        gram = xr.Dataset(
            {"gram": (("seed", "k", "k2"), W @ W.transpose(0, 2, 1),
                      {"long_name": "cosine between normalized classifier rows at the final epoch", **one})},
            coords={"seed": ("seed", [e[0] for e in entries], {"long_name": "random seed of the run", **one}),
                    "k": ("k", np.arange(K), {"long_name": "class index", **one}),
                    "k2": ("k2", np.arange(K), {"long_name": "class index (second)", **one}),
                    "class_name": ("k", np.asarray(entries[0][2]).astype(str),
                                   {"long_name": "class name", **one})})
        gram = gram.expand_dims(dataset=[g[RUN_DIMS.index("dataset")]], arch=[g[RUN_DIMS.index("arch")]])
        out = merge_outer([out, gram])
        out.attrs["gnc_assignment_setting"] = json.dumps(dict(zip(RUN_DIMS, map(str, g))))
    return out


def build_codes_file(*, refined, ufm, metrics, features: dict, runs: dict, out) -> xr.Dataset:
    """Assemble ``results/codes.nc`` (see the module docstring) and write it atomically."""
    codes_ds, best = _code_tables([open_netcdf(p) for p in refined])
    m = open_netcdf(metrics)
    parts = [codes_ds, _ufm_table(ufm, best), _trained(features, runs, m, codes_ds, best)]
    ds = merge_outer([p for p in parts if len(p.data_vars)])
    for c in ds.coords:  # label coordinates (variant, dataset, arch) are dimensionless too
        ds[c].attrs.setdefault("units", "1")
    ds.attrs = {**provenance(stage="codes"), **codes_ds.attrs, **parts[2].attrs,
                **merge_dataset_attrs(m.attrs)}
    write_netcdf(ds, out)
    return ds


def verdict_lines(ds: xr.Dataset) -> list[str]:
    """One line per (d, K) of ``codes.nc``: verdict, Tammes angle against the best known, softmax value."""
    verdicts = ds["verdict"].attrs["flag_meanings"].split()
    known = ds["best_known_status"].attrs["flag_meanings"].split()
    out = []
    for (d, K), v in ds["verdict"].to_series().items():
        if v >= 0:
            at = {"d": d, "K": K}
            out.append(f"(d={d}, K={K}): {verdicts[v]}; Tammes {float(ds['tammes_angle'].sel(at)):.9f} deg "
                       f"(vs the best known: {known[int(ds['best_known_status'].sel(at))].replace('_', ' ')}), "
                       f"softmax rho_ovr {float(ds['softmax_value'].sel(at)):.10f}")
    return out
