#!/usr/bin/env python
"""What budget decides the softmax-vs-Tammes verdict?  Solve both problems and cross-polish them.

For every (d, K) (default: the study's undecided ones, (10,50), (10,100), (20,100), (30,100)) this
runs, in one process and one after another (one core, no parallel jobs):

1. :func:`gnc.codes.solve_tammes` and :func:`gnc.codes.solve_softmax_code` with ``--budget``
   seconds each (the study's settings otherwise: ``--restarts`` restarts, seed 0);
2. :func:`gnc.codes.cross.cross_refine` of the two codes with ``--budget`` seconds (``--refine``
   overrides it), as the study's refine job does (the study also pools its trained classifiers;
   they never win at these (d, K), see codes.nc's pool records);

and prints, per (d, K): the verdict (same / differ / undecided), both codes' minimum angle and
certified rho_ovr, the KKT residuals of both codes (the verdict's first-order check, on the pairs /
margins within ``cross.ACTIVE_TOL`` of the extreme one) and their active-set sizes, the aligned
distance of the two codes and the wall times.  ``--profile`` also prints both residuals on wider active
sets (constraints within 1e-7 ... 1e-4 of the extreme one): a code near a first-order point that the
polish has not converged to shows a residual that drops as the set widens (diagnostic only; the verdict
uses ``cross.ACTIVE_TOL``).  ``--from DIR`` skips step 1 and starts from a
finished study's codes (``DIR/codes/{tammes,softmax,refined}/d{d}-K{K}.nc``: the two solver codes
and the study's two refined codes form the pool).

    python benchmarks/bench_verdicts.py                      # 10 s budgets: the default study's
    python benchmarks/bench_verdicts.py --budget 60          # about 3 min per (d, K)
    python benchmarks/bench_verdicts.py --from results --refine 300 --case 10 50
    python benchmarks/bench_verdicts.py --json out.json      # the printed numbers as JSON
    python benchmarks/bench_verdicts.py --from results --refine 10 --profile   # KKT vs active-set width

Wall times on a shared machine are noisy; the budgets are wall-clock, so a loaded machine does less
work within the same budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))

from gnc import codes  # noqa: E402
from gnc.codes import cross  # noqa: E402
from gnc.codes._polish import kkt_residual_softmax, kkt_residual_tammes  # noqa: E402
from gnc.codes.store import load_solution  # noqa: E402

CASES = ((10, 50), (10, 100), (20, 100), (30, 100))
PROFILE_TOLS = (1e-9, 1e-7, 1e-6, 1e-5, 1e-4)


def candidates_from(study: Path, d: int, K: int) -> dict[str, np.ndarray]:
    """The two solver codes and the two refined codes of a finished study at (d, K)."""
    import xarray as xr

    out = {p: load_solution(study / "codes" / p / f"d{d}-K{K}.nc").W for p in ("tammes", "softmax")}
    refined = study / "codes" / "refined" / f"d{d}-K{K}.nc"
    if refined.exists():
        with xr.open_dataset(refined) as ds:
            out["refined_tammes"] = ds["tammes_code"].values
            out["refined_softmax"] = ds["softmax_code"].values
    return out


def kkt_profile(res) -> dict:
    """KKT residuals (and active-set sizes) of both final codes on active sets of growing width."""
    H = res.softmax.W if res.softmax.H is None else res.softmax.H
    out = {}
    for tol in PROFILE_TOLS:
        kt = kkt_residual_tammes(res.tammes.W, tol=tol)
        ks = kkt_residual_softmax(res.softmax.W, H, tol=tol)
        out[f"{tol:g}"] = {"tammes": [kt["kkt_residual"], kt["n_active"]], "softmax": [ks["kkt_residual"], ks["n_active"]]}
    return out


def run_case(d: int, K: int, budget: float, refine: float, restarts: int, study: Path | None,
             profile: bool = False) -> dict:
    row: dict = {"d": d, "K": K, "budget": budget, "refine_budget": refine}
    if study is None:
        t0 = time.perf_counter()
        tam = codes.solve_tammes(d, K, restarts=restarts, seed=0, time_budget=budget)
        row["tammes_solve_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        soft = codes.solve_softmax_code(d, K, restarts=restarts, seed=0, time_budget=budget)
        row["softmax_solve_s"] = time.perf_counter() - t0
        row["solve_tammes_angle"], row["solve_softmax_ovr"] = float(tam.min_angle_deg), float(soft.ovr)
        cands = {"tammes": tam.W, "softmax": soft.W}
    else:
        cands = candidates_from(study, d, K)
    res = cross.cross_refine(d, K, cands, time_budget=refine)
    ev = res.evidence
    row.update(refine_s=res.seconds, verdict=ev["verdict"], reason=ev["reason"],
               tammes_angle=res.tammes.angle, tammes_ovr=res.tammes.ovr, softmax_angle=res.softmax.angle,
               softmax_ovr=res.softmax.ovr, tammes_kkt=ev["tammes_kkt"], softmax_kkt=ev["softmax_kkt"],
               tammes_n_active=ev["tammes_n_active"], softmax_n_active=ev["softmax_n_active"],
               align_distance=ev["align_distance"], tammes_source=res.tammes.name, softmax_source=res.softmax.name)
    if profile:
        row["kkt_profile"] = kkt_profile(res)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per solve (default 10, the study's)")
    ap.add_argument("--refine", type=float, default=None, help="seconds of the cross-polish (default: --budget)")
    ap.add_argument("--restarts", type=int, default=16, help="restarts per solve (default 16, the study's)")
    ap.add_argument("--case", type=int, nargs=2, action="append", metavar=("D", "K"), help="(d, K); repeatable")
    ap.add_argument("--from", dest="study", type=Path, default=None,
                    help="start from a finished study's codes under this results directory (no solves)")
    ap.add_argument("--profile", action="store_true", help="also the KKT residuals on wider active sets")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the study's jobs)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    args = ap.parse_args(argv)
    if args.budget <= 0 or (args.refine is not None and args.refine <= 0):
        ap.error("budgets must be positive seconds")
    refine = args.budget if args.refine is None else args.refine
    cases = [tuple(c) for c in args.case] if args.case else list(CASES)
    import torch

    torch.set_num_threads(args.threads)
    print(f"# bench_verdicts: budget {args.budget:g} s per solve, refine {refine:g} s, restarts {args.restarts}, "
          f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
          + (f", from {args.study}" if args.study else ""))
    rows = []
    for d, K in cases:
        r = run_case(d, K, args.budget, refine, args.restarts, args.study, args.profile)
        rows.append(r)
        print(f"(d={d:2d}, K={K:3d})  {r['verdict']:9s}  Tammes {r['tammes_angle']:.9f} deg / rho {r['tammes_ovr']:.10f}"
              f"  softmax {r['softmax_angle']:.9f} deg / rho {r['softmax_ovr']:.10f}  KKT {r['tammes_kkt']:.1e} "
              f"({r['tammes_n_active']} pairs), {r['softmax_kkt']:.1e} ({r['softmax_n_active']} margins)  "
              f"dist {r['align_distance']:.1e}  refine {r['refine_s']:.0f} s"
              + (f", solves {r['tammes_solve_s']:.0f} + {r['softmax_solve_s']:.0f} s" if "tammes_solve_s" in r else ""),
              flush=True)
        print(f"    {r['reason']}", flush=True)
        for tol, v in r.get("kkt_profile", {}).items():
            print(f"    active within {tol:>6s}: Tammes KKT {v['tammes'][0]:.1e} ({v['tammes'][1]} pairs), "
                  f"softmax KKT {v['softmax'][0]:.1e} ({v['softmax'][1]} margins)", flush=True)
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
