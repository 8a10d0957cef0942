"""The camera dark model: planted pedestal and noise recovered, bad pixels, refusal of a dark of
another shape, camera or mode, and the file round trip."""
import numpy as np
import pytest

import extra_data

from smalldata.cameras import CameraDark, characterise_dark, check_dark
from smalldata.cameras.dark import DEAD, HOT, NOISY
from smalldata.cameras.reading import read_frames
from smalldata.errors import CalibrationError
from smalldata.simulate import read_truth, run_path
from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run

PROPOSAL = 2937


def test_planted_pedestal_and_noise_recovered(tmp_path):
    sim = CameraSim(camera="hrixs", shape=(48, 64), n_trains=100, noise_adu=3.0)
    simulate_hrixs_run(tmp_path, PROPOSAL, 750, sim, "dark")
    truth = read_truth(tmp_path, PROPOSAL, 750)
    _, frames = read_frames(extra_data.RunDirectory(run_path(tmp_path, PROPOSAL, 750)), sim.preset)
    dark = characterise_dark(frames, "hrixs")
    # mean: within 4 standard errors (noise and rounding to ADU over 100 frames)
    err = np.sqrt(3.0 ** 2 + 1 / 12) / np.sqrt(100)
    assert np.max(np.abs(dark.mean - truth["pedestal"])) < 5 * err
    assert np.median(dark.noise) == pytest.approx(np.sqrt(9 + 1 / 12), rel=0.02)
    assert dark.mask.all() and dark.n_frames == 100


def test_bad_pixels():
    rng = np.random.default_rng(1)
    frames = 100 + 2 * rng.standard_normal((50, 20, 30))
    frames[:, 3, 4] = 100            # dead: no noise
    frames[:, 5, 6] += 400           # hot
    frames[:, 7, 8] *= 1 + 0.5 * rng.standard_normal(50)  # noisy
    dark = characterise_dark(frames)
    assert dark.status[3, 4] & DEAD and dark.status[5, 6] & HOT and dark.status[7, 8] & NOISY
    assert dark.mask.sum() == 20 * 30 - 3


def test_dark_of_other_shape_camera_or_mode_refused():
    dark = characterise_dark(np.random.default_rng(0).normal(100, 2, (5, 8, 10)), "newton",
                             {"preampGain": 1, "HighCapacity": 0})
    check_dark(dark, (8, 10), {"preampGain": 1, "HighCapacity": 0}, "newton")
    cases = [((8, 12), {}, "", "8x10 pixels, the data 8x12"),
             ((8, 10), {}, "hrixs", "camera 'newton', data of 'hrixs'"),
             ((8, 10), {"preampGain": 2}, "", "preampGain=1, data with preampGain=2")]
    for shape, settings, camera, text in cases:
        with pytest.raises(CalibrationError, match=text) as err:
            check_dark(dark, shape, settings, camera, what="dark run 751")
        assert str(err.value).startswith("dark run 751: ") and "\n" not in str(err.value)


def test_too_few_frames_refused():
    with pytest.raises(CalibrationError, match="N >= 2"):
        characterise_dark(np.zeros((1, 4, 4)))


def test_file_round_trip(tmp_path):
    dark = characterise_dark(np.random.default_rng(0).normal(100, 2, (5, 8, 10)), "newton", {"preampGain": 2})
    dark.save(tmp_path / "d.h5")
    back = CameraDark.load(tmp_path / "d.h5")
    np.testing.assert_array_equal(back.mean, dark.mean)
    np.testing.assert_array_equal(back.noise, dark.noise)
    np.testing.assert_array_equal(back.status, dark.status)
    assert (back.camera, back.settings, back.n_frames) == ("newton", {"preampGain": 2.0}, 5)
