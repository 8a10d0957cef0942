"""Autocorrelation: planted speckle contrast and size are recovered; mask normalisation is exact."""
from types import SimpleNamespace

import numpy as np
import pytest
from smalldata.funcs.autocorrelation import Autocorrelation, autocorrelation

from smalldata.errors import ConfigError
from smalldata.plugin.frames import Frames
from smalldata.simulate.physics import speckle_intensity


def speckle(shape, contrast, size, rng):
    """The simulator's planted speckle: mean 1, contrast ``contrast``, Gaussian correlation of ``size`` px."""
    return speckle_intensity(shape, contrast, size, rng)


def make_det(modules=(0, 1, 2)):
    m = len(modules)
    return SimpleNamespace(modules=tuple(modules), units="ADU", gain=None, mask=np.ones((m, 128, 512), bool),
                           noise_in_units=np.ones((m, 128, 512), np.float32))


def crop_frames(data, valid=None):
    n = len(data)
    return Frames(data=np.asarray(data, np.float32), valid=np.ones(data.shape, bool) if valid is None else valid,
                  units="ADU", train_ids=np.arange(n, dtype=np.uint64), pulse_ids=np.zeros(n, np.uint64),
                  cell_ids=np.zeros(n, np.uint16), modules=None)


def detector_speckle(rng, n, shape, contrast, size, photons=300.0, gain=5.0, noise=8.0):
    """High-intensity speckle: Poisson photons times gain plus electronic noise (ADU)."""
    intensity = speckle((n,) + shape, contrast, size, rng)
    return rng.poisson(intensity * photons) * gain + rng.normal(0, noise, intensity.shape)


@pytest.mark.parametrize("contrast, size", [(0.4, 2.0), (0.2, 1.3)])
def test_planted_contrast_and_size(contrast, size):
    rng = np.random.default_rng(7)
    data = detector_speckle(rng, 12, (128, 256), contrast, size)
    func = Autocorrelation(crop_size=8, fit_radius=3)
    func.setup(make_det())
    out = func.run(crop_frames(data))
    assert out["autocorrelation_acorr"].shape == (12, 17, 17)
    assert abs(np.mean(out["autocorrelation_contrast"]) - contrast) < 0.02
    assert abs(np.mean(out["autocorrelation_speckle_size"]) / size - 1) < 0.10
    assert abs(np.mean(out["autocorrelation_speckle_size_x"]) / size - 1) < 0.10
    assert abs(np.mean(out["autocorrelation_speckle_size_y"]) / size - 1) < 0.10
    # the zero lag carries shot noise and electronic noise on top of the speckle contrast
    assert np.all(out["autocorrelation_acorr"][:, 8, 8] - 1 > out["autocorrelation_contrast"])
    np.testing.assert_array_equal(out["autocorrelation_horizontal"], out["autocorrelation_acorr"][:, 8, :])
    np.testing.assert_array_equal(out["autocorrelation_vertical"], out["autocorrelation_acorr"][:, :, 8])


def test_same_numbers_for_any_batch():
    rng = np.random.default_rng(8)
    data = detector_speckle(rng, 5, (61, 83), 0.3, 1.5)
    valid = rng.random(data.shape) > 0.05
    func = Autocorrelation(crop_size=6)
    whole = func.run(crop_frames(data, valid))
    for i in range(5):
        one = func.run(crop_frames(data[i:i + 1], valid[i:i + 1]))
        for key, value in one.items():
            np.testing.assert_array_equal(value[0], whole[key][i], err_msg=key)


def test_mask_normalisation_is_exact_for_flat_light():
    rng = np.random.default_rng(1)
    level = rng.uniform(50, 150, (3, 1, 1))
    data = np.broadcast_to(level, (3, 60, 80)).copy()
    valid = rng.random(data.shape) > 0.3
    data[~valid] = 1e6  # garbage under the mask must not matter
    g2 = autocorrelation(data, valid, 6)
    np.testing.assert_allclose(g2, 1.0, atol=1e-9)


def test_masked_pixels_do_not_change_the_contrast():
    rng = np.random.default_rng(3)
    data = detector_speckle(rng, 8, (128, 192), 0.3, 1.5)
    func = Autocorrelation(crop_size=5)
    func.setup(make_det())
    clean = func.run(crop_frames(data))
    valid = np.ones(data.shape, bool)
    valid[:, 40:60, 50:90] = False  # a dead block
    valid &= rng.random(data.shape) > 0.1  # and 10 % random bad pixels
    dirty = np.where(valid, data, 5e4)
    masked = func.run(crop_frames(dirty, valid))
    assert abs(np.mean(masked["autocorrelation_contrast"]) - 0.3) < 0.02
    assert np.max(np.abs(masked["autocorrelation_contrast"] - clean["autocorrelation_contrast"])) < 0.03


def test_standalone_module_roi_equals_crop():
    rng = np.random.default_rng(4)
    full = rng.normal(100, 10, (4, 2, 128, 512)).astype(np.float32)
    full[:, 1, 20:80, 100:180] = detector_speckle(rng, 4, (60, 80), 0.3, 1.5)
    frames = Frames(data=full, valid=np.ones(full.shape, bool), units="ADU",
                    train_ids=np.arange(4, dtype=np.uint64), pulse_ids=np.zeros(4, np.uint64),
                    cell_ids=np.zeros(4, np.uint16), modules=(3, 9))
    standalone = Autocorrelation(module=9, roi=[20, 80, 100, 180], crop_size=4)
    standalone.setup(make_det((3, 9)))
    assert standalone.required_modules() == (9,)
    child = Autocorrelation(crop_size=4)
    child.setup(make_det((3, 9)))
    a = standalone.run(frames)
    b = child.run(crop_frames(full[:, 1, 20:80, 100:180]))
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)


def test_as_child_of_roi():
    from smalldata.funcs.roi import ROI

    rng = np.random.default_rng(5)
    full = np.zeros((3, 1, 128, 512), np.float32)
    full[:, 0, 0:64, 0:128] = detector_speckle(rng, 3, (64, 128), 0.4, 2.0)
    frames = Frames(data=full, valid=np.ones(full.shape, bool), units="ADU",
                    train_ids=np.arange(3, dtype=np.uint64), pulse_ids=np.zeros(3, np.uint64),
                    cell_ids=np.zeros(3, np.uint16), modules=(2,))
    roi = ROI(name="spk", module=2, roi=[0, 64, 0, 128])
    roi.addFunc(Autocorrelation(crop_size=5))
    roi.setup(make_det((2,)))
    out = roi.run(frames)
    assert out["spk_autocorrelation_acorr"].shape == (3, 11, 11)
    assert np.all(np.isfinite(out["spk_autocorrelation_contrast"]))


@pytest.mark.parametrize("kwargs, key", [
    (dict(module=0, roi=[0, 64, 500, 600]), "roi"),
    (dict(module=0, roi=[64, 32, 0, 100]), "roi"),
    (dict(module=16, roi=[0, 64, 0, 64]), "module"),
    (dict(module=0), "roi"),
    (dict(roi=[0, 64, 0, 64]), "module"),
    (dict(module=0, roi=[0, 16, 0, 64], crop_size=10), "crop_size"),
    (dict(crop_size=0), "crop_size"),
    (dict(fit_radius=-1), "fit_radius"),
])
def test_config_errors(kwargs, key):
    """Form errors at construction; module and region bounds against the DSSC's type."""
    from smalldata.detectors.dssc import DSSC

    with pytest.raises(ConfigError) as err:
        Autocorrelation(**kwargs).check_detector_type(DSSC)
    assert err.value.path == key


def test_runtime_config_errors():
    func = Autocorrelation(module=5, roi=[0, 64, 0, 64])
    with pytest.raises(ConfigError, match="module 5 is not among"):
        func.setup(make_det((0, 1)))
    with pytest.raises(ConfigError, match="leave module and roi unset"):
        func.run(crop_frames(np.zeros((2, 64, 64))))
    lone = Autocorrelation()
    with pytest.raises(ConfigError, match="needs module and roi"):
        lone.run(Frames(data=np.zeros((1, 1, 128, 512), np.float32), valid=np.ones((1, 1, 128, 512), bool),
                        units="ADU", train_ids=np.zeros(1, np.uint64), pulse_ids=np.zeros(1, np.uint64),
                        cell_ids=np.zeros(1, np.uint16), modules=(0,)))
