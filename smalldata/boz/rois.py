"""The three beam ROIs (``n``, ``0``, ``p``) on one module: finding them and checking them.

ROIs are boxes ``[y0, y1, x0, x1]`` in module pixel coordinates (rows, columns, end
exclusive), all of the same size so that the ratio images ``n/0`` and ``p/0`` compare
pixels at the same place relative to their beam. ``n`` is the leftmost beam (lowest
columns), ``0`` the middle one, ``p`` the rightmost.
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence

import numpy as np

from smalldata.boz import ORDERS
from smalldata.constants import DSSC_MODULE_SHAPE
from smalldata.errors import ConfigError, DataError

#: Fewest pixels above the threshold for a region to count as a beam.
MIN_BEAM_PIXELS = 50
#: A row (column) belongs to a beam's box if it holds this fraction of the fullest row's (column's) pixels.
EDGE_FRACTION = 0.25


def find_rois(mean_image: np.ndarray, threshold: float, min_pixels: int = MIN_BEAM_PIXELS) -> Dict[str, list]:
    """The three beams of a dark-corrected mean module image.

    Pixels above ``threshold`` (after a 3 x 3 closing that bridges masked ASIC edges
    and dead pixels) are grouped into connected regions; the three largest become
    ``n``, ``0`` and ``p`` from left to right. A region's box spans the rows (columns)
    holding at least :data:`EDGE_FRACTION` of its fullest row's (column's) pixels, so a
    stray pixel above the threshold next to a beam (noise, a pedestal off by an ADU)
    neither widens the box nor shifts it against the other beams'. The boxes are then
    made the same size (the largest height and width), centred on each region's box.

    Parameters
    ----------
    mean_image : (128, 512) array
        Dark-corrected mean of the run, ADU.
    threshold : float
        ADU; pixels above it are lit.
    min_pixels : int
        Fewest pixels of a beam.

    Returns
    -------
    dict
        ``{"n": [y0, y1, x0, x1], "0": [...], "p": [...]}``.
    """
    from scipy import ndimage

    img = np.nan_to_num(np.asarray(mean_image, dtype=np.float64), nan=0.0)
    if img.shape != DSSC_MODULE_SHAPE:
        raise DataError(f"mean image has shape {img.shape}, expected {DSSC_MODULE_SHAPE}")
    above = img > threshold
    above |= ndimage.binary_closing(above, structure=np.ones((3, 3), bool))
    labels, count = ndimage.label(above)
    sizes = np.bincount(labels.ravel())[1:] if count else np.zeros(0, np.int64)
    beams = [i + 1 for i in np.argsort(sizes)[::-1] if sizes[i] >= min_pixels][:3]
    if len(beams) < 3:
        peak = float(img.max()) if img.size else 0.0
        raise DataError(f"found {len(beams)} beam(s) above the ROI threshold {threshold:g} ADU in the mean image "
                        f"(brightest pixel {peak:.3g} ADU), need 3; lower the threshold (-t) or check the run "
                        f"and module (-m)")
    boxes = sorted((_beam_box(labels == b) for b in beams), key=lambda b: b[2])
    h = max(b[1] - b[0] for b in boxes)
    w = max(b[3] - b[2] for b in boxes)
    rois = {}
    for order, (y0, y1, x0, x1) in zip(ORDERS, boxes):
        cy, cx = (y0 + y1 - h) // 2, (x0 + x1 - w) // 2
        rois[order] = [int(cy), int(cy + h), int(cx), int(cx + w)]
    return check_rois(rois, "found ROIs")


def _beam_box(region: np.ndarray) -> list:
    """``[y0, y1, x0, x1]`` of the rows and columns holding most of a region's pixels."""
    spans = []
    for axis in (1, 0):
        counts = region.sum(axis=axis)
        idx = np.flatnonzero(counts >= EDGE_FRACTION * counts.max())
        spans += [int(idx[0]), int(idx[-1]) + 1]
    return spans


def check_rois(rois: Mapping[str, Sequence[int]], where: str = "rois") -> Dict[str, list]:
    """Validate three ROIs: integers, inside the module, the same size, not overlapping.

    Returns them as ``{order: [y0, y1, x0, x1]}``; raises :class:`ConfigError` naming ``where``.
    """
    if not isinstance(rois, Mapping) or sorted(map(str, rois)) != sorted(ORDERS):
        raise ConfigError(where, f"expected a mapping with the keys n, 0 and p, got {rois!r}")
    out = {}
    for order in ORDERS:
        box = rois[order] if order in rois else rois[int(order)] if order == "0" else None
        if box is None or len(box) != 4 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                     for v in box):
            raise ConfigError(f"{where}.{order}", f"expected [y0, y1, x0, x1] as 4 integers, got {box!r}")
        y0, y1, x0, x1 = (int(v) for v in box)
        if not (0 <= y0 < y1 <= DSSC_MODULE_SHAPE[0] and 0 <= x0 < x1 <= DSSC_MODULE_SHAPE[1]):
            raise ConfigError(f"{where}.{order}", f"[{y0}, {y1}, {x0}, {x1}] is outside the 128 x 512 module or "
                                                  "empty; need 0 <= y0 < y1 <= 128 and 0 <= x0 < x1 <= 512")
        out[order] = [y0, y1, x0, x1]
    sizes = {order: (b[1] - b[0], b[3] - b[2]) for order, b in out.items()}
    if len(set(sizes.values())) != 1:
        raise ConfigError(where, f"the three ROIs must have the same size (rows, columns), got {sizes}")
    for i, a in enumerate(ORDERS):
        for b in ORDERS[i + 1:]:
            ba, bb = out[a], out[b]
            if ba[0] < bb[1] and bb[0] < ba[1] and ba[2] < bb[3] and bb[2] < ba[3]:
                raise ConfigError(where, f"ROIs {a} {ba} and {b} {bb} overlap; give separate boxes")
    return out


def union_box(rois: Mapping[str, Sequence[int]]) -> tuple:
    """``(y0, y1, x0, x1)``: the smallest box holding the three ROIs."""
    boxes = np.array([rois[o] for o in ORDERS])
    return int(boxes[:, 0].min()), int(boxes[:, 1].max()), int(boxes[:, 2].min()), int(boxes[:, 3].max())


def roi_shape(rois: Mapping[str, Sequence[int]]) -> tuple:
    """(rows, columns) of the ROIs (they all have the same size)."""
    y0, y1, x0, x1 = rois["0"]
    return y1 - y0, x1 - x0


def roi_mask(rois: Mapping[str, Sequence[int]], shape=DSSC_MODULE_SHAPE) -> np.ndarray:
    """(128, 512) bool: True inside any of the ROIs."""
    out = np.zeros(shape, bool)
    for order in ORDERS:
        y0, y1, x0, x1 = rois[order]
        out[y0:y1, x0:x1] = True
    return out


def crop(image: np.ndarray, rois: Mapping[str, Sequence[int]], order: str, origin=(0, 0)) -> np.ndarray:
    """The pixels of ROI ``order`` from an array whose last two axes start at module pixel ``origin``."""
    y0, y1, x0, x1 = rois[order]
    oy, ox = origin
    return image[..., y0 - oy:y1 - oy, x0 - ox:x1 - ox]

