"""smalldata.testing: the checks users run on their own functions."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from smalldata import DetObjectFunc
from smalldata.errors import FunctionError
from smalldata.funcs.droplet import Droplet
from smalldata.funcs.photons import Photons
from smalldata.funcs.projection import Projection
from smalldata.funcs.roi import ROI
from smalldata.testing import check_function, make_detector, make_frames

EXAMPLES = Path(__file__).parents[1] / "examples"


def photon_frames(n=6, modules=(2, 3), rate=0.3, seed=1):
    rng = np.random.default_rng(seed)
    data = rng.poisson(rate, (n, len(modules), 128, 512)) + rng.normal(0, 0.1, (n, len(modules), 128, 512))
    valid = rng.random(data.shape) > 0.01
    return make_frames(data, valid, modules=modules)


def test_builtin_trees_are_batch_independent():
    frames = photon_frames()
    roi = ROI(name="r", module=3, roi=[10, 70, 100, 260], threshold=0.5)
    roi.addFunc(Projection(name="p", axis=1, mean=True))
    out = check_function(roi, frames, det=make_detector(modules=(2, 3)))
    # the numbers are the ROI's: sum of the good pixels above threshold
    crop = np.where(frames.valid[:, 1, 10:70, 100:260], frames.data[:, 1, 10:70, 100:260], 0)
    np.testing.assert_allclose(out["r_sum"], np.where(crop >= 0.5, crop, 0).sum(axis=(1, 2)), rtol=1e-6)
    drop = Droplet(name="d", threshold=0.5, threshold_low=0.3, threshold_unit="data", save_droplets=True)
    drop.addFunc(Photons(name="ph", kmax=4))
    out = check_function(drop, frames, det=make_detector(modules=(2, 3)), split_at=[2, 3])
    assert out["d_n_droplets"].sum() > 1000 and out["d_ph_n_photons"].sum() >= out["d_n_droplets"].sum()


class BatchMean(DetObjectFunc):
    """Subtracts the batch's mean: its result depends on the other frames of the batch."""

    def process(self, frames):
        s = frames.data.reshape(len(frames), -1).sum(axis=1)
        return {"s": s - s.mean()}


class Stores(DetObjectFunc):
    def __init__(self, name: str = "stores", level: float = 1.0):
        super().__init__(name)
        self.lvl = level

    def process(self, frames):
        return {"s": np.zeros(len(frames))}


class Declares(DetObjectFunc):
    def output_layout(self):
        return {"s": (np.float64, ()), "img": (np.float32, (4, 4))}

    def process(self, frames):
        return {"s": np.zeros(len(frames)), "img": np.zeros((len(frames), 4, 5), np.float32)}


class Clips(DetObjectFunc):
    def process(self, frames):
        np.clip(frames.data, 0, None, out=frames.data)
        return {"s": frames.data.sum(axis=(1, 2, 3))}


class WidensForLargeBatches(DetObjectFunc):
    """Returns float64 for batches of more than two frames, float32 otherwise."""

    def process(self, frames):
        return {"s": np.zeros(len(frames), np.float64 if len(frames) > 2 else np.float32)}


def test_layout_that_depends_on_the_batch_size_fails_as_at_set_up():
    """The helper makes the producer's own set-up check: the same error (class and words) as the producer's."""
    from smalldata.plugin.contract import check_function as setup_check

    frames = photon_frames(n=4)
    with pytest.raises(FunctionError) as at_setup:
        setup_check(WidensForLargeBatches("widens"), [frames, frames.subset(np.arange(1))])
    with pytest.raises(FunctionError) as in_test:
        check_function(WidensForLargeBatches("widens"), frames)
    assert str(in_test.value) == str(at_setup.value)
    assert "'widens_s' is float64 () for 4 frames but float32 () for 1" in str(in_test.value)


def test_batch_dependence_is_found():
    with pytest.raises(AssertionError, match="'batchmean_s' depends on the batch"):
        check_function(BatchMean("batchmean"), photon_frames(n=4))


@pytest.mark.parametrize("func, message", [
    (Stores(), "parameter 'level' is not stored"),
    (Declares("declares"), r"output 'img' is float32 \(4, 5\), output_layout\(\) declares float32 \(4, 4\)"),
    (Clips("clips"), "writes into its input frames"),
])
def test_contract_violations_are_found(func, message):
    with pytest.raises(FunctionError, match=message):
        check_function(func, photon_frames(n=3))


def test_example_checks_itself():
    result = subprocess.run([sys.executable, str(EXAMPLES / "custom_function.py")], capture_output=True, text=True,
                            timeout=120, cwd=EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert "passes smalldata.testing.check_function" in result.stdout
