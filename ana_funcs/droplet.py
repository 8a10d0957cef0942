"""Droplets: connected groups of pixels above threshold, found for a whole batch at once.

A droplet is a 4-connected group of valid pixels above the low ("grow") threshold that
contains at least one pixel above the high ("seed") threshold. Pixels of different
frames, modules or DSSC ASICs (64 x 64 pixels) are never connected. The whole batch is
labelled in one pass (:func:`label_planes`: a graph of the few pixels above threshold,
or :func:`scipy.ndimage.label` on an ASIC-blocked view when many are), and per-droplet
sums come from :func:`numpy.bincount` over the pixels above threshold only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from smalldata.constants import DSSC_ASIC_SHAPE
from smalldata.errors import ConfigError
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames
from smalldata.plugin.ragged import Ragged

log = logging.getLogger(__name__)

THRESHOLD_UNITS = ("noise", "photon", "data")

# 4-connectivity inside a plane, nothing along the stack axis.
_PLANE_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_PLANE_STRUCTURE[1] = ndimage.generate_binary_structure(2, 1)


# ---------------------------------------------------------------------- parameter checks
def check_droplet_params(threshold: float, threshold_low: float, threshold_unit: str, min_sum: float) -> None:
    """Validate the droplet-finding parameters (raises :class:`ConfigError`)."""
    if threshold_unit not in THRESHOLD_UNITS:
        raise ConfigError("threshold_unit", f"{threshold_unit!r} is not a threshold unit; use 'noise' "
                                            "(multiples of each pixel's noise), 'photon' (multiples of "
                                            "adu_per_photon) or 'data' (data units: ADU, or photons)")
    for key, value in (("threshold", threshold), ("threshold_low", threshold_low), ("min_sum", min_sum)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value):
            raise ConfigError(key, f"expected a finite number, got {value!r}")
    if threshold_low <= 0:
        raise ConfigError("threshold_low", f"must be > 0 (a pixel joins a droplet above it), got {threshold_low}")
    if threshold_low > threshold:
        raise ConfigError("threshold_low", f"the grow threshold ({threshold_low}) is above the seed threshold "
                                           f"({threshold}); need threshold_low <= threshold")
    if min_sum < 0:
        raise ConfigError("min_sum", f"must be >= 0, got {min_sum}")


def check_photon_params(adu_per_photon: Optional[float], rounding_offset: float) -> None:
    """Validate the photon conversion parameters (raises :class:`ConfigError`)."""
    if adu_per_photon is not None and (isinstance(adu_per_photon, bool)
                                       or not isinstance(adu_per_photon, (int, float, np.integer, np.floating))
                                       or not np.isfinite(adu_per_photon) or adu_per_photon <= 0):
        raise ConfigError("adu_per_photon", f"must be a positive number (data units per photon) or null "
                                            f"for the detector's gain, got {adu_per_photon!r}")
    if isinstance(rounding_offset, bool) or not isinstance(rounding_offset, (int, float, np.integer, np.floating)) \
            or not 0 <= rounding_offset < 1:
        raise ConfigError("rounding_offset", f"must be in [0, 1) (0.5 rounds to the nearest photon), "
                                             f"got {rounding_offset!r}")


def check_count(key: str, value: int, minimum: int = 1) -> int:
    """Validate an integer parameter ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(key, f"expected an integer >= {minimum}, got {value!r}")
    return int(value)


def resolve_adu_per_photon(adu_per_photon: Optional[float], det) -> Optional[float]:
    """Data units per photon: the parameter, else 1 for photon data, else the detector gain, else None."""
    if adu_per_photon is not None:
        return float(adu_per_photon)
    if getattr(det, "units", "ADU") == "photon":
        return 1.0
    gain = getattr(det, "gain", None)
    if gain is None:
        return None
    gain = np.asarray(gain, dtype=np.float64)
    if gain.ndim:
        good = np.asarray(det.mask, dtype=bool) & np.isfinite(gain) & (gain > 0)
        if not good.any():
            raise ConfigError("adu_per_photon", "the detector gain has no positive value on good pixels; "
                                                "set adu_per_photon")
        value = float(np.median(gain[good]))
        log.info("using the median detector gain %.4g ADU/photon for photon conversion", value)
        return value
    if not np.isfinite(gain) or gain <= 0:
        raise ConfigError("adu_per_photon", f"the detector gain {float(gain)} is not positive; set adu_per_photon")
    return float(gain)


def photons_per_droplet(adu: np.ndarray, adu_per_photon: float, rounding_offset: float) -> np.ndarray:
    """Integer photons of each droplet: ``floor(adu / adu_per_photon + rounding_offset)``, at least 0."""
    n = np.floor(np.asarray(adu, dtype=np.float64) / adu_per_photon + rounding_offset)
    return np.maximum(n, 0).astype(np.int64)


# ---------------------------------------------------------------------- the finder
@dataclass
class DropletSet:
    """Droplets of a batch and their pixels (shared by :class:`Droplet` and photon assignment).

    Frames are seen as ``N x P`` planes of ``H x W`` pixels (P = modules for full-detector
    frames, 1 for a 2-D crop). Droplets are ordered by event, plane, then their first pixel
    in raster order; pixel arrays list every droplet pixel once, in raster order.

    Attributes
    ----------
    n_events, planes_per_event : int
    pixel_plane, pixel_row, pixel_col : ndarray (n_pix,) int64
        Plane (``event * P + p``), row and column of each droplet pixel.
    pixel_droplet : ndarray (n_pix,) int64
        Droplet index of each pixel.
    pixel_value : ndarray (n_pix,) float64
        Pixel value in data units.
    event, plane : ndarray (n,) int64
        Event and plane within the event (module axis index) of each droplet.
    adu, row, col : ndarray (n,) float64
        Summed value and value-weighted centre of mass (row, column in the plane).
    npix : ndarray (n,) int64
        Pixels per droplet.
    counts : ndarray (N,) int64
        Droplets per event.
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

    def __len__(self) -> int:
        return len(self.adu)


def _as_planes(array: np.ndarray) -> np.ndarray:
    """View (N, ..., H, W) as (N, P, H, W)."""
    if array.ndim < 3:
        raise ValueError(f"droplets need frames of at least (N, H, W), got shape {array.shape}")
    return array.reshape(array.shape[0], -1, *array.shape[-2:])


#: Above this fraction of pixels over threshold, labelling the dense image is faster.
SPARSE_MAX_FRACTION = 0.15


def _cut_structure() -> np.ndarray:
    """Connectivity for a (K, ny, ah, nx, aw)-shaped view: 4-neighbours inside each block only."""
    st = np.zeros((3, 3, 3, 3), dtype=bool)
    st[1, 1, 1, 1] = st[1, 0, 1, 1] = st[1, 2, 1, 1] = st[1, 1, 1, 0] = st[1, 1, 1, 2] = True
    return st


_BLOCK_STRUCTURE = _cut_structure()


def label_planes(stack: np.ndarray, block: Optional[Tuple[int, int]] = None) -> Tuple[np.ndarray, np.ndarray, int]:
    """4-connected components of boolean planes (K, H, W), never across planes or blocks.

    Parameters
    ----------
    stack : ndarray (K, H, W) bool
    block : (bh, bw) or None
        Tiles (e.g. ASICs) that are never connected to each other; H, W multiples of them.

    Returns
    -------
    pos, label, n
        Flat positions of the True pixels (ascending), their component (0..n-1, numbered
        in order of each component's first pixel in raster order), and n.

    Sparse images are labelled as a graph of their True pixels only: horizontal runs are
    joined by their vertical contacts with :func:`scipy.sparse.csgraph.connected_components`;
    dense ones with :func:`scipy.ndimage.label`. Both give the same numbering.
    """
    k, h, w = stack.shape
    bh, bw = block if block is not None else (h, w)
    pos = np.flatnonzero(stack)
    n_pix = len(pos)
    if n_pix > SPARSE_MAX_FRACTION * stack.size:
        if block is not None:
            # a (K*ny, bh, nx, bw) view: raster order unchanged, no links between blocks
            labels, n = ndimage.label(stack.reshape(k * (h // bh), bh, w // bw, bw), structure=_BLOCK_STRUCTURE)
        else:
            labels, n = ndimage.label(stack, structure=_PLANE_STRUCTURE)
        return pos, labels.reshape(-1)[pos].astype(np.int64) - 1, n
    if n_pix == 0:
        return pos, np.zeros(0, dtype=np.int64), 0
    # runs: horizontal stretches of True pixels inside one block row are connected already
    start = np.empty(n_pix, dtype=bool)
    start[0] = True
    np.not_equal(np.diff(pos), 1, out=start[1:])
    start |= pos % bw == 0
    run = np.cumsum(start) - 1
    n_runs = int(run[-1]) + 1
    # vertical links: the pixel below (same block) is True as well
    cand = np.flatnonzero((pos // w) % bh != bh - 1)
    below = pos[cand] + w
    has = stack.reshape(-1)[below]
    run_a = run[cand[has]]
    run_b = run[np.searchsorted(pos, below[has])]
    # components among the linked runs; every other run is a droplet on its own
    linked = np.zeros(n_runs, dtype=bool)
    linked[run_a] = True
    linked[run_b] = True
    node = np.cumsum(linked) - 1
    linked_runs = np.flatnonzero(linked)
    n_nodes = len(linked_runs)
    comp = np.zeros(0, dtype=np.int64)
    if n_nodes:
        graph = sparse.csr_matrix((np.ones(len(run_a), dtype=np.int8), (node[run_a], node[run_b])),
                                  shape=(n_nodes, n_nodes))
        comp = _by_first_appearance(csgraph.connected_components(graph, directed=False)[1].astype(np.int64))
    # a component's number: its first run's rank among all components' first runs
    first_node = np.flatnonzero(np.r_[True, np.diff(np.maximum.accumulate(comp)) > 0]) if n_nodes else comp
    is_first = ~linked
    is_first[linked_runs[first_node]] = True
    run_label = np.cumsum(is_first) - 1
    run_label[linked_runs] = run_label[linked_runs[first_node]][comp]
    return pos, run_label[run], int(is_first.sum())


def _by_first_appearance(lab: np.ndarray) -> np.ndarray:
    """Renumber labels in order of first appearance (connected_components normally does this)."""
    if len(lab) == 0:
        return lab
    running = np.maximum.accumulate(lab)
    if lab[0] == 0 and not (np.diff(running) > 1).any():
        return lab
    _, first, inverse = np.unique(lab, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse]


def find_droplets(data: np.ndarray, valid: np.ndarray, seed_threshold, grow_threshold,
                  min_sum: float = 0.0, split_asics: bool = True,
                  asic_shape: Tuple[int, int] = DSSC_ASIC_SHAPE) -> DropletSet:
    """Find the droplets of a batch of frames in one labelling pass.

    Parameters
    ----------
    data, valid : ndarray (N, ..., H, W)
        Pixel values (data units) and validity (True = good).
    seed_threshold, grow_threshold : float or ndarray broadcastable to (P, H, W)
        A droplet holds at least one pixel ``> seed_threshold``; its pixels are ``> grow_threshold``.
    min_sum : float
        Droplets whose summed value is below this are dropped.
    split_asics : bool
        Cut connections at ASIC borders (when H, W are multiples of ``asic_shape``).
    """
    planes = _as_planes(data)
    n_events, n_p, height, width = planes.shape
    above = _as_planes(valid) & (planes > grow_threshold)
    ah, aw = asic_shape
    split = split_asics and height % ah == 0 and width % aw == 0 and (height, width) != (ah, aw)
    pos, lab, n_labels = label_planes(above.reshape(n_events * n_p, height, width),
                                      block=(ah, aw) if split else None)
    del above
    col = pos % width
    t = pos // width
    row = t % height
    plane = t // height
    if planes.flags.c_contiguous:
        raw = planes.reshape(-1)[pos]
    else:
        raw = planes.reshape(n_events * n_p, height, width)[plane, row, col]
    if np.ndim(seed_threshold) == 0:
        is_seed = raw > seed_threshold  # compared in the data's precision, like the grow threshold
    else:
        seed_thr = np.ascontiguousarray(np.broadcast_to(seed_threshold, (n_p, height, width)))
        is_seed = raw > seed_thr.reshape(-1)[pos % seed_thr.size]
    vals = raw.astype(np.float64)

    keep = np.zeros(n_labels, dtype=bool)
    keep[lab[is_seed]] = True
    adu = np.bincount(lab, weights=vals, minlength=n_labels)
    if min_sum > 0:
        keep &= adu >= min_sum
    if not keep.all():
        new_id = np.cumsum(keep) - 1
        sel = keep[lab]
        lab = new_id[lab[sel]]
        plane, row, col, vals = plane[sel], row[sel], col[sel], vals[sel]
        adu = adu[keep]
    n = len(adu)
    npix = np.bincount(lab, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        com_row = np.bincount(lab, weights=vals * row, minlength=n) / adu
        com_col = np.bincount(lab, weights=vals * col, minlength=n) / adu
    drop_plane = np.zeros(n, dtype=np.int64)
    drop_plane[lab] = plane
    event = drop_plane // n_p
    return DropletSet(n_events=n_events, planes_per_event=n_p,
                      pixel_plane=plane, pixel_row=row, pixel_col=col, pixel_droplet=lab, pixel_value=vals,
                      event=event, plane=drop_plane % n_p, adu=adu, row=com_row, col=com_col, npix=npix,
                      counts=np.bincount(event, minlength=n_events).astype(np.int64))


def cap_per_event(event: np.ndarray, counts: np.ndarray, cap: int) -> np.ndarray:
    """Boolean selection keeping the first ``cap`` items of each event (items sorted by event)."""
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (np.arange(len(event)) - offsets[event]) < cap


#: Key of the droplets a :class:`Droplet` hands to its children in ``Frames.payload``.
DROPLETS_PAYLOAD = "droplets"


def droplets_of(frames: Frames) -> Optional[DropletSet]:
    """The droplets a parent :class:`Droplet` found in ``frames`` (None when there is no such parent)."""
    return frames.payload.get(DROPLETS_PAYLOAD)


class DropletThresholds:
    """Seed and grow thresholds per module plane, from parameters and the detector noise."""

    def __init__(self, threshold: float, threshold_low: float, threshold_unit: str, owner: str):
        self.threshold = float(threshold)
        self.threshold_low = float(threshold_low)
        self.unit = threshold_unit
        self.owner = owner
        self.noise = None
        self.modules = None
        self._cache: Dict[tuple, tuple] = {}
        self._warned = False

    def set_detector(self, det, adu_per_photon: Optional[float] = None) -> None:
        """Take the noise map (``threshold_unit='noise'``), the photon size (``'photon'``) and modules."""
        self._cache = {}
        self.modules = tuple(det.modules)
        self.adu_per_photon = adu_per_photon
        if self.unit == "photon" and adu_per_photon is None:
            raise ConfigError("threshold_unit", f"{self.owner}: thresholds in photons need adu_per_photon "
                                                "(the data are in ADU and the detector has no gain)")
        if self.unit == "noise":
            noise = np.asarray(det.noise_in_units, dtype=np.float32)
            good = np.asarray(det.mask, dtype=bool) & np.isfinite(noise)
            self.noise = noise
            self.typical_noise = float(np.median(noise[good])) if good.any() else float("nan")

    def for_frames(self, frames: Frames):
        """(seed, grow) thresholds broadcastable to the frames' (P, H, W) planes."""
        if self.unit == "data":
            return self.threshold, self.threshold_low
        if self.unit == "photon":
            if self.adu_per_photon is None:
                raise RuntimeError(f"{self.owner}: threshold_unit 'photon' needs setFromDet(det) before process()")
            return self.threshold * self.adu_per_photon, self.threshold_low * self.adu_per_photon
        if self.noise is None:
            raise RuntimeError(f"{self.owner}: threshold_unit 'noise' needs setFromDet(det) before process()")
        full = frames.modules is not None and frames.data.shape[1:] == (len(frames.modules),) + self.noise.shape[1:]
        if not full:
            if not self._warned:
                log.warning("%s: frames are a crop; noise thresholds use the median noise %.4g %s",
                            self.owner, self.typical_noise, frames.units)
                self._warned = True
            return self.threshold * self.typical_noise, self.threshold_low * self.typical_noise
        key = tuple(frames.modules)
        if key not in self._cache:
            idx = [self.modules.index(m) for m in key]
            noise = self.noise[idx]
            self._cache[key] = (np.float32(self.threshold) * noise, np.float32(self.threshold_low) * noise)
        return self._cache[key]


class Droplet(DetObjectFunc):
    """Droplets per event: count, summed signal, photon estimate, optional droplet list.

    Parameters
    ----------
    name : str
        Output prefix.
    threshold : float
        Seed threshold: a droplet has at least one pixel above it (unit: ``threshold_unit``).
    threshold_low : float
        Grow threshold: droplet pixels are above it; 0 < threshold_low <= threshold.
    threshold_unit : str
        ``"noise"``: multiples of each pixel's noise; ``"photon"``: multiples of
        ``adu_per_photon``; ``"data"``: data units (ADU, or photons).
    min_sum : float
        Droplets with a smaller summed value (data units) are dropped.
    adu_per_photon : float or None
        Data units per photon for the ``photons`` output; None: 1 for photon data, else the
        detector gain; without either, ``photons`` is not written.
    rounding_offset : float
        Photons of a droplet = ``floor(sum / adu_per_photon + rounding_offset)``; 0.5 rounds.
    save_droplets : bool
        Also write the droplet list (ragged output ``list`` and per-event ``capped``).
    max_droplets_per_event : int
        At most this many droplets per event in the list (the first in detector order).
    """

    def __init__(self, name: str = "droplet", threshold: float = 5.0, threshold_low: float = 3.0,
                 threshold_unit: str = "noise", min_sum: float = 0.0, adu_per_photon: Optional[float] = None,
                 rounding_offset: float = 0.5, save_droplets: bool = False, max_droplets_per_event: int = 1000):
        super().__init__(name)
        check_droplet_params(threshold, threshold_low, threshold_unit, min_sum)
        check_photon_params(adu_per_photon, rounding_offset)
        self.threshold = float(threshold)
        self.threshold_low = float(threshold_low)
        self.threshold_unit = threshold_unit
        self.min_sum = float(min_sum)
        self.adu_per_photon = None if adu_per_photon is None else float(adu_per_photon)
        self.rounding_offset = float(rounding_offset)
        self.save_droplets = bool(save_droplets)
        self.max_droplets_per_event = check_count("max_droplets_per_event", max_droplets_per_event)
        self._thresholds = DropletThresholds(threshold, threshold_low, threshold_unit, name)
        self._app: Optional[float] = self.adu_per_photon
        self._units = "ADU"

    def setFromDet(self, det) -> None:
        super().setFromDet(det)
        self._units = det.units
        self._app = resolve_adu_per_photon(self.adu_per_photon, det)
        self._thresholds.set_detector(det, self._app)
        if self._app is None:
            log.info("%s: data in ADU without a gain; no photon estimate (set adu_per_photon)", self.name)

    def find(self, frames: Frames) -> DropletSet:
        """The droplets of a batch (reused from a parent droplet function when attached)."""
        drops = droplets_of(frames)
        if drops is not None:
            return drops
        seed, grow = self._thresholds.for_frames(frames)
        return find_droplets(frames.data, frames.valid, seed, grow, self.min_sum,
                             split_asics=frames.modules is not None)

    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        return self._outputs(frames, self.find(frames))

    def process_and_hand_on(self, frames: Frames):
        """Per-event outputs, and the frames with their droplets for the children."""
        drops = self.find(frames)
        return self._outputs(frames, drops), frames.with_payload({DROPLETS_PAYLOAD: drops})

    def child_frames(self, frames: Frames, outputs) -> Frames:
        return frames.with_payload({DROPLETS_PAYLOAD: self.find(frames)})

    def _outputs(self, frames: Frames, drops: DropletSet) -> Dict[str, np.ndarray]:
        n = len(frames)
        out = {"n_droplets": drops.counts.astype(np.int32),
               "total_adu": np.bincount(drops.event, weights=drops.adu, minlength=n)}
        if self._app is not None:
            nph = photons_per_droplet(drops.adu, self._app, self.rounding_offset)
            out["photons"] = np.bincount(drops.event, weights=nph, minlength=n).astype(np.int64)
        if self.save_droplets:
            keep = cap_per_event(drops.event, drops.counts, self.max_droplets_per_event)
            if frames.modules is not None:
                module = np.asarray(frames.modules, dtype=np.int16)[drops.plane[keep]]
            else:
                module = np.full(int(keep.sum()), -1, dtype=np.int16)
            out["list"] = Ragged(
                {"module": module, "row": drops.row[keep].astype(np.float32),
                 "col": drops.col[keep].astype(np.float32), "adu": drops.adu[keep].astype(np.float32),
                 "npix": drops.npix[keep].astype(np.int32)},
                np.minimum(drops.counts, self.max_droplets_per_event))
            out["capped"] = drops.counts > self.max_droplets_per_event
        return out

    def output_units(self) -> Dict[str, str]:
        return {"total_adu": self._units, "photons": "photon", "n_droplets": "", "capped": "",
                "list/row": "pixel", "list/col": "pixel", "list/adu": self._units,
                "list/npix": "pixel", "list/module": ""}
