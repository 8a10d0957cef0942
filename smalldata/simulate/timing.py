"""Frames, pulses and scans: where each frame sits in the bunch pattern.

Frame ``f`` of a train uses memory cell ``f`` and bunch-pattern slot
``first_slot + f * slot_spacing`` (its pulseId). Its label is
``pattern[f % len(pattern)]``: labels containing ``"dark"`` have no X-ray pulse,
labels starting with ``"pumped"`` have a pump-laser pulse in the same slot.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from euxfel_bunch_pattern import DESTINATION_T4D, PHOTON_LINE_DEFLECTION, PPL_BITS

from smalldata.constants import BUNCH_PATTERN_LENGTH

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
    """Frames of one train.

    Attributes
    ----------
    labels : list of str
    cells : (n,) uint16
    slots : (n,) uint64
        Bunch-pattern slot (pulseId) of each frame.
    xray, laser : (n,) bool
    """

    labels: list
    cells: np.ndarray
    slots: np.ndarray
    xray: np.ndarray
    laser: np.ndarray

    def __len__(self) -> int:
        return len(self.cells)


def train_layout(n_frames: int, pattern: Sequence[str] = ("pumped", "unpumped"), first_slot: int = 200,
                 slot_spacing: int = 24, beam_off: bool = False) -> TrainLayout:
    """Layout of a train of ``n_frames`` frames; ``beam_off`` (dark runs) removes X-rays and laser."""
    labels = [pattern[f % len(pattern)] for f in range(n_frames)]
    cells = np.arange(n_frames, dtype=np.uint16)
    slots = (first_slot + np.arange(n_frames) * slot_spacing).astype(np.uint64)
    xray = np.array([is_xray_label(lb) for lb in labels], bool) & (not beam_off)
    laser = np.array([is_laser_label(lb) for lb in labels], bool) & (not beam_off)
    return TrainLayout(labels, cells, slots, xray, laser)


def bunch_pattern_table(layout: TrainLayout) -> np.ndarray:
    """The train's bunch-pattern table, (2700,) uint32."""
    bpt = np.zeros(BUNCH_PATTERN_LENGTH, np.uint32)
    slots = layout.slots.astype(np.int64)
    bpt[slots[layout.xray]] |= np.uint32(SASE3_BITS)
    bpt[slots[layout.laser]] |= np.uint32(LASER_BIT)
    return bpt


def scan_values(n_trains: int, positions: Sequence[float]) -> np.ndarray:
    """Per-train values of a step scan: ``positions`` in equal (to one train) blocks of trains."""
    positions = np.asarray(positions, dtype=float)
    block = (np.arange(n_trains) * len(positions)) // n_trains
    return positions[block]
