"""Shared test helpers: run numbers, console scripts, mpiexec, reading whole outputs."""
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

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


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory, sim_root):
    """Dark constants of the simulated dark run, written once per session."""
    from smalldata.calib.dark import characterise_dark, dark_file_path, write_dark_file
    from smalldata.simulate import run_path

    folder = tmp_path_factory.mktemp("calib")
    constants = characterise_dark(run_path(sim_root, PROPOSAL, DARK_RUN), proposal=PROPOSAL, run_number=DARK_RUN)
    write_dark_file(constants, dark_file_path(folder, PROPOSAL, DARK_RUN, "dssc"))
    return folder
