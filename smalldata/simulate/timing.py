"""Frames, pulses and scans: where each frame sits in the bunch pattern.

Frame ``f`` of a train uses memory cell ``f`` and bunch-pattern slot
``first_slot + f * slot_spacing`` (its pulseId). Its label is
``pattern[f % len(pattern)]``: labels containing ``"dark"`` have no X-ray pulse.

The pump laser fires either on the frames whose label starts with ``"pumped"``, or,
with ``laser_pulses = (first, period)``, on X-ray pulse ``first`` of the train and then
every ``period`` X-ray pulse spacings (a laser at ``1 / period`` of the X-ray rate).

As at the facility, the table's pump-laser (PPL) bits start at slot 0 whatever the
laser's real timing: they are the laser's slots minus the slot of its first pulse. The
real timing is in the truth file (``frame_laser``, ``train_laser_first_slot``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from euxfel_bunch_pattern import DESTINATION_T4D, PHOTON_LINE_DEFLECTION, PPL_BITS

#: Charge code (low 4 bits) written on SASE3 slots: 0.25 nC.
SASE3_CHARGE_CODE = 8
#: Bits of a SASE3 pulse (found by ``indices_at_sase(bpt, 3)``).
SASE3_BITS = DESTINATION_T4D | PHOTON_LINE_DEFLECTION | SASE3_CHARGE_CODE
#: Bit of an SCS pump-laser pulse (found by ``indices_at_laser(bpt, PPL_BITS.LP_SCS)``).
LASER_BIT = int(PPL_BITS.LP_SCS)


def is_xray_label(label: str) -> bool:
    """True for labels with an X-ray pulse (no ``"dark"`` in them)."""
    return "dark" not in label


def is_laser_label(label: str) -> bool:
    """True for labels with the pump laser (starting with ``"pumped"``)."""
    return label.startswith("pumped")


@dataclass
class TrainLayout:
    """Frames and pulses of one train.

    Attributes
    ----------
    labels : list of str
    cells : (n,) uint16
    slots : (n,) uint64
        Bunch-pattern slot (pulseId) of each frame.
    xray, laser : (n,) bool
        An X-ray pulse / a pump-laser pulse at the frame's slot.
    laser_slots : (k,) int64
        Real slots of all pump-laser pulses of the train (also those without a frame).
    """

    labels: list
    cells: np.ndarray
    slots: np.ndarray
    xray: np.ndarray
    laser: np.ndarray
    laser_slots: np.ndarray

    def __len__(self) -> int:
        return len(self.cells)

    @property
    def laser_first_slot(self) -> int:
        """Real slot of the train's first laser pulse, -1 without laser."""
        return int(self.laser_slots[0]) if len(self.laser_slots) else -1

    @property
    def xray_first_slot(self) -> int:
        """Slot of the train's first X-ray pulse, -1 without X-rays."""
        return int(self.slots[self.xray][0]) if self.xray.any() else -1


def laser_pulse_slots(xray_slots: np.ndarray, laser_pulses: Tuple[int, int], last_slot: int) -> np.ndarray:
    """Real laser slots for ``laser_pulses = (first, period)`` (in X-ray pulses).

    The laser's first pulse is on X-ray pulse ``first``; then one every ``period`` X-ray
    spacings (the spacing of the first two X-ray pulses), up to ``last_slot``. A train
    with too few X-ray pulses to place the laser has none.
    """
    first, period = laser_pulses
    if len(xray_slots) < max(first + 1, 2):
        return np.zeros(0, np.int64)
    spacing = int(xray_slots[1] - xray_slots[0])
    start = int(xray_slots[first])
    return np.arange(start, last_slot + 1, period * spacing, dtype=np.int64)


def train_layout(n_frames: int, pattern: Sequence[str] = ("pumped", "unpumped"), first_slot: int = 200,
                 slot_spacing: int = 24, beam_off: bool = False,
                 laser_pulses: Optional[Tuple[int, int]] = None) -> TrainLayout:
    """Layout of a train of ``n_frames`` frames; ``beam_off`` (dark runs) removes X-rays and laser."""
    labels = [pattern[f % len(pattern)] for f in range(n_frames)]
    cells = np.arange(n_frames, dtype=np.uint16)
    slots = (first_slot + np.arange(n_frames) * slot_spacing).astype(np.uint64)
    xray = np.array([is_xray_label(lb) for lb in labels], bool) & (not beam_off)
    if beam_off:
        laser_slots = np.zeros(0, np.int64)
    elif laser_pulses is None:
        laser_slots = slots[[is_laser_label(lb) for lb in labels]].astype(np.int64)
    else:
        last = int(slots[-1]) if n_frames else first_slot
        laser_slots = laser_pulse_slots(slots[xray].astype(np.int64), laser_pulses, last)
    laser = np.isin(slots.astype(np.int64), laser_slots)
    return TrainLayout(labels, cells, slots, xray, laser, laser_slots)


def bunch_pattern_table(layout: TrainLayout, length: int = 2700) -> np.ndarray:
    """The train's bunch-pattern table, (length,) uint32: SASE3 bits at the X-ray slots,
    PPL bits at the laser's slots shifted so that the first is at slot 0."""
    bpt = np.zeros(length, np.uint32)
    slots = layout.slots.astype(np.int64)
    bpt[slots[layout.xray]] |= np.uint32(SASE3_BITS)
    if len(layout.laser_slots):
        bpt[layout.laser_slots - layout.laser_slots[0]] |= np.uint32(LASER_BIT)
    return bpt


def scan_values(n_trains: int, positions: Sequence[float]) -> np.ndarray:
    """Per-train values of a step scan: ``positions`` in equal (to one train) blocks of trains."""
    positions = np.asarray(positions, dtype=float)
    block = (np.arange(n_trains) * len(positions)) // n_trains
    return positions[block]
