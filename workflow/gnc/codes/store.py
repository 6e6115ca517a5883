"""A store of solved codes so that nobody recomputes a code that exists.

Layout: ``<root>/<problem>/d<d>_K<K>.nc`` holds the best solution known for the key
``(problem, d, K)``; a solution is only written when it beats the stored value (or when
``force=True``).  Each file is a small netCDF (written atomically with :func:`gnc.io.write_netcdf`)
with variables ``W (k, component)``, optionally ``H (h_row, component)``, ``rattlers`` and
``history (history_point, history_field)``, and attributes problem, d, K, value, min_angle_deg,
ovr, seed, seconds, certificate and settings (JSON) plus the provenance attributes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ._common import PROBLEMS, CodeSolution


class CodeStore:
    """Best-known codes keyed by (problem, d, K) under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, problem: str, d: int, K: int) -> Path:
        if problem not in PROBLEMS:
            raise ValueError(f"unknown problem {problem!r}")
        return self.root / problem / f"d{int(d)}_K{int(K)}.nc"

    def __contains__(self, key) -> bool:
        return self.path(*key).exists()

    def keys(self) -> list[tuple[str, int, int]]:
        out = []
        for p in PROBLEMS:
            for f in sorted((self.root / p).glob("d*_K*.nc")):
                d, K = f.stem[1:].split("_K")
                out.append((p, int(d), int(K)))
        return out

    def get(self, problem: str, d: int, K: int) -> CodeSolution | None:
        f = self.path(problem, d, K)
        return load_solution(f) if f.exists() else None

    def put(self, sol: CodeSolution, force: bool = False) -> bool:
        """Store ``sol`` if it beats the stored value (or ``force``).  Returns True when written."""
        old = self.get(sol.problem, sol.d, sol.K)
        if old is not None and not force and not (sol.value > old.value):
            return False
        save_solution(sol, self.path(sol.problem, sol.d, sol.K))
        return True

    def get_or_solve(self, problem: str, d: int, K: int, *, min_value: float | None = None, solver=None,
                     **solver_kwargs) -> CodeSolution:
        """The stored solution if there is one (with ``value >= min_value`` when given), else solve,
        store and return it.  ``solver`` defaults to the solver of ``problem``."""
        old = self.get(problem, d, K)
        if old is not None and (min_value is None or old.value >= min_value):
            return old
        if solver is None:
            solver = default_solver(problem)
        sol = solver(d, K, **solver_kwargs)
        self.put(sol)
        best = self.get(problem, d, K)
        return best if best is not None else sol


def default_solver(problem: str):
    if problem == "tammes":
        from .tammes import solve_tammes
        return solve_tammes
    if problem == "softmax":
        from .softmax import solve_softmax_code
        return solve_softmax_code
    if problem == "hardmax":
        from .hardmax import solve_hardmax
        return solve_hardmax
    raise ValueError(f"no default solver for {problem!r} (the UFM needs n and tau)")


def _json(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def solution_to_dataset(sol: CodeSolution):
    import xarray as xr

    from ..provenance import provenance

    data = {"W": xr.DataArray(np.asarray(sol.W, dtype=np.float64), dims=("k", "component")),
            "rattlers": xr.DataArray(np.asarray(sol.rattlers, dtype=np.int64), dims=("rattler",))}
    if sol.H is not None:
        data["H"] = xr.DataArray(np.asarray(sol.H, dtype=np.float64), dims=("h_row", "component"))
    if sol.history:
        data["history"] = xr.DataArray(np.asarray(sol.history, dtype=np.float64).reshape(-1, 2),
                                       dims=("history_point", "history_field"),
                                       attrs={"fields": "seconds, best value so far"})
    attrs = {"problem": sol.problem, "d": int(sol.d), "K": int(sol.K), "value": float(sol.value),
             "min_angle_deg": float(sol.min_angle_deg), "ovr": float(sol.ovr), "seed": int(sol.seed),
             "seconds": float(sol.seconds),
             "certificate": json.dumps(sol.certificate, sort_keys=True, default=_json),
             "settings": json.dumps(sol.settings, sort_keys=True, default=_json)}
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
    from ..io import write_netcdf

    write_netcdf(solution_to_dataset(sol), path)


def load_solution(path: str | os.PathLike) -> CodeSolution:
    from ..io import open_netcdf

    return dataset_to_solution(open_netcdf(path))
