"""The table of runs (smd_runs): numbers against the simulator's truth and the outputs, CSV and
HDF5 alike, incremental updates, and the run range parser behind -r."""
from __future__ import annotations

import csv
import datetime
import os

import h5py
import numpy as np
import pytest
from extra_data import RunDirectory
from beamtime_helpers import MISSING_MODULE_RUN, PROPOSAL, RUNS, SHARED_XGM_MIN, run_cli, shared_range

from smalldata.beamtime import runtable
from smalldata.beamtime.fingerprint import config_fingerprint, output_fingerprint
from smalldata.beamtime.runrange import format_run_range, parse_run_range
from smalldata.errors import SmallDataError
from smalldata.simulate import read_truth, run_path

XGM_MIN = SHARED_XGM_MIN


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    """Three tiny runs (one lacking a module file), their dark, and their outputs made in this process."""
    return shared_range(tmp_path_factory)


def test_rows_equal_the_truth_and_the_outputs(produced):
    config = produced["config"]
    rows = runtable.update_table(produced["out"], PROPOSAL, RUNS, config_fingerprint(config, PROPOSAL))
    assert [r["run"] for r in rows] == list(RUNS)
    for row in rows:
        run = row["run"]
        truth = read_truth(produced["root"], PROPOSAL, run)
        xgm = np.asarray(truth["frame_xgm"], dtype=np.float64)
        xray = np.asarray(truth["frame_xray"], dtype=bool)
        low = xray & ~(xgm >= XGM_MIN)
        assert row["state"] == "done"
        assert row["trains"] == len(truth["train_ids"])
        assert row["frames"] == len(truth["frame_train_id"])
        assert row["frames_rejected_XGM_LOW"] == int(low.sum())
        assert row["frames_rejected"] == int(low.sum())
        assert row["frames_kept"] == row["frames"] - int(low.sum())
        np.testing.assert_allclose(row["xgm_mean"], xgm[xray].mean(), rtol=1e-6)
        assert row["scan_variable"] == "scan/delay"
        assert row["scan_steps"] == len(np.unique(truth["train_delay"]))
        assert row["incomplete_pairs"] == (3 if run == MISSING_MODULE_RUN else 0)
        assert row["fingerprint"] == output_fingerprint(produced["out"] / f"r{run:04d}.h5")
        meta = RunDirectory(str(run_path(produced["root"], PROPOSAL, run))).run_metadata()
        assert row["run_start"] == datetime.datetime.strptime(meta["creationDate"], "%Y%m%dT%H%M%S%z").isoformat()
        assert row["run_end"] == datetime.datetime.strptime(meta["updateDate"], "%Y%m%dT%H%M%S%z").isoformat()
        # per-label means: computed here from the output with plain h5py
        with h5py.File(produced["out"] / f"r{run:04d}.h5", "r") as f:
            kept = f["rejection/reasons"][()] == 0
            label = f["pattern/label_id"][()]
            for name in ("dssc/speckle_sum", "dssc/full_mean"):
                values = f[name][()]
                for index, text in enumerate(("pumped", "unpumped")):
                    chosen = kept & (label == index)
                    np.testing.assert_allclose(row[f"mean {name} [{text}]"], values[chosen].mean(), rtol=1e-12)
        labels = np.asarray(truth["frame_label"]).astype(str)
        assert set(labels) == {"pumped", "unpumped"}


def test_csv_and_hdf5_hold_the_same_table(produced):
    rows = runtable.update_table(produced["out"], PROPOSAL, RUNS, config_fingerprint(produced["config"], PROPOSAL))
    paths = runtable.table_paths(produced["out"], PROPOSAL)
    stored = runtable.read_table(paths["h5"])
    with open(paths["csv"], newline="") as f:
        from_csv = {int(r["run"]): r for r in csv.DictReader(f)}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float):
                np.testing.assert_allclose(stored[row["run"]][key], value, rtol=0, atol=0, equal_nan=True)
                np.testing.assert_allclose(float(from_csv[row["run"]][key] or "nan"), value, rtol=0,
                                           equal_nan=True)
            else:
                assert stored[row["run"]][key] == value, key
                assert from_csv[row["run"]][key] == str(value), key


def test_table_updates_incrementally(produced, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    for run in RUNS[:2]:
        os.link(produced["out"] / f"r{run:04d}.h5", out / f"r{run:04d}.h5")
    read = []
    original = runtable.output_row
    monkeypatch.setattr(runtable, "output_row", lambda path: read.append(path.name) or original(path))
    first = runtable.update_table(out, PROPOSAL)
    assert [r["run"] for r in first] == list(RUNS[:2]) and len(read) == 2
    os.link(produced["out"] / f"r{RUNS[2]:04d}.h5", out / f"r{RUNS[2]:04d}.h5")
    read.clear()
    second = runtable.update_table(out, PROPOSAL)
    assert read == [f"r{RUNS[2]:04d}.h5"]  # only the new run's output was read
    assert second[:2] == [dict(r, state=s["state"]) for r, s in zip(first, second[:2])]
    read.clear()
    runtable.update_table(out, PROPOSAL)
    assert read == []
    os.utime(out / f"r{RUNS[0]:04d}.h5")  # a changed output is read again
    runtable.update_table(out, PROPOSAL)
    assert read == [f"r{RUNS[0]:04d}.h5"]
    assert sorted(runtable.read_table(runtable.table_paths(out, PROPOSAL)["h5"])) == list(RUNS)


def test_smd_runs_prints_and_writes_the_table(produced):
    result = run_cli(["smd_runs", "-c", produced["config_path"], "-r", f"{RUNS[0]}-{RUNS[-1]}", "--no-slurm"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["run", "state"]
    assert [ln.split()[:2] for ln in lines[1:4]] == [[str(r), "done"] for r in RUNS]
    assert runtable.table_paths(produced["out"], PROPOSAL)["csv"].is_file()


@pytest.mark.parametrize("text, message", [
    ("610-6x", "'610-6x' is not a run number or a range; give e.g. 610-615,620"),
    ("615-610", "'615-610' runs backwards; write it as 610-615"),
    ("0-3", "run numbers start at 1"),
    ("", "'' is not a run number or a range"),
])
def test_bad_run_range_is_one_line(text, message, produced):
    with pytest.raises(SmallDataError, match=message.replace("(", r"\(")):
        parse_run_range(text)
    result = run_cli(["smd_runs", "-c", produced["config_path"], "-r", text, "--no-slurm"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"smd_runs: error: -r/--runs {text!r}: ") and message in lines[0]


def test_run_range_round_trip():
    runs = parse_run_range("620, 610-612,611,630-631")
    assert runs == [610, 611, 612, 620, 630, 631]
    assert format_run_range(runs) == "610-612,620,630-631"
    assert parse_run_range(format_run_range(runs)) == runs


def test_state_column_compares_with_the_current_fingerprint(produced):
    current = config_fingerprint(produced["config"], PROPOSAL)
    assert {r["state"] for r in runtable.update_table(produced["out"], PROPOSAL, RUNS, current)} == {"done"}
    other = "0" * len(current)
    rows = runtable.update_table(produced["out"], PROPOSAL, RUNS, other)
    assert {r["state"] for r in rows} == {"outdated"}
    assert {r["detail"] for r in rows} == {"made from another config or dark"}
    rows = runtable.update_table(produced["out"], PROPOSAL, RUNS, None, compare=False)
    assert {r["state"] for r in rows} == {"done"}
    result = run_cli(["smd_runs", "-p", PROPOSAL, "--output-dir", produced["out"], "--no-slurm"])
    assert result.returncode == 0, result.stderr
    assert [ln.split()[:2] for ln in result.stdout.splitlines()[1:4]] == [[str(r), "done"] for r in RUNS]
    missing = run_cli(["smd_runs", "-p", PROPOSAL, "--output-dir", produced["out"] / "nowhere", "--no-slurm"])
    assert missing.returncode == 2
    assert missing.stderr.strip() == (f"smd_runs: error: output folder {produced['out'] / 'nowhere'} does not "
                                      "exist; check output_dir in the config or --output-dir")
