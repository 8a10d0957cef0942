"""smd_viking on simulated runs: the planted calibration from monochromator runs (written into the config
and read back equal), a non-monotonic calibration refused, XAS with the planted edge and step (and equal
to a plain numpy computation from the raw frames), bad input refused in one line with nothing written;
the session helper viking_xas on outputs written by hand."""
import h5py
import numpy as np
import pytest
from scipy.special import ndtr

import extra_data

from smalldata.cameras.reading import read_frames
from smalldata.cli import smd_viking
from smalldata.config.yamlfile import load_yaml
from smalldata.errors import DataError
from smalldata.simulate import run_path
from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run, simulate_viking_run
from smalldata.spectro.camerasetup import load_camera_setup
from smalldata.spectro.vikingruns import calibrate_runs
from smalldata.spectro.xas import edge_position

PROPOSAL = 2937
DARK, REF, SAMPLE, DARK_OTHER_MODE, HRIXS = 720, 721, 722, 725, 750
MONO = {730: 865.0, 731: 872.0, 732: 880.0, 733: 888.0, 734: 896.0}
SHAPE = (32, 512)
SETTINGS = {"preampGain": 2, "HighCapacity": 1}
PLANTED = (860.0, 0.08, 1.2e-5)

CONFIG = """\
# Viking beamtime config
proposal: {proposal}
data_root: {root}
calib_dir: calib
detectors:
  viking:   # the Viking's Newton camera
    type: camera
    camera: newton
    shape: [{ny}, {nx}]
    dark_run: {dark}
    functions:
    - type: viking
      name: viking
      signal_range: [{lo}, {hi}]   # columns of the beam
      baseline_degree: 2
{calibration}"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmd_viking")
    kw = dict(camera="newton", shape=SHAPE, settings=dict(SETTINGS))
    truths = {DARK: simulate_viking_run(root, PROPOSAL, DARK, CameraSim(n_trains=40, **kw), "dark"),
              REF: simulate_viking_run(root, PROPOSAL, REF, CameraSim(n_trains=40, **kw), "reference"),
              SAMPLE: simulate_viking_run(root, PROPOSAL, SAMPLE, CameraSim(n_trains=40, **kw), "sample")}
    other = dict(kw, settings={"preampGain": 1, "HighCapacity": 1})
    simulate_viking_run(root, PROPOSAL, DARK_OTHER_MODE, CameraSim(n_trains=5, **other), "dark")
    for run, energy in MONO.items():
        truths[run] = simulate_viking_run(root, PROPOSAL, run, CameraSim(n_trains=10, **kw), "mono", mono_energy=energy)
    # three mono runs whose peaks are not in the order of their energies: the third recorded 872 eV with
    # its line beyond that of 880 eV (as a monochromator reporting a wrong energy would)
    for run, energy, cal in ((740, 865.0, PLANTED), (741, 880.0, PLANTED), (742, 872.0, (845.0, 0.08, 1.2e-5))):
        simulate_viking_run(root, PROPOSAL, run, CameraSim(n_trains=4, **kw), "mono", mono_energy=energy,
                            calibration=cal)
    simulate_hrixs_run(root, PROPOSAL, HRIXS, CameraSim(camera="hrixs", shape=(16, 16), n_trains=2), "dark")
    return root, truths


def _signal_columns(truths):
    """The planted beam's columns (centre -+ 5 sigma), widened to half-integers: no column on an edge."""
    lo, hi = truths[REF]["signal_range_px"]
    return float(np.floor(lo)) + 0.5, float(np.ceil(hi)) - 0.5


def _config(sim, folder, calibration=None):
    """The config; with a calibration its signal_range is in eV (as the viking function reads it)."""
    root, truths = sim
    lo, hi = _signal_columns(truths)
    cal = ""
    if calibration is not None:
        cal = f"      calibration: [{', '.join(repr(float(c)) for c in calibration)}]\n"
        lo, hi = (float(v) for v in np.polynomial.polynomial.polyval([lo, hi], calibration))
    path = folder / "producer.yaml"
    path.write_text(CONFIG.format(proposal=PROPOSAL, root=root, ny=SHAPE[0], nx=SHAPE[1], dark=DARK,
                                  lo=lo, hi=hi, calibration=cal))
    return path


def _refused(config, capsys, args, text):
    before = config.read_bytes()
    files = sorted(p.name for p in config.parent.rglob("*"))
    assert smd_viking.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("smd_viking: error: ") and "\n" not in err and text in err, err
    assert config.read_bytes() == before
    assert sorted(p.name for p in config.parent.rglob("*")) == files


def test_planted_calibration_written_into_config(sim, tmp_path, capsys):
    _, truths = sim
    config = _config(sim, tmp_path)
    before = config.read_text()
    runs = f"{min(MONO)}-{max(MONO)}"
    assert smd_viking.main(["calibrate", "-r", runs, "-c", str(config), "--detector", "viking", "--write"]) == 0
    out = capsys.readouterr().out
    written = load_yaml(config)["detectors"]["viking"]["functions"][0]["calibration"]
    # coefficients: 860 eV, 0.08 eV/px, 1.2e-5 eV/px^2 (planted)
    for got, want, rel in zip(written, PLANTED, (1e-4, 2e-3, 0.05)):
        assert got == pytest.approx(want, rel=rel)
    x = np.arange(SHAPE[1])
    np.testing.assert_allclose(np.polynomial.polynomial.polyval(x, written),
                               np.polynomial.polynomial.polyval(x, PLANTED), atol=0.01)
    # the round trip: the config holds the fit, to the last bit
    again = calibrate_runs(load_camera_setup(config, "viking"), list(MONO), 2, None, 2)
    assert written == list(again.calibration.coefficients)
    np.testing.assert_allclose(again.peaks, [truths[r]["peak_px"] for r in MONO], atol=0.05)
    np.testing.assert_array_equal(again.energies, list(MONO.values()))
    # the signal range, in columns without a calibration, is in eV with it (as the function reads it)
    lo, hi = _signal_columns(truths)
    np.testing.assert_allclose(load_yaml(config)["detectors"]["viking"]["functions"][0]["signal_range"],
                               np.polynomial.polynomial.polyval([lo, hi], written))
    after = config.read_text()
    assert "# the Viking's Newton camera" in after and "# columns of the beam" in after
    assert [ln for ln in after.splitlines() if "calibration" not in ln and "signal_range" not in ln] == \
        [ln for ln in before.splitlines() if "signal_range" not in ln]
    png = tmp_path / f"viking_calibration_p{PROPOSAL:06d}_r{min(MONO):04d}-{max(MONO):04d}_viking.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "run 732: 880.000 eV" in out


def test_non_monotonic_calibration_refused(sim, tmp_path, capsys):
    config = _config(sim, tmp_path)
    _refused(config, capsys, ["calibrate", "-r", "740-742", "-c", str(config), "--detector", "viking", "--write"],
             "not monotonic on pixels 0..511")


def _numpy_spectra(root, run, dark_mean, pe, lo, hi, degree=2):
    """Plain numpy: dark-subtracted row sums x photoelectrons per count, polynomial outside [lo, hi] removed."""
    preset_source = "SCS_EXP_NEWTON/CAM/CAMERA:daqOutput"
    frames = extra_data.RunDirectory(run_path(root, PROPOSAL, run))[preset_source, "data.image.pixels"].ndarray()
    spec = (frames.astype(np.float64) - dark_mean).sum(axis=1) * pe
    x = np.arange(spec.shape[1], dtype=np.float64)
    out = (x < lo) | (x > hi)
    fit = [np.polyval(np.polyfit(x[out], s[out], degree), x) for s in spec]
    return spec - np.array(fit)


def test_xas_planted_edge_and_numpy(sim, tmp_path, capsys):
    root, truths = sim
    config = _config(sim, tmp_path, PLANTED)
    thickness = 2e-7
    out = tmp_path / "xas.h5"
    assert smd_viking.main(["xas", "--sample", str(SAMPLE), "--reference", str(REF), "-c", str(config),
                            "--detector", "viking", "--thickness", str(thickness), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    with h5py.File(out, "r") as f:
        got = {k: f[k][()] for k in ("energy", "absorption", "std", "sem", "it", "i0", "column")}
        units = {k: f[k].attrs["units"] for k in ("energy", "absorption", "std", "sem")}
        edge, step = f.attrs["edge_position"], f.attrs["edge_step"]
    assert units == {"energy": "eV", "absorption": "1/m", "std": "1/m", "sem": "1/m"}
    # the planted edge and step (the absorbance per thickness)
    assert edge == pytest.approx(float(truths[SAMPLE]["edge_energy"]), abs=0.1)
    assert step * thickness == pytest.approx(float(truths[SAMPLE]["edge_step"]), abs=0.03)
    assert f"edge at {edge:.3f} eV" in printed
    # against the planted absorbance within the standard errors (a common offset from the trains' intensity
    # jitter moves the whole curve alike)
    cols = got["column"]
    planted = truths[SAMPLE]["absorbance"][cols] / thickness
    resid = got["absorption"] - planted
    assert abs(resid.mean()) < 4 * got["sem"].mean()
    assert np.mean(((resid - resid.mean()) / got["sem"]) ** 2) < 1.5
    # against plain numpy from the raw frames, with the dark run's mean
    dark_frames = read_frames(extra_data.RunDirectory(run_path(root, PROPOSAL, DARK)),
                              load_camera_setup(config, "viking").preset)[1]
    dark = dark_frames.astype(np.float64).mean(axis=0)
    lo, hi = _signal_columns(truths)
    pe = float(truths[REF]["pe_per_count"])
    it = _numpy_spectra(root, SAMPLE, dark, pe, lo, hi)[:, cols]
    i0 = _numpy_spectra(root, REF, dark, pe, lo, hi)[:, cols]
    np.testing.assert_allclose(got["it"], it.mean(axis=0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(got["absorption"], -np.log(it.mean(axis=0) / i0.mean(axis=0)) / thickness, rtol=1e-5)
    rel = np.sqrt((it.std(axis=0, ddof=1) / it.mean(axis=0)) ** 2 / len(it) +
                  (i0.std(axis=0, ddof=1) / i0.mean(axis=0)) ** 2 / len(i0))
    np.testing.assert_allclose(got["sem"], rel / thickness, rtol=1e-4)
    np.testing.assert_allclose(got["energy"], np.polynomial.polynomial.polyval(cols, PLANTED))
    assert np.all(np.diff(got["energy"]) > 0)
    # kept: the columns where the mean reference reaches a tenth of its maximum
    assert got["i0"].min() >= 0.1 * got["i0"].max() * (1 - 1e-9)
    assert (tmp_path / "xas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_xas_without_thickness_is_absorbance(sim, tmp_path):
    _, truths = sim
    config = _config(sim, tmp_path, PLANTED)
    assert smd_viking.main(["xas", "--sample", str(SAMPLE), "--reference", str(REF), "-c", str(config),
                            "--detector", "viking", "--quiet"]) == 0
    out = tmp_path / f"viking_xas_p{PROPOSAL:06d}_r{SAMPLE:04d}_r{REF:04d}_viking.h5"
    with h5py.File(out, "r") as f:
        assert f["absorption"].attrs["units"] == "1"
        assert f.attrs["edge_step"] == pytest.approx(float(truths[SAMPLE]["edge_step"]), abs=0.03)
    assert out.with_suffix(".png").is_file()


def test_bad_input_refused_in_one_line(sim, tmp_path, capsys):
    config = _config(sim, tmp_path, PLANTED)
    xas = ["xas", "--reference", str(REF), "-c", str(config), "--detector", "viking", "--output", str(tmp_path / "x.h5")]
    # a run without the camera source
    _refused(config, capsys, xas + ["--sample", str(HRIXS)], "SCS_EXP_NEWTON/CAM/CAMERA:daqOutput (newton) is not in the run")
    # a dark recorded in another camera mode
    _refused(config, capsys, xas + ["--sample", str(SAMPLE), "--dark-run", str(DARK_OTHER_MODE)],
             "dark recorded with preampGain=1, data with preampGain=2")
    # a detector or function the config does not have
    _refused(config, capsys, ["calibrate", "-r", "730-732", "-c", str(config), "--detector", "newton", "--write"],
             "no detector 'newton'")
    _refused(config, capsys, ["calibrate", "-r", "730-732", "-c", str(config), "--detector", "viking",
                              "--function", "other"], "no function of type 'viking' named 'other'")
    # a mono run without a monochromator energy (the reference), and too few runs for the degree
    _refused(config, capsys, ["calibrate", "-r", f"730,731,{REF}", "-c", str(config), "--detector", "viking"],
             "no monochromator energy")
    _refused(config, capsys, ["calibrate", "-r", "730,731", "-c", str(config), "--detector", "viking"],
             "2 monochromator run(s) cannot fix a polynomial of degree 2")
    # XAS without an energy calibration
    (tmp_path / "plain").mkdir()
    plain = _config(sim, tmp_path / "plain")
    _refused(plain, capsys, ["xas", "--sample", str(SAMPLE), "--reference", str(REF), "-c", str(plain),
                             "--detector", "viking"], "viking.functions[0].calibration: no energy calibration")
    # an output that exists
    (tmp_path / "x.h5").write_bytes(b"")
    _refused(config, capsys, xas + ["--sample", str(SAMPLE)], "exists; pass --overwrite")


# ---- the session helper on producer outputs written by hand -----------------------------------------------------

def test_viking_xas_from_outputs(tmp_path):
    from smalldata.ana.spectra import viking_xas

    rng = np.random.default_rng(11)
    energy = np.linspace(870.0, 890.0, 200)
    beam = 1e4 * np.exp(-0.5 * ((energy - 880.0) / 6.0) ** 2) + 100.0
    absorbance = 0.3 + 0.5 * ndtr((energy - 881.0) / 0.5)
    spectra = {}
    for name, n, factor in (("sample", 50, np.exp(-absorbance)), ("reference", 40, 1.0)):
        rows = (1 + 0.05 * rng.standard_normal((n, 1))) * beam * factor
        rows = rows + np.sqrt(rows) * rng.standard_normal(rows.shape)
        rows[3] = np.nan  # a train without a spectrum
        spectra[name] = rows
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["trainId"] = np.arange(n, dtype=np.uint64)
            f["viking/trainId"] = np.arange(n, dtype=np.uint64) + 1
            f["viking/viking_spectrum"] = rows
            f["UserDataCfg/viking/viking/energy"] = energy
    res = viking_xas(tmp_path / "sample.h5", tmp_path / "reference.h5", thickness=1e-6)
    s, r = (np.delete(spectra[k], 3, axis=0) for k in ("sample", "reference"))
    np.testing.assert_allclose(res.absorption, -np.log(s.mean(axis=0) / r.mean(axis=0)) / 1e-6)
    np.testing.assert_allclose(res.stderr, np.sqrt((s.std(axis=0, ddof=1) / s.mean(axis=0)) ** 2 / len(s) +
                                                   (r.std(axis=0, ddof=1) / r.mean(axis=0)) ** 2 / len(r)) / 1e-6)
    np.testing.assert_array_equal(res.energy, energy)
    assert (res.n_sample, res.n_reference) == (49, 39)
    assert edge_position(res.energy, res.absorption * 1e-6) == pytest.approx(881.0, abs=0.1)
    # an output without an energy axis, and outputs on different axes
    with h5py.File(tmp_path / "reference.h5", "a") as f:
        f["UserDataCfg/viking/viking/energy"][...] = energy + 0.5
    with pytest.raises(DataError, match="different energy axes"):
        viking_xas(tmp_path / "sample.h5", tmp_path / "reference.h5")
    with h5py.File(tmp_path / "reference.h5", "a") as f:
        del f["UserDataCfg/viking/viking/energy"]
    with pytest.raises(DataError, match="no energy axis"):
        viking_xas(tmp_path / "sample.h5", tmp_path / "reference.h5")


def test_console_script_exit_status(sim, tmp_path):
    """The installed smd_viking: one line on stderr, exit status 2, no traceback."""
    import subprocess

    from helpers import tool

    config = _config(sim, tmp_path)
    res = subprocess.run([tool("smd_viking"), "xas", "--sample", str(SAMPLE), "--reference", str(REF), "-c", str(config),
                          "--detector", "viking"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == ("smd_viking: error: config detectors.viking.functions[0].calibration: no energy "
                                  "calibration; run 'smd_viking calibrate ... --write' on monochromator runs or pass "
                                  "--calibration")
    assert "Traceback" not in res.stderr and not list(tmp_path.glob("*.h5"))
