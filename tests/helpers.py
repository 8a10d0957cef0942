"""Shared test helpers: run numbers, console scripts, mpiexec, reading whole outputs."""
import shutil
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames, read_only

PROPOSAL, DATA_RUN, DARK_RUN = 2937, 614, 615


def tool(name: str) -> str:
    """A console script of this environment (next to the Python running the tests)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed"
    return found


def mpiexec(n: int) -> list:
    """The command prefix to run ``n`` ranks with the pip-installed MPI."""
    return [tool("mpiexec"), "-n", str(n)]


def read_all(path, skip=("meta", "UserDataCfg")) -> dict:
    """Every dataset of an output file except those under ``skip``, as arrays."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not name.startswith(skip):
                out[name] = obj[()]
        f.visititems(visit)
    return out


class Spin(DetObjectFunc):
    """Spins for ``seconds`` in process (busy: no system call to interrupt)."""

    def __init__(self, name: str = "spin", seconds: float = 0.0):
        super().__init__(name)
        self.seconds = seconds

    def process(self, frames):
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            pass
        return {"n": np.ones(len(frames), np.int32)}


def camera_frames(raw, dark, saturation):
    """Dark-subtracted frames as the producer hands them on: (N, 1, ny, nx), valid = good and not saturated."""
    n = len(raw)
    data = (raw.astype(np.float32) - dark.mean)[:, None]
    valid = (dark.mask[None] & (raw < saturation))[:, None]
    return read_only(Frames(data=data, valid=valid, units="ADU", train_ids=np.arange(1, n + 1, dtype=np.uint64),
                            pulse_ids=np.zeros(n, np.uint64), cell_ids=np.zeros(n, np.uint16), modules=(0,)))
