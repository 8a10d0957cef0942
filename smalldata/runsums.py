"""Run sums of a detector: mean image, max image, above-threshold counts per pixel.

The sums are int64 fixed point (value x 2**scale_bits rounded per frame; the
helpers here are shared with :mod:`smalldata.cube`) and the maximum is taken
over float32 values, so the results are the same bit for bit for any number of
MPI ranks and any batch size. Written to
``/Sums/<det>_mean``, ``/Sums/<det>_max``, ``/Sums/<det>_count_above``. See
``docs/cubes.md``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .errors import ConfigError, DataError
from .mpi import REDUCE_CHUNK, sum_reduce

log = logging.getLogger(__name__)

#: Target elements (frames x pixels) of one pixel block while accumulating: about 1 MB of
#: float32 scratch that stays in the CPU cache while a block goes through its passes.
BLOCK_ELEMENTS = 1 << 18
#: Most frames summed in one float64 reduction. Fixed-point values have ``|q| <= 2**31``, so a
#: sum of up to 2**21 of them stays below 2**52 and every float64 partial sum is an exact integer.
MAX_ROWS = 1 << 21
_BITS = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}


def value_limit(scale_bits: int) -> float:
    """Largest magnitude (exclusive) accepted at ``scale_bits``: 2**(31 - scale_bits)."""
    return 2.0 ** (31 - scale_bits)


def to_fixed(values: np.ndarray, scale_bits: int,
             valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, int]:
    """Fixed-point integers ``rint(values * 2**scale_bits)``.

    float32 input is scaled and rounded in float32, other input in float64:
    scaling by a power of two and rounding to an integer are exact in both, so
    the integers are the same as with float64 arithmetic. (The image paths of
    :class:`RunSums` and :class:`~smalldata.cube.CubeAccumulator` use the
    blocked kernels below, which give the same integers.)

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
    y = np.multiply(x, x.dtype.type(2 ** scale_bits), dtype=x.dtype)
    np.rint(y, out=y)
    y[~ok] = 0
    return y.astype(np.int64), ok, n_bad


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


def pixel_blocks(n_pix: int, n_rows: int):
    """``(p0, p1)`` pixel ranges of about :data:`BLOCK_ELEMENTS` elements for ``n_rows`` frames."""
    block = max(1024, BLOCK_ELEMENTS // max(n_rows, 1))
    return [(p0, min(p0 + block, n_pix)) for p0 in range(0, n_pix, block)]


@dataclass
class MaskedBlock:
    """One pixel block of a batch, masked: see :func:`mask_block`."""

    x: np.ndarray              #: the values, float32 (float32 input) or float64
    xm: np.ndarray             #: ``x`` where used, +0.0 elsewhere (finite everywhere)
    ok: Optional[np.ndarray]   #: used entries (valid, finite, in range); None = all
    clean: bool                #: every value of the block was finite and in range
    owned: bool                #: ``xm`` is scratch that may be overwritten


def mask_block(x: np.ndarray, valid: Optional[np.ndarray], scale_bits: int, work: Workspace) -> MaskedBlock:
    """Mask a block ``(rows, pixels)`` of values for fixed-point accumulation.

    An entry is used when it is valid, finite and ``|x| < value_limit(scale_bits)``
    (as in :func:`to_fixed`). Two read-only passes (min and max) usually show that
    the whole block is finite and in range; then the valid mask is used as it is.
    Unused entries are cleared by multiplying the values' bit patterns with the
    mask (0 bits = +0.0), which is exact and leaves no NaN behind.
    """
    if x.dtype not in _BITS:
        xf = work.get("convert", x.shape, np.float64)
        np.copyto(xf, x, casting="unsafe")
        x = xf
    lim = x.dtype.type(value_limit(scale_bits))
    clean = bool(-lim < x.min()) and bool(x.max() < lim)  # False if any NaN
    if clean:
        if valid is None:
            return MaskedBlock(x, x, None, True, False)
        ok = valid
    else:
        ok = work.get("ok", x.shape, bool)
        tmp = work.get("xm", x.shape, x.dtype)
        np.abs(x, out=tmp)
        np.less(tmp, lim, out=ok)
        if valid is not None:
            np.logical_and(ok, valid, out=ok)
    xm = work.get("xm", x.shape, x.dtype)
    bits = _BITS[x.dtype]
    np.multiply(x.view(bits), ok, out=xm.view(bits))
    return MaskedBlock(x, xm, ok, clean, True)


def fixed_block(block: MaskedBlock, scale_bits: int, work: Workspace) -> np.ndarray:
    """``rint(xm * 2**scale_bits)`` as float (exact integers, 0 where unused), in place when allowed."""
    out = block.xm if block.owned else work.get("fixed", block.xm.shape, block.xm.dtype)
    np.multiply(block.xm, block.xm.dtype.type(2 ** scale_bits), out=out)
    return np.rint(out, out=out)


def fixed_row_sum(q: np.ndarray, rows) -> np.ndarray:
    """Exact int64 sums over ``rows`` of fixed-point values held in floats (at most :data:`MAX_ROWS` rows)."""
    return np.add.reduce(q[rows], axis=0, dtype=np.float64).astype(np.int64)


def count_rows(ok: Optional[np.ndarray], rows, n_rows: int):
    """Used entries per pixel over ``rows`` (``n_rows`` of them); the scalar ``n_rows`` when ``ok`` is None."""
    if ok is None:
        return n_rows
    dtype = np.uint8 if n_rows < 256 else np.uint16 if n_rows < 65536 else np.int64
    return np.add.reduce(ok[rows].view(np.uint8), axis=0, dtype=dtype)


def square_fixed(q: np.ndarray, scale_bits: int) -> np.ndarray:
    """Fixed-point square at the same scale: ``round(q * q / 2**scale_bits)`` (int64)."""
    if scale_bits == 0:
        return q * q
    return (q * q + (1 << (scale_bits - 1))) >> scale_bits


def from_fixed(q: np.ndarray, scale_bits: int) -> np.ndarray:
    """float64 values of fixed-point integers."""
    return np.asarray(q, dtype=np.float64) / float(2 ** scale_bits)


def check_scale_bits(name: str, bits: int, maximum: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 0 <= bits <= maximum:
        raise ConfigError(name, f"{bits!r} is not valid; use an integer 0..{maximum}")
    return int(bits)


def max_reduce(array: np.ndarray, comm, root: int = 0) -> np.ndarray:
    """Element-wise maximum of a float array over the ranks of ``comm``, in place on ``root``.

    Like :func:`smalldata.mpi.sum_reduce`: chunked messages; on the other ranks the
    content is unspecified afterwards.
    """
    from mpi4py import MPI
    flat = array.reshape(-1)
    for start in range(0, max(flat.size, 1), REDUCE_CHUNK):
        part = flat[start:start + REDUCE_CHUNK]
        if comm.Get_rank() == root:
            comm.Reduce(MPI.IN_PLACE, part, op=MPI.MAX, root=root)
        else:
            comm.Reduce(part, None, op=MPI.MAX, root=root)
    return array


def check_same_everywhere(comm, signature, what: str) -> None:
    signatures = comm.allgather(signature)
    if any(s != signatures[0] for s in signatures):
        raise DataError(f"{what} differ between MPI ranks: {signatures}")


class RunSums:
    """Per-pixel sums over all kept frames of a run.

    Parameters
    ----------
    image_shape : tuple of int
        Shape of one image, e.g. ``(16, 128, 512)``.
    threshold : float or None
        Count, per pixel, the frames whose value is above it (in ``units``).
        None: no counts.
    scale_bits : int
        Fixed-point resolution 2**-scale_bits of ``units`` for the mean
        (values must satisfy ``|x| < 2**(31 - scale_bits)``).
    units : str
        Unit of the images (``"ADU"`` or ``"photon"``).
    """

    _sum_names = ("_sum", "_pixel_count", "_above", "_n_frames")

    def __init__(self, image_shape: Tuple[int, ...], threshold: Optional[float] = None,
                 scale_bits: int = 12, units: str = "ADU"):
        if threshold is not None and (isinstance(threshold, bool) or not np.isfinite(threshold)):
            raise ConfigError("threshold", f"{threshold!r} is not a number; use a number or null")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.threshold = None if threshold is None else float(threshold)
        self.scale_bits = check_scale_bits("scale_bits", scale_bits, 30)
        self.units = units
        n_pix = int(np.prod(self.image_shape, dtype=np.int64))
        self._sum = np.zeros(n_pix, dtype=np.int64)
        self._pixel_count = np.zeros(n_pix, dtype=np.int64)
        self._above = np.zeros(n_pix if self.threshold is not None else 0, dtype=np.int64)
        self._n_frames = np.zeros(1, dtype=np.int64)
        self._max = np.full(n_pix, -np.inf, dtype=np.float32)
        self._spent = False  # True on non-root ranks after reduce()
        self._work = Workspace()

    def _check_usable(self) -> None:
        if self._spent:
            raise DataError("these sums were reduced onto another MPI rank; use the root rank's result")

    def add(self, images: np.ndarray, valid: Optional[np.ndarray] = None,
            keep: Optional[np.ndarray] = None) -> None:
        """Add a batch of frames.

        Parameters
        ----------
        images : ndarray, (N, *image_shape)
            Calibrated frames (float32 is used as it is; other types as float64).
        valid : ndarray, (N, *image_shape) bool, optional
            True = good pixel; bad pixels are neither summed nor counted.
        keep : ndarray, (N,) bool, optional
            Frames to add; default all.

        Notes
        -----
        The pixels are processed in blocks that stay in the CPU cache (scratch
        reused between calls); the fixed-point values are summed in float64,
        which is exact for integers below 2**53 (see :data:`MAX_ROWS`).
        """
        self._check_usable()
        images = np.asarray(images)
        n = images.shape[0]
        if images.shape[1:] != self.image_shape:
            raise DataError(f"images of shape {images.shape[1:]} do not fit run sums of {self.image_shape}")
        sel = np.arange(n) if keep is None else np.flatnonzero(np.asarray(keep, dtype=bool))
        if len(sel) == 0:
            return
        if valid is not None and np.shape(valid) != images.shape:
            raise DataError(f"valid {np.shape(valid)} and images {images.shape} differ in shape")
        for c0 in range(0, len(sel), MAX_ROWS):
            self._add_rows(images.reshape(n, -1), None if valid is None else np.asarray(valid, dtype=bool).reshape(n, -1),
                           sel[c0:c0 + MAX_ROWS])

    def _add_rows(self, flat: np.ndarray, vflat: Optional[np.ndarray], sel: np.ndarray) -> None:
        self._n_frames[0] += len(sel)
        rows, n_rows = as_rows(sel), len(sel)
        work = self._work
        for p0, p1 in pixel_blocks(flat.shape[1], n_rows):
            block = mask_block(flat[rows, p0:p1], None if vflat is None else vflat[rows, p0:p1], self.scale_bits, work)
            count = count_rows(block.ok, slice(None), n_rows)
            self._pixel_count[p0:p1] += count
            # maximum: unused entries are +0.0 in xm, so only pixels with some unused entry and a
            # maximum <= 0 need the masked maximum; pixels never used get -inf
            top = np.maximum.reduce(block.xm, axis=0)
            if block.ok is not None:
                top[count == 0] = -np.inf
                redo = np.flatnonzero((count > 0) & (count < n_rows) & (top <= 0))
                if len(redo):
                    top[redo] = np.where(block.ok[:, redo], block.x[:, redo], -np.inf).max(axis=0)
            np.maximum(self._max[p0:p1], top, out=self._max[p0:p1])
            if self.threshold is not None:
                above = work.get("above", block.xm.shape, bool)
                np.greater(block.xm, self.threshold, out=above)  # +0.0 where unused
                if self.threshold < 0 and block.ok is not None:
                    np.logical_and(above, block.ok, out=above)
                self._above[p0:p1] += count_rows(above, slice(None), n_rows)
            self._sum[p0:p1] += fixed_row_sum(fixed_block(block, self.scale_bits, work), slice(None))

    def _signature(self):
        return (self.image_shape, self.threshold, self.scale_bits)

    def merge(self, other: "RunSums") -> "RunSums":
        """Add another :class:`RunSums` of the same layout into this one; returns self."""
        self._check_usable()
        if self._signature() != other._signature():
            raise DataError(f"cannot merge run sums {self._signature()} and {other._signature()}")
        for name in self._sum_names:
            getattr(self, name)[...] += getattr(other, name)
        np.maximum(self._max, other._max, out=self._max)
        return self

    def reduce(self, comm=None, root: int = 0) -> Optional["RunSums"]:
        """Combine the sums of all ranks of ``comm`` (mpi4py) onto ``root``, in place.

        Every rank must call it. Returns self (now the run total) on ``root``
        and None on the other ranks, whose sums are unusable afterwards; with
        ``comm=None`` or one rank returns self.
        """
        if comm is None or comm.Get_size() == 1:
            return self
        check_same_everywhere(comm, self._signature(), "run-sum layouts")
        for name in self._sum_names:
            sum_reduce(getattr(self, name), comm, root)
        max_reduce(self._max, comm, root)
        if comm.Get_rank() != root:
            self._spent = True
            return None
        return self

    # ------------------------------------------------------------------ results
    @property
    def n_frames(self) -> int:
        return int(self._n_frames[0])

    @property
    def pixel_count(self) -> np.ndarray:
        """Frames in which each pixel was good, ``image_shape`` int64."""
        return self._pixel_count.reshape(self.image_shape)

    def mean(self) -> np.ndarray:
        """Mean over good values per pixel, float64 (NaN where never good)."""
        self._check_usable()
        with np.errstate(invalid="ignore", divide="ignore"):
            m = from_fixed(self._sum, self.scale_bits) / self._pixel_count
        return np.where(self._pixel_count > 0, m, np.nan).reshape(self.image_shape)

    def max(self) -> np.ndarray:
        """Largest good value per pixel, float32 (NaN where never good)."""
        self._check_usable()
        return np.where(np.isneginf(self._max), np.float32(np.nan), self._max).reshape(self.image_shape)

    def count_above(self) -> Optional[np.ndarray]:
        """Frames above ``threshold`` per pixel, int64 (None without a threshold)."""
        return None if self.threshold is None else self._above.reshape(self.image_shape)

    def write(self, group, prefix: str) -> None:
        """Store as ``<prefix>_mean``, ``<prefix>_max``, ``<prefix>_pixel_count`` [, ``<prefix>_count_above``]."""
        self._check_usable()
        def put(name, data, units):
            ds = group.create_dataset(f"{prefix}_{name}", data=data)
            ds.attrs["units"] = units
            ds.attrs["n_frames"] = self.n_frames
            return ds

        ds = put("mean", self.mean(), self.units)
        ds.attrs["scale_bits"] = self.scale_bits
        put("max", self.max(), self.units)
        put("pixel_count", self.pixel_count, "frame")
        if self.threshold is not None:
            ds = put("count_above", self.count_above(), "frame")
            ds.attrs["threshold"] = self.threshold
            ds.attrs["threshold_units"] = self.units
