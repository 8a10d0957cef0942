"""Memory cells that contradict the other modules of a frame: a module's cell sequence shifted in a train.

Every module of the DSSC records the memory cell of each frame. They normally agree,
and a module that records other cells throughout the run is calibrated with its own
cells' pedestals. When the modules of a frame disagree, the module whose cell also
differs from the cell it records at that position of its train in the rest of the run
(the most common one in a sample of trains spread over the run) is the one whose
sequence slipped: its frame is not used, and the fault names the module.

Which cell is usual for a position is worked out from the run alone (the same trains
on every rank), only once modules disagree, so results do not depend on ranks or batches.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Trains (spread over the run) whose cells give a module's usual cell per frame position.
SAMPLE_TRAINS = 64


class CellCheck:
    """Finds the frames whose module recorded a cell against the other modules and its own habit.

    Parameters
    ----------
    frame_index : callable
        ``frame_index(module) -> ModuleFrameIndex`` of the run.
    """

    def __init__(self, frame_index: Callable):
        self._frame_index = frame_index
        self._usual: Dict[int, np.ndarray] = {}

    def usual_cells(self, module: int) -> np.ndarray:
        """(P,) the cell ``module`` records most often at each frame position of a train (-1: never seen)."""
        if module not in self._usual:
            index = self._frame_index(module)
            have = np.flatnonzero(index.count > 0)
            if len(have) == 0:
                self._usual[module] = np.zeros(0, dtype=np.int64)
                return self._usual[module]
            pick = np.unique(np.linspace(0, len(have) - 1, min(SAMPLE_TRAINS, len(have))).round().astype(np.int64))
            longest = int(have[np.argmax(index.count[have])])  # every position is seen at least once
            positions = np.union1d(have[pick], [longest])
            counts = index.count[positions]
            cells = np.empty((int(counts.sum()), 1), dtype=np.uint16)
            index.read("cellId", positions, cells)
            cells = cells[:, 0].astype(np.int64)
            where = np.arange(len(cells)) - np.repeat(np.cumsum(counts) - counts, counts)
            n_pos, n_cells = int(counts.max()), int(cells.max()) + 1
            votes = np.bincount(where * n_cells + cells, minlength=n_pos * n_cells).reshape(n_pos, n_cells)
            self._usual[module] = np.where(votes.any(axis=1), np.argmax(votes, axis=1), -1)
        return self._usual[module]

    def slipped(self, modules: Sequence[int], present: np.ndarray, module_cells: np.ndarray,
                frame_index: np.ndarray) -> np.ndarray:
        """(N, M) True where a module's cell differs from another module's in that frame and from its usual one.

        Parameters
        ----------
        modules : sequence of int
            The batch's modules (axis M).
        present : ndarray, (N, M) bool
            Module has the frame.
        module_cells : ndarray, (N, M)
            Cell each module recorded (ignored where not present).
        frame_index : ndarray, (N,)
            Position of each frame in its train.
        """
        slipped = np.zeros(present.shape, dtype=bool)
        if present.shape[1] < 2:
            return slipped
        cells = module_cells.astype(np.int64)
        lo = np.where(present, cells, np.iinfo(np.int64).max).min(axis=1)
        hi = np.where(present, cells, -1).max(axis=1)
        disagree = (present.sum(axis=1) > 1) & (lo != hi)
        if not disagree.any():
            return slipped
        for j, module in enumerate(modules):
            usual = self.usual_cells(module)
            rows = np.flatnonzero(disagree & present[:, j])
            pos = np.asarray(frame_index)[rows]
            known = pos < len(usual)
            expect = np.where(known, usual[np.minimum(pos, max(len(usual) - 1, 0))] if len(usual) else -1, -1)
            slipped[rows, j] = (expect >= 0) & (cells[rows, j] != expect)
        return slipped

    @staticmethod
    def reason(module: int, cell: int, frame: int, usual: int, other_module: int, other_cell: int) -> str:
        """Why a (train, module) is not used."""
        return (f"image.cellId {cell} at frame {frame} where module {other_module} has {other_cell} and module "
                f"{module} has {usual} in its other trains: its cell sequence of this train slipped")
