"""Per-frame outputs of frames that a function did not compute: their fill values.

A function runs on the frames still selected (not rejected, not vetoed); the rows of the
other frames keep their place with a fill value (NaN for floats, -1 for integers, False
for booleans, no entries in ragged lists). Both the function chain
(:mod:`smalldata.pipeline.chain`) and the veto helpers (:mod:`smalldata.pulses.rejection`)
spread outputs this way.
"""
from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from smalldata.errors import DataError
from smalldata.plugin.ragged import Ragged, is_ragged


def fill_value(dtype: np.dtype):
    """Fill value of skipped frames and the dtype it needs: ``(value, dtype)``.

    Floats NaN; signed ints -1; unsigned ints -1 in the next wider signed type
    (uint64 -> int64); bools False.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return np.nan, dtype
    if dtype.kind == "i":
        return -1, dtype
    if dtype.kind == "u":
        return -1, np.dtype(f"int{min(dtype.itemsize * 16, 64)}")
    if dtype.kind == "b":
        return False, dtype
    raise DataError(f"outputs of dtype {dtype} cannot be filled for vetoed frames; use numbers or booleans")


def spread(outputs: Mapping[str, object], selected: np.ndarray, computed: np.ndarray) -> Dict[str, object]:
    """Outputs for all N frames from outputs computed for the frames ``computed`` (indices).

    Only rows of ``computed`` that are also ``selected`` are kept; the others get
    :func:`fill_value` of their dtype (ragged outputs: no items). The dtype depends only on
    the output's dtype, never on how many frames were skipped.
    """
    n = len(selected)
    keep_rows = selected[computed]
    targets = computed[keep_rows]
    result: Dict[str, object] = {}
    for key, value in outputs.items():
        if is_ragged(value):
            # targets ascend, so the kept events' items stay in event order
            kept = value.subset(keep_rows)
            full_counts = np.zeros(n, dtype=np.int64)
            full_counts[targets] = kept.counts
            result[key] = Ragged(values=kept.values, counts=full_counts)
            continue
        value = np.asarray(value)
        fill, dtype = fill_value(value.dtype)
        full = np.full((n,) + value.shape[1:], fill, dtype=dtype)
        full[targets] = value[keep_rows]
        result[key] = full
    return result
