"""Azimuthal binning: per-frame mean intensity in rings of momentum transfer (and azimuth).

Each good pixel is assigned once (no pixel splitting) to a bin of momentum transfer
``q`` and azimuth ``phi`` (geometry in :mod:`smalldata.geometry.qmap`). Per frame and bin::

    mean  = sum(I) / sum(c)        over the bin's pixels valid in that frame
    count = number of those pixels

with ``I`` the calibrated pixel value and ``c`` the pixel's correction factor
(solid angle x polarisation, 1 without corrections). This is the normalisation
pyFAI uses for its integrated intensity; without corrections it is the plain mean.

All geometry is computed once in :meth:`AzimuthalBinning.setFromDet`; a frame then
costs one sparse matrix-vector product over the precomputed pixel-to-bin assignment
(see :class:`BinSums`).
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.sparse

from smalldata.calib.masks import load_user_mask
from smalldata.detectors.dssc import DSSC
from smalldata.errors import ConfigError, DataError
from smalldata.fused.plan import fused_results
from smalldata.geometry import qmap
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames

log = logging.getLogger(__name__)

NORMALISATIONS = ("mean", "sum")


class BinSums:
    """Per-frame sums of pixel values over a fixed assignment of pixels to bins.

    The used pixels are ordered by memory tile (``tile_size`` consecutive pixels),
    then bin, and cut into *parts*: runs of one bin within one tile, at most
    ``part_size`` long. A CSR matrix (parts x pixels, ones) turns a frame into its
    part sums in one sparse product that reads the float32 data in place and walks
    the frame tile by tile; the part sums (float32, at most ``part_size`` terms) are
    added up per bin in float64, so bins of 10^5 pixels keep ~1e-7 precision.

    ``frames_per_product`` frames share one block-diagonal product. One frame per
    product is the fastest (measured on DSSC 1M: the 8 MB matrix stays in cache;
    blocks of 4 frames are ~25 % slower); the loop's own cost is ~10 us per product.

    Pixels that are used but invalid in a frame (saturated, module missing) are
    found per product, taken as zero for the product (the input is restored
    unchanged), and subtracted from the precomputed per-bin counts and weight sums.

    Parameters
    ----------
    bins : ndarray of int
        Bin of each pixel (any shape, flattened), -1 for pixels not used.
    n_bins : int
        Number of bins.
    weights : ndarray of float
        Per-pixel weight ``c`` summed over valid pixels (same shape as ``bins``).
    frames_per_product : int
        Frames per sparse product (matrix memory ~8 bytes x frames x used pixels).
    part_size : int
        Longest float32 partial sum.
    tile_size : int
        Pixels per memory tile (default 32 detector rows, 64 kB of float32).
    """

    def __init__(self, bins: np.ndarray, n_bins: int, weights: np.ndarray,
                 frames_per_product: int = 1, part_size: int = 256, tile_size: int = 32 * 512):
        bins = np.asarray(bins).ravel()
        self.n_pixels = bins.size
        self.n_bins = int(n_bins)
        self.frames_per_product = int(frames_per_product)
        self.selected = bins >= 0
        self.bin_of_pixel = np.where(self.selected, bins, -1).astype(np.int32)
        self.weights = np.asarray(weights, dtype=np.float64).ravel()

        # Pixels ordered by memory tile, then bin: a product walks the frame tile by
        # tile (cache friendly); a part is a run of one bin within one tile.
        pix = np.flatnonzero(self.selected)
        pix_bin = bins[pix]
        tile = pix // tile_size
        order = np.lexsort((pix, pix_bin, tile))
        pix, pix_bin, tile = pix[order], pix_bin[order], tile[order]
        self.count_all = np.bincount(pix_bin, minlength=self.n_bins).astype(np.int64)
        self.weight_all = np.bincount(pix_bin, weights=self.weights[pix], minlength=self.n_bins)
        self.nonempty = np.flatnonzero(self.count_all)
        new_run = np.ones(pix.size, dtype=bool)
        new_run[1:] = (pix_bin[1:] != pix_bin[:-1]) | (tile[1:] != tile[:-1])
        run_start = np.flatnonzero(new_run)
        run_id = np.cumsum(new_run) - 1
        rank = np.arange(pix.size) - run_start[run_id]
        new_part = new_run | (rank % part_size == 0)
        part_start = np.flatnonzero(new_part)
        self.n_parts = part_start.size
        row_ptr = np.concatenate((part_start, [pix.size]))
        self._combine = scipy.sparse.csr_array(
            (np.ones(self.n_parts), (pix_bin[part_start], np.arange(self.n_parts))),
            shape=(self.n_bins, self.n_parts))
        nnz, k = pix.size, self.frames_per_product
        if k * self.n_pixels >= 2 ** 31:
            raise ValueError("frames_per_product x pixels must stay below 2**31")
        offsets = np.arange(k, dtype=np.int64)
        self._indices = (offsets[:, None] * self.n_pixels + pix[None, :]).astype(np.int32).ravel()
        self._indptr = np.concatenate(
            [(offsets[:, None] * nnz + row_ptr[None, :-1]).ravel(), [k * nnz]]).astype(np.int32)
        self._ones = np.ones(k * nnz, dtype=np.float32)
        self._nnz = nnz
        self._matrices: Dict[int, scipy.sparse.csr_array] = {}

    def _matrix(self, n: int) -> scipy.sparse.csr_array:
        """Block-diagonal summing matrix for ``n <= frames_per_product`` frames (views)."""
        mat = self._matrices.get(n)
        if mat is None:
            mat = scipy.sparse.csr_array(
                (self._ones[:n * self._nnz], self._indices[:n * self._nnz],
                 self._indptr[:n * self.n_parts + 1]),
                shape=(n * self.n_parts, n * self.n_pixels), copy=False)
            self._matrices[n] = mat
        return mat

    def _product_without(self, block: np.ndarray, bad: np.ndarray, n: int) -> np.ndarray:
        """Part sums of ``n`` frames (flat ``block``) with the pixels ``bad`` taken as 0.

        Writable input is zeroed at ``bad`` in place and restored bit for bit afterwards
        (O(bad) instead of copying the frames); read-only input is copied.
        """
        if block.flags.writeable:
            saved = block[bad]
            block[bad] = 0.0
            try:
                return (self._matrix(n) @ block).reshape(n, self.n_parts)
            finally:
                block[bad] = saved
        cleaned = block.copy()
        cleaned[bad] = 0.0
        return (self._matrix(n) @ cleaned).reshape(n, self.n_parts)

    def __call__(self, data: np.ndarray, valid: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sum a batch.

        Parameters
        ----------
        data : ndarray, (N, ...) float32
            Pixel values; ``N`` frames of ``n_pixels`` each.
        valid : ndarray, (N, ...) bool
            True where the pixel is good in that frame.

        Returns
        -------
        sums : ndarray, (N, n_bins) float64
            Sum of the valid pixel values per bin.
        counts : ndarray, (N, n_bins) int64
            Number of valid pixels per bin.
        weight_sums : ndarray, (N, n_bins) float64
            Sum of the weights of the valid pixels per bin (0 where the count is 0).
        """
        n_frames = data.shape[0]
        flat = np.ascontiguousarray(data, dtype=np.float32).reshape(n_frames, self.n_pixels)
        ok = np.asarray(valid, dtype=bool).reshape(n_frames, self.n_pixels)
        parts = np.empty((n_frames, self.n_parts), dtype=np.float32)
        counts = np.broadcast_to(self.count_all, (n_frames, self.n_bins)).copy()
        weight_sums = np.broadcast_to(self.weight_all, (n_frames, self.n_bins)).copy()
        k = self.frames_per_product
        for start in range(0, n_frames, k):  # one C-level product per block of k frames
            stop = min(start + k, n_frames)
            n = stop - start
            block = flat[start:stop].reshape(-1)
            bad = np.flatnonzero(np.greater(self.selected, ok[start:stop]))  # selected & ~valid
            if bad.size:
                frame, pixel = np.divmod(bad, self.n_pixels)
                key = (frame + start) * self.n_bins + self.bin_of_pixel[pixel]
                size = counts.size
                counts.reshape(-1)[:] -= np.bincount(key, minlength=size)
                weight_sums.reshape(-1)[:] -= np.bincount(key, weights=self.weights[pixel], minlength=size)
                parts[start:stop] = self._product_without(block, bad, n)
            else:
                parts[start:stop] = (self._matrix(n) @ block).reshape(n, self.n_parts)
        sums = (self._combine @ parts.T.astype(np.float64)).T
        weight_sums[counts == 0] = 0.0
        return sums, counts, weight_sums


class AzimuthalBinning(DetObjectFunc):
    """Mean corrected intensity per frame in bins of momentum transfer q and azimuth phi.

    Parameters
    ----------
    name : str
        Output prefix.
    center : (float, float)
        Beam centre ``(x, y)`` on the detector plane, metres, extra-geom frame.
    distance : float
        Sample to detector distance, metres (> 0).
    photon_energy : float
        Photon energy, eV (> 0).
    q_bins : int or list of float
        Number of equal q bins, or the q bin edges in m^-1.
    q_range : (float, float) or None
        ``(min, max)`` of the equal q bins in m^-1; None: the range of the good pixels.
    phi_bins : int or list of float
        Number of equal azimuth bins, or the edges in radians within [-pi, pi].
    phi_range : (float, float) or None
        ``(min, max)`` azimuth in radians within [-pi, pi]; None: (-pi, pi).
    polarization_fraction : float or None
        Fraction (0..1) of the beam intensity polarised horizontally (along x);
        None: no polarisation correction.
    solid_angle : bool
        Correct for the pixel solid angle (``cos^3 2theta``).
    user_mask : str, array or None
        Extra pixel mask, True = good, on top of the detector's mask: a ``.npy`` or
        ``.h5`` file or an array, shape ``(M, rows, columns)`` (the detector's modules) or
        ``(modules, rows, columns)`` (the whole detector: ``(16, 128, 512)`` for the DSSC).
    normalise : str
        ``"mean"``: output ``mean`` = sum(I) / sum(c) (NaN in an empty bin);
        ``"sum"``: output ``sum`` = count x mean, the corrected intensity summed over
        the valid pixels (0 in an empty bin).
    """

    def __init__(self, name: str = "azav", center: Tuple[float, float] = (0.0, 0.0),
                 distance: float = 5.0, photon_energy: float = 860.0,
                 q_bins: Union[int, Sequence[float]] = 100, q_range: Optional[Tuple[float, float]] = None,
                 phi_bins: Union[int, Sequence[float]] = 1, phi_range: Optional[Tuple[float, float]] = None,
                 polarization_fraction: Optional[float] = None, solid_angle: bool = True,
                 user_mask: Union[None, str, os.PathLike, np.ndarray] = None, normalise: str = "mean"):
        super().__init__(name)
        self.center = qmap.check_pair("center", center)
        if not qmap.is_real(distance) or not np.isfinite(distance) or distance <= 0:
            raise ConfigError("distance", f"{distance!r}; need the sample-detector distance in metres, > 0")
        self.distance = float(distance)
        if not qmap.is_real(photon_energy) or not np.isfinite(photon_energy) or photon_energy <= 0:
            raise ConfigError("photon_energy", f"{photon_energy!r}; need the photon energy in eV, > 0")
        self.photon_energy = float(photon_energy)
        self.q_bins = q_bins
        self.q_range = None if q_range is None else qmap.check_range("q_range", q_range, (0.0, np.inf))
        if qmap.is_real(q_bins) and q_range is None:  # a count; the range comes from the pixels
            qmap.bin_edges("q_bins", q_bins, (0.0, 1.0))
        else:
            qmap.bin_edges("q_bins", q_bins, self.q_range)
        self.phi_bins = phi_bins
        self.phi_range = None if phi_range is None else qmap.check_range("phi_range", phi_range, (-np.pi, np.pi))
        default_phi = (-np.pi, np.pi) if qmap.is_real(phi_bins) else None
        self._phi_edges = qmap.bin_edges("phi_bins", phi_bins, self.phi_range or default_phi,
                                         limits=(-np.pi, np.pi))
        if polarization_fraction is not None:
            if not qmap.is_real(polarization_fraction) or not 0.0 <= polarization_fraction <= 1.0:
                raise ConfigError("polarization_fraction", f"{polarization_fraction!r}; need the horizontally "
                                  "polarised fraction of the beam in [0, 1] (e.g. 0.99), or null for no correction")
            polarization_fraction = float(polarization_fraction)
        self.polarization_fraction = polarization_fraction
        if not isinstance(solid_angle, (bool, np.bool_)):
            raise ConfigError("solid_angle", f"{solid_angle!r}; need true or false")
        self.solid_angle = bool(solid_angle)
        if isinstance(user_mask, (str, os.PathLike)):
            if not os.path.isfile(user_mask):
                raise ConfigError("user_mask", f"file {os.fspath(user_mask)!r} does not exist; give a .npy or "
                                  ".h5 file of bool (modules or M, rows, columns), True = good")
        elif user_mask is not None:
            user_mask = np.asarray(user_mask)
            if user_mask.ndim != 3:  # its module shape is checked against the detector's in setFromDet
                raise ConfigError("user_mask", f"array of shape {user_mask.shape}; need bool (modules or M, rows, "
                                  "columns), True = good")
        self.user_mask = user_mask
        if normalise not in NORMALISATIONS:
            raise ConfigError("normalise", f"{normalise!r}; use one of {list(NORMALISATIONS)}")
        self.normalise = normalise
        self._units = "ADU"
        self._sums: Optional[BinSums] = None

    # ------------------------------------------------------------------ set-up
    def setFromDet(self, det) -> None:
        """Compute q, phi and corrections of every pixel and the pixel-to-bin assignment."""
        super().setFromDet(det)
        self._modules = tuple(det.modules)
        x, y, z = (np.asarray(a, dtype=np.float64) for a in (det.x, det.y, det.z))
        shape = x.shape
        if y.shape != shape or z.shape != shape or np.shape(det.mask) != shape or shape[0] != len(self._modules):
            raise DataError(f"detector arrays x, y, z, mask must all be (M={len(self._modules)}, rows, columns); "
                            f"got {x.shape}, {y.shape}, {z.shape}, {np.shape(det.mask)}")
        self._shape = shape
        self._units = getattr(det, "units", "ADU")
        two_theta, phi = qmap.scattering_angles(x, y, z, self.center, self.distance)
        q = qmap.momentum_transfer(two_theta, self.photon_energy)
        correction = np.ones(shape)
        if self.solid_angle:
            correction *= qmap.solid_angle_factor(two_theta)
        if self.polarization_fraction is not None:
            correction *= qmap.polarization_factor(two_theta, phi, self.polarization_fraction)
        good = np.asarray(det.mask, dtype=bool) & load_user_mask(
            self.user_mask, self._modules, module_shape=shape[1:], n_modules=getattr(det, "type", DSSC).n_modules)
        good &= np.isfinite(q) & (correction > 0)
        self.q_edges = qmap.bin_edges("q_bins", self.q_bins, self.q_range, values=q[good])
        self.phi_edges = self._phi_edges
        iq = qmap.digitize(q, self.q_edges)
        iphi = qmap.digitize(phi, self.phi_edges)
        used = good & (iq >= 0) & (iphi >= 0)
        self.n_q, self.n_phi = self.q_edges.size - 1, self.phi_edges.size - 1
        bins = np.where(used, iphi * self.n_q + iq, -1)
        self._sums = BinSums(bins, self.n_q * self.n_phi, correction)
        self.q_map, self.phi_map, self.correction, self.pixel_mask = q, phi, correction, used
        n_empty = self.n_q * self.n_phi - self._sums.nonempty.size
        if not used.any():
            log.warning("%s: no good pixel lies inside the q and phi edges (q %.4g..%.4g m^-1): every bin is empty; "
                        "check center, distance, photon_energy and q_range", self.name, self.q_edges[0],
                        self.q_edges[-1])
        log.info("%s: %d of %d pixels in %d x %d (phi x q) bins, q %.4g..%.4g m^-1, %d bins without pixels",
                 self.name, used.sum(), used.size, self.n_phi, self.n_q, self.q_edges[0], self.q_edges[-1], n_empty)

    def fuse(self, plan) -> bool:
        """Take the fused path: the kernel sums the binned pixels in its pass (:mod:`smalldata.fused`)."""
        if self._sums is None or plan.shape != self._shape:
            return False
        plan.add_azimuthal(self, self._sums.bin_of_pixel, self._sums.weights, self._sums.n_bins)
        return True

    # ------------------------------------------------------------------ processing
    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        """Binned mean (or sum) and valid-pixel count of each frame, (N, n_phi, n_q)."""
        if self._sums is None:
            raise RuntimeError(f"{self.name}: setFromDet() was not called")
        fused = fused_results(frames, self)
        if fused is not None:
            weight_sums = self._sums.weight_all - fused.weight_bad
            weight_sums[fused.counts == 0] = 0.0
            return self._outputs(fused.sums, fused.counts, weight_sums)
        if frames.modules is not None and tuple(frames.modules) != self._modules:
            raise DataError(f"{self.name}: frames hold modules {frames.modules}, the detector {self._modules}")
        if frames.data.shape[1:] != self._shape:
            raise DataError(f"{self.name}: frames of shape {frames.data.shape[1:]}, expected {self._shape}")
        return self._outputs(*self._sums(frames.data, frames.valid))

    def _outputs(self, sums: np.ndarray, counts: np.ndarray, weight_sums: np.ndarray) -> Dict[str, np.ndarray]:
        """Outputs from per-frame bin sums, counts and weight sums, each (N, n_bins)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / weight_sums
        empty = counts == 0
        if self.normalise == "mean":
            value = mean
            value[empty] = np.nan
        else:
            value = mean * counts
            value[empty] = 0.0
        shape = (len(counts), self.n_phi, self.n_q)
        return {self.normalise: value.astype(np.float32).reshape(shape),
                "count": counts.astype(np.int32).reshape(shape)}

    # ------------------------------------------------------------------ description
    @property
    def q_centers(self) -> np.ndarray:
        """Centres of the q bins, m^-1."""
        return 0.5 * (self.q_edges[:-1] + self.q_edges[1:])

    @property
    def phi_centers(self) -> np.ndarray:
        """Centres of the azimuth bins, radians."""
        return 0.5 * (self.phi_edges[:-1] + self.phi_edges[1:])

    def config_arrays(self) -> Dict[str, np.ndarray]:
        """Bin edges and centres, per-pixel q, phi, correction and the pixels used."""
        if self._sums is None:
            return {}
        return {
            "q_centers": self.q_centers, "q_edges": self.q_edges,
            "phi_centers": self.phi_centers, "phi_edges": self.phi_edges,
            "q_map": self.q_map.astype(np.float32), "phi_map": self.phi_map.astype(np.float32),
            "correction": self.correction.astype(np.float32), "pixel_mask": self.pixel_mask,
        }

    def config_units(self) -> Dict[str, str]:
        """Unit of each :meth:`config_arrays` entry that has one."""
        return {"q_centers": "m^-1", "q_edges": "m^-1", "q_map": "m^-1",
                "phi_centers": "rad", "phi_edges": "rad", "phi_map": "rad"}

    def output_units(self) -> Dict[str, str]:
        """``mean``/``sum`` in the detector's units, ``count`` in pixels."""
        return {self.normalise: self._units, "count": "pixel"}
