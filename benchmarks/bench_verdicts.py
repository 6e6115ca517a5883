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
distance of the two codes and the wall times.  ``--from DIR`` skips step 1 and starts from a
finished study's codes (``DIR/codes/{tammes,softmax,refined}/d{d}-K{K}.nc``: the two solver codes
and the study's two refined codes form the pool).

    python benchmarks/bench_verdicts.py                      # 10 s budgets: the default study's
    python benchmarks/bench_verdicts.py --budget 60          # about 3 min per (d, K)
    python benchmarks/bench_verdicts.py --from results --refine 300 --case 10 50
    python benchmarks/bench_verdicts.py --json out.json      # the printed numbers as JSON

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
from gnc.codes.store import load_solution  # noqa: E402

CASES = ((10, 50), (10, 100), (20, 100), (30, 100))


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


def run_case(d: int, K: int, budget: float, refine: float, restarts: int, study: Path | None) -> dict:
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
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per solve (default 10, the study's)")
    ap.add_argument("--refine", type=float, default=None, help="seconds of the cross-polish (default: --budget)")
    ap.add_argument("--restarts", type=int, default=16, help="restarts per solve (default 16, the study's)")
    ap.add_argument("--case", type=int, nargs=2, action="append", metavar=("D", "K"), help="(d, K); repeatable")
    ap.add_argument("--from", dest="study", type=Path, default=None,
                    help="start from a finished study's codes under this results directory (no solves)")
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
        r = run_case(d, K, args.budget, refine, args.restarts, args.study)
        rows.append(r)
        print(f"(d={d:2d}, K={K:3d})  {r['verdict']:9s}  Tammes {r['tammes_angle']:.9f} deg / rho {r['tammes_ovr']:.10f}"
              f"  softmax {r['softmax_angle']:.9f} deg / rho {r['softmax_ovr']:.10f}  KKT {r['tammes_kkt']:.1e} "
              f"({r['tammes_n_active']} pairs), {r['softmax_kkt']:.1e} ({r['softmax_n_active']} margins)  "
              f"dist {r['align_distance']:.1e}  refine {r['refine_s']:.0f} s"
              + (f", solves {r['tammes_solve_s']:.0f} + {r['softmax_solve_s']:.0f} s" if "tammes_solve_s" in r else ""),
              flush=True)
        print(f"    {r['reason']}", flush=True)
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
