"""smd_hrixs curvature on simulated runs: the planted curvature recovered and written into the config
(read back equal to the fit, comments kept), the figure, and bad input refused in one line with
nothing written. The session helper hrixs_spectrum on an output written by hand, against numpy."""
import h5py
import numpy as np
import pytest

import extra_data

from smalldata.calib.darkfile import dark_file_path
from smalldata.cameras import characterise_dark
from smalldata.cameras.reading import read_frames
from smalldata.cli import smd_hrixs
from smalldata.config.yamlfile import load_yaml
from smalldata.errors import DataError
from smalldata.simulate import run_path
from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run, simulate_viking_run
from smalldata.spectro.camerasetup import load_camera_setup
from smalldata.spectro.elastic import curvature_from_run

PROPOSAL, DARK, ELASTIC, NEWTON = 2937, 711, 712, 713
SHAPE = (160, 320)

CONFIG = """\
# hRIXS beamtime config (a comment that must survive)
proposal: {proposal}
data_root: {root}
calib_dir: calib
detectors:
  hrixs:            # the hRIXS Andor camera
    type: camera
    camera: hrixs
    shape: [{ny}, {nx}]
    dark_run: {dark}
    functions:
      - type: hrixs   # spectrum by centroiding
        name: spec
        curvature: [0.0, 0.0]
        energy_slope: 0.05
        energy_intercept: 925.0
        energy_bins: [926.0, 932.0, 0.05]
        threshold_adu: 75.0
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmd_hrixs")
    sim = CameraSim(camera="hrixs", shape=SHAPE, n_trains=12)
    simulate_hrixs_run(root, PROPOSAL, DARK, sim, "dark")
    elastic = simulate_hrixs_run(root, PROPOSAL, ELASTIC, sim, "elastic", elastic_adu_per_row=400.0,
                                 elastic_energy=928.5)
    simulate_viking_run(root, PROPOSAL, NEWTON, CameraSim(camera="newton", shape=(16, 64), n_trains=3), "reference")
    return root, elastic


@pytest.fixture
def config(sim, tmp_path):
    root, _ = sim
    path = tmp_path / "producer.yaml"
    path.write_text(CONFIG.format(proposal=PROPOSAL, root=root, ny=SHAPE[0], nx=SHAPE[1], dark=DARK))
    return path


def _run(config, *extra):
    return smd_hrixs.main(["curvature", "-r", str(ELASTIC), "-c", str(config), "--detector", "hrixs", *extra])


def test_planted_curvature_written_into_config(sim, config, capsys):
    _, truth = sim
    before = config.read_text()
    assert _run(config, "--write") == 0
    out = capsys.readouterr().out
    written = load_yaml(config)["detectors"]["hrixs"]["functions"][0]
    c1, c2 = written["curvature"]
    planted_c1, planted_c2 = truth["curvature"]
    # over 320 columns the planted parabola moves the line by c1*x + c2*x^2 = 6.4 + 15.4 rows
    assert c2 == pytest.approx(planted_c2, abs=0.01 * planted_c2)
    assert c1 == pytest.approx(planted_c1, abs=0.01 * abs(planted_c1) + 5e-4)
    # the round trip: what the config holds is the fit, to the last bit
    fit = curvature_from_run(load_camera_setup(config, "hrixs"), ELASTIC)
    assert [c1, c2] == [fit.curvature.c1, fit.curvature.c2]
    assert fit.y0 == pytest.approx(float(truth["elastic_y0"]), abs=0.05)
    # the standard errors: small against the curvature, and covering the planted values
    e1, e2, _ = fit.errors
    assert 0 < e2 < 0.01 * planted_c2 and 0 < e1 < 0.01 * planted_c1
    assert abs(c2 - planted_c2) < 5 * e2 and abs(c1 - planted_c1) < 5 * e1
    # the rest of the file as it was: comments, other keys, order
    after = config.read_text()
    assert "# hRIXS beamtime config (a comment that must survive)" in after
    assert "# the hRIXS Andor camera" in after and "# spectrum by centroiding" in after
    assert [line for line in after.splitlines() if "curvature" not in line] == \
        [line for line in before.splitlines() if "curvature" not in line]
    assert written["energy_slope"] == 0.05 and written["threshold_adu"] == 75.0
    png = config.parent / f"hrixs_curvature_p{PROPOSAL:06d}_r{ELASTIC:04d}_hrixs.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{c2:.6g}" in out and "±" in out


def test_without_write_nothing_is_written(config, capsys):
    before = config.read_bytes()
    assert _run(config) == 0
    assert "c1 = " in capsys.readouterr().out
    assert config.read_bytes() == before
    assert sorted(p.name for p in config.parent.iterdir()) == ["producer.yaml"]


def test_dark_file_of_smd_dark_used(sim, config):
    root, _ = sim
    frames = read_frames(extra_data.RunDirectory(run_path(root, PROPOSAL, DARK)),
                         load_camera_setup(config, "hrixs").preset)[1]
    dark = characterise_dark(frames, "hrixs")
    dark.mean[:] += 1.0  # a dark file that differs from the run: the fit must use the file
    path = dark_file_path(config.parent / "calib", PROPOSAL, DARK, "hrixs")
    path.parent.mkdir()
    dark.save(path)
    fit = curvature_from_run(load_camera_setup(config, "hrixs"), ELASTIC)
    assert str(path) in fit.dark
    raw = read_frames(extra_data.RunDirectory(run_path(root, PROPOSAL, ELASTIC)),
                      load_camera_setup(config, "hrixs").preset)[1]
    np.testing.assert_allclose(fit.image, raw.sum(axis=0, dtype=np.float64) - len(raw) * dark.mean.astype(np.float64))


def _refused(config, capsys, args, text):
    before = config.read_bytes()
    files = sorted(p.name for p in config.parent.rglob("*"))
    assert smd_hrixs.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("smd_hrixs: error: ") and "\n" not in err and text in err, err
    assert config.read_bytes() == before
    assert sorted(p.name for p in config.parent.rglob("*")) == files


def test_bad_input_refused_in_one_line(sim, config, capsys):
    base = ["curvature", "-c", str(config), "--detector", "hrixs", "--write"]
    # a run without the camera (a Viking run)
    _refused(config, capsys, base + ["-r", str(NEWTON)], "SCS_HRIXS_DET/CAM/CAMERA:daqOutput (hrixs) is not in the run")
    # a detector or function the config does not have
    _refused(config, capsys, ["curvature", "-c", str(config), "-r", str(ELASTIC), "--detector", "viking"],
             "no detector 'viking'")
    _refused(config, capsys, base + ["-r", str(ELASTIC), "--function", "other"], "no function of type 'hrixs' named 'other'")
    # a run without a line: the dark run itself
    _refused(config, capsys, base + ["-r", str(DARK)], "is this an elastic-line run")
    # a dark of another shape (a dark file of smd_dark for a larger region)
    path = dark_file_path(config.parent / "calib", PROPOSAL, DARK, "hrixs")
    path.parent.mkdir()
    characterise_dark(np.random.default_rng(0).normal(100, 2, (3, 40, 50)), "hrixs").save(path)
    _refused(config, capsys, base + ["-r", str(ELASTIC)], "dark images are 40x50 pixels, the data 160x320")


def test_config_without_hrixs_function_refused_on_write(config, capsys):
    text = config.read_text()
    functions = text[text.index("    functions:"):]
    config.write_text(text.replace(functions, "    functions:\n      - type: roi\n        name: box\n"
                                              "        roi: [0, 10, 0, 10]\n"))
    _refused(config, capsys, ["curvature", "-r", str(ELASTIC), "-c", str(config), "--detector", "hrixs", "--write"],
             "has no function of type 'hrixs'")


# ---- the session helper on a producer output written by hand ----------------------------------------------------

def _output(path, rng, n_top=24, per_train=3):
    """A camera + DSSC output in the layout of the producer: per-pulse top-level rows, a per-train camera group."""
    top_trains = np.repeat(np.arange(1000, 1000 + n_top // per_train, dtype=np.uint64), per_train)
    cam_trains = np.array([999, 1000, 1001, 1003, 1004, 1005, 1007, 1009], np.uint64)  # 999, 1009: no DSSC frame
    spectra = rng.poisson(20, (len(cam_trains), 30)).astype(np.float64)
    energy = 926.0 + 0.2 * np.arange(30)
    xgm = rng.uniform(500, 1500, len(top_trains))
    cam_var = rng.uniform(0, 1, len(cam_trains))
    with h5py.File(path, "w") as f:
        f["trainId"] = top_trains
        f["pulseId"] = np.tile(np.arange(per_train, dtype=np.uint64), n_top // per_train)
        f["cellId"] = np.zeros(n_top, np.uint16)
        f.create_dataset("xgm/sa3_intensity", data=xgm).attrs["units"] = "uJ"
        f["hrixs/trainId"] = cam_trains
        f.create_dataset("hrixs/spec_spectrum", data=spectra).attrs["units"] = "photon"
        f.create_dataset("hrixs/spec_n_photons", data=cam_var)
        f.create_dataset("UserDataCfg/hrixs/spec/energy", data=energy).attrs["units"] = "eV"
    return dict(top_trains=top_trains, cam_trains=cam_trains, spectra=spectra, energy=energy, xgm=xgm, cam_var=cam_var)


def test_hrixs_spectrum_mean_and_binned(tmp_path):
    from smalldata.ana.spectra import hrixs_spectrum

    want = _output(tmp_path / "out.h5", np.random.default_rng(4))
    res = hrixs_spectrum(tmp_path / "out.h5", "hrixs", "spec_spectrum")
    np.testing.assert_allclose(res.spectrum, want["spectra"].mean(axis=0))
    np.testing.assert_array_equal(res.energy, want["energy"])
    assert res.n_trains.tolist() == [len(want["cam_trains"])]
    # binned by a camera value (same rows), 3 bins of equal width
    edges = np.linspace(0, 1, 4)
    res = hrixs_spectrum(tmp_path / "out.h5", "hrixs", "spec_spectrum", by="hrixs/spec_n_photons", bins=edges)
    b = np.digitize(want["cam_var"], edges) - 1
    for k in range(3):
        if (b == k).any():
            np.testing.assert_allclose(res.spectrum[k], want["spectra"][b == k].mean(axis=0))
        else:
            assert np.isnan(res.spectrum[k]).all()
        assert res.n_trains[k] == (b == k).sum()
    # binned by per-pulse top-level data joined on trainId: the mean XGM of each train's frames
    res = hrixs_spectrum(tmp_path / "out.h5", "hrixs", "spec_spectrum", by="/xgm/sa3_intensity", bins=2)
    per_train = {t: want["xgm"][want["top_trains"] == t].mean() for t in np.unique(want["top_trains"])}
    val = np.array([per_train.get(t, np.nan) for t in want["cam_trains"]])
    ok = np.isfinite(val)
    edges = np.linspace(val[ok].min(), val[ok].max(), 3)
    np.testing.assert_allclose(res.edges, edges)
    idx = np.clip(np.searchsorted(edges, val[ok], side="right") - 1, 0, 1)
    for k in range(2):
        np.testing.assert_allclose(res.spectrum[k], want["spectra"][ok][idx == k].mean(axis=0))
    assert res.n_trains.sum() == ok.sum() == len(want["cam_trains"]) - 2


def test_hrixs_spectrum_by_unique_values_and_bad_paths(tmp_path):
    from smalldata.ana.spectra import hrixs_spectrum

    rng = np.random.default_rng(5)
    want = _output(tmp_path / "out.h5", rng)
    steps = np.array([0.5, 1.0, 0.5, 1.5, 1.0, 0.5, 1.5, 1.0])
    with h5py.File(tmp_path / "out.h5", "a") as f:
        f["hrixs/step"] = steps
    res = hrixs_spectrum(tmp_path / "out.h5", "hrixs", "spec_spectrum", by="hrixs/step")
    np.testing.assert_array_equal(res.centres, [0.5, 1.0, 1.5])
    for k, v in enumerate([0.5, 1.0, 1.5]):
        np.testing.assert_allclose(res.spectrum[k], want["spectra"][steps == v].mean(axis=0))
    with pytest.raises(DataError, match="no dataset hrixs/nope"):
        hrixs_spectrum(tmp_path / "out.h5", "hrixs", "nope")
    with pytest.raises(DataError, match="no dataset scan/delay"):
        hrixs_spectrum(tmp_path / "out.h5", "hrixs", "spec_spectrum", by="scan/delay")


def test_console_script_exit_status(config):
    """The installed smd_hrixs: one line on stderr, exit status 2, no traceback."""
    import subprocess

    from helpers import tool

    res = subprocess.run([tool("smd_hrixs"), "curvature", "-r", str(ELASTIC), "-c", str(config), "--detector", "dssc"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == (f"smd_hrixs: error: config detectors: no detector 'dssc' in {config} (detectors: "
                                  "hrixs); choose one with --detector or add its entry")


def test_function_chosen_by_name(config, capsys):
    """Two hrixs functions (one a child): --write alone is refused, --function writes only the one named."""
    text = config.read_text() + """\
        children:
          - type: hrixs
            name: fine
            curvature: [0.0, 0.0]
            energy_slope: 0.05
            energy_intercept: 925.0
            energy_bins: [926.0, 932.0, 0.01]
            threshold_adu: 75.0
"""
    config.write_text(text)
    _refused(config, capsys, ["curvature", "-r", str(ELASTIC), "-c", str(config), "--detector", "hrixs", "--write"],
             "2 functions of type 'hrixs' (spec, fine); choose one with --function")
    assert _run(config, "--write", "--function", "fine") == 0
    spec = load_yaml(config)["detectors"]["hrixs"]["functions"][0]
    assert spec["curvature"] == [0.0, 0.0]
    fit = curvature_from_run(load_camera_setup(config, "hrixs"), ELASTIC)
    assert spec["children"][0]["curvature"] == [fit.curvature.c1, fit.curvature.c2]
