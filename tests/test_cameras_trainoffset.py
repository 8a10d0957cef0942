"""The train-id offset of a camera measured by correlation with a reference, on planted shifts."""
import numpy as np
import pytest

from smalldata.cameras.trainoffset import best_train_offset
from smalldata.errors import DataError


@pytest.mark.parametrize("planted", [-1, 0, 1])
def test_planted_shift_found(planted):
    rng = np.random.default_rng(4)
    ids = np.arange(1000, 1200)
    xgm = rng.lognormal(0, 0.3, len(ids))                       # per-train pulse energy
    # the camera records train t's spectrum under id t - planted
    cam_ids = ids - planted
    cam = 50 * xgm + rng.normal(0, 2, len(ids))
    best, corr = best_train_offset(cam_ids, cam, ids, xgm)
    assert best == planted
    assert corr[planted] > 0.9 and all(abs(c) < 0.3 for s, c in corr.items() if s != planted)


def test_no_common_trains_refused():
    with pytest.raises(DataError, match="trains in common"):
        best_train_offset(np.arange(5), np.ones(5), np.arange(100, 105), np.arange(5.0))
