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
    (np.array([[1.0, np.nan], [1.0, 0.0]]), FloatingPointError, "non-finite values, e.g. row 0"),
])
def test_normalize_rows_refuses_bad_input(bad, error, words):
    with pytest.raises(error) as exc:
        normalize_rows(bad, what="classifier")
    assert words in str(exc.value) and "classifier" in str(exc.value)
