"""Finding droplets: connected groups of pixels above threshold, for a whole batch at once.

A droplet is a 4-connected group of valid pixels above the low ("grow") threshold that
contains at least one pixel above the high ("seed") threshold. Pixels of different
frames, modules or DSSC ASICs (64 x 64 pixels) are never connected.

Two implementations give the same droplets and the same numbers bit for bit:

- the compiled pass (:func:`smalldata.funcs.droplet_kernel.droplet_pass`), which looks at
  each pixel once and does all further work on the pixels above threshold only: what
  :class:`~smalldata.funcs.droplet.Droplet` and photon assignment use, on the fused and
  on the numpy path alike (droplets are not part of the fused calibration pass);
- the reference, :func:`scipy.ndimage.label` of the whole batch on a view that has no
  link between ASICs, and :func:`numpy.bincount` sums (``method="reference"``): the oracle
  of the tests and of ``benchmarks/bench_droplet.py``, several times slower than the
  compiled pass (and than the labelling this package had before it), so no hot path runs it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage

from smalldata.detectors.dssc import DSSC

from .droplet_kernel import droplet_fields, find_in_stack

log = logging.getLogger(__name__)

#: Implementations of :func:`find_droplets`.
METHODS = ("compiled", "reference")


@dataclass
class DropletSet:
    """Droplets of a batch and their pixels (shared by :class:`~smalldata.funcs.droplet.Droplet`
    and photon assignment).

    Frames are seen as ``N x P`` planes of ``H x W`` pixels (P = modules for full-detector
    frames, 1 for a 2-D crop). Droplets are ordered by event, plane, then their first pixel
    in raster order; pixel arrays list every droplet pixel once, in raster order.

    Attributes
    ----------
    n_events, planes_per_event : int
    pixel_plane, pixel_row, pixel_col : ndarray (n_pix,) int64 or None
        Plane (``event * P + p``), row and column of each droplet pixel (None when found
        without ``with_pixels``, as are the next two).
    pixel_droplet : ndarray (n_pix,) int64 or None
        Droplet index of each pixel.
    pixel_value : ndarray (n_pix,) float64 or None
        Pixel value in data units.
    event, plane : ndarray (n,) int64
        Event and plane within the event (module axis index) of each droplet.
    adu, row, col : ndarray (n,) float64
        Summed value and value-weighted centre of mass (row, column in the plane).
    npix : ndarray (n,) int64
        Pixels per droplet.
    counts : ndarray (N,) int64
        Droplets per event.
    event_adu : ndarray (N,) float64
        Summed value of each event's droplets (added in droplet order).
    """

    n_events: int
    planes_per_event: int
    pixel_plane: np.ndarray
    pixel_row: np.ndarray
    pixel_col: np.ndarray
    pixel_droplet: np.ndarray
    pixel_value: np.ndarray
    event: np.ndarray
    plane: np.ndarray
    adu: np.ndarray
    row: np.ndarray
    col: np.ndarray
    npix: np.ndarray
    counts: np.ndarray
    event_adu: np.ndarray

    def __len__(self) -> int:
        return len(self.adu)


def asic_split(det, frames) -> dict:
    """``split_asics`` and ``asic_shape`` for :func:`find_droplets` on a detector's frames: the
    detector type's ASIC tiles, none for a type without (a camera) or for derived frames (an ROI)."""
    detector_type = getattr(det, "type", None)
    asics = DSSC.asic_shape if detector_type is None else detector_type.asic_shape
    if asics is None or frames.modules is None:
        return {"split_asics": False}
    return {"split_asics": True, "asic_shape": tuple(asics)}


def find_droplets(data: np.ndarray, valid: np.ndarray, seed_threshold, grow_threshold,
                  min_sum: float = 0.0, split_asics: bool = True,
                  asic_shape: Tuple[int, int] = DSSC.asic_shape, method: str = "compiled",
                  with_pixels: bool = True) -> DropletSet:
    """Find the droplets of a batch of frames.

    Parameters
    ----------
    data, valid : ndarray (N, ..., H, W)
        Pixel values (data units) and validity (True = good).
    seed_threshold, grow_threshold : float or ndarray broadcastable to (P, H, W)
        A droplet holds at least one pixel ``> seed_threshold``; its pixels are ``> grow_threshold``,
        compared in the precision of ``data > threshold`` in numpy.
    min_sum : float
        Droplets whose summed value is below this are dropped.
    split_asics : bool
        Cut connections at ASIC borders (when H, W are multiples of ``asic_shape``).
    method : {"compiled", "reference"}
        Implementation (see the module docstring).
    with_pixels : bool
        Also list the droplets' pixels (the ``pixel_*`` attributes, else None).
    """
    if method not in METHODS:
        raise ValueError(f"droplet finding method {method!r}; use one of {', '.join(METHODS)}")
    if data.ndim < 3:
        raise ValueError(f"droplets need frames of at least (N, H, W), got shape {data.shape}")
    n_events, height, width = data.shape[0], data.shape[-2], data.shape[-1]
    stack = data.reshape(-1, height, width)
    n_p = len(stack) // n_events if n_events else 1
    ah, aw = asic_shape
    split = split_asics and height % ah == 0 and width % aw == 0 and (height, width) != (ah, aw)
    block = (ah, aw) if split else (height, width)
    if method == "reference":
        found = _reference(stack, valid.reshape(stack.shape), seed_threshold, grow_threshold, min_sum, n_p, block)
        if not with_pixels:
            found = (None,) * 5 + found[5:]
    else:
        seed, grow, per_pixel = _kernel_thresholds(data.dtype, (n_p, height, width), seed_threshold, grow_threshold)
        found = find_in_stack(np.ascontiguousarray(stack), np.ascontiguousarray(valid.reshape(stack.shape)),
                              seed, grow, per_pixel, n_p, block, float(min_sum), bool(with_pixels))
    # the droplet arrays may be views of the compiled pass's workspace: every field is a new array
    pixel_plane, pixel_row, pixel_col, pixel_droplet, pixel_value, drop_plane, adu, sum_row, sum_col, npix = found
    event, plane, adu, com_row, com_col, npix, counts, event_adu = droplet_fields(
        drop_plane, adu, sum_row, sum_col, npix, n_p, n_events)
    return DropletSet(n_events=n_events, planes_per_event=n_p,
                      pixel_plane=pixel_plane, pixel_row=pixel_row, pixel_col=pixel_col,
                      pixel_droplet=pixel_droplet, pixel_value=pixel_value,
                      event=event, plane=plane, adu=adu, row=com_row, col=com_col, npix=npix, counts=counts,
                      event_adu=event_adu)


def _kernel_thresholds(dtype, planes_shape, seed, grow):
    """Thresholds for :func:`droplet_pass`: scalars as (1, 1, 1) arrays of the data's dtype (as
    numpy compares an array with a Python number), arrays broadcast to (P, H, W) in their own."""
    if np.ndim(seed) == 0 and np.ndim(grow) == 0:
        return np.full((1, 1, 1), seed, dtype), np.full((1, 1, 1), grow, dtype), False
    return (np.ascontiguousarray(np.broadcast_to(_as_array(seed, dtype), planes_shape)),
            np.ascontiguousarray(np.broadcast_to(_as_array(grow, dtype), planes_shape)), True)


def _as_array(threshold, dtype) -> np.ndarray:
    """A threshold as an array: a scalar in the data's dtype, an array as it is."""
    return np.asarray(threshold, dtype) if np.ndim(threshold) == 0 else np.asarray(threshold)


def _block_structure() -> np.ndarray:
    """Connectivity for a (K, ny, bh, nx, bw)-shaped view: 4-neighbours inside each block only."""
    st = np.zeros((3, 3, 3, 3), dtype=bool)
    st[1, 1, 1, 1] = st[1, 0, 1, 1] = st[1, 2, 1, 1] = st[1, 1, 1, 0] = st[1, 1, 1, 2] = True
    return st


_BLOCK_STRUCTURE = _block_structure()


def _reference(stack: np.ndarray, valid: np.ndarray, seed_threshold, grow_threshold, min_sum: float,
               planes_per_event: int, block: Tuple[int, int]):
    """The droplets of (K, H, W) planes with :func:`scipy.ndimage.label` and :func:`numpy.bincount`;
    returns what :func:`droplet_pass` returns."""
    k, height, width = stack.shape
    bh, bw = block
    planes_shape = (planes_per_event, height, width)
    above = valid & (stack.reshape(-1, *planes_shape) > grow_threshold).reshape(stack.shape)
    # a (K * H/bh, bh, W/bw, bw) view: raster order unchanged, no link between blocks
    labels, n_labels = ndimage.label(above.reshape(k * (height // bh), bh, width // bw, bw),
                                     structure=_BLOCK_STRUCTURE)
    pos = np.flatnonzero(above)
    del above
    lab = labels.reshape(-1)[pos].astype(np.int64) - 1
    del labels
    col = pos % width
    t = pos // width
    row = t % height
    plane = t // height
    raw = stack.reshape(-1)[pos] if stack.flags.c_contiguous else stack[plane, row, col]
    if np.ndim(seed_threshold) == 0:
        is_seed = raw > seed_threshold
    else:
        seed = np.ascontiguousarray(np.broadcast_to(seed_threshold, planes_shape))
        is_seed = raw > seed.reshape(-1)[pos % seed.size]
    vals = raw.astype(np.float64)
    keep = np.zeros(n_labels, dtype=bool)
    keep[lab[is_seed]] = True
    adu = np.bincount(lab, weights=vals, minlength=n_labels).astype(np.float64, copy=False)  # float64 if empty too
    if min_sum > 0:
        keep &= adu >= min_sum
    if not keep.all():
        new_id = np.cumsum(keep) - 1
        sel = keep[lab]
        lab = new_id[lab[sel]]
        plane, row, col, vals = plane[sel], row[sel], col[sel], vals[sel]
        adu = adu[keep]
    n = len(adu)
    drop_plane = np.zeros(n, dtype=np.int64)
    drop_plane[lab] = plane
    sum_row = np.bincount(lab, weights=vals * row, minlength=n).astype(np.float64, copy=False)
    sum_col = np.bincount(lab, weights=vals * col, minlength=n).astype(np.float64, copy=False)
    return plane, row, col, lab, vals, drop_plane, adu, sum_row, sum_col, np.bincount(lab, minlength=n)
