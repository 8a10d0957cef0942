"""Common-mode correction: the median of each ASIC row segment's good, unlit pixels.

An ASIC row segment (64 pixels on the DSSC) shares a baseline that moves from frame to frame. After the
pedestal subtraction, the median of a segment's good pixels below the lit threshold is that
shift, and is subtracted from the whole segment. A segment with too few such pixels is left
as it is.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from smalldata.detectors.dssc import DSSC
from smalldata.errors import CalibrationError, ConfigError

COMMON_MODES = ("none", "asic_row_median")
#: Default lit threshold of the common-mode median, in units of each pixel's noise.
COMMON_MODE_NOISE_FACTOR = 5.0


def check_common_mode(common_mode: str, max_adu: Optional[float], min_pixels: int,
                      segment: int = DSSC.asic_shape[1]) -> None:
    """:class:`ConfigError` naming the setting when a common-mode parameter is out of range.

    ``segment``: pixels of an ASIC row (the detector type's ASIC width; the DSSC's by default,
    the only detector with common mode so far).
    """
    if common_mode not in COMMON_MODES:
        raise ConfigError("common_mode", f"{common_mode!r} is not one of {', '.join(COMMON_MODES)}")
    if max_adu is not None and not max_adu > 0:
        raise ConfigError("common_mode_max", f"must be > 0 ADU, got {max_adu}")
    if not 1 <= min_pixels <= segment:
        raise ConfigError("common_mode_min_pixels", f"must be 1..{segment}, got {min_pixels}")


class AsicRowMedian:
    """The ``asic_row_median`` correction of one detector.

    Parameters
    ----------
    threshold : ndarray, (M, rows, columns) float32
        Lit threshold per pixel, ADU after the pedestal: pixels above it are left out of the median.
    good : ndarray, (M, rows, columns) bool
        The detector's static mask (True = good).
    min_pixels : int
        Fewest good, unlit pixels in a segment for a correction.
    segment : int
        Pixels of an ASIC row segment (the detector type's ASIC width; the DSSC's by default);
        it must divide the module's columns.
    """

    def __init__(self, threshold: np.ndarray, good: np.ndarray, min_pixels: int,
                 segment: int = DSSC.asic_shape[1]):
        rows, columns = threshold.shape[1:]
        if columns % segment:
            raise CalibrationError(f"ASIC row segments of {segment} pixels do not tile a module of {columns} columns")
        self.n_segments = columns // segment  # ASIC row segments per pixel row
        shape = threshold.shape[:1] + (rows, self.n_segments, segment)
        self.threshold = np.asarray(threshold, dtype=np.float32).reshape(shape)
        self.good = np.asarray(good, dtype=bool).reshape(shape)
        self.min_pixels = int(min_pixels)

    @classmethod
    def for_detector(cls, name: str, mask: np.ndarray, noise: Optional[np.ndarray], max_adu: Optional[float],
                     min_pixels: int, segment: int = DSSC.asic_shape[1]) -> "AsicRowMedian":
        """The threshold ``max_adu`` for every pixel, else :data:`COMMON_MODE_NOISE_FACTOR` times each
        pixel's noise (``noise`` (M, C, rows, columns), ADU; its mean over cells)."""
        if max_adu is not None:
            threshold = np.full(mask.shape, max_adu, dtype=np.float32)
        elif noise is not None:
            threshold = COMMON_MODE_NOISE_FACTOR * noise.mean(axis=1)
        else:
            raise CalibrationError(f"common-mode correction of {name} needs the dark noise (the lit threshold is "
                                   "5 x the noise): load the constants with their noise, or set common_mode_max")
        return cls(threshold, mask, min_pixels, segment)

    def subtract(self, out: np.ndarray, unsaturated: np.ndarray) -> None:
        """Subtract, in place, the median of each ASIC row segment's good, unlit pixels.

        ``out`` (N, M, rows, columns) float32 frames after the pedestal; ``unsaturated`` of the same shape.
        """
        n, n_mod, rows = out.shape[:3]
        seg = out.reshape(n, n_mod, rows, self.n_segments, -1)
        use = seg <= self.threshold
        use &= self.good
        use &= unsaturated.reshape(seg.shape)
        vals = np.where(use, seg, np.float32(np.inf))
        vals.sort(axis=-1)
        k = use.sum(axis=-1, dtype=np.int64)[..., None]
        lo = np.take_along_axis(vals, np.maximum(k - 1, 0) // 2, axis=-1)  # the valid values come first
        hi = np.take_along_axis(vals, k // 2, axis=-1)
        median = np.float32(0.5) * (lo + hi)
        median[k < self.min_pixels] = 0.0
        seg -= median
