"""Steps of a stepped scan from a motor's per-train target (or actual) positions.

A *dwell* is a run of consecutive trains at one position (target equal within the
tolerance, or actual position within the tolerance of the dwell's first train). A dwell
of at least ``min_trains`` trains is a scan step; shorter ones are moves. A move whose
position lies beyond the next step, against the direction of the move that follows, is a
*backlash* move: the motor overshoots and approaches the step from one side, as a stage
with backlash correction does. Inside a step, trains whose actual position is further
than the tolerance from the target (still settling) are not labelled either.

Steps are numbered 0, 1, ... in time; a value visited twice gives two steps with the
same :attr:`ScanSteps.values` entry. Unlabelled trains have step -1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from smalldata.errors import DataError


@dataclass
class ScanSteps:
    """Steps of a scan (all per-train arrays (T,)).

    Attributes
    ----------
    step : int64, the train's step (-1: moving, backlash, settling or no position)
    values : float64 (S,), the position of each step (the target's, or the mean actual position)
    backlash : bool, the train is part of a backlash move
    first, last : int64 (S,), first and last train index of each step
    """

    step: np.ndarray
    values: np.ndarray
    backlash: np.ndarray
    first: np.ndarray
    last: np.ndarray

    @property
    def n_steps(self) -> int:
        """Number of steps."""
        return len(self.values)

    def unique_values(self) -> np.ndarray:
        """The distinct step positions, ascending."""
        return np.unique(self.values)


def _dwells(positions: np.ndarray, tolerance: float):
    """Start indices and positions of runs of trains at one position (NaN breaks a run)."""
    starts, values = [], []
    current = np.nan
    for i, p in enumerate(positions):
        if not np.isfinite(p):
            current = np.nan
            starts.append(i)
            values.append(np.nan)
            continue
        if not np.isfinite(current) or abs(p - current) > tolerance:
            current = p
            starts.append(i)
            values.append(p)
    return np.array(starts, np.int64), np.array(values, float)


def find_steps(actual: np.ndarray, target: Optional[np.ndarray] = None, tolerance: float = 0.002,
               min_trains: int = 2) -> ScanSteps:
    """Label each train with its scan step.

    Parameters
    ----------
    actual : (T,) float
        Actual motor position per train (NaN where missing).
    target : (T,) float, optional
        Target position per train; without it, dwells are found by clustering ``actual``.
    tolerance : float
        Positions within this of a dwell's position belong to it (motor units).
    min_trains : int
        Shortest dwell that is a step.

    Returns
    -------
    ScanSteps
    """
    actual = np.asarray(actual, dtype=np.float64)
    by_target = target is not None
    pos = np.asarray(target, dtype=np.float64) if by_target else actual
    if pos.shape != actual.shape or pos.ndim != 1:
        raise DataError(f"scan positions have shapes {actual.shape} and {pos.shape}; need one value per train")
    if tolerance <= 0 or min_trains < 1:
        raise DataError(f"step tolerance {tolerance} must be > 0 and min_trains {min_trains} >= 1")
    n = len(pos)
    starts, values = _dwells(pos, tolerance)
    ends = np.r_[starts[1:], n]
    step = np.full(n, -1, np.int64)
    backlash = np.zeros(n, bool)
    is_step = (ends - starts >= min_trains) & np.isfinite(values)
    step_values, firsts, lasts = [], [], []
    for k in np.flatnonzero(is_step):
        s0, s1 = starts[k], ends[k]
        value = values[k] if by_target else float(np.nanmean(actual[s0:s1]))
        settled = np.abs(actual[s0:s1] - value) <= tolerance
        idx = len(step_values)
        step[s0:s1][settled] = idx
        step_values.append(value)
        firsts.append(s0)
        lasts.append(s1 - 1)
    # backlash: a move (short dwell) beyond the next step, reached against the direction of the move into that step
    steps_at = np.flatnonzero(is_step)
    for k in np.flatnonzero(~is_step & np.isfinite(values)):
        after = steps_at[steps_at > k]
        before = steps_at[steps_at < k]
        if len(after) == 0 or len(before) == 0:
            continue
        prev_v, next_v, v = values[before[-1]], values[after[0]], values[k]
        direction = np.sign(next_v - prev_v)
        if direction != 0 and np.sign(next_v - v) != direction and abs(v - next_v) > tolerance:
            backlash[starts[k]:ends[k]] = True
    return ScanSteps(step=step, values=np.array(step_values, float), backlash=backlash,
                     first=np.array(firsts, np.int64), last=np.array(lasts, np.int64))
