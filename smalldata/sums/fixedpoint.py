"""Exact fixed-point sums of images: the numpy kernels shared by run sums and cubes.

Values become int64 fixed point as :mod:`smalldata.fixedformat` defines it (its functions
are offered here too, for the accumulators); integer sums are exact and associative,
so any split of a run over MPI ranks and batches gives the same result bit for bit.
The blocked kernels (:func:`prepare_block`, :func:`group_sums`, ...) go through a batch
in pixel blocks that stay in the CPU cache. Used by :class:`~smalldata.sums.runsums.RunSums`
and :class:`~smalldata.sums.cube.CubeAccumulator` (the fused pass has its own compiled
accumulation, :mod:`smalldata.fused.rowsums`). See ``docs/cubes.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from smalldata.fixedformat import (  # noqa: F401 - the format's functions, offered with the kernels
    check_scale_bits,
    from_fixed,
    round_fixed,
    scale,
    square_fixed,
    to_fixed,
    value_limit,
)

#: Target elements (frames x pixels) of one pixel block while accumulating: 4 MB of float32
#: scratch, which stays in the CPU cache while a block goes through its passes and keeps the
#: Python overhead per block small against the work.
BLOCK_ELEMENTS = 1 << 20
#: Most frames summed in one float64 reduction. Fixed-point values have ``|q| <= 2**31``, so a
#: sum of up to 2**21 of them stays below 2**52 and every float64 partial sum is an exact integer.
MAX_ROWS = 1 << 21
_BITS = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}


# ---------------------------------------------------------------------------- blocked kernels
class Workspace:
    """Scratch arrays reused from call to call (grown when needed, never shrunk)."""

    def __init__(self):
        self._buffers: Dict[str, np.ndarray] = {}

    def get(self, name: str, shape: Tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array ``shape`` of ``dtype``, backed by the buffer ``name``."""
        size, dtype = int(np.prod(shape, dtype=np.int64)), np.dtype(dtype)
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = self._buffers[name] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)


def as_rows(index: np.ndarray):
    """Increasing row indices as a slice when they are evenly spaced (a view, no copy), else as they are."""
    if len(index) == 1 or (len(index) > 1 and index[1] > index[0] and np.all(np.diff(index) == index[1] - index[0])):
        step = int(index[1] - index[0]) if len(index) > 1 else 1
        return slice(int(index[0]), int(index[-1]) + 1, step)
    return index


def row_plan(frames: np.ndarray, group: Optional[np.ndarray] = None, dense: bool = True,
             block_rows: Optional[np.ndarray] = None) -> Tuple[object, int, List[Tuple[int, object, int]]]:
    """How to read the selected ``frames`` (ascending) of a batch, and each group's rows within a block.

    Parameters
    ----------
    frames : ndarray of int
        Selected frames, ascending.
    group : ndarray of int, optional
        Group of every frame of the batch; default one group 0.
    dense : bool
        Allow reading the whole range of ``frames`` as one slice (no copy) when they
        fill at least half of it; rows in between are then read but not summed.
    block_rows : ndarray of int, optional
        Read these frames instead (ascending, a superset of ``frames``; e.g. shared
        with run sums).

    Returns
    -------
    src : slice or ndarray
        Rows of the batch to read (a slice is a view, an array a copy).
    n_src : int
        Number of rows read.
    parts : list of (group, rows, n_rows)
        Each group's rows within what is read: a slice when evenly spaced.
    """
    if block_rows is not None:
        src, local, n_src = as_rows(block_rows), np.searchsorted(block_rows, frames), len(block_rows)
    else:
        src, local = as_rows(frames), np.arange(len(frames))
        if not isinstance(src, slice) and dense and 2 * len(frames) >= frames[-1] - frames[0] + 1:
            src, local = slice(int(frames[0]), int(frames[-1]) + 1), frames - frames[0]
        n_src = int(local[-1]) + 1
    g = np.zeros(len(frames), dtype=np.int64) if group is None else group[frames]
    order = np.argsort(g, kind="stable")
    bounds = np.flatnonzero(np.r_[True, g[order][1:] != g[order][:-1], True])
    return src, n_src, [(int(g[order[a]]), as_rows(local[order[a:b]]), int(b - a))
                        for a, b in zip(bounds[:-1], bounds[1:])]


def pixel_blocks(n_pix: int, n_rows: int):
    """``(p0, p1)`` pixel ranges of about :data:`BLOCK_ELEMENTS` elements for ``n_rows`` frames."""
    block = max(1024, BLOCK_ELEMENTS // max(n_rows, 1))
    return [(p0, min(p0 + block, n_pix)) for p0 in range(0, n_pix, block)]


@dataclass
class Block:
    """One pixel block ``(rows, pixels)`` of a batch, ready to accumulate (see :func:`prepare_block`).

    Attributes
    ----------
    x : ndarray
        The values, float32 (float32 input) or float64; finite everywhere.
    used : ndarray of bool or None
        Entries to use (None = all). Entries not used hold finite values that
        must not be summed: the results of pixels (columns) with unused entries
        are corrected (:func:`split_columns`, :func:`take_cols`).
    q : ndarray
        ``rint(x * 2**scale_bits)``: exact integers, held in ``x``'s float type.
    clean : bool
        Every value was finite and in range (then ``used`` is ``valid``).
    max_abs : float or None
        Bound on ``|x|`` (None: unknown; sums are then taken in float64).
    top : ndarray or None
        Maximum of ``x`` per pixel over all rows, when asked for.
    """

    x: np.ndarray
    used: Optional[np.ndarray]
    q: np.ndarray
    clean: bool
    max_abs: Optional[float]
    top: Optional[np.ndarray] = None


def prepare_block(x: np.ndarray, valid: Optional[np.ndarray], scale_bits: int, work: Workspace,
                  column_max: bool = False) -> Block:
    """Check a block, mask it if needed, and convert it to fixed point.

    An entry is used when it is valid, finite and ``|x| < value_limit(scale_bits)``
    (as in :func:`~smalldata.fixedformat.to_fixed`). Usually min and max (read-only passes) show that the
    whole block is finite and in range: then nothing is masked and ``used`` is
    ``valid``. Otherwise the unused entries are cleared by multiplying the values'
    bit patterns with the mask (0 bits = +0.0): exact, and no NaN is left.
    """
    if x.dtype not in _BITS:
        xf = work.get("convert", x.shape, np.float64)
        np.copyto(xf, x, casting="unsafe")
        x = xf
    lim = x.dtype.type(value_limit(scale_bits))
    top = np.maximum.reduce(x, axis=0) if column_max else None
    lo, hi = x.min(), (top.max() if column_max else x.max())
    clean = bool(-lim < lo) and bool(hi < lim)  # False if any NaN
    used, max_abs = valid, (max(-float(lo), float(hi)) if clean else None)
    if not clean:
        used = work.get("ok", x.shape, bool)
        xm = work.get("masked", x.shape, x.dtype)
        np.abs(x, out=xm)
        np.less(xm, lim, out=used)
        if valid is not None:
            np.logical_and(used, valid, out=used)
        bits = _BITS[x.dtype]
        np.multiply(x.view(bits), used, out=xm.view(bits))
        x = xm
        if column_max:
            top = np.maximum.reduce(x, axis=0)
    q = round_fixed(x, scale_bits, out=work.get("fixed", x.shape, x.dtype))
    return Block(x, used, q, clean, max_abs, top)


def fixed_sum(block: Block, rows, n_rows: int, scale_bits: int) -> np.ndarray:
    """Exact int64 sums over ``rows`` of ``block.q`` (``n_rows`` <= :data:`MAX_ROWS` rows).

    Taken in float32 when ``n_rows * (max|x| * 2**scale_bits + 1) <= 2**24`` (every
    partial sum is then an integer that float32 holds exactly), else in float64.
    """
    small = block.q.dtype == np.float32 and block.max_abs is not None \
        and n_rows * (block.max_abs * 2.0 ** scale_bits + 1.0) <= 2.0 ** 24
    return np.add.reduce(block.q[rows], axis=0, dtype=np.float32 if small else np.float64).astype(np.int64)


def count_rows(used: Optional[np.ndarray], rows, n_rows: int):
    """Used entries per pixel over ``rows`` (``n_rows`` of them); the scalar ``n_rows`` when ``used`` is None."""
    if used is None:
        return n_rows
    dtype = np.uint8 if n_rows < 256 else np.uint16 if n_rows < 65536 else np.int64
    return np.add.reduce(used[rows].view(np.uint8), axis=0, dtype=dtype)


def split_columns(count, n_rows: int) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Pixels never used (``count == 0``) and partly used, as index arrays; (None, None) if all used."""
    if not isinstance(count, np.ndarray):
        return None, None
    some = np.flatnonzero(count != n_rows)
    if len(some) == 0:
        return None, None
    c = count[some]
    return some[c == 0], some[c != 0]


def take_cols(a: np.ndarray, rows, cols: np.ndarray) -> np.ndarray:
    """``a[rows][:, cols]`` without copying whole rows first."""
    return a[rows][:, cols] if isinstance(rows, slice) else a[np.ix_(rows, cols)]


def group_sums(b: Block, rows, n_rows: int, scale_bits: int, squares: bool = False,
               valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, object, Optional[np.ndarray], int]:
    """Exact fixed-point sums of one group's ``rows`` (``n_rows`` of them) of a block.

    Returns the int64 sums, the used entries per pixel (:func:`count_rows`), the
    int64 sums of squares (:func:`square_fixed`; None unless ``squares``) and the
    number of valid values that were not finite or out of range (``valid``: the
    block's valid mask, None = all valid).
    """
    count = count_rows(b.used, rows, n_rows)
    total = fixed_sum(b, rows, n_rows, scale_bits)
    sq = square_fixed(b.q[rows].astype(np.int64), scale_bits).sum(axis=0) if squares else None
    never, partly = split_columns(count, n_rows)  # pixels with unused entries: corrected here
    if never is not None:
        total[never] = 0
        q = np.where(take_cols(b.used, rows, partly), take_cols(b.q, rows, partly), 0)
        total[partly] = q.sum(axis=0, dtype=np.float64).astype(np.int64)
        if sq is not None:
            sq[never] = 0
            sq[partly] = square_fixed(q.astype(np.int64), scale_bits).sum(axis=0)
    n_bad = 0
    if not b.clean:
        n_valid = b.q[rows].size if valid is None else int(np.count_nonzero(valid[rows]))
        n_bad = n_valid - int(np.sum(count, dtype=np.int64))
    return total, count, sq, n_bad
