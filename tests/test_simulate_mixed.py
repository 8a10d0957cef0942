"""A per-train camera simulated inside a DSSC run: the files pass extra-data-validate, extra-data's own
selection gives images that match the planted truth per TRUE train id (the Newton's recorded ids
shifted by its -1 offset), trains without an image, the dark's pedestal, the DSSC part unchanged, the
command's options and refusals, and the run through smd_dark and smd_producer."""
import subprocess

import h5py
import numpy as np
import pytest
import yaml

import extra_data

from helpers import tool
from smalldata.cameras import characterise_dark, get_preset
from smalldata.cameras.trainoffset import best_train_offset
from smalldata.cli import smd_simulate
from smalldata.simulate import SimulationConfig, read_truth, run_path, simulate_data_run
from smalldata.simulate.mixed import MixedCamera, simulate_mixed_run

PROPOSAL, DATA, DARK = 2937, 700, 701
SHAPE = (32, 64)
XGM = ("SCS_BLU_XGM/XGM/DOOCS:output", "data.intensitySa3TD")
XGM_COUNT = ("SCS_BLU_XGM/XGM/DOOCS", "pulseEnergy.numberOfSa3BunchesActual.value")


def config() -> SimulationConfig:
    return SimulationConfig.small(modules=(3,), n_trains=12, frames_per_train=2, dark_trains=20, sequence_trains=5)


@pytest.fixture(scope="module")
def newton(tmp_path_factory):
    """A Newton in a DSSC run and its dark, written by the command."""
    root = tmp_path_factory.mktemp("mixed")
    res = subprocess.run([tool("smd_simulate"), "--root", str(root), "-p", str(PROPOSAL), "-r", str(DATA),
                          "--dark-run", str(DARK), "--preset", "small", "--modules", "3", "--trains", "12",
                          "--frames-per-train", "2", "--dark-trains", "20", "--sequence-trains", "5",
                          "--camera", "newton", "--camera-shape", *map(str, SHAPE)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "with camera newton" in res.stdout
    return root


def camera_frames(root, run, camera="newton"):
    """Recorded train ids and images of the camera through extra-data's own selection."""
    preset = get_preset(camera)
    sel = extra_data.RunDirectory(run_path(root, PROPOSAL, run)).select(preset.source, preset.key)
    kd = sel[preset.source, preset.key]
    return np.asarray(kd.train_id_coordinates(), np.int64), kd.ndarray().astype(np.float64)


def test_validates_with_extra_data(newton):
    for run in (DATA, DARK):
        path = run_path(newton, PROPOSAL, run)
        assert len(list(path.glob("RAW-*-DA02-S*.h5"))) >= 3  # the camera's own aggregator, in sequence files
        res = subprocess.run([tool("extra-data-validate"), str(path)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


def test_newton_spectra_follow_the_planted_factor_per_true_train(newton):
    truth = read_truth(newton, PROPOSAL, DATA)
    recorded, frames = camera_frames(newton, DATA)
    run = extra_data.RunDirectory(run_path(newton, PROPOSAL, DATA))
    assert set(recorded) <= set(run.train_ids)
    r0, r1 = truth["camera_band_rows"]
    pe = truth["camera_pe_per_count"]
    measured = (frames - truth["camera_pedestal"])[:, r0:r1].sum(axis=1) * pe
    # noise of one column's sum: (r1 - r0) pixels of read noise and rounding
    tol = 5 * np.sqrt((r1 - r0) * (truth["camera_noise"] ** 2 + 1 / 12)) * pe
    planted = dict(zip(truth["camera_train_ids"].tolist(), truth["camera_spectrum_pe"]))
    factor = dict(zip(truth["camera_train_ids"].tolist(), truth["camera_train_factor"]))
    beam, base = truth["camera_beam_pe"], truth["camera_baseline_pe"]

    def errors(offset):
        return [np.max(np.abs(m - planted[t + offset])) if t + offset in planted else np.inf
                for t, m in zip(recorded.tolist(), measured)]

    assert max(errors(-1)) < tol  # the preset's offset: recorded id - 1 is the true train
    assert min(errors(0)) > 20 * tol  # the recorded id as the true one matches no train
    fitted = ((measured - base) @ beam) / (beam @ beam)
    np.testing.assert_allclose(fitted, [factor[t - 1] for t in recorded.tolist()], atol=0.01)
    # the factor is the train's X-ray intensity the XGM recorded (mean over its X-ray pulses)
    counts = dict(zip(run[XGM_COUNT].train_id_coordinates().tolist(), run[XGM_COUNT].ndarray().astype(int)))
    xgm_mean = {t: float(np.mean(values[:counts[t]]))
                for t, values in zip(run[XGM].train_id_coordinates().tolist(), run[XGM].ndarray())}
    for t, f in factor.items():
        assert f == pytest.approx(xgm_mean[t] / truth["xgm_mean_uj"], rel=1e-5)
    # measured against the XGM the way a beamtime would: the best shift is the Newton's -1
    best, corr = best_train_offset(recorded, measured.sum(axis=1), np.array(list(xgm_mean)),
                                   np.array(list(xgm_mean.values())), min_trains=5)
    assert best == -1 and corr[-1] > 0.99


def test_trains_without_an_image(newton):
    truth = read_truth(newton, PROPOSAL, DATA)
    recorded, _ = camera_frames(newton, DATA)
    ids = truth["train_ids"].astype(np.int64)
    np.testing.assert_array_equal(recorded, truth["camera_recorded_train_ids"])
    np.testing.assert_array_equal(recorded - 1, truth["camera_train_ids"])
    planted = truth["camera_planted_missing_train_ids"].astype(np.int64)
    assert len(planted) == 2 and set(planted) <= set(ids)
    assert not set(planted) & set(recorded - 1)
    # without an image: the planted trains and the last (its image would be recorded after the run)
    assert sorted(truth["camera_missing_train_ids"]) == sorted(set(planted) | {ids[-1]})
    assert len(recorded) == len(ids) - 3 and recorded[0] == ids[0] + 1


def test_dark_run_has_the_data_runs_pedestal(newton):
    data_truth = read_truth(newton, PROPOSAL, DATA)
    dark_truth = read_truth(newton, PROPOSAL, DARK)
    recorded, frames = camera_frames(newton, DARK)
    assert len(frames) == 19 and recorded[0] == dark_truth["train_ids"][0] + 1
    np.testing.assert_array_equal(dark_truth["camera_pedestal"], data_truth["camera_pedestal"])
    dark = characterise_dark(frames, "newton")
    err = np.sqrt(4 + 1 / 12) / np.sqrt(len(frames))
    assert np.max(np.abs(dark.mean - data_truth["camera_pedestal"])) < 5 * err
    assert np.median(dark.noise) == pytest.approx(np.sqrt(4 + 1 / 12), rel=0.05)


@pytest.mark.parametrize("camera, run", [("hrixs", 710), ("fastccd", 712)])
def test_photons_at_planted_places(tmp_path, camera, run):
    cfg = SimulationConfig.small(modules=(3,), n_trains=6, frames_per_train=2, sequence_trains=10)
    simulate_mixed_run(tmp_path, PROPOSAL, run, cfg, MixedCamera(camera, (40, 64), missing_trains=(2,)))
    truth = read_truth(tmp_path, PROPOSAL, run)
    res = subprocess.run([tool("extra-data-validate"), str(run_path(tmp_path, PROPOSAL, run))],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    recorded, frames = camera_frames(tmp_path, run, camera)
    assert truth["camera_train_id_offset"] == 0
    np.testing.assert_array_equal(recorded, np.delete(truth["train_ids"], 2).astype(np.int64))
    np.testing.assert_array_equal(truth["camera_missing_train_ids"], truth["train_ids"][[2]])
    signal = frames - truth["camera_pedestal"]
    adu, noise = truth["camera_adu_per_photon"], truth["camera_noise"]
    hit_train = truth["camera_hit_train"].astype(np.int64)
    for k, t in enumerate(recorded):
        mine = hit_train == t
        assert mine.sum() == truth["camera_hits_per_train"][k] > 0
        assert truth["camera_hit_photons"][mine].sum() == truth["camera_photons_per_train"][k]
        rest = signal[k].copy()
        for y, x, n in zip(truth["camera_hit_y"][mine], truth["camera_hit_x"][mine], truth["camera_hit_photons"][mine]):
            cy, cx = int(round(y)), int(round(x))
            assert signal[k, cy - 2:cy + 3, cx - 2:cx + 3].sum() == pytest.approx(n * adu, abs=5 * 5 * noise + 5)
            rest[max(cy - 3, 0):cy + 4, max(cx - 3, 0):cx + 4] = 0
        assert np.max(np.abs(rest)) < 6 * np.sqrt(noise ** 2 + 1 / 12)  # no photon anywhere else
    if camera == "hrixs":  # on the planted curved lines
        m = truth
        c1, c2 = m["camera_curvature"]
        x = m["camera_hit_x"]
        row = (m["camera_hit_energy"] - m["camera_energy_intercept"]) / m["camera_energy_slope"] + c1 * x + c2 * x ** 2
        assert np.max(np.abs(m["camera_hit_y"] - row)) < 5 * 0.3


def test_dssc_part_unchanged_by_the_camera(tmp_path):
    cfg = SimulationConfig.small(modules=(3,), n_trains=4, frames_per_train=2, sequence_trains=10)
    simulate_data_run(tmp_path / "plain", PROPOSAL, 720, cfg)
    simulate_mixed_run(tmp_path / "mixed", PROPOSAL, 720, cfg, MixedCamera("hrixs", (16, 16)))
    runs = [extra_data.RunDirectory(run_path(tmp_path / k, PROPOSAL, 720)) for k in ("plain", "mixed")]
    source = "SCS_DET_DSSC1M-1/DET/3CH0:xtdf"
    np.testing.assert_array_equal(*(r[source, "image.data"].ndarray() for r in runs))
    np.testing.assert_array_equal(*(r[XGM].ndarray() for r in runs))
    plain, mixed = (read_truth(tmp_path / k, PROPOSAL, 720) for k in ("plain", "mixed"))
    assert set(mixed) - set(plain) == {k for k in mixed if k.startswith("camera")}
    for k in ("frame_photons", "frame_xgm", "pedestal", "train_ids"):
        np.testing.assert_array_equal(plain[k], mixed[k])


def test_command_refusals(tmp_path, capsys):
    base = ["--root", str(tmp_path), "-p", str(PROPOSAL), "-r", "730"]
    cases = [(["--preset", "hrixs", "--camera", "newton"], "--camera applies to the DSSC presets"),
             (["--preset", "small", "--camera-shape", "20", "20"], "--camera-shape needs --camera"),
             (["--preset", "small", "--camera", "hrixs", "--camera-shape", "8", "30"],
              "camera shape 8 x 30 pixels is too small")]
    for args, text in cases:
        assert smd_simulate.main(base + args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0], err
    assert not run_path(tmp_path, PROPOSAL, 730).exists()


def test_through_smd_dark_and_the_producer(newton, tmp_path):
    """The mixed run as a beamtime would take it: smd_dark of the DSSC and the camera from one dark run,
    then smd_producer; the camera's rows are the planted true trains with their planted signal."""
    truth = read_truth(newton, PROPOSAL, DATA)
    r0, r1 = (int(v) for v in truth["camera_band_rows"])
    cfg = tmp_path / "producer.yaml"
    cfg.write_text(yaml.safe_dump({
        "proposal": PROPOSAL, "data_root": str(newton), "calib_dir": "calib", "output_dir": "out",
        "detectors": {"dssc": {"dark_run": DARK, "dark": {"min_frames": 10}, "modules": [3],
                               "functions": [{"type": "roi", "name": "box", "module": 3, "roi": [0, 128, 0, 512]}]},
                      "viking": {"type": "camera", "camera": "newton", "shape": list(SHAPE), "dark_run": DARK,
                                 "functions": [{"type": "roi", "name": "band", "roi": [r0, r1, 0, SHAPE[1]]}]}}}))
    res = subprocess.run([tool("smd_dark"), "-r", str(DARK), "-c", str(cfg), "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([tool("smd_producer"), "-r", str(DATA), "-c", str(cfg), "--quiet"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "out" / "r0700.h5") as f:
        np.testing.assert_array_equal(f["viking/trainId"][()], truth["camera_train_ids"])
        band = f["viking/band_sum"][()]
        assert len(f["trainId"]) == 12 * 2  # the DSSC's rows: every frame of every train
    expected = truth["camera_spectrum_pe"].sum(axis=1) / truth["camera_pe_per_count"]
    n_pix, n_dark = (r1 - r0) * SHAPE[1], 19
    sigma = np.sqrt(n_pix * (truth["camera_noise"] ** 2 + 1 / 12) * (1 + 1 / n_dark))
    assert np.max(np.abs(band - expected)) < 5 * sigma


def test_camera_choices_refused_in_one_line(tmp_path):
    from smalldata.errors import SmallDataError

    cfg = SimulationConfig.small(modules=(3,), n_trains=4, frames_per_train=2)
    for camera, text in ((MixedCamera("maranax"), "camera 'maranax' cannot be written into a DSSC run"),
                         (MixedCamera("newton", (32, 64), missing_trains=(1, 4)), "train indices [4] are outside")):
        with pytest.raises(SmallDataError, match=text.replace("[", r"\[").replace("]", r"\]")) as err:
            simulate_mixed_run(tmp_path, PROPOSAL, 740, cfg, camera)
        assert "\n" not in str(err.value)
    assert not run_path(tmp_path, PROPOSAL, 740).exists()
    assert not list(run_path(tmp_path, PROPOSAL, 740).parent.glob(".r0740*"))  # no partial run left
