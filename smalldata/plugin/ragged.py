"""Variable-length per-event outputs (droplet and photon lists) in a flat layout.

A :class:`Ragged` holds, for a batch of ``N`` events, a few flat field arrays with one
entry per item (all events' items one after the other, in event order) and ``counts``
(N,): how many items each event has. A function may return a ``Ragged`` as an output
value; the writer stores output ``<key>`` as datasets ``<key>/<field>`` (flat, one row
per item) and ``<key>/count`` (one row per event). Plain h5py reads it back with::

    count = f["dssc/droplet_droplets/count"][()]
    start = np.concatenate([[0], np.cumsum(count)])
    adu_of_event_i = f["dssc/droplet_droplets/adu"][start[i]:start[i + 1]]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence

import numpy as np


@dataclass
class Ragged:
    """Per-event lists of items as flat field arrays plus per-event counts.

    Attributes
    ----------
    values : dict of str -> ndarray
        Field name -> array of shape (counts.sum(), ...); items of event 0 first. The
        name ``count`` is reserved (it is the stored per-event counts).
    counts : ndarray, (N,) int64
        Number of items of each event.
    """

    values: Dict[str, np.ndarray]
    counts: np.ndarray

    def __post_init__(self):
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if self.counts.ndim != 1 or (self.counts < 0).any():
            raise ValueError("Ragged counts must be a 1-D array of non-negative integers")
        total = int(self.counts.sum())
        self.values = {k: np.asarray(v) for k, v in self.values.items()}
        if "count" in self.values:
            raise ValueError("'count' is reserved for the per-event counts; name the field otherwise")
        for key, value in self.values.items():
            if value.ndim == 0 or len(value) != total:
                raise ValueError(f"Ragged field {key!r} has {value.shape} entries, counts sum to {total}")

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def offsets(self) -> np.ndarray:
        """(N + 1,) start of each event's items in the flat arrays (last entry: total)."""
        return np.concatenate([[0], np.cumsum(self.counts)])

    @property
    def event_index(self) -> np.ndarray:
        """(total,) the event of each item."""
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def event(self, i: int) -> Dict[str, np.ndarray]:
        """The items of event ``i``: field -> array."""
        start, stop = self.offsets[i], self.offsets[i + 1]
        return {k: v[start:stop] for k, v in self.values.items()}

    def subset(self, selection) -> "Ragged":
        """The events picked by a boolean mask or an index array (in the given order)."""
        idx = np.arange(len(self.counts))[selection]
        counts = self.counts[idx]
        starts = self.offsets[idx]
        total = int(counts.sum())
        # item positions: each picked event's start, repeated, plus the running index within it
        first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        items = np.repeat(starts - first, counts) + np.arange(total, dtype=np.int64)
        return Ragged({k: v[items] for k, v in self.values.items()}, counts)

    @classmethod
    def concatenate(cls, parts: Sequence["Ragged"]) -> "Ragged":
        """Join the events of several batches (all with the same fields)."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to concatenate")
        keys = list(parts[0].values)
        for p in parts[1:]:
            if set(p.values) != set(keys):
                raise ValueError(f"Ragged fields differ: {keys} vs {list(p.values)}")
        return cls({k: np.concatenate([p.values[k] for p in parts]) for k in keys},
                   np.concatenate([p.counts for p in parts]))

    def to_lists(self, field: str) -> List[np.ndarray]:
        """One array per event for ``field``."""
        return np.split(self.values[field], self.offsets[1:-1])

    @classmethod
    def from_group(cls, group: Mapping) -> "Ragged":
        """Read a ragged output back from an h5py group (``count`` plus field datasets)."""
        counts = np.asarray(group["count"][()])
        return cls({k: np.asarray(group[k][()]) for k in group.keys() if k != "count"}, counts)


def is_ragged(value) -> bool:
    """Whether an output value is a ragged per-event list (has ``counts`` and ``values``)."""
    return hasattr(value, "counts") and hasattr(value, "values") and isinstance(value.values, Mapping)
