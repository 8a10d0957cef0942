"""smd_submit's bad input, each ending in one line that names the culprit and the fix (exit 2):
a run range that is not one, a run that does not exist, no SLURM on the machine, an output
folder that another user's job is writing."""
from __future__ import annotations

import os

import pytest
from beamtime_helpers import PROPOSAL, RUNS, simulate_range, write_config

from smalldata.cli import smd_submit


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("submit_bad")
    root = simulate_range(tmp / "data", runs=RUNS[:1])
    return {"root": root, "tmp": tmp, "config": write_config(tmp / "producer.yaml", root, tmp / "out", tmp / "calib")}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_range_that_is_not_a_range(setup, capsys):
    assert smd_submit.main(["-r", "610..612", "-c", str(setup["config"])]) == 2
    assert _one_line(capsys) == ("smd_submit: error: -r/--runs '610..612': '610..612' is not a run number or a "
                                 "range; give e.g. 610-615,620")


def test_a_run_that_does_not_exist(setup, capsys):
    assert smd_submit.main(["-r", f"{RUNS[0]},699", "-c", str(setup["config"])]) == 2
    assert _one_line(capsys) == (f"smd_submit: error: run(s) 699 of proposal {PROPOSAL} do not exist under "
                                 f"{setup['root']} (runs there: {RUNS[0]},615); check -r and -p, or the config's "
                                 "data_root")


def test_no_slurm_on_the_machine(setup, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without sbatch
    assert smd_submit.main(["-r", str(RUNS[0]), "-c", str(setup["config"])]) == 2
    line = _one_line(capsys)
    assert line.startswith("smd_submit: error: no SLURM on this machine: sbatch is not on PATH; submit from a "
                           "login node of the cluster")


@pytest.mark.skipif(os.getuid() != 0, reason="making a file of another user needs root")
def test_an_output_folder_another_users_job_is_writing(setup, capsys):
    out = setup["tmp"] / "out"
    out.mkdir(exist_ok=True)
    foreign = out / f".r{RUNS[0]:04d}.h5.othernode-4242.partial"
    foreign.write_bytes(b"")
    os.chown(foreign, 65534, 65534)
    try:
        assert smd_submit.main(["-r", str(RUNS[0]), "-c", str(setup["config"])]) == 2
        line = _one_line(capsys)
    finally:
        foreign.unlink()
    import pwd

    who = pwd.getpwuid(65534).pw_name
    assert line == (f"smd_submit: error: output folder {out}: run {RUNS[0]} is being written by user {who}'s job "
                    f"({foreign.name}); set another output_dir in the config, or wait until that job ends")
