"""Pulses, patterns, rejection, vetoes, cubes and run sums inside the producer, against planted truth."""
import subprocess

import h5py
import numpy as np
import pytest
import yaml
from helpers import DARK_RUN, DATA_RUN, PROPOSAL, mpiexec, read_all, tool

from smalldata.config.producer import ProducerConfig
from smalldata.pipeline.eventloop import run_producer
from smalldata.pulses.rejection import Reason
from smalldata.simulate import read_truth, simulate_data_run
from smalldata.sums.cube import CubeAccumulator

DARKS_RUN = 616
PATTERN4 = ["pumped", "pumped_dark", "unpumped", "unpumped_dark"]


def make_config(tmp_path, sim_root, calib_dir, name="p.yaml", **sections):
    cfg = {
        "proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": str(calib_dir),
        "output_dir": str(tmp_path / "out"), "batch_size": 8,
        "detectors": {"dssc": {"dark_run": DARK_RUN, "mask_asic_edges": False, "functions": [
            {"type": "roi", "name": "roi", "module": 2, "roi": [0, 128, 0, 512]},
            {"type": "roi", "name": "small", "module": 2, "roi": [0, 8, 0, 16], "write_image": True},
        ]}},
        "point_data": {
            "xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD",
                                      "per": "pulse", "units": "uJ"}},
            "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value",
                               "units": "mm"}},
        },
    }
    det = sections.pop("detector", {})
    cfg["detectors"]["dssc"].update(det)
    cfg.update(sections)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return ProducerConfig.from_file(path)


def truth_rows(truth, f):
    key = {(int(t), int(p)): i for i, (t, p) in enumerate(zip(truth["frame_train_id"], truth["frame_pulse_id"]))}
    return np.array([key[(int(t), int(p))] for t, p in zip(f["trainId"][:], f["pulseId"][:])])


@pytest.fixture(scope="module")
def darks_run(sim_root, sim_config):
    """A data run whose pattern has intra-darks, with digitizer traces (same detector as the dark)."""
    from dataclasses import replace

    cfg = replace(sim_config, pattern=tuple(PATTERN4), seed=7)
    simulate_data_run(sim_root, PROPOSAL, DARKS_RUN, cfg)
    return read_truth(sim_root, PROPOSAL, DARKS_RUN)


@pytest.fixture(scope="module")
def cube_output(tmp_path_factory, sim_root, calib_dir):
    tmp = tmp_path_factory.mktemp("cube")
    config = make_config(tmp, sim_root, calib_dir, pulses={"laser_pulse_offset": 0},
                         pattern={"labels": ["pumped", "unpumped"]},
                         detector={"cube": {"scan": "scan/delay", "unique": True, "xgm": "xgm/sa3_intensity"},
                                   "sums": {"threshold": 7.5}})
    return config, run_producer(config, DATA_RUN).output


def test_pump_effect_recovered_from_cube(cube_output, sim_root, sim_config):
    _, output = cube_output
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    with h5py.File(output, "r") as f:
        cube = CubeAccumulator.read(f["Sums/dssc_cube"])
        labels = list(f["Sums/dssc_cube/labels"].asstr()[:])
        modules = list(f["Sums/dssc_cube"].attrs["modules"])
    m = modules.index(2)  # module 2: ring only, no speckle
    norm = cube.xgm_normalised_mean()[:, :, m]  # (bins, labels, 128, 512)
    signal = np.nansum(norm, axis=(2, 3))
    ratio = signal[:, labels.index("pumped")] / signal[:, labels.index("unpumped")]
    delays = cube.binning.centres
    a, t0, tau = truth["pump_amplitude"], truth["pump_t0"], truth["pump_tau"]
    expected = np.where(delays > t0, 1 - a * (1 - np.exp(-(delays - t0) / tau)), 1.0)
    # per bin and label: photon shot noise plus electronic noise of 65536 pixels, relative to the signal
    photons = truth["mean_photons"][list(truth["modules"]).index(2)].sum()
    frames = cube.count[:, 0]
    noise_photons = np.sqrt(65536) * 2.2 / sim_config.gain_adu_per_photon
    rel = np.sqrt(photons + noise_photons ** 2) / photons / np.sqrt(frames)
    sigma = ratio * np.sqrt(2) * rel
    assert np.all(np.abs(ratio - expected) < 4 * sigma + 0.01), (ratio, expected, sigma)
    assert expected.min() < 0.7  # the effect is far larger than the tolerance


def test_cube_frame_counts_exact(cube_output, sim_root):
    _, output = cube_output
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    with h5py.File(output, "r") as f:
        cube = CubeAccumulator.read(f["Sums/dssc_cube"])
    labels = list(cube.labels)
    for b, d in enumerate(cube.binning.centres):
        for j, label in enumerate(labels):
            n = np.sum((truth["frame_delay"] == d) & (truth["frame_label"] == label))
            assert cube.count[b, j] == n, (d, label)
    assert cube.count.sum() == len(truth["frame_delay"])


def test_run_sums_match_numpy(cube_output, sim_root, calib_dir):
    config, output = cube_output
    from smalldata.io.runaccess import RunAccess
    from smalldata.pipeline.detectors import setup_detectors

    access = RunAccess.open(PROPOSAL, DATA_RUN, str(sim_root))
    setup = setup_detectors(config, PROPOSAL, access)[0]
    frames = setup.calibrate(access.read_raw(setup.modules, access.train_ids), None)
    data = np.where(frames.valid, frames.data, 0).astype(np.float64)
    counts = frames.valid.sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = data.sum(axis=0) / counts
    with h5py.File(output, "r") as f:
        np.testing.assert_allclose(f["Sums/dssc_mean"][:], mean, atol=2 ** -12, equal_nan=True)
        np.testing.assert_array_equal(f["Sums/dssc_pixel_count"][:], counts)
        above = ((frames.data > 7.5) & frames.valid).sum(axis=0)
        np.testing.assert_array_equal(f["Sums/dssc_count_above"][:], above)
        mx = np.where(frames.valid, frames.data, -np.inf).max(axis=0)
        np.testing.assert_array_equal(f["Sums/dssc_max"][:][counts > 0], mx[counts > 0])


@pytest.mark.mpi
def test_cube_two_ranks_equal_one(tmp_path, cube_output):
    config, output = cube_output
    out2 = tmp_path / "n2.h5"
    result = subprocess.run(mpiexec(2) + [tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(config.path),
                                          "--output", str(out2), "--batch-size", "5"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    a, b = read_all(output), read_all(out2)
    assert any(k.startswith("Sums/dssc_cube") for k in a)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def darks_output(tmp_path_factory, sim_root, calib_dir, darks_run):
    tmp = tmp_path_factory.mktemp("darks")
    common = dict(pulses={"first_slot": 200, "slot_spacing": 24, "laser_bunch_table_offset": 0},
                  digitizer={"first_slot": 200, "first_sample": 1000, "samples_per_slot": 440.0,
                             "baseline_window": [-40, -20], "peak_window": [-20, 20]})
    plain = make_config(tmp, sim_root, calib_dir, "plain.yaml", pattern={"labels": PATTERN4}, **common)
    sub = make_config(tmp, sim_root, calib_dir, "sub.yaml",
                      pattern={"labels": PATTERN4, "subtract_dark": "matching"}, **common)
    return (run_producer(plain, DARKS_RUN, output=tmp / "plain.h5").output,
            run_producer(sub, DARKS_RUN, output=tmp / "sub.h5").output)


def test_pulse_flags_and_xgm_with_intra_darks(darks_output, darks_run):
    plain, _ = darks_output
    truth = darks_run
    with h5py.File(plain, "r") as f:
        rows = truth_rows(truth, f)
        np.testing.assert_array_equal(f["pulses/xray_on"][:], truth["frame_xray"][rows].astype(bool))
        np.testing.assert_array_equal(f["pulses/laser_on"][:], truth["frame_laser"][rows].astype(bool))
        xgm = f["xgm/sa3_intensity"][:]
        dark = f["pattern/is_dark"][:]
        labels = np.array(f["UserDataCfg/frames/pattern"].attrs["labels"])
        label_of = labels[f["pattern/label_id"][:]]
    xray = truth["frame_xray"][rows].astype(bool)
    assert not xray.all() and xray.any()
    np.testing.assert_array_equal(dark, ~xray)
    np.testing.assert_allclose(xgm[xray], truth["frame_xgm"][rows][xray], rtol=1e-6)
    assert np.all(np.isnan(xgm[~xray]))
    np.testing.assert_array_equal(label_of, truth["frame_label"][rows])


def test_digitizer_integrals(darks_output, darks_run):
    plain, _ = darks_output
    truth = darks_run
    with h5py.File(plain, "r") as f:
        rows = truth_rows(truth, f)
        dig = f["digitizer/mcp"][:]
    xray = truth["frame_xray"][rows].astype(bool)
    planted = truth["frame_digitizer_integral"][rows]
    # baseline noise of 3 ADU over a 40-sample window, baseline from 20 samples
    sigma = 3.0 * np.sqrt(40 + 40 ** 2 / 20)
    assert np.all(np.abs(dig[xray] - planted[xray]) < 5 * sigma)
    assert np.all(np.isnan(dig[~xray]))
    assert np.corrcoef(dig[xray], planted[xray])[0, 1] > 0.99


def test_matching_intra_dark_subtraction(darks_output):
    plain, sub = darks_output
    with h5py.File(plain, "r") as f, h5py.File(sub, "r") as g:
        img, img_sub = f["dssc/small_image"][:], g["dssc/small_image"][:]
        dark = f["pattern/is_dark"][:]
        tids = f["trainId"][:]
        fidx = f["pulses/slot"][:]
    n_checked = 0
    for i in np.flatnonzero(~dark):
        j = i + 1  # 'next' matching: the dark label right after (pumped -> pumped_dark)
        if j >= len(tids) or tids[j] != tids[i] or not dark[j]:
            continue
        both = np.isfinite(img[i]) & np.isfinite(img[j])
        np.testing.assert_array_equal(img_sub[i][both], (img[i] - img[j])[both])
        n_checked += 1
    assert n_checked > 10
    np.testing.assert_array_equal(np.nan_to_num(img_sub[dark], nan=-9), np.nan_to_num(img[dark], nan=-9))
    assert fidx.min() >= 200


def test_rejection_options(tmp_path, sim_root, calib_dir, darks_run):
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    n_trains = len(truth["train_ids"])
    mask = np.ones((n_trains, 4), dtype=bool)
    mask[3, 1] = False
    mask[10] = False
    np.save(tmp_path / "frames.npy", mask)
    xgm_min = float(np.percentile(truth["frame_xgm"], 20))
    config = make_config(tmp_path, sim_root, calib_dir,
                         rejection={"max_frames": 3, "xgm": "xgm/sa3_intensity", "xgm_min": xgm_min,
                                    "user_mask": str(tmp_path / "frames.npy")})
    with h5py.File(run_producer(config, DATA_RUN).output, "r") as f:
        rows = truth_rows(truth, f)
        reasons = f["rejection/reasons"][:]
        roi = f["dssc/roi_sum"][:]
        npix = f["dssc/roi_npix"][:]
    fi = truth["frame_index"][rows]
    ti = np.searchsorted(truth["train_ids"], truth["frame_train_id"][rows])
    np.testing.assert_array_equal(reasons & Reason.MAX_FRAMES != 0, fi >= 3)
    np.testing.assert_array_equal(reasons & Reason.XGM_LOW != 0, truth["frame_xgm"][rows] < xgm_min)
    np.testing.assert_array_equal(reasons & Reason.USER_MASK != 0, ~mask[ti, fi])
    rejected = reasons != 0
    assert rejected.any() and (~rejected).any()
    assert np.all(np.isnan(roi[rejected])) and np.all(np.isfinite(roi[~rejected]))
    assert np.all(npix[rejected] == -1)


def test_veto_skips_later_functions_and_cube(tmp_path, sim_root, calib_dir):
    functions = [{"type": "roi", "name": "gate", "module": 2, "roi": [0, 128, 0, 512]},
                 {"type": "roi", "name": "later", "module": 3, "roi": [0, 64, 0, 64]}]
    probe = make_config(tmp_path, sim_root, calib_dir, "probe.yaml", detector={"functions": functions})
    with h5py.File(run_producer(probe, DATA_RUN, output=tmp_path / "probe.h5").output, "r") as f:
        gate = f["dssc/gate_sum"][:]
        later_all = f["dssc/later_sum"][:]
    cut = float(np.median(gate))
    config = make_config(tmp_path, sim_root, calib_dir, detector={
        "functions": functions, "vetoes": [{"after": "gate", "key": "gate_sum", "op": "<", "value": cut}],
        "cube": {}})
    with h5py.File(run_producer(config, DATA_RUN).output, "r") as f:
        later = f["dssc/later_sum"][:]
        reasons = f["rejection/reasons"][:]
        np.testing.assert_array_equal(f["dssc/gate_sum"][:], gate)
        cube_frames = f["Sums/dssc_cube/count"][:].sum()
    vetoed = gate < cut
    assert 0 < vetoed.sum() < len(gate)
    np.testing.assert_array_equal(reasons & Reason.VETO != 0, vetoed)
    assert np.all(np.isnan(later[vetoed]))
    np.testing.assert_array_equal(later[~vetoed], later_all[~vetoed])
    assert cube_frames == (~vetoed).sum()


def test_ragged_droplet_lists_with_rejection(tmp_path, sim_root, calib_dir):
    droplet = {"type": "droplet", "name": "drop", "threshold": 0.5, "threshold_low": 0.3,
               "threshold_unit": "photon", "save_droplets": True}
    base = dict(detector={"functions": [droplet], "gain": 15.0})
    full = make_config(tmp_path, sim_root, calib_dir, "full.yaml", **base)
    cut = make_config(tmp_path, sim_root, calib_dir, "cut.yaml", rejection={"max_frames": 2}, **base)
    a = run_producer(full, DATA_RUN, output=tmp_path / "full.h5").output
    b = run_producer(cut, DATA_RUN, output=tmp_path / "cut.h5").output
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        ca, cb = fa["dssc/drop_list/count"][:], fb["dssc/drop_list/count"][:]
        adu_a, adu_b = fa["dssc/drop_list/adu"][:], fb["dssc/drop_list/adu"][:]
        rejected = fb["rejection/reasons"][:] != 0
        n_drop = fb["dssc/drop_n_droplets"][:]
        np.testing.assert_array_equal(fa["dssc/drop_n_droplets"][:][~rejected], n_drop[~rejected])
    assert ca.sum() == len(adu_a) and cb.sum() == len(adu_b) and ca.sum() > 100
    assert rejected.any() and np.all(cb[rejected] == 0) and np.all(n_drop[rejected] == -1)
    np.testing.assert_array_equal(cb[~rejected], ca[~rejected])
    starts = np.concatenate([[0], np.cumsum(ca)])
    kept_items = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in np.flatnonzero(~rejected)])
    np.testing.assert_array_equal(adu_b, adu_a[kept_items])
