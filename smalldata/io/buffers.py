"""Large arrays used again once their holder gives them back: explicit ownership instead of guessing.

A :class:`BufferPool` hands out arrays (:meth:`BufferPool.take`) and takes them back
(:meth:`BufferPool.release`). An array is handed out again only after it was released,
so data a caller still holds are never written over; a caller that never releases only
costs new arrays (its own stay its own). Allocating a large array anew costs its page
faults on every first touch (a third of reading a batch of raw frames), so the readers
of batches and of dark constants reuse their arrays this way.
"""
from __future__ import annotations

import logging
from typing import List, Tuple

import numpy as np

log = logging.getLogger(__name__)


class BufferPool:
    """Arrays handed out and given back.

    Parameters
    ----------
    max_held : int
        Arrays handed out and not yet given back that the pool keeps track of; when a new
        one is needed beyond these, the pool forgets the oldest (its holder keeps it, and a
        later :meth:`release` of it is ignored), so the pool never keeps more alive than this
        plus the released arrays that fit the latest request.
    """

    def __init__(self, max_held: int = 2):
        if max_held < 1:
            raise ValueError(f"max_held must be at least 1, got {max_held}")
        self.max_held = int(max_held)
        self._held: List[np.ndarray] = []  # handed out, oldest first
        self._free: List[np.ndarray] = []  # given back

    def take(self, shape: Tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``, the caller's until :meth:`release`.

        A released array of the same dtype and trailing shape with at least ``shape[0]`` rows
        serves (its first rows); otherwise the released arrays are dropped and a new one is made.
        """
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        fit = next((b for b in self._free if b.dtype == dtype and b.shape[1:] == shape[1:]
                    and b.shape[0] >= shape[0]), None)
        if fit is None:
            self._free.clear()  # of other sizes: their memory goes before a new array's comes
            if len(self._held) >= self.max_held:
                self._held.pop(0)
            fit = np.empty(shape, dtype=dtype)
        else:
            self._free.remove(fit)
        self._held.append(fit)
        return fit[:shape[0]]

    def release(self, array: np.ndarray) -> None:
        """Give back an array from :meth:`take` (or a view of it): it may be handed out again.

        The caller must not use its data afterwards. An array the pool does not hold is ignored.
        """
        owner = array if array.base is None else array.base
        for k, b in enumerate(self._held):
            if b is owner:
                self._free.append(self._held.pop(k))
                return
        log.debug("released an array the pool does not hold (%s %s)", array.dtype, array.shape)

    def holds(self, array: np.ndarray) -> bool:
        """Whether ``array`` (or the array it is a view of) was handed out and not given back."""
        owner = array if array.base is None else array.base
        return any(b is owner for b in self._held)

    def __len__(self) -> int:
        """Arrays the pool keeps: handed out and given back."""
        return len(self._held) + len(self._free)
