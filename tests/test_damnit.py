"""The DAMNIT context files of examples/damnit, run with DAMNIT's own context runner (the damnit
package's ``ctxrunner``, as DAMNIT's backend starts it) offline on tiny simulated runs: their
values equal smalldata's table of runs, and the producer context makes the output itself."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import damnit
import h5py
import numpy as np
import pytest
from beamtime_helpers import PROPOSAL, RUNS, characterise_tiny_dark, shared_range, simulate_range, write_config

from smalldata.beamtime import runtable

EXAMPLES = Path(__file__).parents[1] / "examples" / "damnit"
CTXSUPPORT = Path(damnit.__file__).parent / "ctxsupport"


def run_context(context: Path, folder: Path, run: int, env: dict, cluster: bool = False) -> dict:
    """Run ``context`` for ``run`` with DAMNIT's runner in ``folder``; the values it saved."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(context, folder / "context.py")
    record = folder / f"record_{run}.txt"
    env = dict(env, PYTHONPATH=str(CTXSUPPORT))
    cmd = [sys.executable, "-m", "ctxrunner", "exec", str(PROPOSAL), str(run), "raw", "--record-output", str(record)]
    if cluster:
        cmd.append("--cluster-job")
    result = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    values = {}
    with h5py.File(record.read_text().strip(), "r") as f:
        errors = {name: f[f".errors/{name}"][()] for name in f.get(".errors", {})}
        assert not errors, errors
        for name, ds in f[".reduced"].items():
            value = ds[()]
            values[name] = value.decode() if isinstance(value, bytes) else value
    return values


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    return shared_range(tmp_path_factory)


def test_context_values_equal_the_table_of_runs(produced, tmp_path):
    rows = {r["run"]: r for r in runtable.update_table(produced["out"], PROPOSAL, RUNS)}
    env = dict(os.environ, EXTRA_DATA_DATA_ROOT=str(produced["root"]), SMALLDATA_OUTPUT_DIR=str(produced["out"]),
               SMALLDATA_SIGNAL="dssc/speckle_sum")
    for run in RUNS:
        values = run_context(EXAMPLES / "context.py", tmp_path / "amore", run, env)
        row = rows[run]
        assert values["smd_frames"] == row["frames"]
        assert values["smd_frames_kept"] == row["frames_kept"]
        assert values["smd_rejected_xgm_low"] == row["frames_rejected_XGM_LOW"]
        np.testing.assert_allclose(values["smd_xgm_mean"], row["xgm_mean"], rtol=1e-12)
        assert values["smd_scan_steps"] == row["scan_steps"]
        pumped, unpumped = row["mean dssc/speckle_sum [pumped]"], row["mean dssc/speckle_sum [unpumped]"]
        np.testing.assert_allclose(values["smd_signal_pumped"], pumped, rtol=1e-12)
        np.testing.assert_allclose(values["smd_signal_unpumped"], unpumped, rtol=1e-12)
        np.testing.assert_allclose(values["smd_pump_ratio"], pumped / unpumped, rtol=1e-12)
        assert "start_time" in values


def test_producer_context_makes_the_output(tmp_path):
    root = simulate_range(tmp_path / "data", runs=RUNS[:1])
    characterise_tiny_dark(root, tmp_path / "calib")
    config = write_config(tmp_path / "producer.yaml", root, tmp_path / "out", tmp_path / "calib")
    env = dict(os.environ, EXTRA_DATA_DATA_ROOT=str(root), SMALLDATA_CONFIG=str(config),
               SMALLDATA_BIN=str(Path(sys.executable).parent))
    values = run_context(EXAMPLES / "producer_context.py", tmp_path / "amore", RUNS[0], env, cluster=True)
    output = tmp_path / "out" / f"r{RUNS[0]:04d}.h5"
    assert output.is_file()
    row = runtable.update_table(tmp_path / "out", PROPOSAL, RUNS[:1])[0]
    assert values["smd_frames"] == row["frames"] > 0
    np.testing.assert_allclose(values["smd_xgm_mean"], row["xgm_mean"], rtol=1e-12)
