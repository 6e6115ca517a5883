"""gnc.maths: shared numerical helpers."""
import math

import numpy as np
import pytest
import torch

from gnc.maths import normalize_rows


def test_normalize_rows_values():
    W = np.array([[3.0, 4.0], [0.0, -2.0], [1e-100, 1e-100]])
    out = normalize_rows(W)
    expected = np.array([[0.6, 0.8], [0.0, -1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)
    assert out.dtype == np.float64 and W[0, 0] == 3.0  # a copy; the input is unchanged
    np.testing.assert_allclose(normalize_rows(torch.tensor(W[:2], dtype=torch.float32)), expected[:2], atol=1e-7)


@pytest.mark.parametrize("bad, error, words", [
    (np.zeros(3), ValueError, "2-D"),
    (np.array([[1.0, 0.0], [0.0, 0.0]]), ValueError, "row(s) [1] are zero"),
    (np.array([[1.0, np.nan], [1.0, 0.0]]), FloatingPointError, "non-finite values (first at index 0)"),
])
def test_normalize_rows_refuses_bad_input(bad, error, words):
    with pytest.raises(error) as exc:
        normalize_rows(bad, what="classifier")
    assert words in str(exc.value) and "classifier" in str(exc.value)


def test_normalize_rows_matches_an_independent_norm_and_is_safe_at_the_ends_of_the_range():
    """Against math.hypot (its own scaled algorithm), for ordinary rows and for rows whose squares
    overflow or underflow in float64."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((40, 7)) * np.exp(3 * rng.standard_normal((40, 1)))
    expected = np.array([row / math.hypot(*row) for row in W])
    np.testing.assert_allclose(normalize_rows(W), expected, rtol=1e-15, atol=0)
    for scale in (1e300, 1e-300, 1e-320):
        X = scale * np.array([[3.0, 4.0, 0.0], [1.0, -1.0, 1.0]])
        expected = [[0.6, 0.8, 0.0], [v / math.hypot(1, 1, 1) for v in (1.0, -1.0, 1.0)]]
        np.testing.assert_allclose(normalize_rows(X), expected, rtol=0, atol=2e-16 if scale > 1e-310 else 1e-3)


def test_normalize_rows_of_a_batch_normalizes_each_member():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 2, 5, 4))
    out = normalize_rows(X)
    assert out.shape == X.shape
    for i in range(3):
        for j in range(2):
            assert np.array_equal(out[i, j], normalize_rows(X[i, j]))
    X[2, 1, 3] = 0.0
    with pytest.raises(ValueError, match=r"row\(s\) \[\(2, 1, 3\)\] are zero"):
        normalize_rows(X)
