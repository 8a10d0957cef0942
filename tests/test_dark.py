"""Dark characterisation: planted pedestal, noise and bad pixels recovered; exact MPI sums; files; CLI."""
import dataclasses
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from helpers import DARK_RUN, PROPOSAL, mpiexec, tool
from smalldata.cli import smd_dark

from smalldata.calib.badpixels import DarkThresholds, classify_bad_pixels
from smalldata.calib.cellsums import CellAccumulator
from smalldata.calib.dark import (
    characterise_dark,
    check_cells_cover,
    dark_file_path,
    find_dark_file,
    read_dark_file,
    write_dark_file,
)
from smalldata.calib.masks import BAD_DEAD, BAD_HOT, BAD_NOISY, BAD_PEDESTAL_RANGE, describe_status
from smalldata.errors import CalibrationError, ConfigError, DataError
from smalldata.io.runaccess import RunAccess
from smalldata.simulate import read_truth, run_path


def frames_per_cell(sim_config) -> int:
    """Dark frames per memory cell of the simulated dark run (every train has every cell once)."""
    return int(sim_config.dark_trains)


@pytest.fixture(scope="module")
def thresholds(sim_config):
    return DarkThresholds(min_frames=min(100, frames_per_cell(sim_config)))


@pytest.fixture(scope="module")
def dark(dark_constants, thresholds):
    assert thresholds == DarkThresholds(min_frames=100)  # what conftest's dark_constants used
    return dark_constants


@pytest.fixture(scope="module")
def truth(sim_root):
    return read_truth(sim_root, PROPOSAL, DARK_RUN)


def planted_bad(truth):
    return truth["bad_dead"] | truth["bad_hot"] | truth["bad_noisy"]


# ---------------------------------------------------------------------------- planted truth
def test_pedestal_recovered(dark, truth, sim_config):
    n = frames_per_cell(sim_config)
    assert dark.pedestal.shape == truth["pedestal"].shape
    assert np.array_equal(dark.cell_ids, truth["cell_ids"])
    assert (dark.n_frames == n).all()
    good = np.broadcast_to(~planted_bad(truth)[:, None], dark.pedestal.shape)
    rms = np.sqrt(np.mean((dark.pedestal - truth["pedestal"])[good] ** 2))
    # statistical limit sqrt(<sigma^2 + 1/12> / n) is 0.149 ADU for 200 frames; 0.2 ADU at 200 frames
    tolerance = 0.2 * np.sqrt(200 / n)
    assert rms < tolerance, f"pedestal RMS error {rms:.3f} ADU (tolerance {tolerance:.3f})"
    expected = np.sqrt(np.mean(truth["noise"][~planted_bad(truth)] ** 2 + 1 / 12) / n)
    assert abs(rms / expected - 1) < 0.05  # the error is the statistical one, no bias on top


def test_noise_recovered(dark, truth, sim_config):
    n = frames_per_cell(sim_config)
    bad = planted_bad(truth)
    measured_sigma = np.sqrt(truth["noise"] ** 2 + 1 / 12)  # raw values are rounded
    rel = dark.noise / measured_sigma[:, None] - 1
    rel = rel[np.broadcast_to(~bad[:, None], rel.shape)]
    assert abs(rel.mean()) < 0.01, f"noise bias {rel.mean():.4f}"
    limit = 1 / np.sqrt(2 * (n - 1))  # relative standard error of a standard deviation: 5.0% at 200 frames
    rms = np.sqrt(np.mean(rel ** 2))
    assert rms < 1.1 * limit, f"noise relative RMS error {rms:.4f} (statistical limit {limit:.4f})"
    per_pixel = dark.noise.mean(axis=1) / measured_sigma - 1  # mean over cells
    assert np.sqrt(np.mean(per_pixel[~bad] ** 2)) < 0.05


def test_bad_pixels_flagged(dark, truth):
    status = dark.status_mask
    bad = planted_bad(truth)
    assert bad.sum() > 50
    assert np.count_nonzero(status[bad]) / bad.sum() >= 0.95
    good = ~bad
    assert np.count_nonzero(status[good]) / good.sum() < 0.001
    for key, bit in (("bad_dead", BAD_DEAD), ("bad_hot", BAD_HOT), ("bad_noisy", BAD_NOISY)):
        planted = truth[key]
        assert np.count_nonzero(status[planted] & bit) / planted.sum() >= 0.95, key


def test_classify_bad_pixels_bits():
    rng = np.random.default_rng(3)
    ped = (40 + 5 * rng.standard_normal((2, 128, 512))).astype(np.float32)
    sig = rng.uniform(1, 3, (2, 128, 512)).astype(np.float32)
    ped[:, 0, 0] += 100            # hot
    sig[1, 0, 1] = 0.0             # dead in one cell only
    sig[:, 0, 2] *= 10             # noisy
    ped[:, 0, 3] = 0.0             # out of range (low) and also not hot
    ped[:, 0, 4] = 450.0           # above pedestal_max: hot and out of range
    status = classify_bad_pixels(ped, sig, DarkThresholds())
    assert status[0, 0] == BAD_HOT
    assert status[0, 1] == BAD_DEAD
    assert status[0, 2] == BAD_NOISY
    assert status[0, 3] == BAD_PEDESTAL_RANGE
    assert status[0, 4] == BAD_HOT | BAD_PEDESTAL_RANGE
    assert describe_status(status[0, 4]) == "hot|pedestal_out_of_range"
    assert np.count_nonzero(status) == 5


def test_thresholds_validated():
    with pytest.raises(ConfigError, match="min_frames"):
        DarkThresholds(min_frames=1)
    with pytest.raises(ConfigError, match=r"detectors.dssc.dark.min_frame\b.*did you mean 'min_frames'"):
        DarkThresholds.from_mapping({"min_frame": 5}, "detectors.dssc.dark")
    with pytest.raises(ConfigError, match="pedestal_min"):
        DarkThresholds(pedestal_min=300.0, pedestal_max=200.0)


# ---------------------------------------------------------------------------- exact streaming sums
def test_accumulator_exact_any_split():
    rng = np.random.default_rng(5)
    cells = rng.integers(0, 6, 90).astype(np.uint16)  # irregular, repeated cells
    data = rng.integers(0, 512, (90, 128, 512)).astype(np.uint16)
    whole = CellAccumulator(np.arange(6))
    whole.add(data, cells)
    parts = CellAccumulator(np.arange(6))
    for a, b in ((0, 7), (7, 50), (50, 90)):
        parts.add(data[a:b], cells[a:b])
    assert np.array_equal(whole.sum, parts.sum) and np.array_equal(whole.sumsq, parts.sumsq)
    ped, sig = whole.mean_std()
    for c in range(6):
        x = data[cells == c].astype(np.float64)
        assert whole.count[c] == len(x)
        np.testing.assert_allclose(ped[c], x.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(sig[c], x.std(axis=0, ddof=1), rtol=1e-5)
    # regular trains (the fast path) give the same sums as the generic path
    regular = np.tile(np.array([4, 1, 0], np.uint16), 20)
    fast, slow = CellAccumulator(np.arange(6)), CellAccumulator(np.arange(6))
    fast.add(data[:60], regular)
    for i in range(60):  # one frame at a time goes through the generic path
        slow.add(data[i:i + 1], regular[i:i + 1])
    assert np.array_equal(fast.sum, slow.sum) and np.array_equal(fast.sumsq, slow.sumsq)
    assert np.array_equal(fast.count, slow.count)


def test_module_subset_and_collection_input(sim_root, dark, thresholds):
    data = RunAccess.from_directory(run_path(sim_root, PROPOSAL, DARK_RUN)).data  # an extra_data.DataCollection
    one = characterise_dark(data, modules=[3], thresholds=thresholds, chunk_frames=7, progress=False)
    i = dark.module_index(3)
    assert list(one.modules) == [3]
    assert np.array_equal(one.pedestal[0], dark.pedestal[i])  # chunking does not change a bit
    assert np.array_equal(one.noise[0], dark.noise[i])
    assert np.array_equal(one.status_mask[0], dark.status_mask[i])


# ---------------------------------------------------------------------------- errors
def test_too_few_frames(sim_root, sim_config):
    n = frames_per_cell(sim_config)
    with pytest.raises(DataError) as err:
        characterise_dark(run_path(sim_root, PROPOSAL, DARK_RUN), modules=[2],
                          thresholds=DarkThresholds(min_frames=n + 1), run_number=DARK_RUN)
    msg = str(err.value)
    assert f"dark run {DARK_RUN}" in msg and "module 2" in msg and "memory cell" in msg
    assert f"only {n} dark frames" in msg and f">= {n + 1}" in msg


def test_missing_module(sim_root):
    with pytest.raises(DataError, match=r"module\(s\) \[7\]"):
        characterise_dark(run_path(sim_root, PROPOSAL, DARK_RUN), modules=[7])


def test_cells_not_covered(dark):
    check_cells_cover(dark, dark.cell_ids)  # fine
    with pytest.raises(CalibrationError, match=r"memory cells 90, 91 .*dark run 615"):
        check_cells_cover(dark, np.array([0, 1, 90, 91], np.uint16), "run 614")


def test_find_dark_file_message(tmp_path):
    with pytest.raises(CalibrationError) as err:
        find_dark_file(tmp_path, PROPOSAL, DARK_RUN, "dssc")
    msg = str(err.value)
    assert str(tmp_path / "dark_p002937_r0615_dssc.h5") in msg
    assert "smd_dark -p 2937 -r 615 -c" in msg


# ---------------------------------------------------------------------------- files
def test_file_round_trip(tmp_path, dark):
    path = dark_file_path(tmp_path / "calib", PROPOSAL, DARK_RUN, "dssc")
    assert path.name == "dark_p002937_r0615_dssc.h5"
    write_dark_file(dark, path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    with h5py.File(path, "r") as f:
        assert f["pedestal"].dtype == np.float32 and f["pedestal"].shape == dark.pedestal.shape
        assert f["noise"].dtype == np.float32 and f["status_mask"].dtype == np.uint8
        assert f["cell_ids"].dtype == np.uint16 and f["n_frames"].dtype == np.int64
        assert f["pedestal"].attrs["units"] == "ADU"
        assert f.attrs["proposal"] == PROPOSAL and f.attrs["run"] == DARK_RUN and f.attrs["detector"] == "dssc"
        assert f.attrs["min_frames"] == dark.thresholds.min_frames and "created" in f.attrs
    back = read_dark_file(path)
    for key in ("pedestal", "noise", "status_mask", "modules", "cell_ids", "n_frames"):
        assert np.array_equal(getattr(back, key), getattr(dark, key)), key
    assert back.thresholds == dark.thresholds
    sub = read_dark_file(path, modules=[3])
    assert list(sub.modules) == [3] and np.array_equal(sub.noise[0], dark.noise[dark.module_index(3)])
    with pytest.raises(DataError, match="--overwrite"):
        write_dark_file(dark, path)
    with pytest.raises(CalibrationError, match=r"no module\(s\) \[9\]"):
        read_dark_file(path, modules=[9])


def test_non_finite_constants_masked_on_reading(tmp_path, dark, monkeypatch):
    """A pixel with a NaN or infinite pedestal or noise in any cell is read as bad (pedestal out of range), in
    whole files and in module subsets, whichever block of cells it is read in; every other pixel keeps its
    status."""
    from smalldata.calib import darkfile

    assert dark.pedestal.shape[1] > 3
    monkeypatch.setattr(darkfile, "CELLS_PER_READ", 3)  # the cells in more than one block
    ped, noise = dark.pedestal.copy(), dark.noise.copy()
    ped[0, 1, 5, 7] = np.nan
    noise[1, 0, 9, 11] = np.inf
    noise[1, -1, 100, 500] = -np.inf
    path = write_dark_file(dataclasses.replace(dark, pedestal=ped, noise=noise), tmp_path / "dark.h5")
    expected = dark.status_mask.copy()
    for m, y, x in ((0, 5, 7), (1, 9, 11), (1, 100, 500)):
        expected[m, y, x] |= BAD_PEDESTAL_RANGE
    np.testing.assert_array_equal(read_dark_file(path).status_mask, expected)
    second = int(dark.modules[1])
    np.testing.assert_array_equal(read_dark_file(path, modules=[second]).status_mask[0], expected[1])


# ---------------------------------------------------------------------------- command line
def write_config(path: Path, sim_root, sim_config, drop=()) -> Path:
    cfg = {"proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": "calib",
           "detectors": {"dssc": {"dark_run": DARK_RUN,
                                  "dark": {"min_frames": min(100, frames_per_cell(sim_config))}}}}
    for key in drop:
        cfg.pop(key)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.mpi
def test_mpi_two_ranks_equal_one(tmp_path, sim_root, sim_config):
    cfg = write_config(tmp_path / "producer.yaml", sim_root, sim_config)
    files = []
    for n in (1, 2):
        out = tmp_path / f"calib{n}"
        proc = subprocess.run(mpiexec(n) + [tool("smd_dark"), "-p", str(PROPOSAL), "-r", str(DARK_RUN),
                                            "-c", str(cfg), "--calib-dir", str(out), "--chunk-frames", "13"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert f"on {n} rank(s)" in proc.stderr
        files.append(dark_file_path(out, PROPOSAL, DARK_RUN, "dssc"))
    with h5py.File(files[0], "r") as a, h5py.File(files[1], "r") as b:
        assert sorted(a) == sorted(b) == sorted(["pedestal", "noise", "status_mask", "modules", "cell_ids",
                                                 "n_frames"])
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key][()], b[key][()]), key
        attrs_a = {k: v for k, v in a.attrs.items() if k != "created"}
        attrs_b = {k: v for k, v in b.attrs.items() if k != "created"}
        assert attrs_a.keys() == attrs_b.keys() and all(np.array_equal(attrs_a[k], attrs_b[k]) for k in attrs_a)


def test_cli_writes_relative_calib_dir(tmp_path, sim_root, sim_config, dark, capsys):
    cfg = write_config(tmp_path / "producer.yaml", sim_root, sim_config)
    assert smd_dark.main(["-r", str(DARK_RUN), "-c", str(cfg), "--modules", "3", "--quiet"]) == 0
    path = tmp_path / "calib" / "dark_p002937_r0615_dssc.h5"  # relative to the config file
    back = read_dark_file(path)
    assert list(back.modules) == [3]
    assert np.array_equal(back.pedestal[0], dark.pedestal[dark.module_index(3)])
    assert smd_dark.main(["-r", str(DARK_RUN), "-c", str(cfg), "--modules", "3", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("smd_dark:")]


def test_cli_missing_run(tmp_path, sim_root, sim_config, capsys):
    cfg = write_config(tmp_path / "producer.yaml", sim_root, sim_config)
    assert smd_dark.main(["-r", "999", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err
    assert "run 999 of proposal 2937 not found" in lines[0] and "r0999" in lines[0]


def test_cli_missing_config_key(tmp_path, sim_root, sim_config, capsys):
    cfg = write_config(tmp_path / "producer.yaml", sim_root, sim_config, drop=("proposal",))
    assert smd_dark.main(["-r", str(DARK_RUN), "-c", str(cfg)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "proposal" in lines[0] and "-p" in lines[0]
    cfg = write_config(tmp_path / "nodet.yaml", sim_root, sim_config, drop=("detectors",))
    assert smd_dark.main(["-r", str(DARK_RUN), "-c", str(cfg)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "detectors" in lines[0] and "nodet.yaml" in lines[0]


def test_cli_bad_threshold_exit_status(tmp_path, sim_root, sim_config):
    cfg = write_config(tmp_path / "producer.yaml", sim_root, sim_config)
    raw = yaml.safe_load(cfg.read_text())
    raw["detectors"]["dssc"]["dark"]["dead_noise"] = 0.1
    cfg.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([tool("smd_dark"), "-r", str(DARK_RUN), "-c", str(cfg)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr  # one line
    assert "detectors.dssc.dark.dead_noise" in proc.stderr and "dead_noise_max" in proc.stderr


def test_cli_failure_leaves_no_file(tmp_path, sim_root, sim_config, capsys):
    cfg = write_config(tmp_path / "producer.yaml", sim_root, sim_config)
    raw = yaml.safe_load(cfg.read_text())
    raw["detectors"]["dssc"]["dark"]["min_frames"] = frames_per_cell(sim_config) + 1
    cfg.write_text(yaml.safe_dump(raw))
    assert smd_dark.main(["-r", str(DARK_RUN), "-c", str(cfg)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "memory cell" in lines[0] and "min_frames" in lines[0]
    calib = tmp_path / "calib"
    assert not calib.exists() or not any(calib.iterdir())  # neither the file nor a temporary one


def test_mpi_helpers_single_rank():
    from smalldata.parallel import mpi

    assert mpi.size() == 1 and mpi.rank() == 0  # pytest itself runs without mpiexec
    arr = np.arange(10, dtype=np.int64)
    assert mpi.sum_reduce(arr) is arr and arr[-1] == 9
    with pytest.raises(DataError):  # one rank: the original exception, not a wrapped one
        mpi.agree(lambda: (_ for _ in ()).throw(DataError("boom")))
    serial = mpi.SerialComm()
    assert mpi.block_range(7, serial) == (0, 7) and serial.allgather(3) == [3]


def test_accumulator_exact_beyond_nine_bits():
    data = np.full((4, 128, 512), 65535, np.uint16)  # corrupt values must not overflow the sums
    data[1] = 0
    acc = CellAccumulator(np.array([0, 1]))
    acc.add(data, np.array([0, 1, 0, 1], np.uint16))
    assert acc.sum[0, 0] == 2 * 65535 and acc.sumsq[0, 0] == 2 * 65535 ** 2 and acc.sumsq[1, 0] == 65535 ** 2


def test_dark_settings_checked_by_the_producer_schema(tmp_path, sim_root, sim_config):
    """smd_dark checks the keys it reads with the producer's key tables: same rules, same messages."""
    from smalldata.cli.smd_dark import dark_settings_from_config
    from smalldata.config.producer import ProducerConfig

    cfg = write_config(tmp_path / "producer.yaml", sim_root, sim_config)
    settings = dark_settings_from_config(cfg)
    assert settings.proposal == PROPOSAL and settings.modules is None and settings.detector == "dssc"
    assert settings.calib_dir == (tmp_path / "calib").resolve() and str(settings.data_root) == str(sim_root)
    raw = yaml.safe_load(cfg.read_text())
    raw["output_dir"] = "out"  # a key smd_dark does not read is left to the producer
    for key, value, where in (("proposal", 0, "proposal"), ("calib_dir", 5, "calib_dir"),
                              ("modules", [3, 16], "detectors.dssc.modules"),
                              ("modules", [2, 2], "detectors.dssc.modules")):
        bad = yaml.safe_load(yaml.safe_dump(raw))
        (bad["detectors"]["dssc"] if key == "modules" else bad)[key] = value
        path = tmp_path / f"bad_{key}.yaml"
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError) as dark_err:
            dark_settings_from_config(path)
        with pytest.raises(ConfigError) as producer_err:
            ProducerConfig.from_file(path)
        assert dark_err.value.path == producer_err.value.path == where
        assert dark_err.value.message == f"{producer_err.value.message} (in {path.resolve()})"
    raw["detectors"]["dssc"]["modules"] = [3, 1]
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(raw))
    assert dark_settings_from_config(tmp_path / "ok.yaml").modules == (1, 3)
