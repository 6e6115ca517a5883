"""gnc.codes.cross (both problems' best codes over one pool, the verdict) and the codes.nc builder."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gnc import comparison
from gnc.claims import closed_form
from gnc.codes import code_distance, cross, known
from gnc.codes.store import save_solution
from gnc.codes._common import min_angle_deg
from gnc.config import code_grid, load_study
from gnc.maths import normalize_rows

from test_codes_known import _slow_ovr
from _polytopes import cross_polytope, icosahedron, polygon

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def _random_code(K, d, seed):
    W = np.random.default_rng(seed).standard_normal((K, d))
    return W / np.linalg.norm(W, axis=1, keepdims=True)


def _default_grid():
    cfg, runs = load_study(yaml.safe_load((ROOT / "config.yaml").read_text()))
    return code_grid(cfg, runs)


@pytest.mark.parametrize("d,K", _default_grid())
def test_neither_problem_loses_on_its_own_objective(d, K):
    """For every (d, K) of the default study: the Tammes code's angle >= the softmax code's, the softmax
    code's rho_ovr >= the Tammes code's, and each is the best of the whole pool on its objective."""
    cands = {"a": _random_code(K, d, 1), "b": _random_code(K, d, 2), "trained:x": _random_code(K, d, 3)}
    r = cross.cross_refine(d, K, cands, time_budget=1.0)
    assert r.tammes.angle >= r.softmax.angle
    assert r.softmax.ovr >= r.tammes.ovr
    assert r.tammes.angle >= max(c.angle for c in r.pool) - cross.ANGLE_TOL
    assert r.softmax.ovr >= max(c.ovr for c in r.pool) - cross.OVR_TOL - r.softmax.ovr_gap
    # independent evaluation of the published numbers
    assert min_angle_deg(r.tammes.W) == pytest.approx(r.tammes.angle, abs=1e-12)
    assert r.evidence["verdict"] in cross.VERDICTS


def test_every_final_code_is_polished_for_its_own_objective():
    """Without a time budget the best codes are polishes of the candidates, first-order optimal."""
    r = cross.cross_refine(3, 10, {"a": _random_code(10, 3, 1), "b": _random_code(10, 3, 2)}, time_budget=None)
    assert r.tammes.name.endswith(">tammes") and r.softmax.name.endswith(">softmax") or \
        r.evidence["verdict"] == "same"
    assert r.evidence["tammes_kkt"] < 1e-9 and r.evidence["softmax_kkt"] < 1e-9
    best, _ = known.best_known_tammes(3, 10)
    assert r.tammes.angle <= best + 1e-6                       # never above the proved optimum


def test_a_tie_on_both_objectives_is_one_code():
    """(3, 5): the Tammes optimum is not unique (a rattler moves freely); two optimal codes that tie on
    both objectives within the tolerance give one code for both problems, hence 'same'."""
    a = cross_polytope(3)[:5]
    b = a.copy()
    b[4] = np.array([0.0, -0.6, -0.8])       # the rattler -e2 moved: still >= 90 degrees from every vector
    r = cross.cross_refine(3, 5, {"a": a, "b": b / np.linalg.norm(b, axis=1, keepdims=True)}, time_budget=None)
    assert code_distance(a, b) > 0.1                                        # two different optimal codes
    assert r.tammes is r.softmax and r.evidence["verdict"] == "same"
    assert r.tammes.angle == pytest.approx(90.0, abs=1e-6) and r.softmax.ovr == pytest.approx(1.0, abs=1e-9)


def test_same_code_up_to_symmetry_is_same():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    ico = normalize_rows(icosahedron())
    r = cross.cross_refine(3, 12, {"tammes": ico, "softmax": ico[rng.permutation(12)] @ Q}, time_budget=2.0)
    assert r.evidence["verdict"] == "same" and r.evidence["align_distance"] < 1e-6
    assert r.tammes.angle == pytest.approx(known.best_known_tammes(3, 12)[0], abs=1e-9)
    assert r.softmax.ovr == pytest.approx(1 - 1 / np.sqrt(5), abs=1e-9)
    assert r.evidence["tammes_kkt"] < 1e-9 and r.evidence["softmax_kkt"] < 1e-9


def test_unconverged_different_codes_are_undecided():
    a, b = _random_code(20, 4, 5), _random_code(20, 4, 6)
    ev = cross.verdict(cross.evaluate("a", a), cross.evaluate("b", b))
    assert ev["verdict"] == "undecided" and "first-order" in ev["reason"]
    assert ev["align_distance"] == pytest.approx(code_distance(a, b))


def test_candidate_shape_is_checked():
    with pytest.raises(ValueError, match="candidate 'x' has shape"):
        cross.cross_refine(3, 5, {"x": np.ones((4, 3))})


def test_codes_tables_padding_verdicts_units_and_certificates(tmp_path):
    from gnc.io import open_netcdf, write_netcdf

    files = []
    for d, K, cands in [(2, 5, {"p": polygon(5)}), (3, 12, {"i": icosahedron()}),
                        (3, 10, {"a": _random_code(10, 3, 1), "b": _random_code(10, 3, 2)})]:
        p = tmp_path / f"d{d}-K{K}.nc"
        write_netcdf(cross.cross_dataset(cross.cross_refine(d, K, cands, time_budget=1.0)), p)
        files.append(open_netcdf(p))
    ds, best = comparison._code_tables(files)
    assert ds["softmax_code"].dims == ("d", "K", "code_row", "component")
    assert ds.sizes["code_row"] == 12 and ds.sizes["component"] == 3
    sm = ds["softmax_code"].sel(d=2, K=5).values
    assert np.isfinite(sm[:5, :2]).all() and np.isnan(sm[5:]).all() and np.isnan(sm[:, 2:]).all()
    assert np.isnan(ds["softmax_value"].sel(d=2, K=12))
    assert ds["verdict"].sel(d=3, K=12) == cross.VERDICTS.index("same")
    assert ds["verdict"].sel(d=2, K=12) == -1
    # certified values, checked by an independent exact evaluation
    W = ds["softmax_code"].sel(d=3, K=10).values[:10, :3]
    assert float(ds["softmax_value"].sel(d=3, K=10)) == pytest.approx(_slow_ovr(W).min(), abs=1e-6)
    assert float(ds["softmax_value"].sel(d=2, K=5)) == pytest.approx(closed_form(2, 5)[1], abs=1e-9)
    assert (ds["softmax_gap"].fillna(0) <= comparison.GAP_TOL).all()
    flags = ds["best_known_status"].attrs["flag_meanings"].split()
    assert flags[int(ds["best_known_status"].sel(d=2, K=5))] == "matches"
    assert float(ds["tammes_angle"].sel(d=3, K=10)) <= float(ds["best_known_angle"].sel(d=3, K=10)) + 1e-6
    for v in ds.variables:
        assert ds[v].attrs.get("long_name") and "units" in ds[v].attrs, v
    lines = comparison.verdict_lines(ds)
    assert len(lines) == 3 and "(d=3, K=12): same" in lines[-1] and "best known: matches" in lines[-1]
    write_netcdf(ds, tmp_path / "codes.nc")
    back = open_netcdf(tmp_path / "codes.nc")
    np.testing.assert_array_equal(back["softmax_code"].values, ds["softmax_code"].values)


def test_uncertified_value_is_refused():
    with pytest.raises(ValueError, match="not certified"):
        comparison._check_certified(10, 50, "softmax_value", 0.77, 1e-3)


def test_one_code_best_for_both_but_not_first_order_is_undecided():
    """A code that is merely the best found for both objectives (here: a random code, nothing else in
    the pool, no polish) says nothing about whether the two problems share an optimum."""
    c = cross.evaluate("random", _random_code(10, 3, 5))
    ev = cross.verdict(c, c)
    assert ev["align_distance"] == 0.0 and ev["tammes_kkt"] > cross.KKT_TOL
    assert ev["verdict"] == "undecided" and "first-order" in ev["reason"]


def test_bench_verdicts_runs_and_decides_a_simplex(tmp_path):
    """benchmarks/bench_verdicts.py end to end on (3, 4) (the regular tetrahedron, optimal for both
    problems): solves, cross-polish, verdict 'same' with the closed-form angle and rho_ovr, and its JSON;
    then again from the saved codes of a study directory (``--from``)."""
    import importlib.util
    import json

    from gnc import codes

    spec = importlib.util.spec_from_file_location("bench_verdicts", ROOT / "benchmarks" / "bench_verdicts.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "rows.json"
    assert bench.main(["--budget", "1", "--restarts", "2", "--case", "3", "4", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["verdict"] == "same"
    assert row["tammes_angle"] == pytest.approx(known.best_known_tammes(3, 4)[0], abs=1e-7)
    assert row["softmax_ovr"] == pytest.approx(closed_form(3, 4)[1], abs=1e-9)
    study = tmp_path / "results"
    for problem, solver in (("tammes", codes.solve_tammes), ("softmax", codes.solve_softmax_code)):
        (study / "codes" / problem).mkdir(parents=True)
        save_solution(solver(3, 4, restarts=2, seed=1, time_budget=1), study / "codes" / problem / "d3-K4.nc")
    assert bench.main(["--from", str(study), "--budget", "1", "--case", "3", "4", "--json", str(out)]) == 0
    assert json.loads(out.read_text())[0]["verdict"] == "same"
    with pytest.raises(SystemExit):
        bench.main(["--budget", "0"])


def test_one_lp_cannot_take_the_whole_polish_budget(monkeypatch):
    """Each LP of the SLP polish gets at most LP_TIME_FRACTION of the remaining time (at least
    LP_MIN_SECONDS); an LP that fails (here: every one) shrinks the trust radius, and with it the next
    LP, instead of ending the polish.  Checked on the time limits handed to the LP solver (no clock)."""
    from gnc.codes import _polish

    given = []

    class Failed:
        status, x = 1, None

    def fake_lp(cost, A, b, r, nv, method, time_left=None, step_penalty=0.0):
        given.append((time_left, r))
        return Failed()

    monkeypatch.setattr(_polish, "_lp", fake_lp)
    X = _random_code(12, 3, 0)
    _, _, info = _polish.slp_tammes(X, r0=1e-4, time_limit=100.0)
    assert info["lp_failures"] == len(given) >= 2
    assert all(t <= _polish.LP_TIME_FRACTION * 100.0 + 1e-9 for t, _ in given)
    assert given[0][0] >= _polish.LP_MIN_SECONDS
    assert given[1][1] == pytest.approx(given[0][1] / 4)       # the radius shrank after the failed LP
