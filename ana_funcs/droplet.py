"""Droplets per event: count, summed signal, photon estimate and the droplet list.

:class:`Droplet` finds the droplets of each batch with
:func:`~smalldata.funcs.droplet_find.find_droplets` and hands them to its children
(e.g. :class:`~smalldata.funcs.photons.Photons`) in ``Frames.payload``.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

import numpy as np

from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames
from smalldata.plugin.ragged import Ragged

from .droplet_find import DropletSet, asic_split, find_droplets
from .droplet_params import (
    DropletThresholds,
    check_count,
    check_droplet_params,
    check_photon_params,
    photon_values,
    resolve_adu_per_photon,
)

log = logging.getLogger(__name__)

__all__ = ["DROPLETS_PAYLOAD", "Droplet", "DropletSet", "cap_per_event", "droplets_of", "find_droplets"]


def cap_per_event(event: np.ndarray, counts: np.ndarray, cap: int) -> np.ndarray:
    """Boolean selection keeping the first ``cap`` items of each event (items sorted by event)."""
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (np.arange(len(event)) - offsets[event]) < cap


#: Key of the droplets a :class:`Droplet` hands to its children in ``Frames.payload``.
DROPLETS_PAYLOAD = "droplets"


def droplets_of(frames: Frames) -> Optional[DropletSet]:
    """The droplets a parent :class:`Droplet` found in ``frames`` (None when there is no such parent)."""
    return frames.payload.get(DROPLETS_PAYLOAD)


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

    def needs_noise(self) -> bool:
        """Thresholds in units of the noise take the detector's noise map."""
        return self.threshold_unit == "noise"

    def setFromDet(self, det) -> None:
        super().setFromDet(det)
        self._units = det.units
        self._app = resolve_adu_per_photon(self.adu_per_photon, det)
        self._thresholds.set_detector(det, self._app)
        if self._app is None:
            log.info("%s: data in ADU without a gain; no photon estimate (set adu_per_photon)", self.name)

    def find(self, frames: Frames) -> DropletSet:
        """The droplets of a batch (reused from a parent droplet function when attached); their
        pixels are listed only when this function has children (e.g. photon assignment)."""
        drops = droplets_of(frames)
        if drops is not None:
            return drops
        seed, grow = self._thresholds.for_frames(frames)
        return find_droplets(frames.data, frames.valid, seed, grow, self.min_sum,
                             with_pixels=bool(self.children), **asic_split(self.det, frames))

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
               "total_adu": drops.event_adu}
        if self._app is not None:
            nph = photon_values(drops.adu, self._app, self.rounding_offset)
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
