"""Per-train cameras through smd_producer: an hRIXS run with planted photons, its spectra per train
by centroiding, the built-in functions unchanged on a camera, 1 and 2 ranks identical, and the bad
inputs that end in one line (exit 2, nothing written)."""
import subprocess

import extra_data
import h5py
import numpy as np
import pytest
import yaml

from helpers import mpiexec, read_all, tool
from smalldata.calib.darkfile import dark_file_path
from smalldata.cameras import characterise_dark, get_preset
from smalldata.cameras.reading import read_frames
from smalldata.simulate import run_path
from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run

PROPOSAL, DATA, DARK, ELASTIC = 2937, 750, 751, 752
SHAPE = (120, 240)
LINES = (927.0, 928.5, 930.0)
BINS = [925.25, 931.75, 0.5]  # 0.5 eV bins centred on the lines


@pytest.fixture(scope="module")
def hrixs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hrixs_producer")
    sim = dict(camera="hrixs", shape=SHAPE, n_trains=12)
    truth = simulate_hrixs_run(root, PROPOSAL, DATA, CameraSim(**sim), "data", line_energies=LINES,
                               energy_intercept=925.0, energy_slope=0.05, photons_per_train=25)
    simulate_hrixs_run(root, PROPOSAL, DARK, CameraSim(**dict(sim, n_trains=30)), "dark")
    preset = get_preset("hrixs").with_shape(SHAPE)
    dark = characterise_dark(read_frames(extra_data.RunDirectory(run_path(root, PROPOSAL, DARK)), preset)[1], "hrixs")
    path = dark_file_path(root / "calib", PROPOSAL, DARK, "hrixs")
    path.parent.mkdir(parents=True, exist_ok=True)
    dark.save(path)
    return dict(root=root, truth=truth, dark=dark, preset=preset)


def config(hrixs, tmp_path, name="producer.yaml", **changes):
    det = {"type": "camera", "camera": "hrixs", "shape": list(SHAPE), "dark_run": DARK,
           "functions": [{"type": "roi", "name": "box", "roi": [10, 110, 20, 220]},
                         {"type": "hrixs", "method": "centroid", "curvature": [0.02, 1.5e-4], "energy_slope": 0.05,
                          "energy_intercept": 925.0, "energy_bins": BINS, "threshold_adu": 75.0,
                          "double_threshold_adu": 225.0}],
           "sums": {}}
    det.update(changes)
    cfg = {"proposal": PROPOSAL, "data_root": str(hrixs["root"]), "calib_dir": str(hrixs["root"] / "calib"),
           "output_dir": str(tmp_path / "out"), "detectors": {"hrixs": det}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def produce(cfg, out, ranks=1, extra=()):
    prefix = mpiexec(ranks) if ranks > 1 else []
    return subprocess.run(prefix + [tool("smd_producer"), "-r", str(DATA), "-c", str(cfg), "--output", str(out),
                                    *extra], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def outputs(hrixs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hrixs_out")
    cfg = config(hrixs, tmp)
    one, two = tmp / "one.h5", tmp / "two.h5"
    for out, ranks in ((one, 1), (two, 2)):
        result = produce(cfg, out, ranks)
        assert result.returncode == 0, result.stderr
    return one, two


def test_camera_rows_spectra_and_planted_photons(hrixs, outputs):
    """One row per train; photons per train and the spectrum's lines as planted."""
    truth = hrixs["truth"]
    with h5py.File(outputs[0], "r") as f:
        ids = f["hrixs/trainId"][()]
        np.testing.assert_array_equal(ids, truth["train_ids"])
        np.testing.assert_array_equal(f["trainId"][()], ids)  # a camera-only run: the top level's rows are trains
        assert f["UserDataCfg/hrixs"].attrs["type"] == "camera" and f["UserDataCfg/hrixs"].attrs["per"] == "train"
        assert f["hrixs"].attrs["rows"] == "train"
        singles, doubles = f["hrixs/hrixs_n_single"][()], f["hrixs/hrixs_n_double"][()]
        spectrum = f["hrixs/hrixs_spectrum"][()]
        energy = f["UserDataCfg/hrixs/hrixs/energy"][()]
    planted = truth["hit_photons"]
    per_train = np.bincount(truth["hit_train"].astype(int), minlength=len(ids))
    planted_doubles = np.bincount(truth["hit_train"].astype(int), weights=planted == 2, minlength=len(ids))
    # the planted hits do not overlap (min_distance): >= 99 % of single hits found, doubles as planted
    assert singles.sum() >= 0.99 * (per_train - planted_doubles).sum()
    assert abs(doubles.sum() - planted_doubles.sum()) <= 0.02 * planted_doubles.sum() + 1
    # each line's photons in the bin centred on its energy (an independent numpy histogram of the truth)
    expected = np.histogram(truth["hit_energy"], bins=BINS[0] + BINS[2] * np.arange(len(energy) + 1),
                            weights=planted)[0]
    np.testing.assert_allclose(spectrum.sum(axis=0), expected, atol=0.02 * expected.sum())
    for line in LINES:
        assert spectrum.sum(axis=0)[np.argmin(abs(energy - line))] > 0.2 * planted.sum()


def test_builtin_roi_on_a_camera_equals_numpy(hrixs, outputs):
    """The built-in ROI, unchanged, on the camera: raw minus the dark mean, good pixels, summed."""
    frames = read_frames(extra_data.RunDirectory(run_path(hrixs["root"], PROPOSAL, DATA)), hrixs["preset"])[1]
    dark = hrixs["dark"]
    calibrated = np.where(dark.mask & (frames < hrixs["preset"].saturation),
                          frames.astype(np.float32) - dark.mean, 0).astype(np.float32)
    with h5py.File(outputs[0], "r") as f:
        np.testing.assert_allclose(f["hrixs/box_sum"][()], calibrated[:, 10:110, 20:220].sum(axis=(1, 2), dtype=np.float64),
                                   rtol=1e-6)
        np.testing.assert_allclose(f["Sums/hrixs_mean"][0], calibrated.mean(axis=0), rtol=1e-5, atol=1e-3)


@pytest.mark.mpi
def test_camera_run_identical_on_one_and_two_ranks(outputs):
    a, b = read_all(outputs[0]), read_all(outputs[1])
    assert a.keys() == b.keys() and any(k.startswith("hrixs/") for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _refused(result, out, *words):
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in line, line
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_camera_source_missing(hrixs, tmp_path):
    out = tmp_path / "x.h5"
    _refused(produce(config(hrixs, tmp_path, camera="maranax"), out), out, "SCS_HRIXS_MARANAX", "detectors.hrixs")


def test_dark_of_another_shape(hrixs, tmp_path):
    out = tmp_path / "x.h5"
    path = dark_file_path(hrixs["root"] / "calib2", PROPOSAL, DARK, "hrixs")
    path.parent.mkdir(parents=True)
    small = hrixs["dark"]
    type(small)(small.mean[:60], small.noise[:60], small.status[:60], small.n_frames, "hrixs").save(path)
    cfg = config(hrixs, tmp_path)
    text = yaml.safe_load(cfg.read_text())
    text["calib_dir"] = str(hrixs["root"] / "calib2")
    cfg.write_text(yaml.safe_dump(text))
    _refused(produce(cfg, out), out, "60x240", "120x240")


def test_dark_of_another_camera_mode(hrixs, tmp_path):
    """A dark recorded with other camera settings than the data's is refused."""
    from smalldata.cameras.dark import CameraDark

    dark = hrixs["dark"]
    other = CameraDark(dark.mean, dark.noise, dark.status, dark.n_frames, "newton")
    path = dark_file_path(hrixs["root"] / "calib3", PROPOSAL, DARK, "hrixs")
    path.parent.mkdir(parents=True)
    other.save(path)
    cfg = config(hrixs, tmp_path)
    text = yaml.safe_load(cfg.read_text())
    text["calib_dir"] = str(hrixs["root"] / "calib3")
    cfg.write_text(yaml.safe_dump(text))
    out = tmp_path / "x.h5"
    _refused(produce(cfg, out), out, "newton", "hrixs")


def test_unknown_detector_type(hrixs, tmp_path):
    out = tmp_path / "x.h5"
    _refused(produce(config(hrixs, tmp_path, type="spectrometer"), out), out, "detectors.hrixs.type", "camera")


def test_non_monotonic_energy_calibration(hrixs, tmp_path):
    cfg = config(hrixs, tmp_path)
    text = yaml.safe_load(cfg.read_text())
    text["detectors"]["hrixs"]["functions"][1]["energy_slope"] = 0.0
    cfg.write_text(yaml.safe_dump(text))
    out = tmp_path / "x.h5"
    _refused(produce(cfg, out), out, "energy_slope")


def test_session_spectrum_of_the_producers_output(outputs):
    """The session's mean hRIXS spectrum of the real output equals the mean of its per-train rows,
    with the function's energy axis."""
    from smalldata.ana.spectra import hrixs_spectrum

    mean = hrixs_spectrum(outputs[0], "hrixs", "hrixs_spectrum")
    with h5py.File(outputs[0], "r") as f:
        rows, energy = f["hrixs/hrixs_spectrum"][()], f["UserDataCfg/hrixs/hrixs/energy"][()]
    np.testing.assert_allclose(np.ravel(mean.spectrum), rows.mean(axis=0))
    np.testing.assert_array_equal(mean.energy, energy)
    assert int(np.ravel(mean.n_trains)[0]) == len(rows)


def test_builtin_droplets_photons_projection_autocorrelation_on_a_camera(hrixs, tmp_path):
    """The DSSC's built-in functions, unchanged, on the camera: droplets and photons count the planted
    isolated hits, the projection equals numpy, the autocorrelation runs on an ROI of the camera; the
    pixels are on a plain grid of the camera's pitch."""
    functions = [{"type": "droplet", "name": "drop", "threshold": 25.0, "threshold_low": 10.0,
                  "threshold_unit": "data", "adu_per_photon": 150.0},
                 {"type": "photons", "name": "phot", "adu_per_photon": 150.0, "threshold": 25.0,
                  "threshold_low": 10.0, "threshold_unit": "data"},
                 {"type": "projection", "name": "proj", "axis": 0, "module": 0},
                 {"type": "roi", "name": "sq", "roi": [20, 100, 40, 200],
                  "children": [{"type": "autocorrelation", "name": "acorr", "crop_size": 3, "fit_radius": 2}]}]
    out = tmp_path / "f.h5"
    result = produce(config(hrixs, tmp_path, functions=functions), out)
    assert result.returncode == 0, result.stderr
    truth = hrixs["truth"]
    n_hits = np.bincount(truth["hit_train"].astype(int), minlength=12)
    n_photons = np.bincount(truth["hit_train"].astype(int), weights=truth["hit_photons"], minlength=12)
    frames = read_frames(extra_data.RunDirectory(run_path(hrixs["root"], PROPOSAL, DATA)), hrixs["preset"])[1]
    dark = hrixs["dark"]
    calibrated = np.where(dark.mask, frames.astype(np.float32) - dark.mean, 0)
    with h5py.File(out, "r") as f:
        # isolated hits (at least 7 px apart): one droplet each, their photons as planted
        np.testing.assert_allclose(f["hrixs/drop_n_droplets"][()], n_hits, atol=0.02 * n_hits.max() + 1)
        np.testing.assert_allclose(f["hrixs/drop_photons"][()], n_photons, atol=0.02 * n_photons.max() + 1)
        np.testing.assert_allclose(f["hrixs/phot_n_photons"][()], n_photons, atol=0.02 * n_photons.max() + 1)
        np.testing.assert_allclose(f["hrixs/proj_profile"][()], calibrated.sum(axis=1), rtol=1e-5, atol=0.05)
        # isolated photons of 0.4 px clouds: the autocorrelation's central peak is about a pixel wide
        width = f["hrixs/sq_acorr_speckle_size"][()]
        assert np.all((width > 0.3) & (width < 3.0)), width
        x, y = f["UserDataCfg/hrixs/x"][()], f["UserDataCfg/hrixs/y"][()]
    assert x.shape == (1,) + SHAPE
    np.testing.assert_allclose(np.diff(x[0], axis=1), 13.5e-6, rtol=1e-5)
    np.testing.assert_allclose(np.diff(y[0], axis=0), 13.5e-6, rtol=1e-5)


def test_user_mask_of_the_camera_shape(hrixs, tmp_path):
    """A user mask of the camera's (rows, columns), True = good: masked pixels leave the ROI's sum."""
    mask = np.ones(SHAPE, bool)
    mask[30:60, 50:90] = False
    np.save(tmp_path / "mask.npy", mask)
    out = tmp_path / "m.h5"
    result = produce(config(hrixs, tmp_path, user_mask=str(tmp_path / "mask.npy")), out)
    assert result.returncode == 0, result.stderr
    frames = read_frames(extra_data.RunDirectory(run_path(hrixs["root"], PROPOSAL, DATA)), hrixs["preset"])[1]
    dark = hrixs["dark"]
    good = dark.mask & mask & (frames < hrixs["preset"].saturation)
    calibrated = np.where(good, frames.astype(np.float32) - dark.mean, 0).astype(np.float32)
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["hrixs/box_sum"][()],
                                   calibrated[:, 10:110, 20:220].sum(axis=(1, 2), dtype=np.float64), rtol=1e-6)
        np.testing.assert_array_equal(f["UserDataCfg/hrixs/mask_user"][0], mask)


def test_live_producer_refuses_a_camera_in_one_line(hrixs, tmp_path):
    """The live stream carries no camera images for us yet: said before connecting, nothing written."""
    out = tmp_path / "live.h5"
    result = subprocess.run([tool("smd_producer"), "--bridge", "tcp://127.0.0.1:45999", "-c",
                             str(config(hrixs, tmp_path)), "--output", str(out)], capture_output=True, text=True,
                            timeout=120)
    _refused(result, out, "detectors.hrixs", "live stream")


def test_azimuthal_on_a_camera_equals_numpy(hrixs, tmp_path):
    """The azimuthal function on the camera's plain grid: its sums per q bin equal a numpy histogram of
    the calibrated pixels by their q, computed here from the grid (no solid-angle weight)."""
    functions = [{"type": "azimuthal", "name": "azav", "center": [0.0, 0.0], "distance": 0.5,
                  "photon_energy": 930.0, "q_bins": 20, "q_range": [0.0, 2.0e7], "solid_angle": False,
                  "normalise": "sum"}]
    out = tmp_path / "a.h5"
    result = produce(config(hrixs, tmp_path, functions=functions), out)
    assert result.returncode == 0, result.stderr
    frames = read_frames(extra_data.RunDirectory(run_path(hrixs["root"], PROPOSAL, DATA)), hrixs["preset"])[1]
    dark = hrixs["dark"]
    calibrated = np.where(dark.mask, frames.astype(np.float64) - dark.mean, 0)
    ny, nx = SHAPE
    y, x = np.meshgrid((np.arange(ny) - (ny - 1) / 2) * 13.5e-6, (np.arange(nx) - (nx - 1) / 2) * 13.5e-6,
                       indexing="ij")
    two_theta = np.arctan2(np.hypot(x, y), 0.5)
    q = 4 * np.pi / (12398.419843320026e-10 / 930.0) * np.sin(two_theta / 2)
    with h5py.File(out, "r") as f:
        sums = f["hrixs/azav_sum"][:, 0, :]
        edges = f["UserDataCfg/hrixs/azav/q_edges"][()]
    index = np.digitize(q, edges) - 1
    inside = (index >= 0) & (index < len(edges) - 1) & dark.mask
    expected = np.stack([np.bincount(index[inside], weights=frame[inside], minlength=len(edges) - 1)
                         for frame in calibrated])
    np.testing.assert_allclose(sums, expected, rtol=1e-4, atol=0.5)


def test_cube_of_an_output_the_camera_does_not_write(hrixs, tmp_path):
    """Refused at set-up, naming the key and the outputs there are."""
    cfg = config(hrixs, tmp_path, cube={"scan": "scan/delay", "unique": True, "keys": ["hrixs_spectra"]})
    text = yaml.safe_load(cfg.read_text())
    text["point_data"] = {"scan": {"delay": {"source": "SCS_HRIXS_DET/CAM/CAMERA:daqOutput",
                                             "key": "data.image.pixels", "units": ""}}}
    cfg.write_text(yaml.safe_dump(text))
    out = tmp_path / "x.h5"
    _refused(produce(cfg, out), out, "detectors.hrixs.cube.keys", "hrixs_spectra", "hrixs_spectrum")


def test_report_draws_each_cameras_mean_spectrum(outputs, tmp_path):
    """The run report's camera figure: the mean of the per-train spectra against the function's energies."""
    from smalldata import SmallDataAna
    from smalldata.report.figures import camera_spectra
    from smalldata.report.html import write_report

    ana = SmallDataAna(outputs[0])
    fig, caption = camera_spectra(ana)
    with h5py.File(outputs[0], "r") as f:
        rows, energy = f["hrixs/hrixs_spectrum"][()], f["UserDataCfg/hrixs/hrixs/energy"][()]
    line = next(ax.lines[0] for ax in fig.axes if "hrixs/hrixs_spectrum" in ax.get_ylabel())
    np.testing.assert_allclose(line.get_ydata(), rows.mean(axis=0))
    np.testing.assert_array_equal(line.get_xdata(), energy)
    assert "hrixs/hrixs_spectrum (12 trains)" in caption
    page = write_report(ana, tmp_path / "report.html").read_text()
    assert "Camera spectra" in page and page.count("data:image/png;base64,") >= 2
