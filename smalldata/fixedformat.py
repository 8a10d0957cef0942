"""The fixed-point format of the exact run sums and cubes: scale, range, conversion, squares.

A value ``x`` becomes the integer ``rint(x * 2**scale_bits)`` (round half to even); it is
accepted while ``|x| < 2**(31 - scale_bits)``, so that ``|q| <= 2**31``. Integer sums are
exact and associative: any split of a run over MPI ranks and batches gives the same
result bit for bit. This module is the one definition: the numpy accumulators
(:mod:`smalldata.sums.fixedpoint`) convert arrays with :func:`round_fixed`, the compiled
pass (:mod:`smalldata.fused.rowsums`) compiles :func:`fixed_value` and
:func:`square_fixed` for single values; both give the same integers.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from smalldata.errors import ConfigError


def scale(scale_bits: int) -> float:
    """The factor ``2**scale_bits`` from values to fixed-point integers."""
    return 2.0 ** scale_bits


def value_limit(scale_bits: int) -> float:
    """Largest magnitude (exclusive) accepted at ``scale_bits``: 2**(31 - scale_bits)."""
    return 2.0 ** (31 - scale_bits)


def check_scale_bits(name: str, bits: int, maximum: int) -> int:
    """``bits`` as an int, or :class:`~smalldata.errors.ConfigError` naming ``name`` unless it is 0..``maximum``."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 0 <= bits <= maximum:
        raise ConfigError(name, f"{bits!r} is not valid; use an integer 0..{maximum}")
    return int(bits)


def fixed_value(v, factor):
    """The fixed-point integer ``rint(v * factor)`` of one float32 value, as a float64.

    The float32 product is rounded in float64, where it is exact: the same integer as
    :func:`round_fixed` gives in float32. Written for numba (compiled by the fused pass).
    """
    return np.rint(np.float64(v * factor))


def square_fixed(q, scale_bits):
    """Fixed-point square at the same scale: ``round(q * q / 2**scale_bits)`` (int64, half up).

    For int64 arrays and, compiled by numba, for single values.
    """
    half = (1 << (scale_bits - 1)) if scale_bits > 0 else 0
    return (q * q + half) >> scale_bits


def round_fixed(x: np.ndarray, scale_bits: int, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``rint(x * 2**scale_bits)`` in ``x``'s float type (exact: a power of two, then an integer).

    ``out``: where to write it (may be ``x`` itself); default a new array.
    """
    out = np.multiply(x, x.dtype.type(scale(scale_bits)), out=out, dtype=x.dtype)
    np.rint(out, out=out)
    return out


def to_fixed(values: np.ndarray, scale_bits: int,
             valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, int]:
    """Fixed-point integers of ``values`` with the entries that could be converted.

    float32 input is scaled and rounded in float32, other input in float64
    (:func:`round_fixed`): the integers are the same as with float64 arithmetic.

    Parameters
    ----------
    values : ndarray
    scale_bits : int
    valid : ndarray of bool, optional
        Entries to use (True = good); default all.

    Returns
    -------
    q : ndarray int64
        0 where not used.
    ok : ndarray bool
        Used: valid, finite and ``|value| < value_limit(scale_bits)``.
    n_bad : int
        Valid entries that were not finite or out of range.
    """
    x = np.asarray(values)
    if x.dtype != np.float32:
        x = x.astype(np.float64)
    ok = np.abs(x) < x.dtype.type(value_limit(scale_bits))  # False for NaN and inf
    if valid is None:
        n_bad = ok.size - int(np.count_nonzero(ok))
    else:
        n_bad = int(np.count_nonzero(valid)) - int(np.count_nonzero(ok & valid))
        ok &= valid
    y = round_fixed(x, scale_bits)
    y[~ok] = 0
    return y.astype(np.int64), ok, n_bad


def from_fixed(q: np.ndarray, scale_bits: int) -> np.ndarray:
    """float64 values of fixed-point integers."""
    return np.asarray(q, dtype=np.float64) / scale(scale_bits)


def on_grid(values: np.ndarray, scale_bits: int) -> np.ndarray:
    """float64 ``values`` rounded to the fixed-point grid ``2**-scale_bits`` (NaN stays NaN)."""
    return from_fixed(round_fixed(np.asarray(values, dtype=np.float64), scale_bits), scale_bits)
