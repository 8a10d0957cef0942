"""Per-row accumulation of the run sums and the cube inside the fused pass.

Exact fixed-point sums as :mod:`smalldata.fixedformat` defines them: each valid value
within range becomes the integer ``rint(value * 2**scale_bits)``. A row of one frame is
added to a block accumulator (float64, which holds these integers exactly below 2**53),
and a block's accumulator is added to the run's int64 arrays once per batch. Every
accumulator has a loop of its own: each vectorises alone, together they would not.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from smalldata.fixedformat import fixed_value, square_fixed


#: ``rint(v * scale)`` of a float32 value as a float64 (:func:`smalldata.fixedformat.fixed_value`, compiled)
fixed_point = njit(cache=True, nogil=True, inline="always")(fixed_value)
#: The fixed-point square at ``sq_bits`` (:func:`smalldata.fixedformat.square_fixed`, compiled)
fixed_square = njit(cache=True, nogil=True, inline="always")(square_fixed)


@njit(cache=True, nogil=True, inline="always")
def sum_row(vals, ok, w, s_sum, s_cnt, s_max, s_above, thr, scale, limit):
    """One row of one kept frame into a block's run sums.

    One loop per accumulator: each vectorises on its own, together they would not.
    """
    sum_count(vals, ok, w, s_sum, s_cnt, scale, limit)
    for j in range(w):
        v = vals[j]
        x = v if ok[j] & (abs(v) < limit) else np.float32(-np.inf)  # finite where valid
        m = s_max[j]
        s_max[j] = x if x > m else m
    if s_above.size > 0:
        for j in range(w):
            v = vals[j]
            s_above[j] += ok[j] & (abs(v) < limit) & (v > thr)


@njit(cache=True, nogil=True, inline="always")
def sum_count(vals, ok, w, s_sum, s_cnt, scale, limit):
    """Fixed-point sums and counts of the valid values within the fixed-point range (``abs < limit``:
    False if not finite)."""
    for j in range(w):
        v = vals[j]
        good = ok[j] & (abs(v) < limit)
        s_sum[j] += fixed_point(v, scale) if good else 0.0
        s_cnt[j] += good


@njit(cache=True, nogil=True)
def flush_sums(s_sum, s_cnt, s_max, s_above, rs_sum, rs_cnt, rs_max, rs_above):
    """Add a block row's sums of the batch to the run sums."""
    for j in range(s_sum.shape[0]):
        rs_sum[j] += np.int64(s_sum[j])
        rs_cnt[j] += s_cnt[j]
        rs_max[j] = max(rs_max[j], s_max[j])
    if rs_above.size > 0:
        for j in range(s_sum.shape[0]):
            rs_above[j] += s_above[j]


@njit(cache=True, nogil=True, inline="always")
def cube_row(vals, ok, w, c_sum, c_cnt, c_sq, scale, limit, sq_bits):
    """One row of one frame into a block's accumulator of its cube group (sums as in :func:`sum_row`).

    Returns the number of valid values that are not finite or beyond the fixed-point range.
    """
    sum_count(vals, ok, w, c_sum, c_cnt, scale, limit)
    bad = 0
    for j in range(w):
        bad += ok[j] & ~(abs(vals[j]) < limit)
    if c_sq.size > 0:
        for j in range(w):
            v = vals[j]
            if ok[j] and abs(v) < limit:
                c_sq[j] += fixed_square(np.int64(fixed_point(v, scale)), sq_bits)
    return bad


@njit(cache=True, nogil=True)
def flush_cube(s_sum, s_cnt, s_sq, c_sum, c_cnt, c_sq):
    """Add a block row's sums of one cube group over the batch to the cube."""
    for j in range(s_sum.shape[0]):
        c_sum[j] += np.int64(s_sum[j])
        c_cnt[j] += s_cnt[j]
    for j in range(s_sq.shape[0]):
        c_sq[j] += s_sq[j]
