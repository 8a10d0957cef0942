"""Where the pump laser really fired: anchoring the bunch pattern's PPL bits.

At the European XFEL the optical-laser (PPL) bits of the bunch-pattern table always
start at slot 0, whatever the laser's real timing; only the number of laser pulses and
their spacing are in the table. The facility's toolkit (EXtra's ``PumpProbePulses``)
places them by exactly one of three anchors, and so does :class:`LaserAnchor`:

- ``bunch_table_position``: the first laser pulse is at this slot;
- ``bunch_table_offset``: it is this many slots after the train's first X-ray pulse;
- ``pulse_offset``: it is this many X-ray pulse spacings (the spacing of the train's
  first two X-ray pulses, rounded down to whole slots) after the first X-ray pulse.

A train without the X-ray pulses its anchor needs (none, or only one for a non-zero
``pulse_offset``) takes the anchor of the last train before it that had them, as EXtra
extrapolates. See ``docs/pulses.md``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from smalldata.errors import ConfigError, DataError

#: The ``pulses`` config keys that anchor the laser (exactly one is needed when the run has laser bits).
ANCHOR_KEYS = ("laser_bunch_table_position", "laser_bunch_table_offset", "laser_pulse_offset")


class LaserAnchorError(DataError):
    """The run has pump-laser bits whose real slots cannot be determined."""


def anchor_hint() -> str:
    """The fix for an unanchored laser, naming the config keys."""
    return ("set one of pulses." + ", pulses.".join(ANCHOR_KEYS) + " (the PPL bits of the bunch pattern start at "
            "slot 0 whatever the laser's real timing; see docs/pulses.md)")


class LaserAnchor:
    """One of the three PPL anchors.

    Parameters
    ----------
    bunch_table_position : int, optional
        Slot of the first laser pulse.
    bunch_table_offset : int, optional
        Slots from the train's first X-ray pulse to the first laser pulse.
    pulse_offset : float, optional
        X-ray pulse spacings from the train's first X-ray pulse to the first laser pulse.

    Exactly one must be given (:class:`ConfigError` otherwise).
    """

    def __init__(self, bunch_table_position: Optional[int] = None, bunch_table_offset: Optional[int] = None,
                 pulse_offset: Optional[float] = None):
        given = [k for k, v in zip(ANCHOR_KEYS, (bunch_table_position, bunch_table_offset, pulse_offset))
                 if v is not None]
        if len(given) != 1:
            raise ConfigError("pulses", (f"{', '.join(given)} are set together; keep one" if given else
                                         "no pump-laser anchor given; " + anchor_hint()))
        if bunch_table_position is not None and bunch_table_position < 0:
            raise ConfigError("pulses.laser_bunch_table_position", f"{bunch_table_position} must be a slot >= 0")
        self.bunch_table_position = None if bunch_table_position is None else int(bunch_table_position)
        self.bunch_table_offset = None if bunch_table_offset is None else int(bunch_table_offset)
        self.pulse_offset = None if pulse_offset is None else float(pulse_offset)
        if self.pulse_offset == 0:
            # the same place as offset 0 slots, which needs only one X-ray pulse (as in EXtra)
            self.pulse_offset, self.bunch_table_offset = None, 0

    def first_slots(self, xray: np.ndarray) -> np.ndarray:
        """(T,) int64 slot of each train's first laser pulse; -1 where the train lacks the
        X-ray pulses this anchor needs (before extrapolation).

        Raises :class:`LaserAnchorError` where the anchor puts the laser before slot 0.
        """
        xray = np.asarray(xray, dtype=bool)
        n_trains = xray.shape[0]
        if self.bunch_table_position is not None:
            return np.full(n_trains, self.bunch_table_position, dtype=np.int64)
        n_pulses = xray.sum(axis=1)
        first = np.argmax(xray, axis=1).astype(np.int64)
        if self.bunch_table_offset is not None:
            slots, ok, key = first + self.bunch_table_offset, n_pulses >= 1, "laser_bunch_table_offset"
        else:
            masked = xray.copy()
            masked[np.arange(n_trains), first] = False
            second = np.argmax(masked, axis=1).astype(np.int64)
            offset = ((second - first) * self.pulse_offset).astype(np.int64)  # truncated, as EXtra does
            slots, ok, key = first + offset, n_pulses >= 2, "laser_pulse_offset"
        if np.any(ok & (slots < 0)):
            raise LaserAnchorError(f"pulses.{key} places the first laser pulse before slot 0 (at slot "
                                   f"{int(slots[ok & (slots < 0)][0])}); use a value that keeps it in the table")
        return np.where(ok, slots, -1)


def extrapolate(first_slots: np.ndarray, previous: int = -1) -> np.ndarray:
    """Fill -1 entries with the last valid one before them (``previous`` before the first)."""
    first_slots = np.asarray(first_slots, dtype=np.int64)
    valid = first_slots >= 0
    idx = np.where(valid, np.arange(len(first_slots)), -1)
    last = np.maximum.accumulate(idx) if len(idx) else idx
    return np.where(last >= 0, first_slots[np.maximum(last, 0)], previous).astype(np.int64)


def place_laser(laser_bits: np.ndarray, first_slots: np.ndarray) -> np.ndarray:
    """Real laser slot map (T, L) bool: each train's PPL bits shifted by its first slot.

    ``laser_bits`` are the table's PPL bits (starting at slot 0); bits shifted beyond the
    table are dropped. Rows with ``first_slots`` -1 must have no bits.
    """
    laser_bits = np.asarray(laser_bits, dtype=bool)
    out = np.zeros_like(laser_bits)
    t, s = np.nonzero(laser_bits)
    shift = np.asarray(first_slots, dtype=np.int64)[t]
    if np.any(shift < 0):
        raise LaserAnchorError("place_laser: a train with laser bits has no anchor")
    s = s + shift
    inside = s < laser_bits.shape[1]
    out[t[inside], s[inside]] = True
    return out


def anchored_laser(xray: np.ndarray, laser_bits: np.ndarray, anchor: Optional[LaserAnchor],
                   previous: int = -1, train_ids: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The laser's real slot map and each train's first laser slot.

    Parameters
    ----------
    xray, laser_bits : ndarray, (T, L) bool
        X-ray slot map and the table's PPL bits (:func:`decode_bunch_pattern`).
    anchor : LaserAnchor or None
        None is allowed only while no train has laser bits.
    previous : int
        First laser slot of the last anchored train before these rows (-1: none).
    train_ids : ndarray, optional
        For messages.

    Returns
    -------
    laser_on : (T, L) bool
    first_slots : (T,) int64, -1 where a train has no anchor (and no laser bits)

    Raises
    ------
    LaserAnchorError
        A train has laser bits and no anchor can be determined for it.
    """
    has_bits = np.asarray(laser_bits, dtype=bool).any(axis=1)
    n_trains = len(has_bits)

    def name(t: int) -> str:
        return f"train {int(train_ids[t])}" if train_ids is not None else f"row {t}"

    if anchor is None:
        if has_bits.any():
            t = int(np.flatnonzero(has_bits)[0])
            raise LaserAnchorError(f"the bunch pattern has pump-laser bits ({name(t)}) but no anchor; "
                                   + anchor_hint())
        return np.zeros_like(np.asarray(laser_bits, dtype=bool)), np.full(n_trains, -1, dtype=np.int64)
    first = extrapolate(anchor.first_slots(xray), previous)
    missing = has_bits & (first < 0)
    if missing.any():
        t = int(np.flatnonzero(missing)[0])
        raise LaserAnchorError(f"{name(t)} has pump-laser bits but not the X-ray pulses its anchor needs, and no "
                               "earlier train to take the anchor from; use pulses.laser_bunch_table_position")
    return place_laser(laser_bits, first), first
