"""The dark constants of an output, recorded by reference, and read back through it.

An output's ``/UserDataCfg/<det>/dark`` group names the dark constants file the run was
calibrated with: its absolute path, size and SHA-256 checksum, the dark run, the modules
and memory cells used, the frames per cell, and per-module summary statistics (median
pedestal and noise over good pixels and cells, bad pixels). The pedestal and noise arrays
themselves (8 bytes per pixel and cell: 168 MB for 16 modules and 20 cells) are copied
into the output only when the config asks for it (``detectors.<det>.embed_dark: true``).

:func:`read_output_dark` gives the constants back: from the embedded copy, or from the
referenced file after checking that it is still there and unchanged (a moved or changed
file is reported in one line, never silently used).
"""
from __future__ import annotations

import hashlib
import os
import threading
import weakref
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from smalldata.calib.darkfile import DarkConstants, read_dark_file
from smalldata.errors import CalibrationError

CHUNK_BYTES = 1 << 22
#: Memory cells that the summary medians of the dark constants look at (evenly spread over all).
MEDIAN_CELLS = 4

#: Hashes under way: file identity to (thread, [digest once done]).
_BACKGROUND: Dict[Tuple[str, int, int], Tuple[threading.Thread, list]] = {}
#: Summary medians of each detector object alive.
_MEDIANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def file_sha256(path: os.PathLike) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits (the one :func:`hash_in_background` started, if any)."""
    job = _BACKGROUND.pop(_identity(path), None)
    if job is not None:
        job[0].join()
        if job[1]:
            return job[1][0]
    return _hash_file(path)


def _hash_file(path: os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_in_background(path: os.PathLike) -> None:
    """Start :func:`file_sha256` of ``path`` in a thread, so that its reading (seconds for a dark
    of hundreds of cells) overlaps the frames' processing; a later call takes its result.

    The thread runs at the lowest priority, so that it takes only CPU time the frames leave
    idle. The file is hashed again if its size or modification time changed meanwhile; a
    failed read is retried by the later call, which reports it.
    """
    key = _identity(path)
    if key in _BACKGROUND:
        return
    result: list = []

    def work():
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # Linux: this thread only
        except (AttributeError, OSError):
            pass  # elsewhere it runs at the process's priority
        try:
            result.append(_hash_file(path))
        except OSError:
            pass  # file_sha256 reads again when asked and reports the error then

    thread = threading.Thread(target=work, name="dark-sha256", daemon=True)
    _BACKGROUND[key] = (thread, result)
    thread.start()


def _identity(path: os.PathLike) -> Tuple[str, int, int]:
    """A file's resolved path, size and modification time: equal only for the same content, as far as
    the file system tells."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return str(resolved), -1, -1
    return str(resolved), stat.st_size, stat.st_mtime_ns


def dark_medians(det) -> Tuple[np.ndarray, np.ndarray]:
    """Per module, the median pedestal and noise (ADU, float32) of a detector's pixels good in the
    dark's status, over at most :data:`MEDIAN_CELLS` memory cells evenly spread over all.

    Worked out once per detector object (the set-up check and the output both ask). A noise
    not loaded is read for those cells from the detector's dark file.
    """
    if det in _MEDIANS:
        return _MEDIANS[det]
    n_cells = len(det.cell_ids)
    cells = np.unique(np.linspace(0, n_cells - 1, min(n_cells, MEDIAN_CELLS)).round().astype(np.int64))
    good = det.status_mask == 0
    noise = (det.noise[:, cells] if det.has_noise or not det.dark_file
             else _read_cells(det.dark_file, "noise", det.modules, cells))
    medians = tuple(np.array([np.median(a[i][:, good[i]]) if good[i].any() else np.nan
                              for i in range(len(det.modules))], dtype=np.float32)
                    for a in (det.pedestal[:, cells], noise))
    _MEDIANS[det] = medians
    return medians


def _read_cells(path: os.PathLike, name: str, modules, cells: np.ndarray) -> np.ndarray:
    """(M, len(cells), rows, columns) of dataset ``name`` of a dark file, for ``modules`` and cell indices ``cells``."""
    import h5py

    with h5py.File(path, "r") as f:
        stored = f["modules"][()].astype(np.int64).tolist()
        return np.stack([f[name][stored.index(m), cells] for m in modules])


def dark_reference(det) -> Dict[str, object]:
    """The ``dark`` entry of ``UserDataCfg/<det>`` for a :class:`~smalldata.calib.detobject.DetObject`.

    Scalars become attributes of the group, arrays small datasets (see the module docstring).
    """
    import h5py

    if not det.dark_file:
        raise CalibrationError(f"detector {det.name}: the dark constants do not come from a file; "
                               "set embed_dark: true to record them in the output")
    path = Path(det.dark_file).resolve()
    with h5py.File(path, "r") as f:
        if "modules" in f:
            file_modules = f["modules"][()].astype(np.int64).tolist()
            n_frames = f["n_frames"][()][[file_modules.index(m) for m in det.modules]].astype(np.int64)
        else:  # a camera's dark (smalldata.cameras.dark): one image, its frame count an attribute
            n_frames = np.array([int(f.attrs["n_frames"])], dtype=np.int64)
    good = det.status_mask == 0
    pedestal_median, noise_median = dark_medians(det)
    return {
        "path": str(path),
        "sha256": file_sha256(path),
        "size_bytes": int(path.stat().st_size),
        "run": -1 if det.dark_run is None else int(det.dark_run),
        "embedded": False,
        "modules": np.asarray(det.modules, dtype=np.int64),
        "cell_ids": np.asarray(det.cell_ids, dtype=np.uint16),
        "n_frames": n_frames,
        "pedestal_median": (pedestal_median, "ADU"),
        "noise_median": (noise_median, "ADU"),
        "n_bad_pixels": (~good).sum(axis=(1, 2)).astype(np.int64),
    }


def read_output_dark(output: os.PathLike, det: str = "dssc", path: Optional[os.PathLike] = None) -> DarkConstants:
    """The dark constants an output was calibrated with, for the modules it used.

    Parameters
    ----------
    output : path
        A smalldata output file.
    det : str
        Detector name.
    path : path, optional
        Where the dark file is now, if it was moved; its checksum must match the recorded one.

    Raises
    ------
    CalibrationError
        The referenced file is missing (moved or deleted) or its content changed.
    """
    import h5py

    with h5py.File(output, "r") as f:
        key = f"UserDataCfg/{det}/dark"
        if key not in f:
            raise CalibrationError(f"{output} has no {key}: not a smalldata output of detector {det!r}")
        ref = f[key]
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in ref.attrs.items()}
        modules = ref["modules"][()].astype(np.int64)
        cell_ids = ref["cell_ids"][()].astype(np.uint16)
        n_frames = ref["n_frames"][()].astype(np.int64)
        group = f[f"UserDataCfg/{det}"]
        if "pedestal" in group and "noise" in group:
            return DarkConstants(pedestal=group["pedestal"][()], noise=group["noise"][()],
                                 status_mask=group["status_mask"][()], modules=modules, cell_ids=cell_ids,
                                 n_frames=n_frames, run=int(attrs["run"]), detector=det)
    recorded = Path(str(attrs["path"]))
    where = Path(path) if path is not None else recorded
    if not where.is_file():
        raise CalibrationError(f"the dark constants file {where} recorded in {output} is gone (moved or deleted); "
                               f"pass path= its new place (sha256 {attrs['sha256']}) or make it again with "
                               f"smd_dark -r {attrs['run']}")
    now = file_sha256(where)
    if now != attrs["sha256"]:
        raise CalibrationError(f"the dark constants file {where} changed since {output} was made (sha256 "
                               f"{now[:12]}..., recorded {str(attrs['sha256'])[:12]}...); it is not the dark "
                               "this output was calibrated with")
    return read_dark_file(where, modules)
