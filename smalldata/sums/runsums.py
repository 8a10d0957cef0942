"""Run sums of a detector: mean image, max image, above-threshold counts per pixel.

The sums are int64 fixed point (value x 2**scale_bits rounded per frame, with the
kernels of :mod:`smalldata.sums.fixedpoint`) and the maximum is taken over float32
values, so the results are the same bit for bit for any number of MPI ranks and any
batch size. Written to ``/Sums/<det>_mean``, ``/Sums/<det>_max``,
``/Sums/<det>_count_above``. See ``docs/cubes.md``.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Tuple

import numpy as np

from smalldata.errors import ConfigError, DataError
from smalldata.parallel.mpi import check_same_everywhere, max_reduce, sum_reduce
from smalldata.sums.fixedpoint import (
    MAX_ROWS,
    Block,
    Workspace,
    check_scale_bits,
    count_rows,
    fixed_sum,
    from_fixed,
    pixel_blocks,
    prepare_block,
    row_plan,
    scale,
    split_columns,
    value_limit,
)

log = logging.getLogger(__name__)


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

    def check_usable(self) -> None:
        """:class:`~smalldata.errors.DataError` once these sums were reduced onto another MPI rank."""
        if self._spent:
            raise DataError("these sums were reduced onto another MPI rank; use the root rank's result")

    def count_frames(self, n: int) -> None:
        """Count ``n`` frames whose pixels a caller adds (:meth:`add_block`, or a compiled pass into
        :meth:`kernel_arrays`)."""
        self._n_frames[0] += int(n)

    def kernel_arrays(self) -> Dict[str, object]:
        """What a compiled pass adds the frames' pixels to, in place (see :class:`smalldata.fused.plan.FusedPlan`).

        ``sum`` and ``cnt`` (P,) int64 fixed-point sums and pixel counts, ``max`` (P,) float32,
        ``above`` (P,) int64 (size 0 without a threshold), ``thr`` the threshold, ``scale`` and
        ``limit`` the fixed-point factor and value limit (:mod:`smalldata.fixedformat`). The caller
        counts the frames (:meth:`count_frames`).
        """
        self.check_usable()
        return {"sum": self._sum, "cnt": self._pixel_count, "max": self._max, "above": self._above,
                "thr": 0.0 if self.threshold is None else self.threshold, "scale": scale(self.scale_bits),
                "limit": value_limit(self.scale_bits)}

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
        The pixels go through a few passes in blocks that stay in the CPU cache
        (scratch reused between calls); the fixed-point integers are summed in
        float32 or float64 where a bound shows every partial sum exact (see
        :func:`fixed_sum`). :meth:`CubeAccumulator.add <smalldata.sums.cube.CubeAccumulator.add>`
        with ``sums=`` shares these passes with a cube.
        """
        self.check_usable()
        images = np.asarray(images)
        n = images.shape[0]
        if images.shape[1:] != self.image_shape:
            raise DataError(f"images of shape {images.shape[1:]} do not fit run sums of {self.image_shape}")
        sel = np.arange(n) if keep is None else np.flatnonzero(np.asarray(keep, dtype=bool))
        if len(sel) == 0:
            return
        if valid is not None and np.shape(valid) != images.shape:
            raise DataError(f"valid {np.shape(valid)} and images {images.shape} differ in shape")
        if n > MAX_ROWS:  # keeps every float64 partial sum of a pixel block exact
            raise DataError(f"a batch of {n} frames is too large; add at most {MAX_ROWS} frames at a time")
        self._add_rows(images.reshape(n, -1), None if valid is None else np.asarray(valid, dtype=bool).reshape(n, -1),
                       sel)

    def _add_rows(self, flat: np.ndarray, vflat: Optional[np.ndarray], sel: np.ndarray) -> None:
        self.count_frames(len(sel))
        src, n_src, _ = row_plan(sel, dense=False)
        for p0, p1 in pixel_blocks(flat.shape[1], n_src):
            self.add_block(prepare_block(flat[src, p0:p1], None if vflat is None else vflat[src, p0:p1],
                                          self.scale_bits, self._work, column_max=True), p0, p1)

    def add_block(self, b: Block, p0: int, p1: int) -> None:
        """Add a prepared block (every row of it; ``column_max``) of pixels ``p0:p1`` (the caller counts its
        frames: :meth:`count_frames`)."""
        n = b.x.shape[0]
        count = count_rows(b.used, slice(None), n)
        top, total = b.top, fixed_sum(b, slice(None), n, self.scale_bits)
        above = None
        if self.threshold is not None:
            over = self._work.get("above", b.x.shape, bool)
            np.greater(b.x, self.threshold, out=over)
            above = count_rows(over, slice(None), n)
        never, partly = split_columns(count, n)  # pixels with unused entries: corrected here
        if never is not None:
            top[never], total[never] = -np.inf, 0
            if above is not None:
                above[never] = 0
            if len(partly):
                used, x = b.used[:, partly], b.x[:, partly]
                top[partly] = np.where(used, x, -np.inf).max(axis=0)
                total[partly] = np.where(used, b.q[:, partly], 0).sum(axis=0, dtype=np.float64).astype(np.int64)
                if above is not None:
                    above[partly] = np.count_nonzero(used & (x > self.threshold), axis=0)
        self._pixel_count[p0:p1] += count
        np.maximum(self._max[p0:p1], top, out=self._max[p0:p1])
        self._sum[p0:p1] += total
        if above is not None:
            self._above[p0:p1] += above

    def _signature(self):
        return (self.image_shape, self.threshold, self.scale_bits)

    def merge(self, other: "RunSums") -> "RunSums":
        """Add another :class:`RunSums` of the same layout into this one; returns self."""
        self.check_usable()
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
        """Frames added (on every rank its own count; after :meth:`reduce` the run's on root)."""
        return int(self._n_frames[0])

    @property
    def pixel_count(self) -> np.ndarray:
        """Frames in which each pixel was good, ``image_shape`` int64."""
        return self._pixel_count.reshape(self.image_shape)

    def mean(self) -> np.ndarray:
        """Mean over good values per pixel, float64 (NaN where never good)."""
        self.check_usable()
        with np.errstate(invalid="ignore", divide="ignore"):
            m = from_fixed(self._sum, self.scale_bits) / self._pixel_count
        return np.where(self._pixel_count > 0, m, np.nan).reshape(self.image_shape)

    def max(self) -> np.ndarray:
        """Largest good value per pixel, float32 (NaN where never good)."""
        self.check_usable()
        return np.where(np.isneginf(self._max), np.float32(np.nan), self._max).reshape(self.image_shape)

    def count_above(self) -> Optional[np.ndarray]:
        """Frames above ``threshold`` per pixel, int64 (None without a threshold)."""
        return None if self.threshold is None else self._above.reshape(self.image_shape)

    def write(self, group, prefix: str) -> None:
        """Store as ``<prefix>_mean``, ``<prefix>_max``, ``<prefix>_pixel_count`` [, ``<prefix>_count_above``]."""
        self.check_usable()
        def put(name, data, units):
            ds = group.create_dataset(f"{prefix}_{name}", data=data, compression="gzip", compression_opts=1,
                                      shuffle=True)
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
