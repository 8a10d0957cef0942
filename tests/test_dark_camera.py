"""smd_dark for per-train cameras: the planted camera pedestal and noise recovered from a dark run
(a camera inside a DSSC dark run, and a camera-only run), the file where the producer looks for it,
written atomically, thresholds from the config, a DSSC and a camera in one config (the DSSC's file
the same as without the camera), --detector, and bad input in one line with nothing written."""
import subprocess

import h5py
import numpy as np
import pytest
import yaml

import extra_data

from helpers import mpiexec, tool
from smalldata.calib.darkfile import dark_file_path
from smalldata.cameras import CameraDark, get_preset
from smalldata.cameras.dark import DEAD, HOT, NOISY
from smalldata.cameras.darkrun import CameraDarkThresholds, characterise_camera_run, dark_summary, write_camera_dark
from smalldata.cli import smd_dark
from smalldata.errors import DataError
from smalldata.simulate import SimulationConfig, read_truth, run_path
from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run
from smalldata.simulate.mixed import MixedCamera, simulate_mixed_run

PROPOSAL, MIXED_DARK, SHORT = 2937, 815, 816
SHAPE = (24, 48)
NOISE = np.sqrt(2.0 ** 2 + 1 / 12)  # planted read noise and rounding to ADU


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A Newton inside a DSSC dark run (module 3, 30 trains), and a camera-only hRIXS run of one train."""
    root = tmp_path_factory.mktemp("camdark")
    cfg = SimulationConfig.small(modules=(3,), dark_trains=30, frames_per_train=2, sequence_trains=10)
    simulate_mixed_run(root, PROPOSAL, MIXED_DARK, cfg, MixedCamera("newton", SHAPE), dark=True)
    simulate_hrixs_run(root, PROPOSAL, SHORT, CameraSim("hrixs", (20, 20), n_trains=1), "dark")
    return root


def write_config(path, root, detectors):
    path.write_text(yaml.safe_dump({"proposal": PROPOSAL, "data_root": str(root), "calib_dir": "calib",
                                    "detectors": detectors}))
    return path


VIKING = {"type": "camera", "camera": "newton", "shape": list(SHAPE), "dark_run": MIXED_DARK}
DSSC = {"dark_run": MIXED_DARK, "dark": {"min_frames": 10}}


def run_of(root, run):
    return extra_data.RunDirectory(run_path(root, PROPOSAL, run))


def test_planted_pedestal_and_noise_recovered(root):
    truth = read_truth(root, PROPOSAL, MIXED_DARK)
    preset = get_preset("newton").with_shape(SHAPE)
    dark = characterise_camera_run(run_of(root, MIXED_DARK), preset)
    n = len(truth["train_ids"]) - 1  # the Newton's first recorded train has no image (offset -1)
    assert dark.n_frames == n and dark.camera == "newton"
    assert np.max(np.abs(dark.mean - truth["camera_pedestal"])) < 5 * NOISE / np.sqrt(n)
    assert np.median(dark.noise) == pytest.approx(NOISE, rel=0.05)
    assert dark.settings == {"preampGain": 1.0, "HighCapacity": 0.0} and dark.mask.all()


def test_file_written_atomically_and_read_back(root, tmp_path):
    preset = get_preset("newton").with_shape(SHAPE)
    thresholds = CameraDarkThresholds(hot_sigma=6.0)
    dark = characterise_camera_run(run_of(root, MIXED_DARK), preset, thresholds)
    path = dark_file_path(tmp_path / "calib", PROPOSAL, MIXED_DARK, "viking")
    write_camera_dark(dark, path, PROPOSAL, MIXED_DARK, "viking", preset, thresholds)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left
    back = CameraDark.load(path)
    np.testing.assert_array_equal(back.mean, dark.mean)
    np.testing.assert_array_equal(back.noise, dark.noise)
    assert back.settings == dark.settings and back.n_frames == dark.n_frames
    with h5py.File(path) as f:
        assert f.attrs["run"] == MIXED_DARK and f.attrs["detector"] == "viking" and f.attrs["hot_sigma"] == 6.0
        assert f.attrs["source"] == preset.source and list(f.attrs["shape"]) == list(SHAPE)
        assert f["mean"].attrs["units"] == "ADU"
    with pytest.raises(DataError, match="exist already; pass --overwrite"):
        write_camera_dark(dark, path, PROPOSAL, MIXED_DARK, "viking", preset, thresholds)


def test_summary_counts_bad_pixels_by_reason():
    frames = np.random.default_rng(3).normal(100, 2, (40, 10, 12))
    frames[:, 1, 1] = 100  # dead
    frames[:, 2, 2] += 300  # hot
    swing = 20 * np.random.default_rng(4).standard_normal(20)
    frames[:, 3, 3] = 100 + np.concatenate([swing, -swing])  # noisy, its mean exactly the level
    from smalldata.cameras import characterise_dark

    dark = characterise_dark(frames, "fastccd")
    line = dark_summary(dark, "x.h5")
    assert (dark.status[1, 1], dark.status[2, 2], dark.status[3, 3]) == (DEAD, HOT, NOISY)
    assert line.startswith("wrote x.h5: camera fastccd 10x12, 40 frames, mean ")
    assert "3 bad pixels (2.500%: 1 dead, 1 hot, 1 noisy)" in line


def test_cli_dssc_and_camera_in_one_config(root, tmp_path, capsys):
    for folder in ("both", "alone"):
        (tmp_path / folder).mkdir()
    both = write_config(tmp_path / "both" / "producer.yaml", root, {"dssc": DSSC, "viking": VIKING})
    alone = write_config(tmp_path / "alone" / "producer.yaml", root, {"dssc": DSSC})
    assert smd_dark.main(["-r", str(MIXED_DARK), "-c", str(both)]) == 0
    out = capsys.readouterr().out.splitlines()
    viking = dark_file_path(tmp_path / "both" / "calib", PROPOSAL, MIXED_DARK, "viking")
    assert [line for line in out if line.startswith(f"wrote {viking}: camera newton 24x48, 29 frames, mean ")]
    truth = read_truth(root, PROPOSAL, MIXED_DARK)
    dark = CameraDark.load(viking)
    assert np.max(np.abs(dark.mean - truth["camera_pedestal"])) < 5 * NOISE / np.sqrt(29)
    # the DSSC's file is what smd_dark writes without the camera in the config
    assert smd_dark.main(["-r", str(MIXED_DARK), "-c", str(alone), "--quiet"]) == 0
    files = [dark_file_path(tmp_path / k / "calib", PROPOSAL, MIXED_DARK, "dssc") for k in ("both", "alone")]
    with h5py.File(files[0]) as a, h5py.File(files[1]) as b:
        assert sorted(a) == sorted(b)
        for name in a:
            np.testing.assert_array_equal(a[name][()], b[name][()])
        attrs = [{k: v for k, v in f.attrs.items() if k != "created"} for f in (a, b)]
        assert attrs[0].keys() == attrs[1].keys()
        assert all(np.array_equal(attrs[0][k], attrs[1][k]) for k in attrs[0])
    assert sorted(p.name for p in (tmp_path / "alone" / "calib").iterdir()) == [files[1].name]


def test_cli_detector_option_and_thresholds(root, tmp_path, capsys):
    cfg = write_config(tmp_path / "producer.yaml", root,
                       {"dssc": DSSC, "viking": dict(VIKING, dark={"dead_noise": 2.0})})
    assert smd_dark.main(["-r", str(MIXED_DARK), "-c", str(cfg), "--detector", "viking"]) == 0
    assert sorted(p.name for p in (tmp_path / "calib").iterdir()) == ["dark_p002937_r0815_viking.h5"]
    # the threshold from the config: pixels whose noise is below 2 ADU are dead, counted independently
    kd = run_of(root, MIXED_DARK)[get_preset("newton").source, "data.image.pixels"]
    noise = kd.ndarray().astype(np.float64).std(axis=0, ddof=1)
    dead = int(np.count_nonzero(noise < 2.0))
    assert 0 < dead < noise.size
    out = capsys.readouterr().out
    assert f"{dead} dead" in out
    assert int(np.count_nonzero(CameraDark.load(tmp_path / "calib" / "dark_p002937_r0815_viking.h5").status
                                & DEAD)) == dead


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("smd_dark:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_bad_camera_input_writes_nothing(root, tmp_path, capsys):
    # the camera is not in the run: neither the camera's nor the DSSC's file is written
    cfg = write_config(tmp_path / "producer.yaml", root,
                       {"dssc": DSSC, "hrixs": {"type": "camera", "camera": "hrixs", "dark_run": MIXED_DARK}})
    assert smd_dark.main(["-r", str(MIXED_DARK), "-c", str(cfg)]) == 2
    line = error_line(capsys)
    assert "SCS_HRIXS_DET/CAM/CAMERA:daqOutput (hrixs) is not in the run" in line
    assert "SCS_EXP_NEWTON/CAM/CAMERA:daqOutput" in line and f"dark run {MIXED_DARK}" in line
    # one image only
    cfg = write_config(tmp_path / "short.yaml", root,
                       {"cam": {"type": "camera", "camera": "hrixs", "shape": [20, 20], "dark_run": SHORT}})
    assert smd_dark.main(["-r", str(SHORT), "-c", str(cfg)]) == 2
    line = error_line(capsys)
    assert "1 image(s) of SCS_HRIXS_DET/CAM/CAMERA:daqOutput; a camera dark needs at least 2" in line
    # a shape that is not the recorded one
    cfg = write_config(tmp_path / "shape.yaml", root, {"viking": dict(VIKING, shape=[24, 50])})
    assert smd_dark.main(["-r", str(MIXED_DARK), "-c", str(cfg)]) == 2
    assert "the newton preset expects (24, 50)" in error_line(capsys)
    calib = tmp_path / "calib"
    assert not calib.exists() or not any(calib.iterdir())


def test_cli_choice_of_detectors_by_dark_run(root, tmp_path, capsys):
    cfg = write_config(tmp_path / "producer.yaml", root, {"dssc": dict(DSSC, dark_run=900), "viking": VIKING})
    assert smd_dark.main(["-r", str(MIXED_DARK), "-c", str(cfg), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "calib").iterdir()) == ["dark_p002937_r0815_viking.h5"]
    assert smd_dark.main(["-r", "901", "-c", str(cfg)]) == 2
    line = error_line(capsys)
    assert "no detector has dark_run 901 (dark_run of dssc: 900, viking: 815); choose one with --detector" in line
    assert smd_dark.main(["-r", str(MIXED_DARK), "-c", str(cfg), "--detector", "viking", "--modules", "3"]) == 2
    assert "--modules applies to a DSSC detector" in error_line(capsys)


def test_mpi_two_ranks(root, tmp_path):
    cfg = write_config(tmp_path / "producer.yaml", root, {"dssc": DSSC, "viking": VIKING})
    proc = subprocess.run(mpiexec(2) + [tool("smd_dark"), "-r", str(MIXED_DARK), "-c", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("wrote ") == 2  # one summary per detector, from rank 0
    dark = CameraDark.load(tmp_path / "calib" / "dark_p002937_r0815_viking.h5")
    assert dark.n_frames == 29
