"""Looking values up in a sorted array (train ids, memory cells, keys): one implementation."""
from __future__ import annotations

from typing import Tuple

import numpy as np


def find_sorted(sorted_values, values) -> Tuple[np.ndarray, np.ndarray]:
    """Where each of ``values`` is in the ascending ``sorted_values``, and whether it is there.

    Returns
    -------
    pos : ndarray of int64, shaped like ``values``
        Index into ``sorted_values`` (clipped to a valid index; 0 when it is empty): meaningful
        only where ``found``.
    found : ndarray of bool
        True where ``sorted_values[pos] == value``.
    """
    sorted_values, values = np.asarray(sorted_values), np.asarray(values)
    if len(sorted_values) == 0:
        return np.zeros(values.shape, dtype=np.int64), np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1).astype(np.int64)
    return pos, sorted_values[pos] == values
