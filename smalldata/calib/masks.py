"""Pixel masks of a detector: bad-pixel reason bits, ASIC edges, users' mask files.

Boolean masks are True for a good pixel. Bad-pixel *reasons* are bit fields in a
``uint8`` status array (0 = good), so that one pixel can have several reasons.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from smalldata.detectors.dssc import DSSC
from smalldata.detectors.types import DetectorType
from smalldata.errors import ConfigError

# Bad-pixel reason bits of ``status_mask`` (0 = good).
BAD_DEAD = np.uint8(1)  #: noise below ``dead_noise_max`` in some cell: the pixel does not respond
BAD_HOT = np.uint8(2)  #: pedestal far above the module's typical pedestal (or above ``pedestal_max``)
BAD_NOISY = np.uint8(4)  #: noise far above the module's typical noise
BAD_PEDESTAL_RANGE = np.uint8(8)  #: pedestal outside ``[pedestal_min, pedestal_max]`` or far below typical

BAD_PIXEL_BITS: Dict[str, int] = {
    "dead": int(BAD_DEAD),
    "hot": int(BAD_HOT),
    "noisy": int(BAD_NOISY),
    "pedestal_out_of_range": int(BAD_PEDESTAL_RANGE),
}


def describe_status(status: int) -> str:
    """Names of the reason bits set in ``status``, e.g. ``"dead|noisy"`` (``"good"`` for 0)."""
    names = [name for name, bit in BAD_PIXEL_BITS.items() if int(status) & bit]
    return "|".join(names) if names else "good"


def status_to_mask(status_mask: np.ndarray) -> np.ndarray:
    """Boolean mask (True = good) from reason bits (0 = good)."""
    return np.asarray(status_mask) == 0


def asic_edge_mask(n_modules: int, width: int = 1, detector_type: DetectorType = DSSC) -> np.ndarray:
    """(M, rows, columns) bool mask that is False on the outer ``width`` pixels of every ASIC.

    The ASIC tiles and the module shape are the detector type's (the DSSC's 64 x 64 ASICs of
    128 x 512 modules by default). Pixels at ASIC borders collect charge differently (wider
    or shared pixels), so they are usually left out of quantitative analysis.
    """
    asic = detector_type.asic_shape
    if asic is None:
        raise ConfigError("mask_asic_edges", f"a {detector_type.name} has no ASIC tiles; set mask_asic_edges: false")
    module_shape = tuple(detector_type.module_shape)
    if width < 0 or 2 * width >= min(asic):
        raise ConfigError("mask_asic_edges",
                          f"edge width {width} must be between 0 and {min(asic) // 2 - 1}")
    rows = np.arange(module_shape[0]) % asic[0]
    cols = np.arange(module_shape[1]) % asic[1]
    good_rows = (rows >= width) & (rows < asic[0] - width)
    good_cols = (cols >= width) & (cols < asic[1] - width)
    module = good_rows[:, None] & good_cols[None, :]
    return np.broadcast_to(module, (n_modules,) + module_shape).copy()


def _mask_from_array(arr: np.ndarray, modules: Sequence[int], origin: str,
                     module_shape: Tuple[int, int], n_modules: int) -> np.ndarray:
    """Check a user mask array and select ``modules`` from it."""
    arr = np.asarray(arr)
    if arr.dtype != bool:
        if arr.dtype.kind not in "iu" or not np.isin(arr, (0, 1)).all():
            raise ConfigError("user_mask", f"{origin}: a mask must be boolean or 0/1 (1 = good pixel), "
                                           f"got dtype {arr.dtype}")
        arr = arr.astype(bool)
    modules = list(modules)
    shape = arr.shape
    module_shape = tuple(module_shape)
    if shape == (len(modules),) + module_shape:
        return arr.copy()
    if shape == (n_modules,) + module_shape:
        return arr[modules].copy()
    if n_modules == 1 and shape == module_shape:
        return arr[None].copy()
    whole = (n_modules,) + module_shape
    raise ConfigError("user_mask", f"{origin}: shape {shape} does not fit; need {(len(modules),) + module_shape} "
                                   f"for modules {modules} or {whole} for the whole detector")


def load_user_mask(mask: Union[None, np.ndarray, os.PathLike, str], modules: Sequence[int],
                   dataset: Optional[str] = None, module_shape: Tuple[int, int] = DSSC.module_shape,
                   n_modules: int = DSSC.n_modules) -> np.ndarray:
    """A user's mask for ``modules`` as (M, rows, columns) bool, True = good.

    Parameters
    ----------
    mask : None, ndarray or path
        ``None`` (everything good), an array of shape (M, rows, columns) or (modules of the
        detector, rows, columns), or a ``.npy`` file or an HDF5 file (``.h5``/``.hdf5``) holding
        such an array.
    modules : sequence of int
        The detector's modules, ascending.
    dataset : str, optional
        Dataset in an HDF5 file; default ``mask`` if present, else the file's only dataset.
    module_shape, n_modules
        The detector type's module shape and number of modules (default the DSSC's).
    """
    modules = list(modules)
    shapes = {"module_shape": tuple(module_shape), "n_modules": n_modules}
    if mask is None:
        return np.ones((len(modules),) + tuple(module_shape), dtype=bool)
    if isinstance(mask, np.ndarray):
        return _some_good(_mask_from_array(mask, modules, "user mask array", **shapes), modules, "user mask array")
    path = Path(mask)
    if path.is_dir():
        raise ConfigError("user_mask", f"mask path {path} is a directory; give the .npy or .h5 file inside it")
    if not path.is_file():
        raise ConfigError("user_mask", f"mask file {path} does not exist; give a .npy or .h5 file with a "
                                       f"{(n_modules,) + tuple(module_shape)} boolean array, True = good")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError("user_mask", f"cannot read mask file {path}: {exc}") from None
        return _some_good(_mask_from_array(arr, modules, str(path), **shapes), modules, str(path))
    if suffix in (".h5", ".hdf5"):
        arr, dataset = _read_h5_mask(path, dataset)
        origin = f"{path} (dataset {dataset!r})"
        return _some_good(_mask_from_array(arr, modules, origin, **shapes), modules, origin)
    raise ConfigError("user_mask", f"mask file {path}: unknown type {suffix!r}; use .npy or .h5")


def _some_good(mask: np.ndarray, modules: Sequence[int], origin: str) -> np.ndarray:
    """``mask`` if it leaves a good pixel in ``modules``; a mask of nothing but bad pixels is refused.

    Such a mask would leave the detector without a pixel, and the set-up would otherwise
    blame the dark run for it.
    """
    if not mask.any():
        raise ConfigError("user_mask", f"{origin} masks every pixel of modules {list(modules)} (no True value; "
                                       "True = good pixel): invert it, or give a mask for these modules")
    return mask


def _read_h5_mask(path: Path, dataset: Optional[str]) -> Tuple[np.ndarray, str]:
    """Read the mask dataset of an HDF5 mask file; returns the array and the dataset's name."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if dataset is None:
                names = []
                f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
                if "mask" in names:
                    dataset = "mask"
                elif len(names) == 1:
                    dataset = names[0]
                else:
                    raise ConfigError("user_mask", f"mask file {path}: no dataset 'mask' and {len(names)} "
                                                   f"datasets {names[:5]}; name the dataset to use")
            if dataset not in f:
                raise ConfigError("user_mask", f"mask file {path} has no dataset {dataset!r}")
            return f[dataset][()], dataset
    except OSError as exc:
        raise ConfigError("user_mask", f"cannot read mask file {path}: {exc}") from None
