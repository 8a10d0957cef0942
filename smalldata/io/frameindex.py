"""Where each train's frames of a DSSC module are stored, resolved once per run.

extra-data resolves a key's files and their INDEX (first row and count per train);
:class:`ModuleFrameIndex` keeps that resolution for the whole run so that every batch
is a few direct reads of consecutive rows instead of a new train selection. It reads
exactly what ``KeyData.ndarray()`` reads.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional, Tuple

import numpy as np

from smalldata.lookup import find_sorted

log = logging.getLogger(__name__)


def frames_in_window(counts: np.ndarray, window: Optional[Tuple[int, int]]) -> np.ndarray:
    """Frames per train (``counts``) at positions ``window = (start, stop)`` of their train (None: all)."""
    return counts if window is None else np.clip(counts - window[0], 0, window[1] - window[0])


class ModuleFrameIndex:
    """Per train of the run: which file holds a module's frames, the first row and the count.

    Parameters
    ----------
    keydata : extra_data.KeyData
        The module's ``image.data`` over the whole run.
    run_train_ids : ndarray
        The run's train ids (what batch positions refer to).
    """

    def __init__(self, keydata, run_train_ids: np.ndarray):
        n = len(run_train_ids)
        self.files = list(keydata.files)
        self.source = keydata.source
        self.group_path = keydata.hdf5_data_path.rsplit("/", 1)[0]  # .../image
        self.file_of = np.full(n, -1, dtype=np.int64)
        self.first = np.zeros(n, dtype=np.int64)
        self.count = np.zeros(n, dtype=np.int64)
        for i, fa in enumerate(self.files):
            firsts, counts = fa.get_index(keydata.source, keydata.index_group)
            tids = np.asarray(fa.train_ids, dtype=np.uint64)
            pos, found = find_sorted(run_train_ids, tids)
            use = found & (np.asarray(counts) > 0)
            self.file_of[pos[use]] = i
            self.first[pos[use]] = np.asarray(firsts, dtype=np.int64)[use]
            self.count[pos[use]] = np.asarray(counts, dtype=np.int64)[use]
        self._datasets: Dict[Tuple[int, str], object] = {}
        self._blocks: Dict[str, tuple] = {}

    def _dataset(self, file_number: int, name: str):
        key = (file_number, name)
        if key not in self._datasets:
            # batches move forward through the sequence files: let go of the earlier files'
            # datasets (each holds an HDF5 chunk cache), so memory does not grow with the run
            for old in [k for k in self._datasets if k[0] < file_number]:
                del self._datasets[old]
                self.files[old[0]].close()  # extra-data reopens it if anything reads it again
            self._datasets[key] = self.files[file_number].file[f"{self.group_path}/{name}"]
        return self._datasets[key]

    def read(self, name: str, positions: np.ndarray, out: np.ndarray, column: Optional[int] = None,
             window: Optional[Tuple[int, int]] = None) -> None:
        """Read key ``image.<name>`` of the trains at ``positions`` (ascending) into ``out``.

        ``out`` has one row per frame of those trains, in train order (their counts summed).
        With ``column``, ``out`` is (frames, modules, ...) and this module's frames go to
        ``out[:, column]`` (HDF5 writes the strided rows itself: no intermediate copy).
        ``window`` ``(start, stop)``: only each train's frames at those positions in the train.
        """
        dest = 0
        for file_number, first, rows in self._runs(positions, window):  # one read per run of stored rows
            dataset = self._dataset(file_number, name)
            target = np.s_[dest:dest + rows] if column is None else np.s_[dest:dest + rows, column:column + 1]
            dataset.read_direct(out, source_sel=np.s_[first:first + rows], dest_sel=target)
            dest += rows

    def _runs(self, positions: np.ndarray, window: Optional[Tuple[int, int]] = None):
        """(file number, first row, rows) of the runs of rows stored back to back."""
        positions = np.asarray(positions, dtype=np.int64)
        counts = frames_in_window(self.count[positions], window)
        positions, counts = positions[counts > 0], counts[counts > 0]
        if len(positions) == 0:
            return []
        files, firsts = self.file_of[positions], self.first[positions] + (0 if window is None else window[0])
        breaks = np.flatnonzero((files[1:] != files[:-1]) | (firsts[1:] != firsts[:-1] + counts[:-1])) + 1
        starts, stops = np.concatenate([[0], breaks]), np.concatenate([breaks, [len(positions)]])
        return [(int(files[a]), int(firsts[a]), int(counts[a:b].sum())) for a, b in zip(starts, stops)]

    def prefetch(self, name: str, positions: np.ndarray) -> None:
        """Ask the kernel to read ahead the bytes of these trains' frames (non-blocking).

        Called for the next batch while the current one is processed, so that reading
        from disk overlaps with computing. Does nothing where the layout is not known.
        """
        for file_number, first, rows in self._runs(positions):
            try:
                dataset = self._dataset(file_number, name)
                if dataset.chunks is None:
                    start, length = dataset.id.get_offset(), dataset.id.get_storage_size()
                else:
                    zeros = (0,) * (dataset.ndim - 1)
                    a = dataset.id.get_chunk_info_by_coord((first,) + zeros)
                    b = dataset.id.get_chunk_info_by_coord((first + rows - 1,) + zeros)
                    start, length = min(a.byte_offset, b.byte_offset), abs(b.byte_offset - a.byte_offset) + b.size
                fd = dataset.file.id.get_vfd_handle()
                os.posix_fadvise(fd, int(start), int(length), os.POSIX_FADV_WILLNEED)
            except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
                log.debug("no read-ahead for %s rows %d..%d: %s", self.source, first, first + rows, exc)
                return

    def read_block_cached(self, name: str, positions: np.ndarray, dtype, block_trains: int = 256,
                          window: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """Small per-frame keys (``pulseId``, ``cellId``) of the trains at ``positions`` as (frames,).

        Reads ``block_trains`` trains at once and serves later batches from memory. ``window``:
        as in :meth:`read`.
        """
        positions = np.asarray(positions, dtype=np.int64)
        block = self._blocks.get(name)
        if block is None or positions[0] < block[0] or positions[-1] >= block[1]:
            p0 = int(positions[0])
            p1 = max(int(positions[-1]) + 1, min(p0 + block_trains, len(self.count)))
            span = np.arange(p0, p1)
            values = np.empty((int(self.count[span].sum()), 1), dtype=dtype)
            self.read(name, span, values)
            offsets = np.concatenate([[0], np.cumsum(self.count[span])])
            block = self._blocks[name] = (p0, p1, values[:, 0], offsets)
        p0, _, values, offsets = block
        rel = positions - p0
        if window is None and len(rel) and rel[-1] - rel[0] + 1 == len(rel):  # consecutive trains: one slice
            return values[offsets[rel[0]]:offsets[rel[-1] + 1]]
        starts, stops = offsets[rel], offsets[rel + 1]
        if window is not None:
            starts, stops = np.minimum(starts + window[0], stops), np.minimum(starts + window[1], stops)
        return np.concatenate([values[a:b] for a, b in zip(starts, stops)]) if len(rel) else values[:0]
