"""The truth file next to a simulated run: what was planted, dataset by dataset.

See ``docs/simulator.md`` for every dataset and attribute.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping

import h5py
import numpy as np

from smalldata.errors import DataError

from .config import CYCLE

#: Units of the truth datasets (``units`` attribute).
TRUTH_UNITS = {
    "pedestal": "ADU", "noise": "ADU", "mean_photons": "photon", "frame_xgm": "uJ",
    "frame_delay": "mm", "train_delay": "mm", "train_photon_energy": "eV", "frame_photons": "photon",
    "frame_speckle_photons": "photon", "frame_digitizer_integral": "ADU*sample",
    "frame_pump_factor": "1",
}


def run_path(root: os.PathLike, proposal: int, run: int) -> Path:
    """``<root>/SCS/202601/p{proposal:06d}/raw/r{run:04d}``: where a simulated run goes."""
    return Path(root) / "SCS" / CYCLE / f"p{int(proposal):06d}" / "raw" / f"r{int(run):04d}"


def truth_path(root: os.PathLike, proposal: int, run: int) -> Path:
    """``<root>/SCS/202601/p{proposal:06d}/raw/r{run:04d}-truth.h5``: the run's truth file."""
    rp = run_path(root, proposal, run)
    return rp.parent / f"{rp.name}-truth.h5"


def write_truth(path: Path, datasets: Mapping[str, np.ndarray], attrs: Mapping[str, object]) -> None:
    """Write the truth file (datasets get a ``units`` attribute where one applies)."""
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            value = np.asarray(value)
            if value.dtype.kind in "UO":
                ds = f.create_dataset(name, data=value.astype(object), dtype=h5py.string_dtype())
            elif value.dtype == bool and value.size > 1024:
                ds = f.create_dataset(name, data=value, compression="gzip", compression_opts=1)
            else:
                ds = f.create_dataset(name, data=value)
            if name in TRUTH_UNITS:
                ds.attrs["units"] = TRUTH_UNITS[name]
        for name, value in attrs.items():
            if value is None:
                value = ""
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
                value = np.array(value, dtype=h5py.string_dtype())
            f.attrs[name] = value


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return np.array([v.decode() if isinstance(v, bytes) else v for v in value.ravel()]).reshape(value.shape)
    return value


def read_truth(root: os.PathLike, proposal: int, run: int) -> Dict[str, object]:
    """Every dataset (numpy array; strings as str arrays) and attribute of a run's truth file."""
    path = truth_path(root, proposal, run)
    if not path.is_file():
        raise DataError(f"truth file {path} does not exist; simulate the run first (smd_simulate)")
    out: Dict[str, object] = {}
    with h5py.File(path, "r") as f:
        for name, ds in f.items():
            if h5py.check_string_dtype(ds.dtype) is not None:
                out[name] = np.array(ds.asstr()[()], dtype=str)
            else:
                out[name] = ds[()]
        for name, value in f.attrs.items():
            out[name] = _plain(value)
    return out
