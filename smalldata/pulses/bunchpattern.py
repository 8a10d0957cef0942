"""Bunch pattern decoding and the alignment of detector frames to pulses.

The bunch pattern table has one row of uint32 words per train (2700 in the data so
far; the length is taken from the data), one word per 4.5 MHz slot (bunch).
:func:`decode_bunch_pattern` turns a batch of rows into boolean slot maps of SASE3
X-ray pulses and of the table's pump-laser (PPL) bits with the ``euxfel_bunch_pattern``
package; the PPL bits start at slot 0 and are placed at the laser's real slots by a
:class:`~smalldata.pulses.laser.LaserAnchor`. :func:`align_frames` (or its
per-train-count form :func:`frame_pulse_info`) places detector frame ``f`` of a train
at slot ``first_slot + f * slot_spacing`` and reports per frame whether X-rays and the
pump laser were there, and which SASE3 pulse of the train it saw.
:func:`align_per_pulse` then picks per-pulse values (XGM entries, digitizer
integrals: entry ``k`` belongs to the ``k``-th SASE3 pulse of the train) for the
frames. See ``docs/pulses.md``.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Tuple

import euxfel_bunch_pattern as ebp
import numpy as np

from smalldata.errors import ConfigError, DataError
from smalldata.lookup import find_sorted
from smalldata.pulses.laser import LaserAnchor, anchored_laser

log = logging.getLogger(__name__)

#: Pump-laser bit names accepted for ``laser`` (members of ``euxfel_bunch_pattern.PPL_BITS``).
LASER_NAMES = tuple(ebp.PPL_BITS.__members__)

#: Keys of the dict returned by :func:`align_frames`.
FRAME_INFO_KEYS = ("train_of_frame", "frame_index", "slot", "aligned",
                   "xray_on", "laser_on", "pulse_index")


def _laser_bit(laser: str) -> int:
    if laser not in ebp.PPL_BITS.__members__:
        raise ConfigError("laser", f"{laser!r} is not a pump-laser bit; use one of {', '.join(LASER_NAMES)}")
    return int(ebp.PPL_BITS[laser])


def _check_rows(bunch_pattern_rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(bunch_pattern_rows)
    if rows.ndim == 1:
        rows = rows[np.newaxis]
    if rows.ndim != 2 or rows.shape[1] < 1:
        raise DataError(f"bunch pattern rows have shape {rows.shape}; expected (trains, slots)")
    if not np.issubdtype(rows.dtype, np.integer):
        raise DataError(f"bunch pattern rows have dtype {rows.dtype}; expected uint32")
    return rows.astype(np.uint32, copy=False)


def decode_bunch_pattern(bunch_pattern_rows: np.ndarray, sase: int = 3,
                         laser: str = "LP_SCS") -> Tuple[np.ndarray, np.ndarray]:
    """Slot maps of X-ray pulses and of the table's pump-laser bits.

    Parameters
    ----------
    bunch_pattern_rows : ndarray, (T, L) uint32
        Bunch pattern table rows of T trains (L slots, 2700 in the data so far).
    sase : int
        SASE whose pulses count as X-rays (1, 2 or 3; SCS is behind SASE3).
    laser : str
        Pump-laser bit name in ``euxfel_bunch_pattern.PPL_BITS`` (``"LP_SCS"`` at SCS).

    Returns
    -------
    xray, laser_bits : ndarray, (T, L) bool
        True at the slots with an X-ray pulse / a pump-laser bit. The laser bits start
        at slot 0 whatever the laser's timing (see :mod:`smalldata.pulses.laser`).
    """
    if sase not in (1, 2, 3):
        raise ConfigError("sase", f"{sase!r} is not a SASE; use 1, 2 or 3")
    bit = _laser_bit(laser)
    rows = _check_rows(bunch_pattern_rows)
    return np.asarray(ebp.is_sase(rows, sase)), np.asarray(ebp.is_laser(rows, bit))


def slots_of(slot_map: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Slot numbers of the pulses in each train, padded with -1.

    Parameters
    ----------
    slot_map : ndarray, (T, L) bool
        E.g. the ``xray`` map of :func:`decode_bunch_pattern`.

    Returns
    -------
    slots : ndarray, (T, K) int64
        Slot of the k-th pulse of each train in ascending order, -1 beyond the
        train's pulses; K is the largest pulse count of the batch (at least 1).
    n_pulses : ndarray, (T,) int64
    """
    slot_map = np.asarray(slot_map, dtype=bool)
    n_pulses = slot_map.sum(axis=1).astype(np.int64)
    width = max(int(n_pulses.max(initial=0)), 1)
    slots = np.full((slot_map.shape[0], width), -1, dtype=np.int64)
    t, s = np.nonzero(slot_map)  # row-major: ascending slot within each train
    k = np.arange(len(t)) - np.repeat(np.cumsum(n_pulses) - n_pulses, n_pulses)
    slots[t, k] = s
    return slots, n_pulses


def sase_pulse_slots(bunch_pattern_rows: np.ndarray, sase: int = 3) -> Tuple[np.ndarray, np.ndarray]:
    """Slots of the SASE pulses of each train: ``(slots (T, K) int64 padded -1, n_pulses (T,))``."""
    xray, _ = decode_bunch_pattern(bunch_pattern_rows, sase=sase)
    return slots_of(xray)


def infer_slot_spacing(pulse_slots: np.ndarray, n_pulses: np.ndarray) -> np.ndarray:
    """Spacing of the pulses of each train in slots.

    Parameters
    ----------
    pulse_slots, n_pulses : from :func:`slots_of`.

    Returns
    -------
    ndarray, (T,) int64
        The common spacing where a train has >= 2 evenly spaced pulses; 0 where
        it has fewer than 2 pulses; -1 where the spacing is not uniform.
    """
    pulse_slots = np.asarray(pulse_slots)
    n_pulses = np.asarray(n_pulses)
    spacing = np.zeros(len(n_pulses), dtype=np.int64)
    if pulse_slots.shape[1] < 2:
        return spacing
    diffs = np.diff(pulse_slots, axis=1)
    valid = np.arange(diffs.shape[1])[np.newaxis] < (n_pulses[:, np.newaxis] - 1)
    first = diffs[:, 0]
    uniform = np.all(~valid | (diffs == first[:, np.newaxis]), axis=1)
    many = n_pulses >= 2
    spacing[many & uniform] = first[many & uniform]
    spacing[many & ~uniform] = -1
    return spacing


def frames_to_trains(frames_per_train: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(train_of_frame, frame_index)`` (F,) int64 for trains with the given frame counts."""
    counts = np.asarray(frames_per_train, dtype=np.int64)
    if counts.ndim != 1 or np.any(counts < 0):
        raise DataError(f"frames_per_train must be a 1-d array of counts >= 0, got {frames_per_train!r}")
    train_of_frame = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    frame_index = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return train_of_frame, frame_index


def _check_slot_param(name: str, value: Optional[int], minimum: int) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(name, f"{value!r} is not valid; use an integer >= {minimum} (in 4.5 MHz bunch slots) "
                                "or null to take it from the SASE3 pulses")
    return int(value)


def align_frames(bunch_pattern_rows: np.ndarray, train_of_frame: np.ndarray, frame_index: np.ndarray,
                 first_slot: Optional[int] = None, slot_spacing: Optional[int] = None,
                 sase: int = 3, laser: str = "LP_SCS", laser_anchor: Optional[LaserAnchor] = None,
                 previous_laser_slot: int = -1, train_ids: Optional[np.ndarray] = None,
                 frames_in_train: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Per-frame pulse information for frames of trains with known bunch pattern rows.

    Frame ``f`` of a train sits at slot ``first_slot + f * slot_spacing``.

    Parameters
    ----------
    bunch_pattern_rows : ndarray, (T, L) uint32
        One bunch pattern row per train of the batch.
    train_of_frame : ndarray, (F,) int
        Row of ``bunch_pattern_rows`` for each frame; -1 where the train has no
        bunch pattern (the frame is then not aligned).
    frame_index : ndarray, (F,) int
        Position of each frame in its train (0-based).
    first_slot : int or None
        Slot of frame 0. None: the slot of the train's first SASE3 pulse (a
        train without SASE3 pulses is then not aligned).
    slot_spacing : int or None
        Slots between consecutive frames (>= 1). None: the spacing of the
        train's SASE3 pulses, which requires as many frames as pulses in the
        train (a single pulse and frame also works); other trains are not
        aligned, with a warning. Frames per train are ``frames_in_train``, or counted
        from ``train_of_frame`` (then pass all frames of each train).
    sase : int
        SASE of the X-rays (3 at SCS).
    laser : str
        Pump-laser bit name (``"LP_SCS"``).
    laser_anchor : LaserAnchor, optional
        Places the table's laser bits (which start at slot 0) at the laser's real
        slots; required when a train has laser bits (:class:`LaserAnchorError` otherwise).
    previous_laser_slot : int
        First laser slot of the last anchored train before these rows, for trains that
        lack the X-ray pulses the anchor needs (-1: none).
    train_ids : ndarray, optional
        Train id of each row, for messages.
    frames_in_train : ndarray, (T,) int, optional
        Frames each train holds, also those not among these frames (a piece of a train).

    Returns
    -------
    dict of (F,) arrays
        ``train_of_frame``, ``frame_index`` (int64, as given); ``slot`` (int64,
        -1 if not aligned); ``aligned``, ``xray_on``, ``laser_on`` (bool);
        ``pulse_index`` (int64): index of the frame's X-ray pulse among the
        train's SASE3 pulses, -1 if the frame has no X-rays. Also, per row (T,),
        ``laser_first_slot`` (int64): the real slot of the train's first laser pulse
        (-1 where the train has no anchor).
    """
    first_slot = _check_slot_param("first_slot", first_slot, 0)
    slot_spacing = _check_slot_param("slot_spacing", slot_spacing, 1)
    xray, laser_bits = decode_bunch_pattern(bunch_pattern_rows, sase=sase, laser=laser)
    laser_map, laser_first = anchored_laser(xray, laser_bits, laser_anchor, previous_laser_slot, train_ids)
    n_trains, length = xray.shape
    tof = np.asarray(train_of_frame, dtype=np.int64)
    fidx = np.asarray(frame_index, dtype=np.int64)
    if tof.shape != fidx.shape or tof.ndim != 1:
        raise DataError(f"train_of_frame {tof.shape} and frame_index {fidx.shape} must be equal 1-d shapes")
    if np.any(tof >= n_trains) or np.any(tof < -1):
        raise DataError(f"train_of_frame must be in -1..{n_trains - 1}")
    if np.any(fidx < 0):
        raise DataError("frame_index must be >= 0")

    has_train = tof >= 0
    row = np.where(has_train, tof, 0)
    n_pulses = xray.sum(axis=1).astype(np.int64)
    train_ok = np.ones(n_trains, dtype=bool)

    if first_slot is None:
        first = np.argmax(xray, axis=1).astype(np.int64)  # first True (0 if none)
        train_ok &= n_pulses > 0
    else:
        first = np.full(n_trains, first_slot, dtype=np.int64)

    if slot_spacing is None:
        if frames_in_train is None:
            frames_in_train = np.bincount(row[has_train], minlength=n_trains)
        frames_in_train = np.where(np.bincount(row[has_train], minlength=n_trains) > 0,
                                   np.asarray(frames_in_train, dtype=np.int64), 0)
        spacing = infer_slot_spacing(*slots_of(xray))
        single = (n_pulses == 1) & (frames_in_train <= 1)
        good = (frames_in_train == n_pulses) & ((spacing > 0) | single)
        bad = ~good & (frames_in_train > 0)
        if np.any(bad):
            t = int(np.flatnonzero(bad)[0])
            log.warning("slot_spacing cannot be inferred for %d of %d trains (e.g. row %d: %d frames, "
                        "%d SASE%d pulses); their frames are not aligned, set slot_spacing",
                        int(bad.sum()), n_trains, t, frames_in_train[t], n_pulses[t], sase)
        train_ok &= good
        spacing = np.where(spacing > 0, spacing, 1)
    else:
        spacing = np.full(n_trains, slot_spacing, dtype=np.int64)

    slot = first[row] + fidx * spacing[row]
    inside = slot < length
    if np.any(has_train & ~inside):
        log.warning("%d frames fall beyond slot %d of the bunch pattern and are not aligned",
                    int(np.sum(has_train & ~inside)), length - 1)
    aligned = has_train & train_ok[row] & inside
    slot = np.where(aligned, slot, -1)
    safe = np.where(aligned, slot, 0)
    xray_on = aligned & xray[row, safe]
    laser_on = aligned & laser_map[row, safe]
    # pulse number at each slot: running count of X-ray pulses up to and including the slot
    running = np.cumsum(xray, axis=1, dtype=np.int64) - 1
    pulse_index = np.where(xray_on, running[row, safe], -1)
    return {
        "train_of_frame": tof,
        "frame_index": fidx,
        "slot": slot,
        "aligned": aligned,
        "xray_on": xray_on,
        "laser_on": laser_on,
        "pulse_index": pulse_index,
        "laser_first_slot": laser_first,
    }


def frame_pulse_info(bunch_pattern_rows: np.ndarray, frames_per_train: np.ndarray,
                     first_slot: Optional[int] = None, slot_spacing: Optional[int] = None,
                     sase: int = 3, laser: str = "LP_SCS",
                     laser_anchor: Optional[LaserAnchor] = None) -> Dict[str, np.ndarray]:
    """:func:`align_frames` for trains holding frames ``0 .. frames_per_train[t] - 1``.

    Frames are ordered by train, then frame; F = ``frames_per_train.sum()``.
    """
    rows = _check_rows(bunch_pattern_rows)
    counts = np.asarray(frames_per_train)
    if counts.shape != (rows.shape[0],):
        raise DataError(f"frames_per_train has shape {counts.shape}; expected ({rows.shape[0]},), one per row")
    train_of_frame, frame_index = frames_to_trains(counts)
    return align_frames(rows, train_of_frame, frame_index, first_slot=first_slot,
                        slot_spacing=slot_spacing, sase=sase, laser=laser, laser_anchor=laser_anchor)


def align_per_pulse(values: np.ndarray, pulse_index: np.ndarray, train_of_frame: np.ndarray,
                    n_valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-frame values from per-pulse values of each train.

    Parameters
    ----------
    values : ndarray, (T, K)
        Entry ``k`` of row ``t`` belongs to the ``k``-th SASE3 pulse of train
        ``t`` (e.g. XGM ``intensitySa3TD``, K = 1000; digitizer integrals).
    pulse_index : ndarray, (F,) int
        From :func:`align_frames`; -1 for frames without X-rays.
    train_of_frame : ndarray, (F,) int
        Row of ``values`` of each frame; -1 if the train has no values.
    n_valid : ndarray, (T,) int, optional
        Number of valid entries per row (e.g. the train's SASE3 pulse count);
        entries at or beyond it give NaN.

    Returns
    -------
    ndarray, (F,) float
        The frame's value, NaN where the frame has no pulse or no value.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise DataError(f"per-pulse values have shape {values.shape}; expected (trains, pulses)")
    pidx = np.asarray(pulse_index, dtype=np.int64)
    tof = np.asarray(train_of_frame, dtype=np.int64)
    if pidx.shape != tof.shape:
        raise DataError(f"pulse_index {pidx.shape} and train_of_frame {tof.shape} differ in shape")
    if np.any(tof >= values.shape[0]):
        raise DataError(f"train_of_frame refers to row {int(tof.max())} of {values.shape[0]} rows")
    ok = (pidx >= 0) & (pidx < values.shape[1]) & (tof >= 0)
    if n_valid is not None:
        n_valid = np.asarray(n_valid, dtype=np.int64)
        ok &= pidx < n_valid[np.where(tof >= 0, tof, 0)]
    dtype = np.result_type(values.dtype, np.float32)
    out = np.full(pidx.shape, np.nan, dtype=dtype)
    out[ok] = values[tof[ok], pidx[ok]]
    return out


def train_rows(frame_train_ids: np.ndarray, table_train_ids: np.ndarray) -> np.ndarray:
    """Row of a per-train table (e.g. bunch pattern, XGM) for each frame's train id, -1 if absent."""
    frame_train_ids = np.asarray(frame_train_ids)
    table_train_ids = np.asarray(table_train_ids)
    order = np.argsort(table_train_ids, kind="stable")
    sorted_ids = table_train_ids[order]
    pos, found = find_sorted(sorted_ids, frame_train_ids)
    if len(sorted_ids) == 0:
        return np.full(frame_train_ids.shape, -1, dtype=np.int64)
    return np.where(found, order[pos], -1).astype(np.int64)
