"""A :class:`CodeSolution` as a file: :func:`save_solution` / :func:`load_solution`.

Each file is a small netCDF written atomically (:func:`gnc.io.write_netcdf`): the arrays as variables,
the scalars as attributes, certificate and settings as JSON, plus the provenance attributes.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..io import json_default, open_netcdf, write_netcdf
from ._common import CodeSolution


def solution_to_dataset(sol: CodeSolution):
    import xarray as xr

    from ..provenance import provenance

    data = {"W": xr.DataArray(np.asarray(sol.W, dtype=np.float64), dims=("k", "component"),
                              attrs={"long_name": "code vectors (unit rows)", "units": "1"}),
            "rattlers": xr.DataArray(np.asarray(sol.rattlers, dtype=np.int64), dims=("rattler",),
                                     attrs={"long_name": "indices of the rattlers (rows touching no other)",
                                            "units": "1"})}
    if sol.H is not None:
        data["H"] = xr.DataArray(np.asarray(sol.H, dtype=np.float64), dims=("h_row", "component"),
                                 attrs={"long_name": "the solver's feature vectors (unit rows)", "units": "1"})
    if sol.history:
        data["history"] = xr.DataArray(np.asarray(sol.history, dtype=np.float64).reshape(-1, 2),
                                       dims=("history_point", "history_field"),
                                       attrs={"long_name": "solver progress: seconds, best value so far",
                                              "units": "s, 1", "fields": "seconds, best value so far"})
    attrs = {"problem": sol.problem, "d": int(sol.d), "K": int(sol.K), "value": float(sol.value),
             "min_angle_deg": float(sol.min_angle_deg), "ovr": float(sol.ovr), "seed": int(sol.seed),
             "seconds": float(sol.seconds),
             "certificate": json.dumps(sol.certificate, sort_keys=True, default=json_default),
             "settings": json.dumps(sol.settings, sort_keys=True, default=json_default)}
    attrs.update(provenance())
    return xr.Dataset(data, attrs=attrs)


def dataset_to_solution(ds) -> CodeSolution:
    a = ds.attrs
    hist = ds["history"].values.tolist() if "history" in ds else None
    return CodeSolution(W=ds["W"].values.astype(np.float64), problem=str(a["problem"]), d=int(a["d"]), K=int(a["K"]),
                        value=float(a["value"]), min_angle_deg=float(a["min_angle_deg"]), ovr=float(a["ovr"]),
                        certificate=json.loads(a["certificate"]), rattlers=ds["rattlers"].values.astype(np.int64),
                        settings=json.loads(a["settings"]), seed=int(a["seed"]), seconds=float(a["seconds"]),
                        H=ds["H"].values.astype(np.float64) if "H" in ds else None,
                        history=[tuple(h) for h in hist] if hist is not None else None)


def save_solution(sol: CodeSolution, path: str | os.PathLike) -> None:
    write_netcdf(solution_to_dataset(sol), path)


def load_solution(path: str | os.PathLike) -> CodeSolution:
    return dataset_to_solution(open_netcdf(path))
