"""The HDF5 writer: per-rank part files, a merge in train order, atomic publication.

Each MPI rank appends its batches to its own part file; rank 0 concatenates the parts
(in rank order, which is train order) into a hidden temporary file next to the output,
adds ``/UserDataCfg`` and ``/meta``, and renames it to the output name only when all of
it is written. A failed or killed run therefore never leaves a final file behind.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

import h5py
import numpy as np

from smalldata.errors import SmallDataError
from smalldata.output.conventions import RAGGED_ATTR
from smalldata.output.coords import OWN_ROWS_ATTR, has_own_rows, label_coordinates, label_further_axes
from smalldata.output.files import SPACE_MARGIN, check_free_space, clean_stale_temporaries, current_umask, temp_owner
from smalldata.plugin.ragged import is_ragged

log = logging.getLogger(__name__)

COPY_BYTES = 2 * 2**20


class PartWriter:
    """Appends per-event outputs of one rank to an HDF5 part file.

    Batches are gathered in memory and written in blocks of about ``flush_bytes``
    (one h5py call per dataset and block instead of per batch), so memory stays bounded.

    Parameters
    ----------
    path : Path
        Part file to create.
    flush_bytes : int
        Buffered bytes that trigger a write.
    libver : str, optional
        HDF5 format bounds (``"latest"`` for a file readers follow in SWMR mode).
    """

    def __init__(self, path: Path, flush_bytes: int = 2 * 2**20, libver: Optional[str] = None):
        self.path = Path(path)
        self.file = h5py.File(self.path, "w", libver=libver)
        self.rows = 0
        self.flush_bytes = flush_bytes
        self._units: Dict[str, str] = {}
        self._keys: Dict[str, set] = {}  # row set -> its output paths
        self._pending: Dict[str, list] = {}
        self._pending_bytes = 0
        self._datasets: Dict[str, h5py.Dataset] = {}
        #: bytes of output per row (from the first batch), for estimates of the space needed
        self.bytes_per_row = 0.0

    def append(self, outputs: Mapping[str, Any], units: Optional[Mapping[str, str]] = None,
               rows: str = "events") -> None:
        """Append one batch: ``{path: (N, ...) array or ragged}``, all with the same N.

        ``rows`` names the set of rows the batch belongs to: ``"events"`` (the top level's) or a
        per-train detector's (its own group, own row count); each set keeps its outputs.
        """
        units = units or {}
        n_rows = None
        for path, value in outputs.items():
            n = len(value.counts) if is_ragged(value) else len(value)
            if n_rows is None:
                n_rows = n
            elif n != n_rows:
                raise ValueError(f"output {path} has {n} rows, others {n_rows}")
        if not n_rows:
            return
        known = self._keys.setdefault(rows, set(outputs))
        if set(outputs) != known:
            raise ValueError(f"outputs changed between batches: {sorted(known ^ set(outputs))}")
        for path, value in outputs.items():
            self._units.setdefault(path, units.get(path, ""))
            if is_ragged(value):
                self._buffer(f"{path}/count", np.asarray(value.counts, dtype=np.int64), "", None)
                for field, flat in value.values.items():
                    self._buffer(f"{path}/{field}", np.asarray(flat), units.get(f"{path}/{field}", ""),
                                 f"{path}/count")
            else:
                self._buffer(path, np.asarray(value), units.get(path, ""), None)
        if rows == "events":
            if not self.rows:
                self.bytes_per_row = self._pending_bytes / n_rows
            self.rows += n_rows
        if self._pending_bytes >= self.flush_bytes:
            self.flush()

    def _buffer(self, path: str, array: np.ndarray, unit: str, ragged_of: Optional[str]) -> None:
        if path not in self._datasets:
            chunk_rows = max(1, min(4096, (1 << 20) // max(1, array[:1].nbytes)))
            ds = self.file.create_dataset(path, shape=(0,) + array.shape[1:], maxshape=(None,) + array.shape[1:],
                                          dtype=array.dtype, chunks=(chunk_rows,) + array.shape[1:])
            if unit:
                ds.attrs["units"] = unit
            if ragged_of:
                ds.attrs[RAGGED_ATTR] = ragged_of
            self._datasets[path] = ds
            self._pending[path] = []
        self._pending[path].append(array)
        self._pending_bytes += array.nbytes

    def flush(self) -> None:
        """Write the buffered rows.

        Checks the free space first: HDF5 cannot recover from a write that fails on a
        full disk (closing the file can crash), so the run stops cleanly before that.
        """
        if self._pending_bytes:
            check_free_space(self.path.parent, int(1.2 * self._pending_bytes) + SPACE_MARGIN)
        for path, arrays in self._pending.items():
            if not arrays:
                continue
            block = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            ds = self._datasets[path]
            start = ds.shape[0]
            ds.resize(start + len(block), axis=0)
            if len(block):
                ds[start:] = block
            arrays.clear()
        self._pending_bytes = 0

    def close(self) -> None:
        """Write what is buffered and close the part file (closed also when the write fails)."""
        if self.file:
            try:
                self.flush()
            finally:
                try:
                    self.file.close()
                finally:
                    self.file = None


def _datasets(group: h5py.Group, prefix: str = "") -> Iterable[str]:
    for name, item in group.items():
        path = f"{prefix}{name}"
        if isinstance(item, h5py.Group):
            yield from _datasets(item, f"{path}/")
        else:
            yield path


def merge_parts(part_paths: Iterable[Path], out: h5py.File, poll: Optional[Callable[[], None]] = None,
                own_rows: Iterable[str] = ()) -> int:
    """Concatenate part files (in the given order) into ``out``; returns the number of top-level rows.

    ``poll`` is called between blocks (it raises to stop the merge, e.g. on a signal).
    ``own_rows``: groups with rows of their own (per-train detectors), marked as such.
    """
    part_paths = list(part_paths)
    layout: Dict[str, tuple] = {}
    lengths: Dict[str, int] = {}
    for part in part_paths:
        with h5py.File(part, "r") as f:
            for path in _datasets(f):
                ds = f[path]
                if path in layout and layout[path][:2] != (ds.dtype, ds.shape[1:]):
                    raise SmallDataError(f"part {part}: dataset {path} has dtype/shape {ds.dtype} {ds.shape[1:]}, "
                                         f"other ranks {layout[path][:2]}")
                layout.setdefault(path, (ds.dtype, ds.shape[1:], dict(ds.attrs)))
                lengths[path] = lengths.get(path, 0) + ds.shape[0]
    for path, (dtype, shape, attrs) in layout.items():
        dset = out.create_dataset(path, shape=(lengths[path],) + shape, dtype=dtype,
                                  chunks=(max(1, min(lengths[path], 4096)),) + shape if lengths[path] else None)
        for key, value in attrs.items():
            dset.attrs[key] = value
    cursor = {path: 0 for path in layout}
    for part in part_paths:
        with h5py.File(part, "r") as f:
            for path in _datasets(f):
                src = f[path]
                step = max(1, COPY_BYTES // max(1, src[:1].nbytes if src.shape[0] else 1))
                for start in range(0, src.shape[0], step):
                    if poll is not None:
                        poll()
                    block = src[start:start + step]
                    out[path][cursor[path]:cursor[path] + len(block)] = block
                    cursor[path] += len(block)
    for name in own_rows:
        out.require_group(name).attrs[OWN_ROWS_ATTR] = "train"
    attach_event_scale(out)
    return lengths.get("trainId", 0)


def attach_event_scale(out: h5py.Group) -> None:
    """Label the axes of the per-event datasets with HDF5 dimension scales (netCDF-4 conventions).

    Axis 0 gets ``/trainId`` as its scale, so netCDF readers (xarray with h5netcdf) align the
    datasets on ``trainId``; each further axis (number ``axis``, length L) gets a dimension without values,
    ``/dim<axis>_<L>`` (netCDF readers need every axis of a dataset labelled once one is). Ragged
    value arrays (not one row per event) are left without.
    """
    if "trainId" not in out:
        return
    scale = out["trainId"]
    scale.make_scale("trainId")
    for path in list(_datasets(out)):
        ds = out[path]
        if "/" in path and has_own_rows(out[path.split("/", 1)[0]]):  # a per-train detector's rows
            continue
        if path == "trainId" or not ds.ndim or ds.shape[0] != scale.shape[0] or RAGGED_ATTR in ds.attrs:
            continue
        ds.dims[0].attach_scale(scale)
        label_further_axes(out, ds)


def write_mapping(group: h5py.Group, mapping: Mapping[str, Any]) -> None:
    """Store a nested mapping: arrays as datasets, mappings as subgroups, scalars as attributes.

    An ``(array, unit)`` pair becomes a dataset with a ``units`` attribute.
    """
    for key, value in mapping.items():
        key = str(key)
        unit = None
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], np.ndarray) \
                and isinstance(value[1], str):
            value, unit = value
        if isinstance(value, Mapping):
            write_mapping(group.require_group(key), value)
        elif isinstance(value, np.ndarray) and value.ndim > 0:
            # masks, counts and smooth maps (positions, constant gains) shrink a lot, quickly at level 1
            compress = value.size > 4096 and value.dtype.kind in "biuf"
            kwargs = {"compression": "gzip", "compression_opts": 1, "shuffle": True} if compress else {}
            if value.dtype == bool or value.dtype.kind in "fiu":
                ds = group.create_dataset(key, data=value, **kwargs)
            else:
                ds = group.create_dataset(key, data=value.astype("S"))
            if unit:
                ds.attrs["units"] = unit
        else:
            group.attrs[key] = _attr_value(value)


def _attr_value(value):
    if value is None:
        return "None"
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, str) for v in value):
            return list(value)
        try:
            arr = np.asarray(value)
        except ValueError:
            return repr(value)
        if arr.dtype.kind in "biuf":
            return arr
        return repr(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


class OutputFile:
    """The final output: a hidden temporary file renamed into place by :meth:`publish`.

    Parameters
    ----------
    path : Path
        Final output path.
    overwrite : bool
        Replace an existing file at ``path`` when publishing.
    """

    def __init__(self, path: Path, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        check_output_path(self.path, overwrite)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.{temp_owner()}.", suffix=".partial",
                                   dir=self.path.parent)
        try:
            os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: the proposal's group must read it
        finally:
            os.close(fd)
        self.tmp_path = Path(tmp)
        try:
            self.file = h5py.File(self.tmp_path, "w")
        except BaseException:
            self.tmp_path.unlink(missing_ok=True)
            raise

    def publish(self, poll: Optional[Callable[[], None]] = None) -> Path:
        """Add the coordinates, close and atomically rename the temporary file to the output path.

        The coordinates (:mod:`smalldata.output.coords`) make each group readable on its own by
        netCDF readers. ``poll`` is called last before the rename (it raises to stop, e.g. on a signal).
        """

        label_coordinates(self.file)
        self.file.close()
        check_output_path(self.path, self.overwrite)
        if poll is not None:
            poll()
        os.replace(self.tmp_path, self.path)
        return self.path

    def discard(self) -> None:
        """Close and delete the temporary file (also when closing fails, e.g. on a full disk)."""
        try:
            self.file.close()
        except Exception as exc:  # noqa: BLE001 - the file is deleted whatever went wrong with it
            log.debug("closing %s failed: %s", self.tmp_path, exc)
        finally:
            self.tmp_path.unlink(missing_ok=True)


def check_output_path(path: Path, overwrite: bool) -> None:
    """Refuse an existing output without ``overwrite``; require a writable folder."""
    if path.is_dir():
        raise SmallDataError(f"output {path} is a folder; give --output a file name (e.g. inside that folder)")
    if path.exists() and not overwrite:
        raise SmallDataError(f"output {path} exists; pass --overwrite to replace it or --output for another name")
    if not path.parent.is_dir():
        raise SmallDataError(f"output folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise SmallDataError(f"output folder {path.parent} is not writable; choose --output elsewhere")


#: parts folder -> the output folders made for it (deepest first), removed with it while still empty
_MADE_FOR: Dict[Path, List[Path]] = {}


def make_output_folder(folder: Path) -> List[Path]:
    """Create ``folder`` and its missing parents; returns the folders made, deepest first."""
    missing = []
    for candidate in [folder, *folder.parents]:
        if candidate.exists():
            break
        missing.append(candidate)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_empty_folders(missing)
        raise SmallDataError(f"cannot create output folder {folder}: {exc.strerror}") from None
    return missing


def remove_empty_folders(folders: Iterable[Path]) -> None:
    """Remove each folder (deepest first) that is still empty; stop at the first that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (something was written there) or gone already
            return


def prepare_publication(output: Path, overwrite: bool) -> Path:
    """Set up publication of ``output``: its folder, the checks, stale temporaries, the parts folder.

    Folders this makes are removed again by :func:`remove_parts_dir` if nothing was published
    in them, so a run refused at set-up leaves no empty output folder behind.
    """
    made = make_output_folder(output.parent)
    try:
        check_output_path(output, overwrite)
        clean_stale_temporaries(output)
        parts = make_parts_dir(output)
    except BaseException:
        remove_empty_folders(made)
        raise
    _MADE_FOR[parts] = made
    return parts


def make_parts_dir(output: Path) -> Path:
    """A hidden folder next to the output for the ranks' part files (shared file system)."""
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.{temp_owner()}.", suffix=".parts", dir=output.parent))


def remove_parts_dir(path: Path) -> None:
    """Delete the part files' folder, and the output folders made for it that stayed empty."""
    shutil.rmtree(path, ignore_errors=True)
    remove_empty_folders(_MADE_FOR.pop(Path(path), []))
