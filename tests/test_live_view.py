"""The live view in a pseudo-terminal: it refreshes as rows arrive in the growing file, the prompt stays free."""

import numpy as np
import pexpect
import pytest
from helpers import tool

from smalldata.live.livefile import GrowingFile, growing_path

N_FRAMES, N_Q = 4, 6


def rows_of(train_ids, rng):
    """Rows of a few trains as the producer writes them (planted values)."""
    tids = np.repeat(np.asarray(train_ids, dtype=np.uint64), N_FRAMES)
    n = len(tids)
    return {"trainId": tids, "pulseId": np.tile(np.arange(N_FRAMES, dtype=np.uint64), len(train_ids)),
            "xgm/sa3_intensity": rng.uniform(500, 1500, n), "scan/delay": np.repeat(train_ids, N_FRAMES) % 3 * 1.0,
            "pattern/label_id": np.tile(np.arange(N_FRAMES) % 2, len(train_ids)).astype(np.int16),
            "dssc/roi_sum": rng.normal(100, 5, n), "dssc/azav_mean": rng.uniform(0, 1, (n, 1, N_Q)).astype(np.float32)}


def test_live_view_follows_growing_file(tmp_path):
    rng = np.random.default_rng(5)
    output = tmp_path / "live.h5"
    first, second = rows_of([100, 101], rng), rows_of([102, 103, 104], rng)
    growing = GrowingFile(growing_path(output))
    growing.append(first)
    env = {"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "dumb"}
    child = pexpect.spawn(tool("runSmallDataAna"), ["--live", str(output), "--interval", "0.5", "--save-dir",
                                                    str(tmp_path / "plots")],
                          cwd=str(tmp_path), env=env, encoding="utf-8", timeout=60)
    try:
        # the last train of a growing file waits for the next one: train 101 shows once 102 is in
        child.expect(r"live live\.h5: (\d+) rows, (\d+) trains, last train (\d+), XGM ([\d.]+) uJ \[growing\]")
        assert child.match.group(1, 2, 3) == ("4", "1", "100")
        assert float(child.match.group(4)) == pytest.approx(first["xgm/sa3_intensity"][:4].mean(), abs=0.05)
        growing.append(second)
        child.expect(r"(\d+) rows, (\d+) trains, last train 103, XGM ([\d.]+) uJ \[growing\]")
        assert child.match.group(1, 2) == ("16", "4")
        assert float(child.match.group(3)) == pytest.approx(second["xgm/sa3_intensity"][4:8].mean(), abs=0.05)
        child.sendline("print('prompt', live.state.profile_n, round(float(live.state.profile_sum[2]), 4))")
        expected = np.concatenate([first["dssc/azav_mean"], second["dssc/azav_mean"][:8]])[:, 0, 2].sum()
        child.expect(r"prompt (\d+) ([\d.]+)")
        assert int(child.match.group(1)) == 16 and float(child.match.group(2)) == pytest.approx(expected, abs=1e-3)
        growing.close()  # the run ends: the complete file replaces the growing one
        growing_path(output).rename(output)
        child.expect(r"20 rows, 5 trains, last train 104, XGM [\d.]+ uJ \[complete\]")
        assert (tmp_path / "plots" / "live.png").exists()
        child.sendline("live.stop()")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
