"""Facility conventions checked by the facility's own code: EXtra reads our simulated runs
without hints, and the producer's pulses, pump laser and XGM equal EXtra's answers per frame.

Pump-probe runs (module 2, 12 trains of 8 X-ray frames every 24 slots, a delay scan):

| run | laser | anchor given to EXtra and to the producer |
| --- | --- | --- |
| 701 | on the 1st X-ray pulse, half the X-ray rate | bunch_table_position |
| 702 | on the 3rd X-ray pulse, the X-ray rate | bunch_table_offset |
| 703 | on the 6th X-ray pulse, half the X-ray rate | pulse_offset |
| 704 | on the 3rd X-ray pulse, half the X-ray rate, 4096-slot table, X-rays from slot 2900 | pulse_offset |
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml
from extra.components import XGM, PumpProbePulses, XrayPulses
from extra_data import RunDirectory

from smalldata.calib.badpixels import DarkThresholds
from smalldata.calib.dark import characterise_dark, dark_file_path, write_dark_file
from smalldata.config.producer import ProducerConfig
from smalldata.pipeline.eventloop import run_producer
from smalldata.pulses.laser import LaserAnchorError
from smalldata.simulate import SimulationConfig, read_truth, run_path, simulate_dark_run, simulate_data_run
from smalldata.sums.cube import CubeAccumulator

PROPOSAL, DARK = 2937, 700
RUNS = {701: (dict(laser_first=0, laser_period=2), "bunch_table_position"),
        702: (dict(laser_first=2, laser_period=1), "bunch_table_offset"),
        703: (dict(laser_first=5, laser_period=2), "pulse_offset"),
        704: (dict(laser_first=2, laser_period=2, bunch_table_length=4096, first_slot=2900), "pulse_offset")}
XGM_SPEC = {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD", "per": "pulse",
            "units": "uJ", "filler": 1.0}


def anchor_of(truth, method: str):
    """The truth's anchor for ``method``, as EXtra's keyword and its value."""
    value = truth[f"laser_{method}"]
    return method, (int(value) if method != "pulse_offset" or float(value).is_integer() else float(value))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The pump-probe runs, their dark run 700 and its constants."""
    root = tmp_path_factory.mktemp("facility")
    simulate_dark_run(root, PROPOSAL, DARK, SimulationConfig.pump_probe(dark_trains=40))
    for run, (preset, _) in RUNS.items():
        simulate_data_run(root, PROPOSAL, run, SimulationConfig.pump_probe(**preset))
    constants = characterise_dark(run_path(root, PROPOSAL, DARK), thresholds=DarkThresholds(min_frames=40),
                                  proposal=PROPOSAL, run_number=DARK, progress=False)
    write_dark_file(constants, dark_file_path(root / "calib", PROPOSAL, DARK, "dssc"))
    return root


def producer_config(root, name: str, pulses: dict, cube=None, **sections) -> ProducerConfig:
    cfg = {"proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(root / "calib"),
           "output_dir": str(root / "out"), "batch_size": 16,
           "point_data": {"xgm": {"sa3_intensity": XGM_SPEC},
                          "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY",
                                             "key": "actualPosition.value", "units": "mm"}}},
           "pulses": pulses,
           "detectors": {"dssc": {"dark_run": DARK, "gain": 15.0, "mask_asic_edges": False, "functions": [
               {"type": "roi", "name": "roi", "module": 2, "roi": [0, 8, 0, 8]}]}}}
    if cube is not None:
        cfg["detectors"]["dssc"]["cube"] = cube
    cfg.update(sections)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ProducerConfig.from_file(path)


@pytest.fixture(scope="module")
def outputs(root):
    """Producer output per run: anchor as in RUNS, labels from the pulses, a cube over the delay."""
    out = {}
    for run, (_, method) in RUNS.items():
        key, value = anchor_of(read_truth(root, PROPOSAL, run), method)
        config = producer_config(root, f"r{run}", {f"laser_{key}": value}, pattern={"from_pulses": True},
                                 cube={"scan": "scan/delay", "unique": True, "xgm": "xgm/sa3_intensity"})
        out[run] = run_producer(config, run, output=root / "out" / f"r{run}.h5").output
    return out


def extra_flags(run_dir, truth, method: str):
    """EXtra's (fel, ppl) per (train id, pulse id)."""
    key, value = anchor_of(truth, method)
    pids = PumpProbePulses(RunDirectory(str(run_dir)), **{key: value}).pulse_ids()
    index = pids.index.to_frame(index=False)
    return {(int(t), int(p)): (bool(fel), bool(ppl))
            for t, p, fel, ppl in zip(index["trainId"], pids.to_numpy(), index["fel"], index["ppl"])}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_laser_and_xray_per_frame_equal_extra(root, outputs, run):
    truth = read_truth(root, PROPOSAL, run)
    flags = extra_flags(run_path(root, PROPOSAL, run), truth, RUNS[run][1])
    with h5py.File(outputs[run], "r") as f:
        tids, pids = f["trainId"][:], f["pulseId"][:]
        xray, laser = f["pulses/xray_on"][:], f["pulses/laser_on"][:]
        slots = f["pulses/slot"][:]
    expected = np.array([flags.get((int(t), int(p)), (False, False)) for t, p in zip(tids, pids)])
    np.testing.assert_array_equal(xray, expected[:, 0])
    np.testing.assert_array_equal(laser, expected[:, 1])
    np.testing.assert_array_equal(slots, pids.astype(np.int64))
    # both agree with the planted laser, which is neither everywhere nor nowhere
    np.testing.assert_array_equal(laser, truth["frame_laser"])
    assert 0 < laser.sum() < len(laser) and xray.all()


def test_laser_placement_of_the_presets(root):
    first = {}
    for run in sorted(RUNS):
        truth = read_truth(root, PROPOSAL, run)
        lasered = truth["frame_index"][truth["frame_laser"] & (truth["frame_train_id"] == truth["train_ids"][0])]
        first[run] = lasered.tolist()
    assert first == {701: [0, 2, 4, 6], 702: [2, 3, 4, 5, 6, 7], 703: [5, 7], 704: [2, 4, 6]}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_pump_effect_recovered_from_cube(root, outputs, run):
    truth = read_truth(root, PROPOSAL, run)
    with h5py.File(outputs[run], "r") as f:
        cube = CubeAccumulator.read(f["Sums/dssc_cube"])
        m = list(f["Sums/dssc_cube"].attrs["modules"]).index(2)
    assert list(cube.labels) == ["pumped", "unpumped", "dark"]
    norm = cube.xgm_normalised_mean()[:, :, m]          # (bins, labels, 128, 512), module 2
    signal = np.nansum(norm, axis=(2, 3))
    ratio = signal[:, 0] / signal[:, 1]
    delays = cube.binning.centres
    a, t0, tau = truth["pump_amplitude"], truth["pump_t0"], truth["pump_tau"]
    expected = np.where(delays > t0, 1 - a * (1 - np.exp(-(delays - t0) / tau)), 1.0)
    # photon shot noise plus electronic noise of 65536 pixels, per bin and label, relative to the signal
    photons = truth["mean_photons"][0].sum()
    noise_photons = np.sqrt(65536) * 2.2 / truth["gain_adu_per_photon"]
    rel = np.sqrt(photons + noise_photons ** 2) / photons / np.sqrt(np.minimum(cube.count[:, 0], cube.count[:, 1]))
    assert np.all(np.abs(ratio - expected) < 4 * np.sqrt(2) * rel * ratio + 0.01), (ratio, expected)
    assert expected.max() < 0.8                          # the effect is far larger than the tolerance
    np.testing.assert_array_equal(cube.count[:, 0].sum(), truth["frame_laser"].sum())


@pytest.fixture(scope="module")
def session_output(tmp_path_factory, sim_root, calib_dir):
    """The producer on the session's run 614 (4 pulses per train, 3 from train index 16 on)."""
    from helpers import DARK_RUN, DATA_RUN

    tmp = tmp_path_factory.mktemp("xgm614")
    cfg = {"proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": str(calib_dir), "output_dir": str(tmp),
           "point_data": {"xgm": {"sa3_intensity": XGM_SPEC}}, "pulses": {"laser_pulse_offset": 0},
           "detectors": {"dssc": {"dark_run": DARK_RUN, "functions": [
               {"type": "roi", "name": "roi", "module": 2, "roi": [0, 8, 0, 8]}]}}}
    (tmp / "p.yaml").write_text(yaml.safe_dump(cfg))
    return run_path(sim_root, PROPOSAL, DATA_RUN), run_producer(ProducerConfig.from_file(tmp / "p.yaml"),
                                                                DATA_RUN).output


@pytest.mark.parametrize("run", [701, 704, 614])
def test_xgm_pulse_energy_equals_extra_per_frame(root, outputs, session_output, run):
    run_dir, output = session_output if run == 614 else (run_path(root, PROPOSAL, run), outputs[run])
    energy = XGM(RunDirectory(str(run_dir))).pulse_energy()
    with h5py.File(output, "r") as f:
        tids, pulse = f["trainId"][:], f["pulses/pulse_index"][:]
        ours = f["xgm/sa3_intensity"][:]
    table = energy.sel(trainId=tids).values                 # (frames, pulses)
    inside = (pulse >= 0) & (pulse < table.shape[1])
    theirs = np.full(len(tids), np.nan)
    theirs[inside] = table[np.flatnonzero(inside), pulse[inside]]
    np.testing.assert_array_equal(ours, theirs)
    assert np.isfinite(ours).all()


def test_extra_finds_our_sources_without_hints(root):
    truth = read_truth(root, PROPOSAL, 704)
    run = RunDirectory(str(run_path(root, PROPOSAL, 704)))
    xray = XrayPulses(run)
    assert xray.sase == 3 and xray.timeserver.source == "SCS_RR_UTC/TSYS/TIMESERVER:outputBunchPattern"
    pids = xray.pulse_ids()
    first_train = pids.loc[int(truth["train_ids"][0])].to_numpy()
    np.testing.assert_array_equal(first_train, np.arange(2900, 2900 + 8 * 24, 24))
    xgm = XGM(run)
    assert xgm.control_source.source == "SCS_BLU_XGM/XGM/DOOCS"
    np.testing.assert_array_equal(xgm.pulse_counts().values, np.full(len(truth["train_ids"]), 8))


def test_unanchored_laser_refused_with_one_line(root):
    config = producer_config(root, "unanchored", {})
    with pytest.raises(LaserAnchorError) as err:
        run_producer(config, 702, output=root / "out" / "unanchored.h5")
    message = str(err.value)
    assert "\n" not in message and "train 1000000000" in message
    for key in ("pulses.laser_bunch_table_position", "pulses.laser_bunch_table_offset", "pulses.laser_pulse_offset"):
        assert key in message


def test_shipped_geometry_file():
    """The default geometry is a documented file of the package, with extra-geom's June 2019 numbers."""
    import os
    from importlib.resources import files

    import extra_geom
    from extra_geom import DSSC_1MGeometry

    from smalldata.constants import DSSC_DEFAULT_QUAD_POSITIONS
    from smalldata.geometry.positions import default_geometry_file

    path = default_geometry_file()
    assert path == files("smalldata.geometry") / "dssc_1m_geometry_2019-06.h5"
    with h5py.File(path, "r") as f:
        assert f.attrs["units"] == "mm" and "June 2019" in f.attrs["source"]
        assert all(f[f"Q{q}/M{m}/T{t:02}/Position"].attrs["units"] == "mm"
                   for q in range(1, 5) for m in range(1, 5) for t in (1, 2))
    quads = [(x * 1e3, y * 1e3) for x, y in DSSC_DEFAULT_QUAD_POSITIONS]
    ours = DSSC_1MGeometry.from_h5_file_and_quad_positions(str(path), quads).get_pixel_positions()
    theirs = DSSC_1MGeometry.from_h5_file_and_quad_positions(
        os.path.join(os.path.dirname(extra_geom.__file__), "tests", "dssc_geo_june19.h5"), quads).get_pixel_positions()
    np.testing.assert_array_equal(ours, theirs)


def test_modules_disagreeing_on_pulse_ids_fail_with_one_line(tmp_path, sim_root, calib_dir):
    """Module 3 of a copy of the session's run records other pulse ids in one train: the producer stops."""
    import shutil
    import subprocess

    from helpers import DARK_RUN, DATA_RUN, tool

    from smalldata.constants import dssc_source

    root = tmp_path / "root"
    shutil.copytree(run_path(sim_root, PROPOSAL, DATA_RUN), run_path(root, PROPOSAL, DATA_RUN))
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    train = int(truth["train_ids"][12])
    path = run_path(root, PROPOSAL, DATA_RUN) / f"RAW-R{DATA_RUN:04d}-DSSC03-S00001.h5"
    with h5py.File(path, "r+") as f:
        group = f[f"INSTRUMENT/{dssc_source(3)}/image"]
        rows = np.flatnonzero(group["trainId"][:, 0] == train)
        group["pulseId"][rows[1], 0] += 12         # frame 1 of that train: half a slot spacing off
    cfg = {"proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(calib_dir), "output_dir": str(tmp_path),
           "detectors": {"dssc": {"dark_run": DARK_RUN, "functions": [
               {"type": "roi", "name": "roi", "module": 2, "roi": [0, 8, 0, 8]},
               {"type": "roi", "name": "roi3", "module": 3, "roi": [0, 8, 0, 8]}]}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    result = subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(tmp_path / "p.yaml")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "module 3" in lines[0] and f"train {train}" in lines[0], lines
    assert not list(tmp_path.glob("*.h5"))
