"""gnc.grid: one definition of the run dimensions and of "the same temperature"."""
import ast
import copy
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import pytest

from conftest import ROOT, TINY_CONFIG
from gnc.config import ConfigError, load_study
from gnc.grid import RUN_DIMS, same_tau, tau_value


def _rounded(x: float) -> Decimal:
    """Independent of the formatting used by gnc.grid: the exact binary value, rounded half-even to 6
    significant digits with decimal arithmetic."""
    d = Decimal(x)
    return d.quantize(Decimal(1).scaleb(d.adjusted() - 5), rounding=ROUND_HALF_EVEN)


def test_same_tau_is_equality_after_rounding_to_the_run_id_digits():
    rng = np.random.default_rng(0)
    base = 10.0 ** rng.uniform(-3, 1, 400)
    # pairs at every scale of difference, from far apart down to the last bits of a float
    other = base * (1 + rng.choice([1e-3, 1e-5, 3e-6, 1e-6, 3e-7, 1e-9, 1e-15, 0.0], 400) * rng.choice([-1, 1], 400))
    got = same_tau(base, other)
    want = np.array([_rounded(a) == _rounded(b) for a, b in zip(base, other)])
    assert (got == want).all()
    assert want.any() and not want.all()  # both outcomes occur
    assert [same_tau(a, b) for a, b in zip(base[:50], other[:50])] == list(got[:50])  # scalars agree
    assert same_tau(1 / 7, 0.142857) and same_tau(0.14285714, 1 / 7) and not same_tau(0.1, 0.100001)
    assert not same_tau(np.nan, np.nan) and not same_tau(np.array([np.nan]), 1.0)[0]
    assert tau_value(1 / 7) == 0.142857 and tau_value(0.2) == 0.2


def test_runs_at_the_same_temperature_are_one_run():
    """Two experiments at taus that are the same grid value train one run; different values, two."""
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["experiments"]["again"] = {**cfg["experiments"]["easy"], "tau": [0.1000000001]}
    _, runs = load_study(cfg)
    easy = [r for r in runs.values() if r.d == 3]
    assert len(easy) == 1 and easy[0].experiment == ["easy", "again"]
    cfg["experiments"]["again"]["tau"] = [0.100001]
    _, runs = load_study(cfg)
    assert len([r for r in runs.values() if r.d == 3]) == 2
    assert not same_tau(*[r.tau for r in runs.values() if r.d == 3])


@pytest.mark.parametrize("where", [("experiments", "easy", "tau"), ("codes", "ufm_tau")])
def test_a_grid_listing_one_temperature_twice_is_rejected(where):
    cfg = copy.deepcopy(TINY_CONFIG)
    node = cfg
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = [0.2, 0.1, 0.10000001]
    with pytest.raises(ConfigError, match=rf"{'.'.join(where)}: 0\.10000001 and 0\.1 are the same temperature"):
        load_study(cfg)


def test_run_dims_are_defined_once():
    """No module of the package or script restates the run-dimension tuple: they import gnc.grid's."""
    literal = ast.dump(ast.parse(repr(RUN_DIMS), mode="eval").body)
    found = []
    for f in [*(ROOT / "workflow" / "gnc").rglob("*.py"), *(ROOT / "workflow" / "scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Tuple) and ast.dump(node) == literal:
                found.append(str(f.relative_to(ROOT)))
    assert found == ["workflow/gnc/grid.py"], found
