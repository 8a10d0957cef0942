"""ROI and projection against hand-made frames with known content."""
import numpy as np
import pytest
from smalldata.funcs.projection import Projection
from smalldata.funcs.roi import ROI

from smalldata.errors import ConfigError
from smalldata.plugin.frames import Frames


def frames_with(data, valid=None, modules=(2, 5)):
    n = data.shape[0]
    valid = np.ones(data.shape, bool) if valid is None else valid
    ids = np.arange(n, dtype=np.uint64)
    return Frames(data=data.astype(np.float32), valid=valid, units="ADU", train_ids=ids, pulse_ids=ids,
                  cell_ids=ids.astype(np.uint16), modules=modules)


def test_roi_statistics_of_planted_spots():
    data = np.zeros((3, 2, 128, 512), np.float32)
    data[0, 1, 20, 30] = 10.0          # one spot in module 5
    data[1, 1, 20, 30] = 4.0
    data[1, 1, 40, 50] = 12.0           # two spots: com between them
    data[2, 0, 20, 30] = 99.0           # module 2: outside the function's module
    valid = np.ones(data.shape, bool)
    valid[1, 1, 40, 50] = False         # masked in frame 1 only
    roi = ROI(name="r", module=5, roi=[10, 60, 20, 80])
    out = roi.process(frames_with(data, valid))
    np.testing.assert_array_equal(out["sum"], [10.0, 4.0, 0.0])
    np.testing.assert_array_equal(out["npix"], [50 * 60, 50 * 60 - 1, 50 * 60])
    np.testing.assert_array_equal(out["max"], [10.0, 4.0, 0.0])
    np.testing.assert_allclose(out["com_y"][:2], [20, 20])
    np.testing.assert_allclose(out["com_x"][:2], [30, 30])
    assert np.isnan(out["com_y"][2])
    np.testing.assert_allclose(out["mean"], [10 / 3000, 4 / 2999, 0])


def test_roi_centre_of_mass_and_thresholds():
    data = np.zeros((1, 1, 128, 512), np.float32)
    data[0, 0, 10, 10] = 3.0
    data[0, 0, 20, 40] = 1.0
    data[0, 0, 30, 30] = 500.0         # above threshold_max: excluded as bad
    roi = ROI(name="r", module=0, roi=[0, 64, 0, 64], threshold=2.0, threshold_max=100.0, write_image=True)
    out = roi.process(frames_with(data, modules=(0,)))
    assert out["sum"][0] == 3.0        # the 1.0 pixel is below the threshold
    assert out["npix"][0] == 64 * 64 - 1
    assert out["com_y"][0] == 10 and out["com_x"][0] == 10
    assert np.isnan(out["image"][0, 30, 30]) and out["image"][0, 20, 40] == 0


def test_projection_child_of_roi():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(4, 1, 128, 512)).astype(np.float32)
    roi = ROI(name="r", module=7, roi=[5, 25, 100, 140])
    roi.addFunc(Projection(name="p", axis=0))
    roi.addFunc(Projection(name="q", axis=1, mean=True))
    out = roi.run(frames_with(data, modules=(7,)))
    crop = data[:, 0, 5:25, 100:140].astype(np.float64)
    np.testing.assert_allclose(out["r_p_profile"], crop.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(out["r_q_profile"], crop.mean(axis=2), rtol=1e-5, atol=1e-6)
    assert out["r_p_profile"].shape == (4, 40) and out["r_q_npix"][0, 0] == 40


@pytest.mark.parametrize("kwargs, param", [
    (dict(module=16), "module"), (dict(roi=[0, 0, 0, 10]), "roi"), (dict(roi=[0, 10, 500, 513]), "roi"),
    (dict(roi=[0, 10, 0]), "roi"), (dict(threshold=5, threshold_max=1), "threshold_max")])
def test_roi_config_errors(kwargs, param):
    """Form errors when the config is read; bounds against the detector's type when it is set up."""
    from types import SimpleNamespace

    from smalldata.detectors.dssc import DSSC

    with pytest.raises(ConfigError) as info:
        ROI(**kwargs).setFromDet(SimpleNamespace(type=DSSC, modules=tuple(range(16))))
    assert info.value.path == param


def test_roi_bounds_follow_the_detector_type():
    """A region beyond a DSSC module fits a camera's larger image, and the camera's bounds are its own."""
    from types import SimpleNamespace

    from smalldata.cameras.presets import get_preset
    from smalldata.detectors.camera import camera_type

    newton = SimpleNamespace(type=camera_type(get_preset("newton")), modules=(0,))
    ROI(roi=[0, 512, 0, 2048]).setFromDet(newton)
    with pytest.raises(ConfigError, match="512 x 2048"):
        ROI(roi=[0, 513, 0, 10]).setFromDet(newton)
    with pytest.raises(ConfigError, match="0..0"):
        ROI(module=1, roi=[0, 10, 0, 10]).setFromDet(newton)


def test_projection_needs_module_on_full_frames():
    with pytest.raises(ConfigError, match="needs 'module'"):
        Projection(axis=0).process(frames_with(np.zeros((1, 1, 128, 512))))
    with pytest.raises(ConfigError):
        Projection(axis=2)
