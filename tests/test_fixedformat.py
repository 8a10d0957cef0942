"""The fixed-point format (smalldata.fixedformat): the numpy and the compiled conversion agree with exact arithmetic."""
from fractions import Fraction

import numpy as np
import pytest

from smalldata.fixedformat import from_fixed, on_grid, round_fixed, square_fixed, to_fixed, value_limit
from smalldata.fused.rowsums import fixed_point, fixed_square


def exact_fixed(v: float, bits: int) -> int:
    """rint(v * 2**bits), half to even, in exact rational arithmetic."""
    return round(Fraction(v) * 2 ** bits)  # Python's round of a Fraction: half to even


def exact_square(q: int, bits: int) -> int:
    """round(q * q / 2**bits), half up, in exact rational arithmetic."""
    return int(Fraction(q * q, 2 ** bits) + Fraction(1, 2))  # q * q >= 0: int() is the floor


@pytest.mark.parametrize("bits", [0, 1, 12, 20])
def test_numpy_and_compiled_conversion_give_the_exact_integers(bits):
    rng = np.random.default_rng(bits)
    limit = value_limit(bits)
    halves = (rng.integers(-1000, 1000, 200) + 0.5) / 2.0 ** bits  # ties: half to even
    v = np.concatenate([halves, rng.uniform(-limit, limit, 2000), [0.0, -0.0, limit * 0.999]]).astype(np.float32)
    v = v[np.abs(v) < limit]
    expected = np.array([exact_fixed(float(x), bits) for x in v], dtype=np.int64)
    assert np.array_equal(round_fixed(v, bits).astype(np.int64), expected)
    q, ok, n_bad = to_fixed(v, bits)
    assert ok.all() and n_bad == 0 and np.array_equal(q, expected)
    scale = np.float32(2.0 ** bits)
    compiled = np.array([fixed_point(x, scale) for x in v])
    assert compiled.dtype == np.float64 and np.array_equal(compiled.astype(np.int64), expected)
    assert np.array_equal(from_fixed(expected, bits), [float(Fraction(int(k), 2 ** bits)) for k in expected])


@pytest.mark.parametrize("bits", [0, 1, 12, 30])
def test_square_numpy_and_compiled_agree_with_exact_rounding(bits):
    rng = np.random.default_rng(100 + bits)
    q = np.concatenate([rng.integers(-2 ** 31, 2 ** 31, 500), np.arange(-5, 6), [2 ** 31, -2 ** 31]]).astype(np.int64)
    expected = np.array([exact_square(int(k), bits) for k in q], dtype=np.int64)
    assert np.array_equal(square_fixed(q, bits), expected)
    assert np.array_equal([fixed_square(np.int64(k), bits) for k in q], expected)


def test_out_of_range_and_non_finite_values_are_not_used():
    v = np.array([1.0, np.nan, np.inf, -2.0 ** 19, 2.0 ** 19 - 1], np.float32)
    q, ok, n_bad = to_fixed(v, 12, valid=np.array([True, True, True, True, False]))
    assert ok.tolist() == [True, False, False, False, False] and n_bad == 3
    assert q.tolist() == [4096, 0, 0, 0, 0]


def test_on_grid_rounds_to_the_resolution():
    x = np.array([0.1, -0.37, np.nan, 3.0])
    g = on_grid(x, 4)
    assert np.array_equal(g[[0, 1, 3]], [round(0.1 * 16) / 16, round(-0.37 * 16) / 16, 3.0]) and np.isnan(g[2])
