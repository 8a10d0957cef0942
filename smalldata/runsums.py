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
from typing import Optional, Tuple

import numpy as np

from .errors import ConfigError, DataError
from .mpi import REDUCE_CHUNK, sum_reduce

log = logging.getLogger(__name__)

#: Temporary int64 elements per pixel block while accumulating (about 32 MB).
BLOCK_ELEMENTS = 1 << 22


def value_limit(scale_bits: int) -> float:
    """Largest magnitude (exclusive) accepted at ``scale_bits``: 2**(31 - scale_bits)."""
    return 2.0 ** (31 - scale_bits)


def to_fixed(values: np.ndarray, scale_bits: int,
             valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, int]:
    """Fixed-point integers ``rint(values * 2**scale_bits)``.

    float32 input is scaled and rounded in float32, other input in float64:
    scaling by a power of two and rounding to an integer are exact in both, so
    the integers are the same as with float64 arithmetic.

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


def group_sums(values: np.ndarray, starts: np.ndarray, dtype) -> np.ndarray:
    """Sums over consecutive row groups beginning at ``starts`` (axis 0), exact for integers.

    Few groups (the usual case: a batch covers a few scan bins and labels) are
    summed slice by slice, many with ``np.add.reduceat``; both give the same integers.
    """
    if len(starts) * 4 > len(values):
        return np.add.reduceat(values, starts, axis=0, dtype=dtype)
    bounds = np.append(starts, len(values))
    return np.stack([values[a:b].sum(axis=0, dtype=dtype) for a, b in zip(bounds[:-1], bounds[1:])])


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

    def _check_usable(self) -> None:
        if self._spent:
            raise DataError("these sums were reduced onto another MPI rank; use the root rank's result")

    def add(self, images: np.ndarray, valid: Optional[np.ndarray] = None,
            keep: Optional[np.ndarray] = None) -> None:
        """Add a batch of frames ``(N, *image_shape)``; ``valid`` True = good pixel, ``keep`` (N,) frames to use."""
        self._check_usable()
        images = np.asarray(images)
        n = images.shape[0]
        if images.shape[1:] != self.image_shape:
            raise DataError(f"images of shape {images.shape[1:]} do not fit run sums of {self.image_shape}")
        sel = np.arange(n) if keep is None else np.flatnonzero(np.asarray(keep, dtype=bool))
        if len(sel) == 0:
            return
        self._n_frames[0] += len(sel)
        flat = images.reshape(n, -1)
        vflat = None if valid is None else np.asarray(valid, dtype=bool).reshape(n, -1)
        n_pix = flat.shape[1]
        block = max(1, BLOCK_ELEMENTS // len(sel))
        for p0 in range(0, n_pix, block):
            p1 = min(p0 + block, n_pix)
            x = flat[sel, p0:p1]
            q, ok, _ = to_fixed(x, self.scale_bits, None if vflat is None else vflat[sel, p0:p1])
            self._sum[p0:p1] += q.sum(axis=0)
            self._pixel_count[p0:p1] += ok.sum(axis=0, dtype=np.int64)
            xs = np.where(ok, x, -np.inf).astype(np.float32)
            np.maximum(self._max[p0:p1], xs.max(axis=0), out=self._max[p0:p1])
            if self.threshold is not None:
                self._above[p0:p1] += (ok & (x > self.threshold)).sum(axis=0)

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
