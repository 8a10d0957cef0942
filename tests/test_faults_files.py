"""Files on disk: modes from the caller's umask, temporaries of killed runs, output names."""
import os
import socket
import stat
from contextlib import contextmanager

import h5py
import numpy as np
import pytest
from faults import fault_config
from helpers import DATA_RUN, calib_dir  # noqa: F401

from smalldata.config.producer import ProducerConfig
from smalldata.errors import SmallDataError
from smalldata.output.writer import OutputFile, clean_stale_temporaries, make_parts_dir
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
