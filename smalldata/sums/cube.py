"""Binned image cubes: sums of frames per (scan bin, frame-pattern label).

:class:`CubeAccumulator` sums calibrated images, frame counts, XGM energies and
optionally squares per (bin, label), in int64 fixed point (value x 2**scale_bits,
rounded per frame; :mod:`smalldata.sums.fixedpoint`): integer sums are exact and
associative, so any split of the run over MPI ranks and batches gives the same
cube bit for bit. The bins come from :class:`~smalldata.sums.binning.ScanBinning`.
See ``docs/cubes.md``.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Tuple

import h5py
import numpy as np

from smalldata.errors import ConfigError, DataError
from smalldata.parallel.mpi import check_same_everywhere, sum_reduce
from smalldata.sums.binning import ScanBinning
from smalldata.sums.fixedpoint import (
    MAX_ROWS,
    Workspace,
    check_scale_bits,
    from_fixed,
    group_sums,
    pixel_blocks,
    prepare_block,
    round_fixed,
    row_plan,
    scale,
    to_fixed,
    value_limit,
)
from smalldata.sums.runsums import RunSums

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- the cube
class CubeAccumulator:
    """Exact sums of images per (scan bin, frame-pattern label).

    Parameters
    ----------
    n_bins : int
        Number of scan bins (``binning.n_bins``).
    labels : sequence of str
        Frame-pattern labels (``FramePattern.unique_labels``).
    image_shape : tuple of int
        Shape of one image, e.g. ``(16, 128, 512)`` or an ROI's shape.
    sum_squares : bool
        Also sum squares (for :meth:`std`).
    scale_bits : int
        Fixed-point resolution 2**-scale_bits of the image unit (default 12:
        2.4e-4 ADU); values must satisfy ``|x| < 2**(31 - scale_bits)``.
    xgm_scale_bits : int
        Fixed-point resolution of XGM values (default 16: 1.5e-5 uJ), limit
        ``2**(31 - xgm_scale_bits)``.
    units, xgm_units : str
        Units of the images and of the XGM values.
    binning : ScanBinning, optional
        The binning, for storing edges and centres with the cube.
    """

    _int_names = ("_sum", "_pixel_count", "_sum_sq", "_count", "_xgm_sum", "_xgm_count", "_no_bin", "_n_bad")

    def __init__(self, n_bins: int, labels: Sequence[str], image_shape: Tuple[int, ...],
                 sum_squares: bool = False, scale_bits: int = 12, xgm_scale_bits: int = 16,
                 units: str = "ADU", xgm_units: str = "uJ", binning: Optional[ScanBinning] = None):
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise ConfigError("n_bins", f"{n_bins!r} is not a bin count; use an integer >= 1")
        if isinstance(labels, str) or len(labels) == 0 or len(set(labels)) != len(labels):
            raise ConfigError("labels", f"{labels!r} is not a list of distinct labels")
        if binning is not None and binning.n_bins != n_bins:
            raise ConfigError("n_bins", f"{n_bins} differs from the binning's {binning.n_bins} bins")
        self.n_bins = int(n_bins)
        self.labels = tuple(str(lb) for lb in labels)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.sum_squares = bool(sum_squares)
        self.scale_bits = check_scale_bits("scale_bits", scale_bits, 30)
        self.xgm_scale_bits = check_scale_bits("xgm_scale_bits", xgm_scale_bits, 30)
        self.units = units
        self.xgm_units = xgm_units
        self.binning = binning
        n_groups = self.n_bins * len(self.labels)
        n_pix = int(np.prod(self.image_shape, dtype=np.int64))
        self._sum = np.zeros((n_groups, n_pix), dtype=np.int64)
        self._pixel_count = np.zeros((n_groups, n_pix), dtype=np.int32)
        self._sum_sq = np.zeros((n_groups, n_pix) if self.sum_squares else (0, 0), dtype=np.int64)
        self._count = np.zeros(n_groups, dtype=np.int64)
        self._xgm_sum = np.zeros(n_groups, dtype=np.int64)
        self._xgm_count = np.zeros(n_groups, dtype=np.int64)
        self._no_bin = np.zeros(len(self.labels), dtype=np.int64)
        self._n_bad = np.zeros(1, dtype=np.int64)
        self._spent = False  # True on non-root ranks after reduce()
        self._work = Workspace()

    # ------------------------------------------------------------------ accumulate
    def check_usable(self) -> None:
        """:class:`~smalldata.errors.DataError` once this cube was reduced onto another MPI rank."""
        if self._spent:
            raise DataError("these sums were reduced onto another MPI rank; use the root rank's result")

    def kernel_arrays(self) -> Dict[str, object]:
        """What a compiled pass (:class:`~smalldata.fused.plan.FusedPlan`) adds pixels to, in place: ``sum``,
        ``cnt``, ``sq`` (G, P) (``sq`` size 0 without squares), the fixed point's ``scale``, ``limit`` and
        ``bits`` (:mod:`smalldata.fixedformat`), ``n_bad`` (1,); :meth:`add_frames` counts the frames."""
        self.check_usable()
        return {"sum": self._sum, "cnt": self._pixel_count, "sq": self._sum_sq, "scale": scale(self.scale_bits),
                "limit": value_limit(self.scale_bits), "bits": self.scale_bits, "n_bad": self._n_bad}

    def add(self, images: np.ndarray, bins: np.ndarray, label_ids: np.ndarray,
            xgm: Optional[np.ndarray] = None, valid: Optional[np.ndarray] = None,
            keep: Optional[np.ndarray] = None, sums: Optional[RunSums] = None) -> None:
        """Add a batch of frames.

        Parameters
        ----------
        images : ndarray, (N, *image_shape) float
        bins : ndarray, (N,) int
            Scan bin of each frame (:meth:`ScanBinning.assign`), -1 = no bin.
        label_ids : ndarray, (N,) int
            Index into ``labels`` (:meth:`FramePattern.label_ids`).
        xgm : ndarray, (N,) float, optional
            XGM energy of each frame; NaN entries are not summed.
        valid : ndarray, (N, *image_shape) bool, optional
            True = good pixel; bad pixels are neither summed nor counted.
        keep : ndarray, (N,) bool, optional
            Frames to add (e.g. rejection reasons == 0); default all.
        sums : RunSums, optional
            Also add the kept frames (binned or not) to these run sums, sharing the
            per-pixel passes: the same result as ``sums.add(images, valid, keep)``.
        """
        self.check_usable()
        images = np.asarray(images)
        n = images.shape[0]
        if images.shape[1:] != self.image_shape:
            raise DataError(f"images of shape {images.shape[1:]} do not fit a cube of {self.image_shape}")
        bins = np.asarray(bins, dtype=np.int64).reshape(-1)
        lab = np.asarray(label_ids, dtype=np.int64).reshape(-1)
        if bins.shape != (n,) or lab.shape != (n,):
            raise DataError(f"bins {bins.shape} and label_ids {lab.shape} must be ({n},)")
        if np.any((lab < 0) | (lab >= len(self.labels))) or np.any((bins < -1) | (bins >= self.n_bins)):
            raise DataError(f"label ids must be 0..{len(self.labels) - 1} and bins -1..{self.n_bins - 1}")
        if valid is not None and np.shape(valid) != images.shape:
            raise DataError(f"valid {np.shape(valid)} and images {images.shape} differ in shape")
        if n > MAX_ROWS:  # keeps every float64 partial sum of a pixel block exact
            raise DataError(f"a batch of {n} frames is too large; add at most {MAX_ROWS} frames at a time")
        group = self.add_frames(bins, lab, xgm, keep)
        sel = np.flatnonzero(group >= 0)
        if sums is not None and (len(sel) == 0 or sums.image_shape != self.image_shape
                                 or sums.scale_bits != self.scale_bits):
            sums.add(images, valid=valid, keep=keep)  # nothing to share
            sums = None
        if len(sel) == 0:
            return
        flat = images.reshape(n, -1)
        vflat = None if valid is None else np.asarray(valid, dtype=bool).reshape(n, -1)
        shared = None
        if sums is not None:
            sums.check_usable()
            shared = np.arange(n) if keep is None else np.flatnonzero(np.asarray(keep, dtype=bool).reshape(-1))
            sums.count_frames(len(shared))
        # pixels, block by block (with sums: the blocks hold the kept frames, a superset of the binned ones)
        src, n_src, parts = row_plan(np.sort(sel), group, block_rows=shared)
        for p0, p1 in pixel_blocks(flat.shape[1], n_src):
            vb = None if vflat is None else vflat[src, p0:p1]
            b = prepare_block(flat[src, p0:p1], vb, self.scale_bits, self._work, column_max=sums is not None)
            for gid, rows, n_rows in parts:
                total, count, squares, n_bad = group_sums(b, rows, n_rows, self.scale_bits, self.sum_squares, vb)
                self._sum[gid, p0:p1] += total
                self._pixel_count[gid, p0:p1] += count
                self._n_bad[0] += n_bad
                if squares is not None:
                    self._sum_sq[gid, p0:p1] += squares
            if sums is not None:
                sums.add_block(b, p0, p1)
        if self._n_bad[0]:
            log.debug("cube: %d pixel values so far were not finite or beyond +-%g", self._n_bad[0],
                      value_limit(self.scale_bits))

    def add_frames(self, bins: np.ndarray, label_ids: np.ndarray, xgm: Optional[np.ndarray] = None,
                   keep: Optional[np.ndarray] = None) -> np.ndarray:
        """Count the frames of a batch and sum their XGM values; the pixels are added by the caller.

        Returns the group (``bin * n_labels + label``) of each frame, -1 where it is not added
        (not kept, or in no bin). :meth:`add` and the fused pass
        (:meth:`smalldata.fused.plan.FusedPlan.run`) share it.
        """
        bins = np.asarray(bins, dtype=np.int64).reshape(-1)
        lab = np.asarray(label_ids, dtype=np.int64).reshape(-1)
        n = len(bins)
        take = np.ones(n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool).reshape(-1)
        self._no_bin += np.bincount(lab[take & (bins < 0)], minlength=len(self.labels))
        take = take & (bins >= 0)  # never modify the caller's keep in place
        group = bins * len(self.labels) + lab
        sel = np.flatnonzero(take)
        sel = sel[np.argsort(group[sel], kind="stable")]
        if len(sel):
            g = group[sel]
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
            gid = g[starts]
            self._count[gid] += np.diff(np.r_[starts, len(g)])
            if xgm is not None:
                xv = np.asarray(xgm, dtype=np.float64).reshape(-1)[sel]
                qx, okx, n_bad = to_fixed(xv, self.xgm_scale_bits, ~np.isnan(xv))  # NaN = no XGM value: not bad
                self._n_bad[0] += n_bad
                self._xgm_sum[gid] += np.add.reduceat(qx, starts)
                self._xgm_count[gid] += np.add.reduceat(okx.astype(np.int64), starts)
        return np.where(take, group, -1)

    def merge(self, other: "CubeAccumulator") -> "CubeAccumulator":
        """Add another accumulator of the same layout into this one; returns self."""
        self.check_usable()
        if self._signature() != other._signature():
            raise DataError(f"cannot merge cubes {self._signature()} and {other._signature()}")
        for name in self._int_names:
            getattr(self, name)[...] += getattr(other, name)
        return self

    def _signature(self):
        return (self.n_bins, self.labels, self.image_shape, self.sum_squares, self.scale_bits, self.xgm_scale_bits)

    def reduce(self, comm=None, root: int = 0) -> Optional["CubeAccumulator"]:
        """Sum the accumulators of all ranks of ``comm`` (mpi4py) onto ``root``, in place.

        Every rank must call it. Returns self (now the run total) on ``root``
        and None on the other ranks, whose sums are unusable afterwards; with
        ``comm=None`` or one rank returns self. Integer sums: the result does
        not depend on the number of ranks.
        """
        if comm is None or comm.Get_size() == 1:
            return self
        check_same_everywhere(comm, self._signature(), "cube layouts")
        for name in self._int_names:
            sum_reduce(getattr(self, name), comm, root)
        if comm.Get_rank() != root:
            self._spent = True
            return None
        return self

    # ------------------------------------------------------------------ results
    def _shaped(self, a: np.ndarray) -> np.ndarray:
        return a.reshape((self.n_bins, len(self.labels)) + a.shape[1:])

    @property
    def count(self) -> np.ndarray:
        """Frames per (bin, label), (B, L) int64."""
        return self._shaped(self._count)

    @property
    def n_no_bin(self) -> np.ndarray:
        """Frames per label that fell in no bin (NaN or outside), (L,) int64."""
        return self._no_bin

    @property
    def n_bad_values(self) -> int:
        """Pixel or XGM values that were not finite or out of range (and so not summed)."""
        return int(self._n_bad[0])

    @property
    def pixel_count(self) -> np.ndarray:
        """Good-pixel counts, (B, L, *image_shape) int32."""
        return self._shaped(self._pixel_count).reshape((self.n_bins, len(self.labels)) + self.image_shape)

    @property
    def sum(self) -> np.ndarray:
        """Image sums, (B, L, *image_shape) float64 in ``units``."""
        return from_fixed(self._sum, self.scale_bits).reshape((self.n_bins, len(self.labels)) + self.image_shape)

    @property
    def sum_of_squares(self) -> Optional[np.ndarray]:
        """Sums of squares, (B, L, *image_shape) float64 in ``units``**2 (None if not accumulated)."""
        if not self.sum_squares:
            return None
        return from_fixed(self._sum_sq, self.scale_bits).reshape((self.n_bins, len(self.labels)) + self.image_shape)

    @property
    def xgm_sum(self) -> np.ndarray:
        """XGM sums, (B, L) float64 in ``xgm_units``."""
        return self._shaped(from_fixed(self._xgm_sum, self.xgm_scale_bits))

    @property
    def xgm_count(self) -> np.ndarray:
        """Frames with an XGM value, (B, L) int64."""
        return self._shaped(self._xgm_count)

    def mean(self) -> np.ndarray:
        """Mean image per (bin, label), (B, L, *image_shape) float64; NaN without good pixels."""
        self.check_usable()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.pixel_count > 0, self.sum / self.pixel_count, np.nan)

    def xgm_mean(self) -> np.ndarray:
        """Mean XGM per (bin, label), (B, L) float64; NaN without XGM values."""
        self.check_usable()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.xgm_count > 0, self.xgm_sum / self.xgm_count, np.nan)

    def xgm_normalised_mean(self) -> np.ndarray:
        """Mean image divided by the mean XGM of the same (bin, label), in ``units`` per ``xgm_units``."""
        xm = self.xgm_mean()
        return self.mean() / xm.reshape(xm.shape + (1,) * len(self.image_shape))

    def std(self) -> np.ndarray:
        """Standard deviation over frames per (bin, label) and pixel (needs ``sum_squares``)."""
        if not self.sum_squares:
            raise ConfigError("sum_squares", "the cube was made without sum_squares; set sum_squares: true")
        with np.errstate(invalid="ignore", divide="ignore"):
            m = self.sum / self.pixel_count
            var = np.maximum(self.sum_of_squares / self.pixel_count - m * m, 0.0)
            return np.where(self.pixel_count > 0, np.sqrt(var), np.nan)

    # ------------------------------------------------------------------ files
    def write(self, group, compression: Optional[str] = None, sum_compression: Optional[str] = None) -> None:
        """Store the cube in an h5py group (see ``docs/cubes.md`` for the layout).

        Parameters
        ----------
        group : h5py.Group
        compression : str, optional
            HDF5 filter (e.g. ``"gzip"``) for the integer ``pixel_count`` array,
            with byte shuffling: counts compress about a hundredfold, quickly.
        sum_compression : str, optional
            Filter for the float64 ``sum`` and ``sum_squares``; default none:
            full-resolution sums of noisy data compress only about 3x, and gzip on
            them costs seconds per full-detector cube.
        """
        self.check_usable()
        def put(name, data, units=None, **kw):
            ds = group.create_dataset(name, data=data, **kw)
            if units is not None:
                ds.attrs["units"] = units
            return ds

        # one chunk per 2-D image (a module): compresses better than HDF5's default chunks, reads per module
        image_chunks = (1, 1) + (1,) * (len(self.image_shape) - 2) + self.image_shape[-2:]
        sum_kw = {"compression": sum_compression, "shuffle": True, "chunks": image_chunks} if sum_compression else {}
        put("sum", self.sum, self.units, **sum_kw)
        put("pixel_count", self.pixel_count, "frame", **({"compression": compression, "shuffle": True}
                                                          if compression else {}))
        if self.sum_squares:
            put("sum_squares", self.sum_of_squares, f"({self.units})^2", **sum_kw)
        put("count", self.count, "frame")
        put("xgm_sum", self.xgm_sum, self.xgm_units)
        put("xgm_count", self.xgm_count, "frame")
        put("n_no_bin", self.n_no_bin, "frame")
        group.create_dataset("labels", data=np.array(self.labels, dtype=object),
                             dtype=h5py.string_dtype())
        b = self.binning
        if b is not None:
            put("bin_edges", b.edges, b.units)
            put("bin_centres", b.centres, b.units)
        attrs = group.attrs
        attrs["scale_bits"] = self.scale_bits
        attrs["xgm_scale_bits"] = self.xgm_scale_bits
        attrs["units"] = self.units
        attrs["xgm_units"] = self.xgm_units
        attrs["n_bad_values"] = self.n_bad_values
        attrs["image_shape"] = np.array(self.image_shape, dtype=np.int64)
        attrs["n_bins"] = self.n_bins
        if b is not None:
            attrs["binning_mode"] = b.mode
            attrs["scan_name"] = b.name
            attrs["scan_units"] = b.units
            attrs["bin_width"] = np.nan if b.width is None else b.width
            attrs["bin_origin"] = b.origin

    @classmethod
    def read(cls, group) -> "CubeAccumulator":
        """Load a cube written by :meth:`write` (exactly: sums are stored as float64 of the integers)."""
        a = group.attrs
        labels = [s.decode() if isinstance(s, bytes) else str(s) for s in group["labels"][()]]
        binning = None
        if "bin_edges" in group:
            width = float(a["bin_width"])
            binning = ScanBinning.from_arrays(group["bin_edges"][()], group["bin_centres"][()],
                                              str(a["binning_mode"]), str(a["scan_name"]), str(a["scan_units"]),
                                              None if np.isnan(width) else width, float(a["bin_origin"]))
        cube = cls(int(a["n_bins"]), labels, tuple(int(s) for s in a["image_shape"]), "sum_squares" in group,
                   int(a["scale_bits"]), int(a["xgm_scale_bits"]), str(a["units"]), str(a["xgm_units"]), binning)
        cube.load_sums(group)
        return cube

    def load_sums(self, group) -> None:
        """Take the sums and counts that :meth:`write` stored in ``group`` (float64 of the integers: exact)."""
        n_groups = self.n_bins * len(self.labels)
        self._sum = round_fixed(group["sum"][()], self.scale_bits).astype(np.int64).reshape(n_groups, -1)
        self._pixel_count = group["pixel_count"][()].astype(np.int32).reshape(n_groups, -1)
        if self.sum_squares:
            sq = round_fixed(group["sum_squares"][()], self.scale_bits)
            self._sum_sq = sq.astype(np.int64).reshape(n_groups, -1)
        self._count = group["count"][()].astype(np.int64).reshape(-1)
        self._xgm_sum = round_fixed(group["xgm_sum"][()], self.xgm_scale_bits).astype(np.int64).reshape(-1)
        self._xgm_count = group["xgm_count"][()].astype(np.int64).reshape(-1)
        self._no_bin = group["n_no_bin"][()].astype(np.int64)
        self._n_bad = np.array([int(group.attrs["n_bad_values"])], dtype=np.int64)
