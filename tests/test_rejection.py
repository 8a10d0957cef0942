"""Frame rejection reasons, user frame masks and vetoes (smalldata.pulses.rejection)."""
import h5py
import numpy as np
import pytest

from smalldata.errors import ConfigError, DataError
from smalldata.plugin.skipped import fill_value
from smalldata.pulses.rejection import (
    FrameRejection,
    Reason,
    UserFrameMask,
    Veto,
    digitizer_reasons,
    evaluate_veto,
    expand_outputs,
    max_frames_reasons,
    reason_names,
    reason_table,
    xgm_reasons,
)


def test_reason_bits_are_distinct_powers_of_two():
    bits = list(reason_table().values())
    assert bits == [1, 2, 4, 8, 16, 32, 64]
    assert reason_names(Reason.XGM_LOW | Reason.VETO) == ["XGM_LOW", "VETO"]


def test_max_frames():
    r = max_frames_reasons(np.array([0, 1, 2, 3, 0, 5]), 3)
    assert r.dtype == np.uint16 and r.tolist() == [0, 0, 0, 1, 0, 1]
    assert max_frames_reasons(np.arange(4), None).tolist() == [0] * 4
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError):
            max_frames_reasons(np.arange(4), bad)


def test_xgm_limits_nan_and_darks():
    xgm = np.array([50.0, 150.0, 1500.0, np.nan, np.nan, 10.0])
    applies = np.array([True, True, True, True, False, False])  # last two are dark frames
    r = xgm_reasons(xgm, 100.0, 1000.0, applies)
    assert r.tolist() == [2, 0, 4, 2, 0, 0]
    assert xgm_reasons(xgm, None, 1000.0).tolist() == [0, 0, 4, 2, 2, 0]  # NaN = no XGM: low
    assert xgm_reasons(xgm).tolist() == [0] * 6  # no limits: nothing checked
    assert xgm_reasons(np.array([100.0, 1000.0]), 100.0, 1000.0).tolist() == [0, 0]  # inclusive
    with pytest.raises(ConfigError):
        xgm_reasons(xgm, "low", None)


def test_digitizer_limits_one_bit():
    r = digitizer_reasons(np.array([5.0, 50.0, 500.0, np.nan]), 10.0, 100.0)
    assert r.tolist() == [8, 0, 8, 8]


def user_mask_arrays():
    tids = np.array([10, 11, 13], np.uint64)
    mask = np.array([[1, 0, 1], [1, 1, 1], [0, 0, 1]], bool)
    return tids, mask


def test_user_mask_h5_and_npy(tmp_path):
    tids, mask = user_mask_arrays()
    h5 = tmp_path / "mask.h5"
    with h5py.File(h5, "w") as f:
        f["trainId"] = tids[::-1]  # any order
        f["mask"] = mask[::-1]
    frames_t = np.array([10, 10, 10, 11, 12, 13, 13, 13, 11], np.uint64)
    frames_f = np.array([0, 1, 2, 1, 0, 0, 2, 3, 5])
    expect_keep = [True, False, True, True, False, False, True, False, False]
    m = UserFrameMask.from_file(str(h5))
    assert m.keep(frames_t, frames_f).tolist() == expect_keep
    assert m.reasons(frames_t, frames_f).tolist() == [0 if k else 16 for k in expect_keep]
    npy = tmp_path / "mask.npy"
    np.save(npy, mask)
    m2 = UserFrameMask.from_file(str(npy), run_train_ids=tids)
    assert m2.keep(frames_t, frames_f).tolist() == expect_keep
    with pytest.raises(ConfigError):
        UserFrameMask.from_file(str(npy))  # .npy needs the run's train ids
    with pytest.raises(ConfigError):
        UserFrameMask.from_file(str(npy), run_train_ids=tids[:2])
    with pytest.raises(ConfigError):
        UserFrameMask.from_file(str(tmp_path / "missing.h5"))
    (tmp_path / "mask.txt").write_text("1 0")
    with pytest.raises(ConfigError):
        UserFrameMask.from_file(str(tmp_path / "mask.txt"))
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["mask"] = mask
    with pytest.raises(ConfigError):
        UserFrameMask.from_file(str(tmp_path / "bad.h5"))
    with pytest.raises(ConfigError):
        UserFrameMask(np.array([1, 1, 2]), mask)


def test_frame_rejection_combines_every_option(tmp_path):
    tids, mask = user_mask_arrays()
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["trainId"] = tids
        f["mask"] = mask
    rej = FrameRejection(max_frames=2, xgm_min=100.0, xgm_max=1000.0, digitizer_min=1.0, digitizer_max=50.0,
                         user_mask=str(tmp_path / "m.h5"), exclude_dark=True)
    train = np.array([10, 10, 10, 11, 11, 11], np.uint64)
    fidx = np.array([0, 1, 2, 0, 1, 2])
    dark = np.array([False, True, False, False, True, False])
    xgm = np.array([500.0, np.nan, 2000.0, 50.0, np.nan, 500.0])
    dig = np.array([10.0, np.nan, 10.0, 100.0, np.nan, 10.0])
    r = rej.reasons(train, fidx, is_dark=dark, xgm=xgm, digitizer=dig)
    assert r.tolist() == [0, 16 | 64, 1 | 4, 2 | 8, 64, 1]
    with pytest.raises(DataError):
        rej.reasons(train, fidx, is_dark=dark, digitizer=dig)  # XGM limits without XGM values
    assert FrameRejection().reasons(train, fidx).tolist() == [0] * 6
    with pytest.raises(ConfigError):
        FrameRejection(xgm_min=10.0, xgm_max=5.0)
    with pytest.raises(ConfigError):
        FrameRejection(exclude_dark="yes")


@pytest.mark.parametrize("op, expect", [("<", [1, 0, 0, 1]), ("<=", [1, 1, 0, 1]), (">", [0, 0, 1, 1]),
                                        (">=", [0, 1, 1, 1]), ("==", [0, 1, 0, 1]), ("!=", [1, 0, 1, 1])])
def test_veto_ops_and_nan(op, expect):
    outputs = {"hit_npeaks": np.array([3.0, 16.0, 20.0, np.nan])}
    assert evaluate_veto(outputs, Veto("hit_npeaks", op, 16)).astype(int).tolist() == expect


def test_veto_on_ints_and_errors():
    outputs = {"roi_n": np.array([0, 5, -1], np.int32), "img": np.zeros((3, 2, 2))}
    assert evaluate_veto(outputs, Veto("roi_n", "<", 1)).tolist() == [True, False, True]
    with pytest.raises(ConfigError):
        evaluate_veto(outputs, Veto("roi_sum", "<", 1))
    with pytest.raises(ConfigError):
        evaluate_veto(outputs, Veto("img", "<", 1))
    for args in (("k", "=<", 1), ("", "<", 1), ("k", "<", "1"), ("k", "<", True)):
        with pytest.raises(ConfigError):
            Veto(*args)


def test_veto_chain_fill_values():
    """A veto skips the later functions; their outputs are filled for the skipped frames."""
    first = {"hit_npeaks": np.array([20.0, 3.0, 18.0, 1.0])}
    vetoed = evaluate_veto(first, Veto("hit_npeaks", "<", 16))
    later = {"index_ok": np.array([True, False]), "index_n": np.array([7, 9], np.int16),
             "index_cell": np.array([1.5, 2.5], np.float32), "index_u": np.array([3, 4], np.uint16)}
    full = expand_outputs(later, ~vetoed)
    assert full["index_ok"].tolist() == [True, False, False, False]
    assert full["index_n"].tolist() == [7, -1, 9, -1] and full["index_n"].dtype == np.int16
    assert np.array_equal(full["index_cell"], np.array([1.5, np.nan, 2.5, np.nan], np.float32), equal_nan=True)
    assert full["index_u"].tolist() == [3, -1, 4, -1] and full["index_u"].dtype == np.int32
    # the dtype does not depend on how many frames were vetoed
    assert expand_outputs({"u": np.array([1, 2], np.uint16)}, np.ones(2, bool))["u"].dtype == np.int32
    assert fill_value(np.uint64) == (-1, np.dtype(np.int64))
    with pytest.raises(DataError):
        expand_outputs({"x": np.zeros(3)}, ~vetoed)
