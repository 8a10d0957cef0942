"""Dark constants shared by the ranks of a node (``mpiexec -n 2``): one copy, the same numbers."""
import subprocess
import sys
import textwrap

import pytest
from helpers import DARK_RUN, PROPOSAL, mpiexec

from smalldata.calib.dark import dark_file_path

WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from mpi4py import MPI
    from smalldata.calib.darkfile import read_dark_file
    from smalldata.errors import CalibrationError
    from smalldata.pipeline.nodeshare import load_shared_darks

    comm = MPI.COMM_WORLD
    path, bad = sys.argv[1], sys.argv[2]
    darks = load_shared_darks({"dssc": (path, (2, 3), True)}, comm)
    dark = darks["dssc"]
    direct = read_dark_file(path, (2, 3))
    same = bool(np.array_equal(dark.pedestal, direct.pedestal) and np.array_equal(dark.noise, direct.noise)
                and np.array_equal(dark.status_mask, direct.status_mask))
    # rank 0 writes a marker through a writable view of the shared memory; rank 1 must see it
    comm.Barrier()
    if comm.rank == 0:
        view = np.ndarray(dark.noise.shape, dark.noise.dtype, buffer=dark.noise.base)  # the window's buffer
        view[0, 0, 0, 0] = -12345.0
    comm.Barrier()
    seen = float(dark.noise[0, 0, 0, 0])
    with open("/proc/self/status") as fh:
        shmem_kb = int([l.split()[1] for l in fh if l.startswith("RssShmem:")][0])
    try:
        load_shared_darks({"dssc": (bad, None, True)}, comm)
        error = None
    except CalibrationError as exc:
        error = str(exc)
    bare = load_shared_darks({"dssc": (path, (2, 3), False)}, comm)["dssc"]  # the pedestal alone
    same &= bare.noise is None and bool(np.array_equal(bare.pedestal, direct.pedestal))
    with open(f"{sys.argv[3]}{comm.rank}.json", "w") as out:  # a file per rank: stdout lines interleave
        json.dump({"rank": comm.rank, "same": same, "writeable": bool(dark.pedestal.flags.writeable),
                   "seen": seen, "shmem_kb": shmem_kb, "error": error}, out)
""")


@pytest.mark.mpi
def test_two_ranks_share_one_copy(calib_dir, tmp_path):
    import json

    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    bad = tmp_path / "not_a_dark.h5"
    bad.write_bytes(b"")
    path = dark_file_path(calib_dir, PROPOSAL, DARK_RUN, "dssc")
    res = subprocess.run(mpiexec(2) + [sys.executable, str(worker), str(path), str(bad), str(tmp_path / "rank")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in rows] == [0, 1]
    for r in rows:
        assert r["same"], "shared constants differ from the file's"
        assert not r["writeable"]
        assert r["seen"] == -12345.0, "rank 1 does not see rank 0's memory: not shared"
        # a file that is not a dark: the same one-line error on both ranks, no hang
        assert r["error"] is not None and str(bad) in r["error"]
    assert rows[0]["error"] == rows[1]["error"]
    # the constants (2 modules x cells x 128 x 512 float32, twice) are mapped, not copied
    assert rows[1]["shmem_kb"] > 0
