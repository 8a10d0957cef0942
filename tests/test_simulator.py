"""The simulator: files readable by extra-data like real runs, and the planted truth recoverable."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from euxfel_bunch_pattern import PPL_BITS, indices_at_laser, indices_at_sase
from extra_data import RunDirectory, open_run
from extra_data.components import DSSC1M
from faults import validate
from smalldata.cli import smd_simulate

from smalldata import constants as C
from smalldata.errors import ConfigError, SmallDataError
from smalldata.geometry.positions import load_dssc_geometry, pixel_positions
from smalldata.simulate import (
    SimulationConfig,
    physics,
    read_truth,
    run_path,
    simulate_dark_run,
    simulate_data_run,
    truth_path,
)

PROPOSAL, DATA_RUN, DARK_RUN = 2937, 614, 615


@pytest.fixture(scope="module")
def data_dc(sim_root):
    return RunDirectory(run_path(sim_root, PROPOSAL, DATA_RUN))


@pytest.fixture(scope="module")
def truth(sim_root):
    return read_truth(sim_root, PROPOSAL, DATA_RUN)


def _module_frames(dc, module):
    """(frames, 128, 512) float64 raw data, with the train ids of each frame."""
    kd = dc[C.dssc_source(module), "image.data"]
    return kd.ndarray()[:, 0].astype(np.float64), dc[C.dssc_source(module), "image.trainId"].ndarray()[:, 0]


def _truth_frames(truth, module):
    """Boolean selection of the truth frames that module ``module`` recorded."""
    mi = list(truth["modules"]).index(module)
    present_trains = truth["train_ids"][~truth["module_missing"][mi]]
    return np.isin(truth["frame_train_id"], present_trains), mi


# ---------------------------------------------------------------------- file format
def test_open_run_sources_keys_shapes(sim_env):
    run = open_run(PROPOSAL, DATA_RUN)
    assert run.all_sources == {C.dssc_source(2), C.dssc_source(3), C.XGM_SCS_SOURCE, C.XGM_SCS_DEVICE,
                               C.BUNCH_PATTERN_SOURCE, C.TIMESERVER_DEVICE, C.DIGITIZER_SOURCE, C.DELAY_SOURCE,
                               C.PHOTON_ENERGY_SOURCE}
    # facility tools find the devices by their control source's class
    assert run[C.XGM_SCS_DEVICE].device_class == "DoocsXGM"
    assert run[C.TIMESERVER_DEVICE].device_class == "TimeServer"
    assert len(run.train_ids) == 24 and run.train_ids[0] == 1_000_000_000
    src = run[C.dssc_source(3)]
    assert {"image.data", "image.trainId", "image.pulseId", "image.cellId", "header.pulseCount",
            "trailer.status", "detector.data"} <= src.keys()
    expected = {"image.data": ((80, 1, 128, 512), np.uint16), "image.trainId": ((80, 1), np.uint64),
                "image.pulseId": ((80, 1), np.uint64), "image.cellId": ((80, 1), np.uint16)}
    for key, (shape, dtype) in expected.items():
        assert src[key].shape == shape and src[key].dtype == dtype, key
    assert run[C.XGM_SCS_SOURCE, C.XGM_SCS_KEY].shape == (24, 1000)
    assert run[C.XGM_SCS_SOURCE, C.XGM_SCS_KEY].dtype == np.float32
    assert run[C.BUNCH_PATTERN_SOURCE, C.BUNCH_PATTERN_KEY].shape == (24, 2700)
    assert run[C.BUNCH_PATTERN_SOURCE, C.BUNCH_PATTERN_KEY].dtype == np.uint32
    assert run[C.DIGITIZER_SOURCE, C.DIGITIZER_TRACE_KEY].dtype == np.int16
    assert run[C.DIGITIZER_SOURCE, C.DIGITIZER_INTEGRAL_KEY].shape == (24, 1000)
    assert run[C.DELAY_SOURCE, C.DELAY_KEY].dtype == np.float64
    assert run[C.DELAY_SOURCE, "actualPosition"].units == "mm"
    assert run[C.XGM_SCS_SOURCE, C.XGM_SCS_KEY].units == "μJ"
    data = src["image.data"].ndarray()
    assert data.max() <= 511 and 30 < np.median(data) < 50
    meta = run.run_metadata()
    assert meta["dataFormatVersion"] == "1.0" and meta["proposalNumber"] == PROPOSAL and meta["runNumber"] == DATA_RUN


def test_sequence_files(data_dc, sim_root):
    names = sorted(p.name for p in run_path(sim_root, PROPOSAL, DATA_RUN).glob("*.h5"))
    expected = sorted(f"RAW-R0614-{agg}-S{s:05d}.h5" for agg in ("DSSC02", "DSSC03", "DA01") for s in range(3))
    assert names == expected
    for seq, n in enumerate((10, 10, 4)):
        with h5py.File(run_path(sim_root, PROPOSAL, DATA_RUN) / f"RAW-R0614-DSSC03-S{seq:05d}.h5", "r") as f:
            assert len(f["INDEX/trainId"]) == n
            assert f["METADATA/sequenceNumber"][0] == seq
            assert f["INDEX/trainId"][0] == 1_000_000_000 + 10 * seq
    assert len(data_dc.files) == 9
    # the command line, not RunValidator in this process: its process pool forks the test process,
    # whose threads (numba, HDF5) can leave a forked worker dead on a lock and the pool hanging
    result = validate(run_path(sim_root, PROPOSAL, DATA_RUN))
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_trains_and_frame_count_change(data_dc, truth):
    counts2 = data_dc[C.dssc_source(2), "image.data"].data_counts(labelled=False)
    counts3 = data_dc[C.dssc_source(3), "image.data"].data_counts(labelled=False)
    expected = np.array([4] * 16 + [3] * 8)
    np.testing.assert_array_equal(counts2, expected)
    expected[[5, 6]] = 0
    np.testing.assert_array_equal(counts3, expected)
    np.testing.assert_array_equal(truth["frames_per_train"], [4] * 16 + [3] * 8)
    assert truth["module_missing"].tolist()[1][4:8] == [False, True, True, False]
    arr = DSSC1M(data_dc, raw=True).get_array("image.data")
    assert arr.shape[:3] == (2, 24, 4)
    assert float(arr[1, 5].max()) == 0 and float(arr[0, 5].median()) > 30


def test_pulse_and_cell_ids(data_dc, truth):
    pid = data_dc[C.dssc_source(2), "image.pulseId"].ndarray()[:, 0]
    cid = data_dc[C.dssc_source(2), "image.cellId"].ndarray()[:, 0]
    np.testing.assert_array_equal(pid[:8], [200, 224, 248, 272] * 2)
    np.testing.assert_array_equal(cid[-3:], [0, 1, 2])
    np.testing.assert_array_equal(pid, truth["frame_pulse_id"])
    np.testing.assert_array_equal(cid, truth["frame_cell_id"])


def test_bunch_pattern_decodes_to_planted_pulses(data_dc, truth):
    bpt = data_dc[C.BUNCH_PATTERN_SOURCE, C.BUNCH_PATTERN_KEY].ndarray()
    for t, tid in enumerate(truth["train_ids"]):
        sel = truth["frame_train_id"] == tid
        pids = truth["frame_pulse_id"][sel]
        np.testing.assert_array_equal(indices_at_sase(bpt[t], 3), pids[truth["frame_xray"][sel]])
        # the facility's convention: PPL bits start at slot 0; the laser's real slots are in the truth
        laser_bits = indices_at_laser(bpt[t], PPL_BITS.LP_SCS)
        assert laser_bits[0] == 0
        np.testing.assert_array_equal(laser_bits + truth["train_laser_first_slot"][t], pids[truth["frame_laser"][sel]])
        assert len(indices_at_sase(bpt[t], 1)) == 0
    assert truth["frame_laser"][:4].tolist() == [True, False, True, False]


def test_xgm_entries(data_dc, truth):
    xgm = data_dc[C.XGM_SCS_SOURCE, C.XGM_SCS_KEY].ndarray()
    for t, tid in enumerate(truth["train_ids"]):
        sel = (truth["frame_train_id"] == tid) & truth["frame_xray"]
        n = sel.sum()
        np.testing.assert_allclose(xgm[t, :n], truth["frame_xgm"][sel], rtol=1e-6)
        assert np.all(xgm[t, n:] == 1.0)
    assert abs(truth["frame_xgm"].mean() / 1000.0 - 1) < 0.1


def test_slow_data_scan(data_dc, truth, sim_config):
    delay = data_dc[C.DELAY_SOURCE, C.DELAY_KEY].ndarray()
    np.testing.assert_array_equal(delay, truth["train_delay"])
    np.testing.assert_allclose(np.unique(delay), np.linspace(0.0, 5.0, sim_config.delay_steps))
    assert np.all(np.diff(delay) >= 0) and (delay == delay[0]).sum() == 6
    energy = data_dc[C.PHOTON_ENERGY_SOURCE, C.PHOTON_ENERGY_KEY].ndarray()
    assert np.all(energy == 860.0)


def test_digitizer_pulses_follow_xgm(data_dc, truth, sim_config):
    traces = data_dc[C.DIGITIZER_SOURCE, C.DIGITIZER_TRACE_KEY].ndarray().astype(float)
    device = data_dc[C.DIGITIZER_SOURCE, C.DIGITIZER_INTEGRAL_KEY].ndarray()
    sigma = sim_config.digitizer_pulse_sigma_samples
    for t, tid in enumerate(truth["train_ids"][:6]):
        sel = (truth["frame_train_id"] == tid) & truth["frame_xray"]
        pos = 1000 + (truth["frame_pulse_id"][sel].astype(int) - 200) * 440
        depth = 100.0 - traces[t, pos]
        np.testing.assert_allclose(depth, truth["frame_xgm"][sel] * sim_config.digitizer_adu_per_uj, rtol=0.03, atol=10)
        planted = truth["frame_digitizer_integral"][sel]
        np.testing.assert_allclose(planted, truth["frame_xgm"][sel] * sigma * np.sqrt(2 * np.pi), rtol=1e-9)
        np.testing.assert_allclose(device[t, :sel.sum()], planted, rtol=0.02)
    assert np.all(truth["frame_digitizer_integral"][~truth["frame_xray"]] == 0)


# ---------------------------------------------------------------------- planted truth
def test_truth_contents(truth, sim_root):
    assert truth_path(sim_root, PROPOSAL, DATA_RUN).is_file()
    n_frames = 88
    for key in ("frame_train_id", "frame_index", "frame_pulse_id", "frame_cell_id", "frame_xray", "frame_laser",
                "frame_label", "frame_xgm", "frame_delay", "frame_pump_factor", "frame_speckle_photons",
                "frame_digitizer_integral"):
        assert truth[key].shape == (n_frames,), key
    assert truth["frame_photons"].shape == (n_frames, 2)
    assert truth["pedestal"].shape == (2, 4, 128, 512) and truth["pedestal"].dtype == np.float32
    for key in ("noise", "bad_dead", "bad_hot", "bad_noisy", "mean_photons"):
        assert truth[key].shape == (2, 128, 512), key
    assert truth["frame_label"][:2].tolist() == ["pumped", "unpumped"]
    assert truth["gain_adu_per_photon"] == 15.0 and truth["ring_q"] == 1e8 and truth["run_type"] == "data"
    assert truth["bad_dead"].sum() == truth["bad_hot"].sum() == 2 * 66  # 0.1 % of 65536 per module
    assert not (truth["bad_dead"] & truth["bad_hot"]).any()
    assert np.all(truth["noise"][truth["bad_dead"]] == 0)
    assert np.all(truth["mean_photons"][truth["bad_dead"]] == 0)


def test_raw_minus_pedestal_is_gain_times_photons(data_dc, truth):
    for module in (2, 3):
        raw, _ = _module_frames(data_dc, module)
        sel, mi = _truth_frames(truth, module)
        cells = truth["frame_cell_id"][sel]
        signal = (raw - truth["pedestal"][mi][cells]).sum(axis=(1, 2))
        planted = truth["gain_adu_per_photon"] * truth["frame_photons"][sel, mi]
        sigma = np.sqrt((truth["noise"][mi].astype(float) ** 2).sum() + raw[0].size / 12.0)
        assert planted.min() > 4 * sigma
        assert np.all(np.abs(signal - planted) < 5 * sigma), module
        assert np.corrcoef(signal, planted)[0, 1] > 0.8
        assert abs(np.std(signal - planted) / sigma - 1) < 0.5


def test_dark_run_matches_planted_constants(sim_root):
    dark = read_truth(sim_root, PROPOSAL, DARK_RUN)
    data = read_truth(sim_root, PROPOSAL, DATA_RUN)
    np.testing.assert_array_equal(dark["pedestal"], data["pedestal"])
    np.testing.assert_array_equal(dark["noise"], data["noise"])
    assert dark["run_type"] == "dark" and not dark["mean_photons"].any()
    dc = RunDirectory(run_path(sim_root, PROPOSAL, DARK_RUN))
    raw = dc[C.dssc_source(2), "image.data"].ndarray()[:, 0].astype(np.float32)
    cells = dc[C.dssc_source(2), "image.cellId"].ndarray()[:, 0]
    assert raw.shape[0] == 800 and np.all(dc[C.XGM_SCS_SOURCE, C.XGM_SCS_KEY].ndarray() == 1.0)
    ped, noise = dark["pedestal"][0], dark["noise"][0]
    good = ~(dark["bad_dead"][0] | dark["bad_noisy"][0])
    for c in (0, 3):
        frames = raw[cells == c]
        dev = (frames.mean(axis=0) - ped[c]) / np.sqrt(noise ** 2 + 1 / 12.0) * np.sqrt(len(frames))
        assert np.abs(dev[good]).max() < 6 and abs(dev[good].std() - 1) < 0.05
        ratio = frames.std(axis=0)[good] / np.sqrt(noise[good] ** 2 + 1 / 12.0)
        assert abs(np.median(ratio) - 1) < 0.02
        assert np.all(frames.std(axis=0)[dark["bad_dead"][0]] == 0)
    assert raw[:, dark["bad_hot"][0]].mean() > 170
    bpt = dc[C.BUNCH_PATTERN_SOURCE, C.BUNCH_PATTERN_KEY].ndarray()
    assert len(indices_at_sase(bpt[0], 3)) == 0 and len(indices_at_laser(bpt[0], PPL_BITS.LP_SCS)) == 0


def test_speckle_generator_contrast_and_size():
    beta, size = 0.3, 2.0
    inten = physics.speckle_intensity((64, 64, 128), beta, size, np.random.default_rng(5))
    assert inten.dtype == np.float32 and inten.min() >= 1 - np.sqrt(beta) - 1e-6
    assert abs(inten.mean() - 1) < 0.01
    assert abs(inten.var() / inten.mean() ** 2 - beta) < 0.02
    d = inten - inten.mean()
    ft = np.fft.rfft2(d, s=(128, 256))
    acf = np.fft.irfft2(np.abs(ft) ** 2, s=(128, 256)).mean(axis=0) / (64 * 128)
    for dy, dx in ((0, 1), (1, 0), (2, 2), (0, 3), (4, 0)):
        expected = beta * np.exp(-(dy ** 2 + dx ** 2) / (2 * size ** 2))
        assert abs(acf[dy, dx] - expected) < 0.01, (dy, dx)
    # recover the size: fit the log of the excess along one axis
    lags = np.arange(1, 5)
    slope = np.polyfit(lags ** 2, np.log(acf[0, lags] / acf[0, 0]), 1)[0]
    assert abs(np.sqrt(-1 / (2 * slope)) - size) < 0.1
    white = physics.speckle_intensity((32, 64, 64), 1.0, 0.0, np.random.default_rng(1))
    assert abs(white.var() - 1) < 0.05 and abs(np.corrcoef(white[:, :, :-1].ravel(), white[:, :, 1:].ravel())[0, 1]) < 0.02


def test_speckle_contrast_in_written_data(data_dc, truth, sim_config):
    module = sim_config.speckle_module
    raw, _ = _module_frames(data_dc, module)
    sel, mi = _truth_frames(truth, module)
    y0, y1, x0, x1 = sim_config.speckle_roi
    ped = truth["pedestal"][mi][truth["frame_cell_id"][sel]][:, y0:y1, x0:x1]
    photons = np.rint((raw[:, y0:y1, x0:x1] - ped) / truth["gain_adu_per_photon"])
    np.testing.assert_array_equal(photons.sum(axis=(1, 2)) > 0, truth["frame_xray"][sel])
    bad = (truth["bad_dead"] | truth["bad_hot"] | truth["bad_noisy"])[mi, y0:y1, x0:x1]
    k = photons[:, ~bad]
    assert abs(k.sum(axis=1) / truth["frame_speckle_photons"][sel] - 1).max() < 0.01
    mean = k.mean(axis=1)
    contrast = (k.var(axis=1) - mean) / mean ** 2
    assert abs(contrast.mean() - sim_config.speckle_contrast) < 0.04
    assert abs(mean.mean() / sim_config.speckle_mean_photons - 1) < 0.15


def test_ring_expectation_peaks_at_ring_q(sim_config):
    geom = load_dssc_geometry()
    x, y, _ = pixel_positions(geom, range(16))
    q = physics.q_map(x, y, sim_config.beam_center, sim_config.distance, sim_config.photon_energy)
    lam = physics.ring_expectation_map(sim_config, modules=range(16))
    assert lam.shape == (16, 128, 512)
    assert abs(q[np.unravel_index(lam.argmax(), lam.shape)] / sim_config.ring_q - 1) < 0.005
    half = q[lam > 0.5 * lam.max()]
    fwhm = half.max() - half.min()
    assert abs(fwhm / (2.3548 * sim_config.ring_sigma_q) - 1) < 0.05
    r = np.hypot(x - sim_config.beam_center[0], y - sim_config.beam_center[1])
    expected_r = sim_config.distance * np.tan(2 * np.arcsin(
        sim_config.ring_q * C.wavelength_m(sim_config.photon_energy) / (4 * np.pi)))
    assert abs(r[lam > 0.9 * lam.max()].mean() / expected_r - 1) < 0.01


def test_written_ring_and_pump_effect(data_dc, truth, sim_config):
    module = 2
    raw, _ = _module_frames(data_dc, module)
    sel, mi = _truth_frames(truth, module)
    cells = truth["frame_cell_id"][sel]
    photons = (raw - truth["pedestal"][mi][cells]) / truth["gain_adu_per_photon"]
    rel = truth["frame_xgm"][sel] / truth["xgm_mean_uj"]
    norm = photons / rel[:, None, None]
    unpumped = ~truth["frame_laser"][sel]
    geom = load_dssc_geometry()
    x, y, _ = pixel_positions(geom, [module])
    q = physics.q_map(x[0], y[0], sim_config.beam_center, sim_config.distance, sim_config.photon_energy)
    edges = np.linspace(0.8e8, 1.2e8, 21)
    idx = np.digitize(q, edges)
    good = ~(truth["bad_dead"] | truth["bad_hot"] | truth["bad_noisy"])[mi]
    profile = np.array([norm[unpumped][:, (idx == b) & good].mean() for b in range(1, len(edges))])
    centres = 0.5 * (edges[1:] + edges[:-1])
    assert abs(centres[profile.argmax()] - sim_config.ring_q) <= 2e6
    assert abs(profile.max() / sim_config.ring_peak_photons - 1) < 0.15
    ring = (idx >= 5) & (idx <= 16) & good
    level = norm[:, ring].mean(axis=1)
    delays = truth["frame_delay"][sel]
    last = delays == delays.max()
    ratio = level[last & ~unpumped].mean() / level[last & unpumped].mean()
    factor = physics.pump_factor(delays.max(), sim_config.pump_amplitude, sim_config.pump_t0, sim_config.pump_tau)
    assert abs(ratio - factor) < 0.08 and factor < 0.7
    np.testing.assert_allclose(truth["frame_pump_factor"][truth["frame_laser"]],
                               physics.pump_factor(truth["frame_delay"][truth["frame_laser"]], 0.4, 1.0, 1.5))
    assert np.all(truth["frame_pump_factor"][~truth["frame_laser"]] == 1.0)


# ---------------------------------------------------------------------- reproducibility, patterns
def test_reproducible_and_intra_darks(tmp_path):
    cfg = SimulationConfig.small(modules=(3,), n_trains=3, frames_per_train=6, dark_trains=2,
                                 pattern=("pumped", "unpumped", "dark"), sequence_trains=2)
    a = simulate_data_run(tmp_path / "a", PROPOSAL, 7, cfg, threads=1)
    b = simulate_data_run(tmp_path / "b", PROPOSAL, 7, cfg, threads=2)
    c = simulate_data_run(tmp_path / "c", PROPOSAL, 7, SimulationConfig.small(
        modules=(3,), n_trains=3, frames_per_train=6, pattern=("pumped", "unpumped", "dark"), seed=2))
    data = [RunDirectory(p)[C.dssc_source(3), "image.data"].ndarray() for p in (a, b, c)]
    np.testing.assert_array_equal(data[0], data[1])
    assert (data[0] != data[2]).mean() > 0.5
    ta, tc = read_truth(tmp_path / "a", PROPOSAL, 7), read_truth(tmp_path / "c", PROPOSAL, 7)
    np.testing.assert_array_equal(ta["pedestal"], tc["pedestal"])
    assert not np.array_equal(ta["frame_xgm"], tc["frame_xgm"])
    dark_frames = np.char.find(ta["frame_label"], "dark") >= 0
    assert dark_frames.sum() == 6 and not ta["frame_xray"][dark_frames].any()
    assert np.all(ta["frame_xgm"][dark_frames] == 0) and np.all(ta["frame_photons"][dark_frames] == 0)
    dc = RunDirectory(a)
    bpt = dc[C.BUNCH_PATTERN_SOURCE, C.BUNCH_PATTERN_KEY].ndarray()
    np.testing.assert_array_equal(indices_at_sase(bpt[0], 3), [200, 224, 272, 296])
    xgm = dc[C.XGM_SCS_SOURCE, C.XGM_SCS_KEY].ndarray()
    assert np.all(xgm[:, 4:] == 1.0) and np.all(xgm[:, :4] != 1.0)
    with pytest.raises(SmallDataError, match="already exists"):
        simulate_data_run(tmp_path / "a", PROPOSAL, 7, cfg)


def test_energy_steps_and_cleanup_on_failure(tmp_path, monkeypatch):
    cfg = SimulationConfig.small(modules=(3,), n_trains=4, frames_per_train=2, photon_energy_steps=(800.0, 900.0))
    simulate_data_run(tmp_path, PROPOSAL, 8, cfg)
    energy = RunDirectory(run_path(tmp_path, PROPOSAL, 8))[C.PHOTON_ENERGY_SOURCE, C.PHOTON_ENERGY_KEY].ndarray()
    np.testing.assert_array_equal(energy, [800.0, 800.0, 900.0, 900.0])
    np.testing.assert_array_equal(read_truth(tmp_path, PROPOSAL, 8)["train_photon_energy"], energy)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("smalldata.simulate.facility.write_other_train", broken)
    with pytest.raises(OSError, match="disk full"):
        simulate_data_run(tmp_path, PROPOSAL, 9, cfg)
    raw_dir = run_path(tmp_path, PROPOSAL, 9).parent
    assert sorted(p.name for p in raw_dir.iterdir()) == ["r0008", "r0008-truth.h5"]


def test_config_validation():
    with pytest.raises(ConfigError, match="modules"):
        SimulationConfig(modules=(16,))
    with pytest.raises(ConfigError, match="slot"):
        SimulationConfig(frames_per_train=200, slot_spacing=24)
    with pytest.raises(ConfigError, match="module_missing_trains"):
        SimulationConfig.small(module_missing_trains={5: (1,)})
    with pytest.raises(ConfigError, match="frames_per_train_change"):
        SimulationConfig.small(frames_per_train_change=(99, 3))
    cfg = SimulationConfig.small(frames_per_train_change=(2, 7))
    assert cfg.dark_frames == 7 and cfg.train_frame_counts()[:3] == [4, 4, 7]


# ---------------------------------------------------------------------- command line
def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        smd_simulate.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--root", "--dark-run", "--preset", "--modules", "--overwrite", "--sequence-trains"):
        assert option in out


def test_cli_writes_runs_and_refuses_overwrite(tmp_path, capsys):
    args = ["--root", str(tmp_path), "-p", "2937", "-r", "20", "--dark-run", "21", "--preset", "small",
            "--modules", "15", "--trains", "3", "--frames-per-train", "2", "--dark-trains", "2", "--quiet"]
    assert smd_simulate.main(args) == 0
    assert "data run 20" in capsys.readouterr().out
    dc = RunDirectory(run_path(tmp_path, 2937, 20))
    assert dc[C.dssc_source(15), "image.data"].shape == (6, 1, 128, 512)
    assert RunDirectory(run_path(tmp_path, 2937, 21))[C.dssc_source(15), "image.data"].shape == (4, 1, 128, 512)
    assert smd_simulate.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("smd_simulate: error:") and "--overwrite" in err[0]
    assert smd_simulate.main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize("bad, culprit", [(["--modules", "1,x"], "--modules"), (["--modules", "16"], "modules"),
                                          (["--missing", "3"], "--missing"), (["--trains", "0"], "n_trains"),
                                          (["--laser", "2"], "--laser"), (["--laser", "0:0"], "laser_pulses")])
def test_cli_bad_values_one_line(tmp_path, capsys, bad, culprit):
    rc = smd_simulate.main(["--root", str(tmp_path), "-p", "1", "-r", "2", "--preset", "small", *bad])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and culprit in err[0] and "Traceback" not in err[0]
    assert not any(tmp_path.iterdir())
