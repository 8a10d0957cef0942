"""BOZ on planted truth: simulator preset, smd_boz (ROIs, flat field, non-linearity), the boz function, XAS.

One empty-membrane run (614), its dark (615) and a sample run (616) of module 15,
simulated once for the module (40 trains x 40 frames; ~25 s of the module's ~80 s).
"""
import json
import subprocess

import h5py
import numpy as np
import pytest
import yaml
from helpers import mpiexec, read_all, tool

from smalldata.boz.corrections import BozCorrections
from smalldata.boz.determine import BozSettings, determine_corrections
from smalldata.boz.nonlinearity import intensity_deciles
from smalldata.boz.rois import check_rois, find_rois
from smalldata.boz.xas import METHODS, fit_edge, spectra_by_label, spectrum
from smalldata.calib.badpixels import DarkThresholds
from smalldata.calib.dark import characterise_dark, dark_file_path, write_dark_file
from smalldata.calib.detobject import DetObject
from smalldata.errors import CalibrationError, ConfigError, DataError
from smalldata.io.runaccess import RunAccess
from smalldata.simulate import read_truth, run_path
from smalldata.simulate.boz import BozSimConfig, simulate_boz_runs
from smalldata.simulate.physics import pump_factor

PROPOSAL, EMPTY, DARK, SAMPLE = 2937, 614, 615, 616
GAIN = 3.0


@pytest.fixture(scope="module")
def boz_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("boz")
    simulate_boz_runs(root, PROPOSAL, EMPTY, DARK, BozSimConfig(n_trains=40, frames_per_train=40, dark_trains=20))
    simulate_boz_runs(root, PROPOSAL, SAMPLE, None, BozSimConfig(variant="sample", n_trains=36, frames_per_train=40))
    dark = characterise_dark(run_path(root, PROPOSAL, DARK), proposal=PROPOSAL, run_number=DARK,
                             thresholds=DarkThresholds(min_frames=10))
    write_dark_file(dark, dark_file_path(root / "calib", PROPOSAL, DARK, "dssc"))
    return root


@pytest.fixture(scope="module")
def truth(boz_root):
    return read_truth(boz_root, PROPOSAL, EMPTY)


@pytest.fixture(scope="module")
def detector(boz_root):
    return DetObject.from_dark_file("dssc", dark_file_path(boz_root / "calib", PROPOSAL, DARK, "dssc"))


@pytest.fixture(scope="module")
def determination(boz_root, detector):
    access = RunAccess.from_directory(run_path(boz_root, PROPOSAL, EMPTY))
    return determine_corrections(access, detector, BozSettings(photons_per_adu=GAIN), PROPOSAL, EMPTY, DARK)


def boz_config(root, path, corrections="boz.json", **func):
    cfg = {"proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(root / "calib"),
           "output_dir": str(path.parent), "batch_size": 64,
           "point_data": {"scan": {
               "delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value", "units": "mm"},
               "photon_energy": {"source": "SA3_XTD10_MONO/MDL/PHOTON_ENERGY", "key": "actualEnergy.value",
                                 "units": "eV"}}},
           "pattern": {"labels": ["pumped", "unpumped"]},
           "detectors": {"dssc": {"dark_run": DARK, "modules": [15], "dark": {"min_frames": 10}, "functions": [
               {"type": "boz", "name": "boz", "module": 15, "corrections": corrections, **func}]}}}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def corrections_files(boz_root, tmp_path_factory):
    """smd_boz under mpiexec with 1 and 2 ranks."""
    folder = tmp_path_factory.mktemp("boz_cli")
    cfg = boz_config(boz_root, folder / "boz.yaml")
    out = {}
    for n in (1, 2):
        path = folder / f"corr{n}.json"
        res = subprocess.run(mpiexec(n) + [tool("smd_boz"), "-d", str(DARK), "-r", str(EMPTY), "-g", str(GAIN),
                                           "-c", str(cfg), "--output", str(path)] + (["--no-plots"] if n == 2 else []),
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        out[n] = path
    return out


@pytest.fixture(scope="module")
def outputs(boz_root, corrections_files, tmp_path_factory):
    """smd_producer with the boz function on the empty (1 rank) and sample run (1 and 2 ranks)."""
    folder = tmp_path_factory.mktemp("boz_out")
    (boz_root / "calib" / "boz.json").write_bytes(corrections_files[1].read_bytes())
    cfg = boz_config(boz_root, folder / "boz.yaml")
    runs = {}
    for key, run, n in (("empty", EMPTY, 1), ("sample", SAMPLE, 1), ("sample2", SAMPLE, 2)):
        path = folder / f"{key}.h5"
        res = subprocess.run(mpiexec(n) + [tool("smd_producer"), "-r", str(run), "-c", str(cfg), "--output",
                                           str(path)], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        runs[key] = path
    return runs


# ---------------------------------------------------------------------- ROIs and flat field
def test_rois_found_match_planted_beams(determination, truth):
    rois = determination.corrections.rois
    for k, order in enumerate("n0p"):
        assert np.abs(np.array(rois[order]) - truth["boz_rois"][k]).max() <= 2, (order, rois[order])


def test_rois_not_moved_by_stray_pixels():
    from smalldata.simulate.boz import beam_profile

    # the planted beams with a stray lit pixel next to an edge of each: the boxes stay the planted ones
    cfg = BozSimConfig()
    planted = cfg.beam_boxes()
    image = np.random.default_rng(3).normal(0.0, 0.3, (128, 512))
    for k, (y0, y1, x0, x1) in enumerate(planted):
        image[y0:y1, x0:x1] += beam_profile(cfg) / cfg.photons_per_adu
        image[y0 - 1 if k != 1 else y1, x0 + 10 * (k + 1)] = 5.0
    rois = find_rois(image, 1.0)
    for k, order in enumerate("n0p"):
        assert rois[order] == planted[k].tolist(), (order, rois[order])


def test_flat_field_planes_recovered_within_fit_error(determination, truth):
    from smalldata.boz.determine import _module_image, roi_mean_images
    from smalldata.boz.flatfield import fit_flat_field

    # the plane fit itself, on the mean image linearised with the planted table: its errors are the
    # pixel scatter's (the table is exact), every parameter within 2 of them
    det = determination
    rois = det.corrections.rois
    mean = _module_image(roi_mean_images(det.roi_data, det.common_mask, truth["boz_nl_lut"]), rois, det.common_mask)
    ff = fit_flat_field(mean, rois)
    # smd_boz's planes on its own table, with its errors (pixel scatter and the table's jackknife)
    ours = det.corrections.flat_field
    parts = det.corrections.summary["flat_field_error_parts"]
    for order in "np":
        planted = truth[f"boz_ff_{order}"]
        fitted, err = getattr(ff, order), getattr(ff, f"{order}_err")
        assert np.all(err > 0)
        assert np.all(np.abs(fitted - planted) < 2 * err), (order, fitted, planted, err)
        fitted, err = getattr(ours, order), getattr(ours, f"{order}_err")
        assert np.all(np.abs(fitted - planted) < 2 * err), (order, fitted, planted, err)
        assert np.allclose(err, np.hypot(parts["pixels"][order], parts["table"][order]))
        # informative: c0 to 0.02 %, the slopes to 1 % of the planted ones
        assert err[0] < 2e-4 * planted[0] and np.all(err[1:] < 0.01 * np.abs(planted[1:])), (order, err)


def test_symmetric_flat_field(determination, truth):
    from smalldata.boz.determine import _module_image, roi_mean_images
    from smalldata.boz.flatfield import fit_flat_field

    det = determination
    rois = det.corrections.rois
    mean = _module_image(roi_mean_images(det.roi_data, det.common_mask, truth["boz_nl_lut"]), rois, det.common_mask)
    ff = fit_flat_field(mean, rois, symmetric=True)
    assert np.allclose(ff.p, ff.n * [1, -1, 1])
    assert np.all(np.abs(ff.n - truth["boz_ff_n"]) < 2 * ff.n_err), (ff.n, ff.n_err)


# ---------------------------------------------------------------------- non-linearity
def test_nonlinearity_table_recovered(determination, truth):
    data = determination.roi_data
    # populated: the central 99 % of the ROI pixel values of the unsaturated frames
    cdf = np.cumsum(data.pixel_hist.sum(axis=(0, 1))) / data.pixel_hist.sum()
    lo, hi = np.searchsorted(cdf, 0.005), np.searchsorted(cdf, 0.995)
    dev = determination.corrections.nonlinearity.lut - truth["boz_nl_lut"]
    planted = truth["boz_nl_lut"] - np.arange(512)
    assert np.abs(planted[lo:hi + 1]).max() > 15  # the planted deviation is large there
    assert np.abs(dev[lo:hi + 1]).max() < 1.0, (lo, hi, np.abs(dev[lo:hi + 1]).max())


def test_corrected_ratios_flat_at_every_decile(outputs, determination):
    with h5py.File(outputs["empty"], "r") as f:
        s0, sat = f["dssc/boz_sum_0"][()], f["dssc/boz_saturated"][()]
        for order in "np":
            ratio = f[f"dssc/boz_ratio_{order}"][()]
            after = intensity_deciles(s0[~sat], ratio[~sat])["ratio"]
            assert np.abs(after - 1).max() < 0.005, (order, after)
    # before: the planted non-linearity bends the ratios by more than that
    for order in "np":
        before = determination.deciles[order]["before"]["ratio"]
        assert np.abs(before - 1).max() > 0.01, (order, before)


def test_without_table_the_planted_deviation_remains(boz_root, corrections_files, tmp_path):
    from smalldata.pipeline.eventloop import run_producer
    from smalldata.config.producer import ProducerConfig

    (boz_root / "calib" / "boz_lin.json").write_bytes(corrections_files[1].read_bytes())
    cfg = ProducerConfig.from_file(boz_config(boz_root, tmp_path / "lin.yaml", "boz_lin.json",
                                              use_nonlinearity=False))
    out = run_producer(cfg, EMPTY, output=tmp_path / "lin.h5", max_trains=20).output
    with h5py.File(out, "r") as f:
        s0, sat, ratio = f["dssc/boz_sum_0"][()], f["dssc/boz_saturated"][()], f["dssc/boz_ratio_n"][()]
    dec = intensity_deciles(s0[~sat], ratio[~sat])["ratio"]
    assert np.abs(dec - 1).max() > 0.005, dec


def test_boz_uses_the_cells_its_module_recorded(boz_root, detector, corrections_files):
    from dataclasses import replace

    from smalldata.funcs.boz import BOZ

    # a batch whose frame cells are another module's (the next dark cell) while module 15 recorded its
    # own: the detector subtracts module 15's pedestals, and the boz sums equal those of the plain batch
    access = RunAccess.from_directory(run_path(boz_root, PROPOSAL, EMPTY))
    raw = access.read_raw((15,), access.train_ids[:4])
    raw = replace(raw, data=raw.data.copy())
    cells = detector.cell_ids[(detector.cell_index(raw.cell_ids) + 1) % len(detector.cell_ids)]
    other = replace(raw, cell_ids=cells.astype(np.uint16), module_cell_ids=raw.cell_ids[:, None].copy())
    func = BOZ(module=15, corrections=str(corrections_files[1]))
    func.setFromDet(detector)
    plain, shifted = detector.calibrate(raw), detector.calibrate(other)
    np.testing.assert_array_equal(shifted.module_cells(15), raw.cell_ids)
    pick = np.arange(len(raw)) % 3 == 0
    np.testing.assert_array_equal(shifted.subset(pick).module_cells(15), raw.cell_ids[pick])
    expected, got = func.process(plain), func.process(shifted)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    # the frame cells' pedestals instead would move the sums
    wrong = func.process(replace(shifted, module_cell_ids=None))
    assert np.abs(wrong["sum_0"] - expected["sum_0"]).max() > 10, (wrong["sum_0"], expected["sum_0"])


# ---------------------------------------------------------------------- XAS on the sample run
def _sample(outputs, key="sample"):
    with h5py.File(outputs[key], "r") as f:
        labels = list(f["UserDataCfg/frames/pattern"].attrs["labels"])
        return ({k: f[f"dssc/boz_{k}"][()] for k in ("sum_n", "sum_0", "saturated")},
                f["scan/photon_energy"][()], f["scan/delay"][()], f["pattern/label_id"][()],
                [v.decode() if isinstance(v, bytes) else str(v) for v in labels])


def test_absorption_edge_recovered(outputs, boz_root, corrections_files):
    t = read_truth(boz_root, PROPOSAL, SAMPLE)
    d, energy, _, label_id, labels = _sample(outputs)
    res = spectra_by_label(d["sum_n"], d["sum_0"], energy, label_id, labels, selection=~d["saturated"],
                           quantity="absorbance")
    un = res["unpumped"]
    assert np.allclose(un["x"], sorted(set(t["train_photon_energy"])))
    fit = fit_edge(un["x"], un["direct"]["mean"], un["direct"]["stderr"])
    # within 2 standard errors of the edge fit
    assert abs(fit["energy"] - t["boz_edge_energy"]) < 2 * fit["energy_err"], fit
    assert abs(fit["step"] - t["boz_edge_step"]) < 2 * fit["step_err"], fit
    assert abs(fit["width"] - t["boz_edge_width"]) < 2 * fit["width_err"], fit
    # the pre-edge absorbance also carries the flat field's c0 (-ln of the n ROI's planes): its error adds
    c0 = BozCorrections.load(corrections_files[1]).flat_field
    pre_err = np.hypot(fit["pre_err"], c0.n_err[0] / c0.n[0])
    assert abs(fit["pre"] - t["boz_edge_pre"]) < 2 * pre_err, (fit, pre_err)


def test_pump_probe_difference_recovered(outputs, boz_root):
    t = read_truth(boz_root, PROPOSAL, SAMPLE)
    d, _, delay, label_id, labels = _sample(outputs)
    res = spectra_by_label(d["sum_n"], d["sum_0"], delay, label_id, labels, selection=~d["saturated"],
                           quantity="absorbance")
    diff = res["difference"]
    planted = -np.log(pump_factor(diff["x"], t["boz_pump_amplitude"], t["boz_pump_t0"], t["boz_pump_tau"]))
    assert np.ptp(planted) > 0.1
    for method in METHODS:
        dev = np.abs(diff[method]["mean"] - planted)
        assert np.all(dev < 2 * diff[method]["stderr"]), (method, dev / diff[method]["stderr"])


def test_estimators_on_known_numbers():
    sig, ref = np.array([1.0, 2.0, 3.0, 8.0]), np.array([2.0, 4.0, 6.0, 8.0])
    res = spectrum(sig, ref, np.zeros(4), "unique")
    assert res["direct"]["mean"][0] == pytest.approx(14 / 20)
    assert res["weighted"]["mean"][0] == pytest.approx((2 + 8 + 18 + 64) / (4 + 16 + 36 + 64))
    assert res["mean"]["mean"][0] == pytest.approx(np.mean([0.5, 0.5, 0.5, 1.0]))
    assert res["mean"]["std"][0] == pytest.approx(np.std([0.5, 0.5, 0.5, 1.0], ddof=1))
    assert res["counts"][0] == 4


# ---------------------------------------------------------------------- MPI
def test_smd_boz_two_ranks_equal_one(corrections_files):
    def strict(text):  # strict JSON: no Infinity or NaN
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))

    a, b = (strict(p.read_text()) for p in (corrections_files[1], corrections_files[2]))
    for d in (a, b):
        d.pop("created")
        d["summary"].pop("timings_s")
        d["summary"].pop("wall_time_s")
        for key in ("command", "n_ranks"):
            d["settings"].pop(key)
    assert a == b


def test_boz_outputs_two_ranks_equal_one(outputs):
    a, b = read_all(outputs["sample"]), read_all(outputs["sample2"])
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith("dssc/boz_"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_corrections_recorded_in_userdatacfg(outputs, corrections_files):
    with h5py.File(outputs["sample"], "r") as f:
        g = f["UserDataCfg/dssc/boz"]
        stored = json.loads(g.attrs["corrections_json"])
        assert stored["rois"] == json.loads(corrections_files[1].read_text())["rois"]
        assert g["nl_lut"].shape == (512,)


def test_figures_written(corrections_files):
    for name in ("rois", "flatfield", "nonlinearity", "ratios"):
        path = corrections_files[1].parent / f"{corrections_files[1].stem}_{name}.png"
        assert path.stat().st_size > 1000


# ---------------------------------------------------------------------- errors
def test_no_beams_above_threshold(determination):
    with pytest.raises(DataError, match="found 0 beam"):
        find_rois(determination.mean_image, 1e6)


def test_rois_overlapping_or_outside():
    with pytest.raises(ConfigError, match="overlap"):
        check_rois({"n": [0, 10, 0, 10], "0": [0, 10, 5, 15], "p": [0, 10, 40, 50]})
    with pytest.raises(ConfigError, match="outside"):
        check_rois({"n": [0, 10, 0, 10], "0": [0, 10, 20, 30], "p": [0, 10, 510, 520]})
    from smalldata.funcs.boz import BOZ

    with pytest.raises(ConfigError, match="rois"):
        BOZ(corrections="x.json", rois={"n": [0, 10, 0, 10], "0": [0, 10, 5, 15], "p": [0, 10, 40, 50]})


def test_corrections_of_another_module_or_detector(corrections_files):
    from smalldata.funcs.boz import BOZ

    corr = BozCorrections.load(corrections_files[1])
    with pytest.raises(CalibrationError, match="module 15"):
        BOZ(module=3, corrections="x.json").load(corr, "dssc")
    with pytest.raises(CalibrationError, match="detector 'dssc'"):
        BOZ(module=15, corrections="x.json").load(corr, "other")


def test_cli_errors_one_line(boz_root, tmp_path):
    cfg = boz_config(boz_root, tmp_path / "boz.yaml")
    base = [tool("smd_boz"), "-d", str(DARK), "-r", str(EMPTY), "-g", "3", "-c", str(cfg), "--no-plots", "--quiet",
            "--max-trains", "4", "--output", str(tmp_path / "c.json")]
    for extra, message in ((["-t", "1e6"], "beam(s) above the ROI threshold"),
                           (["-s", "60"], "unsaturated"),
                           (["-m", "3"], "[3]")):
        res = subprocess.run(base + extra, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], res.stderr


def test_session_xas(outputs, boz_root):
    import matplotlib

    matplotlib.use("Agg")
    from smalldata.ana.session import SmallDataAna

    ana = SmallDataAna(outputs["sample"])
    res = ana.xas(scan="scan/delay")
    assert set(res) >= {"pumped", "unpumped", "difference"}
    assert res["pumped"]["counts"].sum() + res["unpumped"]["counts"].sum() == (~ana["dssc/boz_saturated"]).sum()
    ax = ana.plotXAS(res)
    assert len(ax.lines) >= 1


def test_smd_simulate_boz_presets(tmp_path):
    from smalldata.cli.smd_simulate import main

    assert main(["--root", str(tmp_path), "-p", str(PROPOSAL), "-r", "1", "--dark-run", "2", "--preset", "boz-sample",
                 "--modules", "3", "--trains", "3", "--frames-per-train", "4", "--dark-trains", "2", "--quiet"]) == 0
    t = read_truth(tmp_path, PROPOSAL, 1)
    assert t["boz_variant"] == "sample" and t["boz_module"] == 3 and list(t["modules"]) == [3]
    assert len(t["boz_transmission_n"]) == 12 and np.all(t["boz_transmission_n"] < 1)
    assert read_truth(tmp_path, PROPOSAL, 2)["run_type"] == "dark"
    assert main(["--root", str(tmp_path), "-p", str(PROPOSAL), "-r", "5", "--preset", "boz-empty", "--modules", "3,4",
                 "--quiet"]) == 2
