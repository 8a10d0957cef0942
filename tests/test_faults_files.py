"""Files on disk: modes from the caller's umask, temporaries of killed runs, output names."""
import os
import socket
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
from faults import fault_config
from helpers import DATA_RUN, tool

from smalldata.config.producer import ProducerConfig
from smalldata.errors import SmallDataError
from smalldata.output.files import clean_stale_temporaries
from smalldata.output.writer import OutputFile, make_parts_dir
from smalldata.pipeline.eventloop import run_producer


@contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,group_readable", [(0o022, True), (0o027, True), (0o002, True), (0o077, False)])
def test_output_and_dark_files_follow_umask(tmp_path, mask, group_readable):
    from smalldata.calib.darkfile import DarkFileWriter

    with umask(mask):
        out = OutputFile(tmp_path / "r0001.h5")
        out.file["x"] = np.arange(3)
        out.publish()
        with DarkFileWriter(tmp_path / "dark.h5", modules=[0], cell_ids=[0]) as writer:
            z = np.zeros((1, 128, 512))
            writer.write_module(0, z, z, z[0], np.zeros(1))
    for path in (tmp_path / "r0001.h5", tmp_path / "dark.h5"):
        assert mode(path) == 0o666 & ~mask, (path, oct(mode(path)))
        assert bool(mode(path) & stat.S_IRGRP) == group_readable


def test_overwrite_keeps_umask_mode_and_cleans_stale_temporaries(tmp_path, sim_root, calib_dir):
    cfg = ProducerConfig.from_file(fault_config(tmp_path, sim_root, calib_dir))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    final = out_dir / f"r{DATA_RUN:04d}.h5"
    final.write_bytes(b"old")
    os.chmod(final, 0o664)
    # what a SIGKILLed run on this host leaves: a parts folder and a partial file of a dead process
    here = socket.gethostname().split(".")[0]
    dead = (out_dir / f".{final.name}.{here}-999999999.abc.parts")
    dead.mkdir()
    (dead / "part_00000.h5").write_bytes(b"x")
    dead_partial = out_dir / f".{final.name}.{here}-999999999.def.partial"
    dead_partial.write_bytes(b"x")
    alive = make_parts_dir(final)  # this process: still running, must be kept and reported
    with umask(0o002):
        run_producer(cfg, DATA_RUN, max_trains=4, overwrite=True)
    assert mode(final) == 0o664
    with h5py.File(final) as f:
        assert len(f["trainId"]) > 0
    assert not dead.exists() and not dead_partial.exists() and alive.exists()
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([final.name, alive.name])
    assert clean_stale_temporaries(final) == []


def test_output_naming_a_folder_is_refused_before_the_run(tmp_path, sim_root, calib_dir):
    cfg = ProducerConfig.from_file(fault_config(tmp_path, sim_root, calib_dir))
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(SmallDataError, match="is a folder"):
        run_producer(cfg, DATA_RUN, output=folder)
    assert list(folder.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A real small file system (tmpfs, as root here and in CI): ``mount(size, read_only=False)``."""
    mounted = []

    def mount(size: str, read_only: bool = False) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"cannot mount a small tmpfs (needs root): {result.stderr}"
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def cli(*args):
    return subprocess.run([tool(args[0])] + [str(a) for a in args[1:]], capture_output=True, text=True, timeout=120)


def one_error_line(result):
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("INFO ")]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("size", ["100k", "1m"])  # full while writing parts / before the merge
def test_producer_on_a_full_disk(tmp_path, sim_root, calib_dir, small_disk, size):
    disk = small_disk(size)
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=lambda c: c.update(output_dir=str(disk)))
    result = cli("smd_producer", "-r", DATA_RUN, "-c", cfg, "--batch-size", "4")
    assert result.returncode == 2
    line = one_error_line(result)
    assert f"no space left in {disk}" in line and "MB needed" in line and "MB free" in line, line
    assert list(disk.iterdir()) == []


def test_dark_on_a_full_or_read_only_disk(tmp_path, sim_root, small_disk):
    from helpers import DARK_RUN, PROPOSAL

    for disk, expect in ((small_disk("1m"), "no space left in"), (small_disk("1m", read_only=True), "not writable")):
        result = cli("smd_dark", "-p", PROPOSAL, "-r", DARK_RUN, "--data-root", sim_root, "--calib-dir", disk)
        assert result.returncode == 2, result.stderr  # not 139 (a segfault)
        assert expect in one_error_line(result) and str(disk) in result.stderr
        assert list(disk.iterdir()) == []
