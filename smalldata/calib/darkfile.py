"""Dark constants: the in-memory container and the HDF5 file ``dark_p<proposal>_r<run>_<det>.h5``.

Layout (see ``docs/dark.md``): datasets ``pedestal`` and ``noise`` (M, C, rows, columns)
float32 ADU, ``status_mask`` (M, rows, columns) uint8, ``modules`` (M,), ``cell_ids`` (C,)
uint16, ``n_frames`` (M, C) int64; attributes ``proposal``, ``run``, ``detector``, the
thresholds, ``version`` and ``created``. Files are written under a temporary name in the
same folder and renamed when complete, so a reader never sees a partial file.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
from numba import njit

from smalldata import __version__
from smalldata.config.dark import DarkThresholds
from smalldata.detectors.dssc import DSSC
from smalldata.errors import CalibrationError, DataError
from smalldata.output.files import SPACE_MARGIN, check_free_space, clean_stale_temporaries, temp_owner

#: File name of dark constants inside ``calib_dir``.
DARK_FILE_PATTERN = "dark_p{proposal:06d}_r{run:04d}_{det}.h5"
DARK_DATASETS = ("pedestal", "noise", "status_mask", "modules", "cell_ids", "n_frames")
STATUS_BITS_DOC = "1 dead, 2 hot, 4 noisy, 8 pedestal out of range; 0 = good"
#: Memory cells of a module read at once (4 MiB of float32): each block is checked while in the cache.
CELLS_PER_READ = 16

log = logging.getLogger(__name__)


def utc_now() -> str:
    """The current time, ISO 8601 UTC (``created`` attribute)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class DarkConstants:
    """Dark constants of one detector (the content of a dark constants file).

    Attributes
    ----------
    pedestal, noise : ndarray, (M, C, rows, columns) float32
        Mean and standard deviation of the raw values, ADU (``noise`` None when read without it).
        Read from a file, ``pedestal`` is a view of a cell-major (C, M, rows, columns) array.
    status_mask : ndarray, (M, rows, columns) uint8
        Bad-pixel reason bits, 0 = good (:mod:`smalldata.calib.masks`).
    modules : ndarray, (M,) int64
    cell_ids : ndarray, (C,) uint16
    n_frames : ndarray, (M, C) int64
        Dark frames used per module and cell.
    proposal, run : int
    detector : str
    thresholds : DarkThresholds
    version, created : str
        smalldata version and creation time (ISO 8601, UTC).
    """

    pedestal: np.ndarray
    noise: Optional[np.ndarray]
    status_mask: np.ndarray
    modules: np.ndarray
    cell_ids: np.ndarray
    n_frames: np.ndarray
    proposal: int = 0
    run: int = 0
    detector: str = "dssc"
    thresholds: DarkThresholds = field(default_factory=DarkThresholds)
    version: str = __version__
    created: str = ""

    def module_index(self, module: int) -> int:
        """Index of detector module ``module`` along axis M."""
        where = np.flatnonzero(np.asarray(self.modules) == module)
        if len(where) == 0:
            raise CalibrationError(f"dark constants of run {self.run} have no module {module} "
                                   f"(modules {list(map(int, self.modules))})")
        return int(where[0])


def dark_file_path(calib_dir: os.PathLike, proposal: int, run: int, det: str = "dssc") -> Path:
    """``<calib_dir>/dark_p{proposal:06d}_r{run:04d}_{det}.h5``."""
    return Path(calib_dir) / DARK_FILE_PATTERN.format(proposal=int(proposal), run=int(run), det=det)


def find_dark_file(calib_dir: os.PathLike, proposal: int, run: int, det: str = "dssc") -> Path:
    """The dark constants file of run ``run``; :class:`CalibrationError` saying how to make it if missing."""
    path = dark_file_path(calib_dir, proposal, run, det)
    if not path.is_file():
        raise CalibrationError(f"no dark constants {path}; make them with "
                               f"'smd_dark -p {int(proposal)} -r {int(run)} -c <config.yaml>' "
                               f"(or with --calib-dir {Path(calib_dir)})")
    return path


class DarkFileWriter:
    """Write a dark constants file module by module, atomically.

    Use as a context manager: the file appears under its name only if the block ends
    without an exception; otherwise the temporary file is removed.

    Parameters
    ----------
    path : path
        Final file name.
    modules : sequence of int
    cell_ids : sequence of int
    proposal, run, detector, thresholds
        Stored as attributes.
    overwrite : bool
        Replace an existing file; otherwise an existing file is a :class:`DataError`.
    module_shape : (int, int)
        Pixels (rows, columns) of a module: the detector type's (the DSSC's by default).
    """

    def __init__(self, path: os.PathLike, modules: Sequence[int], cell_ids: Sequence[int], proposal: int = 0,
                 run: int = 0, detector: str = "dssc", thresholds: DarkThresholds = DarkThresholds(),
                 overwrite: bool = False, created: Optional[str] = None, version: str = __version__,
                 module_shape: Tuple[int, int] = DSSC.module_shape):
        import h5py

        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise DataError(f"dark constants {self.path} exist already; pass --overwrite to replace them")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the calib folder {self.path.parent}: {exc.strerror}; "
                            "choose another with --calib-dir") from None
        if not os.access(self.path.parent, os.W_OK):
            raise DataError(f"calib folder {self.path.parent} is not writable; choose another with --calib-dir "
                            "(or calib_dir in the config)")
        clean_stale_temporaries(self.path)
        self.tmp = self.path.with_name(f".{self.path.name}.{temp_owner()}.partial")
        n_mod, n_cells = len(modules), len(cell_ids)
        #: bytes of one module's constants; the whole file is about n_mod times that
        module_shape = tuple(int(v) for v in module_shape)
        n_pix = int(np.prod(module_shape))
        self.module_bytes = n_cells * n_pix * 8 + n_pix
        # HDF5 cannot recover from a write that fails on a full disk: check before writing anything
        check_free_space(self.path.parent, n_mod * self.module_bytes + SPACE_MARGIN)
        self._file = h5py.File(self.tmp, "w")
        f = self._file
        per_cell = (n_mod, n_cells) + module_shape
        # contiguous: a module's constants are one run of bytes, read at the speed of a copy
        f.create_dataset("pedestal", per_cell, np.float32).attrs["units"] = "ADU"
        f.create_dataset("noise", per_cell, np.float32).attrs["units"] = "ADU"
        f.create_dataset("status_mask", (n_mod,) + module_shape, np.uint8).attrs["bits"] = STATUS_BITS_DOC
        f.create_dataset("modules", data=np.asarray(modules, dtype=np.int64))
        f.create_dataset("cell_ids", data=np.asarray(cell_ids, dtype=np.uint16))
        f.create_dataset("n_frames", (n_mod, n_cells), np.int64).attrs["units"] = "frames"
        f.attrs["proposal"] = int(proposal)
        f.attrs["run"] = int(run)
        f.attrs["detector"] = detector
        f.attrs["version"] = version
        f.attrs["created"] = created or utc_now()
        for key, value in thresholds.as_dict().items():
            f.attrs[key] = value

    def write_module(self, index: int, pedestal: np.ndarray, noise: np.ndarray, status_mask: np.ndarray,
                     n_frames: np.ndarray) -> None:
        """Store the constants of the module at position ``index`` ((C, rows, columns) arrays, (C,) counts)."""
        check_free_space(self.path.parent, self.module_bytes + SPACE_MARGIN)  # another writer may have filled it
        f = self._file
        f["pedestal"][index] = np.asarray(pedestal, dtype=np.float32)
        f["noise"][index] = np.asarray(noise, dtype=np.float32)
        f["status_mask"][index] = np.asarray(status_mask, dtype=np.uint8)
        f["n_frames"][index] = np.asarray(n_frames, dtype=np.int64)

    def close(self) -> Path:
        """Finish the file and give it its final name."""
        self._file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (also when closing it fails)."""
        try:
            if self._file.id.valid:
                self._file.close()
        except Exception:  # noqa: BLE001 - the file is deleted whatever went wrong with it
            pass
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "DarkFileWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_dark_file(constants: DarkConstants, path: os.PathLike, overwrite: bool = False) -> Path:
    """Write ``constants`` to ``path`` atomically; :class:`DataError` if it exists and not ``overwrite``."""
    with DarkFileWriter(path, constants.modules, constants.cell_ids, constants.proposal, constants.run,
                        constants.detector, constants.thresholds, overwrite, constants.created or None,
                        constants.version, module_shape=constants.status_mask.shape[1:]) as writer:
        for i in range(len(constants.modules)):
            writer.write_module(i, constants.pedestal[i], constants.noise[i], constants.status_mask[i],
                                constants.n_frames[i])
    return Path(path)


def read_dark_file(path: os.PathLike, modules: Optional[Sequence[int]] = None, noise: bool = True,
                   allocate: Optional[Callable[[tuple], np.ndarray]] = None) -> DarkConstants:
    """Read dark constants, optionally only ``modules`` (only those are loaded into memory).

    ``noise=False`` leaves the noise out (``DarkConstants.noise`` is None): half the bytes, for
    what needs only the pedestal (the mean image). Non-finite noise is then not looked for;
    ``smd_dark`` writes none where the pedestal is finite (every cell has 2 frames or more).
    ``allocate(shape)`` gives the C-contiguous float32 array of ``shape`` (C, M, rows, columns) to read
    the pedestal into, e.g. one whose content is no longer used (a new one costs its page
    faults); by default a new one.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"dark constants file {path} does not exist; make it with smd_dark")
    try:
        with h5py.File(path, "r") as f:
            absent = [name for name in DARK_DATASETS if name not in f]
            if absent:
                raise CalibrationError(f"{path} is not a dark constants file: no dataset(s) {absent}")
            file_modules = f["modules"][()].astype(np.int64)
            if modules is None:
                idx = np.arange(len(file_modules))
            else:
                wanted = sorted(int(m) for m in modules)
                lacking = [m for m in wanted if m not in file_modules]
                if lacking:
                    raise CalibrationError(f"dark constants {path} have no module(s) {lacking} (modules "
                                           f"{file_modules.tolist()}); run smd_dark with those modules")
                idx = np.array([int(np.flatnonzero(file_modules == m)[0]) for m in wanted], dtype=np.int64)
            whole = np.array_equal(idx, np.arange(len(file_modules)))

            def take(name):
                if whole:
                    return f[name][()]
                dataset = f[name]
                out = np.empty((len(idx),) + dataset.shape[1:], dtype=dataset.dtype)
                for j, i in enumerate(idx):  # a slice per module: h5py's index lists are slower by half
                    dataset.read_direct(out, source_sel=np.s_[i:i + 1], dest_sel=np.s_[j:j + 1])
                return out

            _check_layout(f, path)
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            thresholds = DarkThresholds(**{k: attrs[k] for k in DarkThresholds().as_dict() if k in attrs})
            status_mask = take("status_mask")
            non_finite = np.zeros(status_mask.shape, dtype=bool)
            shape = (len(idx),) + f["pedestal"].shape[1:]
            pedestal = _read_per_cell(f["pedestal"], idx, non_finite, _cell_major(shape, allocate))
            noise_values = _read_per_cell(f["noise"], idx, non_finite, np.empty(shape, np.float32)) if noise else None
            _mask_non_finite(non_finite, status_mask, path)
            return DarkConstants(
                pedestal=pedestal, noise=noise_values, status_mask=status_mask,
                modules=file_modules[idx], cell_ids=f["cell_ids"][()].astype(np.uint16), n_frames=take("n_frames"),
                proposal=int(attrs.get("proposal", 0)), run=int(attrs.get("run", 0)),
                detector=str(attrs.get("detector", "")), thresholds=thresholds,
                version=str(attrs.get("version", "")), created=str(attrs.get("created", "")))
    except OSError as exc:
        raise CalibrationError(f"cannot read dark constants {path}: {exc}") from None


def _check_layout(f, path: Path) -> None:
    """:class:`CalibrationError` when the datasets of a dark file do not fit each other.

    The module shape is the file's own (its ``status_mask``): the detector object checks it
    against its detector type.
    """
    n_mod, n_cells = len(f["modules"]), len(f["cell_ids"])
    module_shape = tuple(f["status_mask"].shape[1:]) if f["status_mask"].ndim == 3 else tuple(DSSC.module_shape)
    expected = {"pedestal": (n_mod, n_cells) + module_shape, "noise": (n_mod, n_cells) + module_shape,
                "status_mask": (n_mod,) + module_shape, "n_frames": (n_mod, n_cells)}
    for name, shape in expected.items():
        if f[name].shape != shape:
            raise CalibrationError(f"dark constants {path} are inconsistent: {name} has shape {f[name].shape}, "
                                   f"{n_mod} module(s) and {n_cells} cell(s) need {shape}; make the file again "
                                   "with smd_dark")


def _read_per_cell(dataset, modules: np.ndarray, non_finite: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Read the (C, rows, columns) constants of the file's modules at ``modules`` into ``out`` (M, C, rows, columns)
    a few cells at a time; returns ``out``.

    ``out`` may be a view of a cell-major array (the layout calibration takes a frame's cell
    from). Each block's non-finite values are looked for while it is still in the CPU cache
    (``non_finite`` (M, rows, columns) is set where any cell is not finite).
    """
    n_cells = dataset.shape[1]
    staging = None
    for j, i in enumerate(modules):
        for c0 in range(0, n_cells, CELLS_PER_READ):
            c1 = min(c0 + CELLS_PER_READ, n_cells)
            block = out[j, c0:c1]
            if block.flags.c_contiguous:
                dataset.read_direct(block, source_sel=np.s_[i, c0:c1])
            else:  # through a contiguous block: HDF5 scatters into strided memory at half the speed of a copy
                if staging is None:
                    staging = np.empty((CELLS_PER_READ,) + dataset.shape[2:], dtype=dataset.dtype)
                dataset.read_direct(staging[: c1 - c0], source_sel=np.s_[i, c0:c1])
                block[...] = staging[: c1 - c0]
            _flag_non_finite(block.reshape(c1 - c0, -1), non_finite[j].reshape(-1))
    return out


def _cell_major(shape: tuple, allocate: Optional[Callable[[tuple], np.ndarray]]) -> np.ndarray:
    """An (M, C, rows, columns) view of a cell-major array for constants of ``shape`` (from ``allocate``)."""
    cell_major = (shape[1], shape[0]) + shape[2:]
    out = np.empty(cell_major, dtype=np.float32) if allocate is None else allocate(cell_major)
    if out.shape != cell_major or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"allocate gave a {out.dtype} array of shape {out.shape}; the pedestal needs a "
                         f"C-contiguous float32 one of shape {cell_major}")
    return out.transpose(1, 0, 2, 3)


def _mask_non_finite(bad: np.ndarray, status_mask: np.ndarray, path: Path) -> None:
    """Pixels ``bad`` (a NaN or infinite pedestal or noise in any cell) get the 'pedestal out of range' bit."""
    n_new = int(np.count_nonzero(bad & (status_mask == 0)))
    if bad.any():
        status_mask[bad] |= np.uint8(8)
        log.warning("dark constants %s: %d pixel(s) with a non-finite pedestal or noise are masked (%d newly)",
                    path, int(np.count_nonzero(bad)), n_new)


@njit(cache=True, nogil=True)
def _flag_non_finite(values, bad):
    """``bad[p]`` set where ``values[c, p]`` is not finite in any cell ``c`` (one pass, no temporaries)."""
    for c in range(values.shape[0]):
        row = values[c]
        for p in range(values.shape[1]):
            v = row[p]
            bad[p] |= ~(abs(v) < np.inf)


def _plain(value):
    """An HDF5 attribute as a plain Python value."""
    return value.item() if isinstance(value, np.generic) else value


def check_cells_cover(constants: Union[DarkConstants, np.ndarray], cell_ids: np.ndarray,
                      run_label: str = "the data", dark_run: Optional[int] = None) -> None:
    """Raise :class:`CalibrationError` if ``cell_ids`` has cells the dark constants lack.

    Parameters
    ----------
    constants : DarkConstants or array of the dark's cell ids
    cell_ids : ndarray
        Memory cells of the data frames.
    run_label : str
        Names the data in the message, e.g. ``"run 614"``.
    dark_run : int, optional
        Dark run number for the message (taken from ``constants`` if they are DarkConstants).
    """
    dark_cells = constants.cell_ids if isinstance(constants, DarkConstants) else np.asarray(constants)
    missing = np.setdiff1d(np.unique(np.asarray(cell_ids)), dark_cells)
    if len(missing):
        shown = ", ".join(str(int(c)) for c in missing[:8]) + (" ..." if len(missing) > 8 else "")
        dark = getattr(constants, "run", None) or dark_run
        span = f"{int(dark_cells.min())}..{int(dark_cells.max())}, " if len(dark_cells) else ""
        raise CalibrationError(
            f"{run_label} has memory cells {shown} that the dark{f' run {dark}' if dark else ''} does not "
            f"cover (dark cells {span}{len(dark_cells)} cells); use a dark run taken with at least as many "
            "frames per train")
