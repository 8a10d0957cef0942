"""The live output: rows appended to a growing HDF5 file (SWMR), then the complete file, atomically.

While the run goes, rank 0 appends every round's rows, in train order, to
:func:`growing_path` ``(output)`` (``<output>.growing.h5`` next to the output), an HDF5 file
in single-writer/multiple-reader mode: open it with ``h5py.File(path, "r", libver="latest",
swmr=True)`` and call ``refresh()`` on a dataset to see new rows (datasets may differ by the
rows of one round while it is written; :func:`smalldata.ana.follow.read_rows` takes the common
length). At the end the rows are copied into the output's temporary name with
``/UserDataCfg``, ``/Sums`` and ``/meta`` exactly as offline, renamed into place, and the
growing file is removed.
"""
from __future__ import annotations

import logging
from pathlib import Path

from smalldata.output.writer import PartWriter

log = logging.getLogger(__name__)


def growing_path(output: Path) -> Path:
    """Where the rows of a live run grow: ``<output>.growing.h5``."""
    output = Path(output)
    return output.with_name(output.name + ".growing.h5")


class GrowingFile(PartWriter):
    """A :class:`PartWriter` whose file readers can follow while it grows (HDF5 SWMR).

    Every :meth:`append` is written and flushed at once; SWMR mode starts after the first
    rows (the datasets exist then).

    Parameters
    ----------
    path : Path
        The growing file (replaced if it exists: a previous live run's leftover).
    """

    def __init__(self, path: Path):
        # created once, in the format SWMR needs: a reader that opens it between two creations
        # would hold a lock the second one cannot take
        super().__init__(path, flush_bytes=0, libver="latest")
        self.swmr = False

    def append(self, outputs, units=None) -> None:
        """Append the rows of a round and make them visible to readers."""
        super().append(outputs, units)
        self.flush()
        if self.rows and not self.swmr:
            self.file.swmr_mode = True
            self.swmr = True
        for ds in self._datasets.values():
            ds.flush()
        self.file.flush()
