"""Frame patterns and intra-dark subtraction (smalldata.pulses.patterns)."""
import numpy as np
import pytest

from smalldata.errors import ConfigError
from smalldata.pulses.patterns import FramePattern, matching_dark_frames, subtract_intra_darks

PP4 = ["pumped", "pumped_dark", "unpumped", "unpumped_dark"]


def batch(frames_per_train=(10, 7), shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    tid = np.concatenate([np.full(n, 1000 + t, np.uint64) for t, n in enumerate(frames_per_train)])
    fidx = np.concatenate([np.arange(n) for n in frames_per_train])
    data = rng.normal(10, 3, (len(tid),) + shape).astype(np.float32)
    return tid, fidx, data


def test_labels_and_ids():
    p = FramePattern(PP4)
    assert p.period == 4 and p.unique_labels == tuple(PP4)
    assert p.dark_labels == ("pumped_dark", "unpumped_dark")
    f = np.arange(9)
    assert p.label_ids(f).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert p.is_dark(f).tolist() == [False, True] * 4 + [False]
    assert p.labels_of(np.array([5, 2])).tolist() == ["pumped_dark", "unpumped"]
    q = FramePattern(["a", "b", "a", "Dark"])
    assert q.unique_labels == ("a", "b", "Dark") and q.label_ids(np.arange(4)).tolist() == [0, 1, 0, 2]
    assert q.label_is_dark.tolist() == [False, False, True]
    assert FramePattern().label_ids(np.arange(3)).tolist() == [0, 0, 0]


def test_matching_rules():
    p = FramePattern(PP4)
    assert p.dark_offsets("next").tolist() == [1, 0, 1, 0]
    assert p.dark_offsets("name").tolist() == [1, 0, 1, 0]
    q = FramePattern(["pumped", "unpumped", "pumped_dark", "unpumped_dark"])
    assert q.dark_offsets("next").tolist() == [2, 1, 0, 0]
    assert q.dark_offsets("name").tolist() == [2, 2, 0, 0]
    assert q.matching_dark_labels("next") == {"pumped": "pumped_dark", "unpumped": "pumped_dark"}
    assert q.matching_dark_labels("name") == {"pumped": "pumped_dark", "unpumped": "unpumped_dark"}
    r = FramePattern(["dark", "image"])  # the next dark wraps into the next repetition
    assert r.dark_offsets("next").tolist() == [0, 1]
    with pytest.raises(ConfigError):
        r.dark_offsets("name")  # no "image_dark"
    with pytest.raises(ConfigError):
        FramePattern(["a", "b"]).dark_offsets("next")
    with pytest.raises(ConfigError):
        p.dark_offsets("nearest")


@pytest.mark.parametrize("labels", [[], "pumped", ["a", ""], ["a/b"], [1, 2]])
def test_bad_patterns(labels):
    with pytest.raises(ConfigError):
        FramePattern(labels)


def test_matching_frames_with_incomplete_last_repetition():
    tid, fidx, _ = batch((10, 7))
    ref = matching_dark_frames(tid, fidx, FramePattern(PP4))
    # train 1 (batch rows 10..16) has frames 0..6: frame 6 (unpumped) lacks frame 7, so it takes the
    # previous repetition's unpumped_dark, frame 3 (batch row 13)
    assert ref[:10].tolist() == [1, -1, 3, -1, 5, -1, 7, -1, 9, -1]
    assert ref[10:].tolist() == [11, -1, 13, -1, 15, -1, 13]
    # frames may come in any order within the batch
    perm = np.random.default_rng(1).permutation(len(tid))
    ref_p = matching_dark_frames(tid[perm], fidx[perm], FramePattern(PP4))
    mapped = np.where(ref_p >= 0, perm[np.maximum(ref_p, 0)], -1)  # back to original rows
    assert np.array_equal(mapped[np.argsort(perm)], ref)


def test_subtract_matching_frame():
    tid, fidx, data = batch((10, 7))
    p = FramePattern(PP4)
    out, valid = subtract_intra_darks(data, tid, fidx, p, mode="matching")
    ref = matching_dark_frames(tid, fidx, p)
    light = ~p.is_dark(fidx)
    np.testing.assert_array_equal(out[light], data[light] - data[ref[light]])
    np.testing.assert_array_equal(out[~light], data[~light])  # darks unchanged
    assert valid.all()


def test_subtract_train_mean_with_valid_pixels():
    tid, fidx, data = batch((8, 6), seed=2)
    rng = np.random.default_rng(3)
    good = rng.random(data.shape) > 0.2
    p = FramePattern(PP4)
    out, valid = subtract_intra_darks(data, tid, fidx, p, mode="train_mean", valid=good)
    dark = p.is_dark(fidx)
    for t in np.unique(tid):
        d = (tid == t) & dark
        cnt = good[d].sum(axis=0)
        mean = np.where(good[d], data[d], 0).astype(np.float64).sum(axis=0) / np.maximum(cnt, 1)
        for i in np.flatnonzero((tid == t) & ~dark):
            np.testing.assert_allclose(out[i], data[i] - mean.astype(np.float32), rtol=1e-6, atol=1e-5)
            assert np.array_equal(valid[i], good[i] & (cnt > 0))


def test_subtract_matching_mean():
    tid, fidx, data = batch((12,), seed=4)
    p = FramePattern(["pumped", "unpumped", "pumped_dark", "unpumped_dark"])
    out, _ = subtract_intra_darks(data, tid, fidx, p, mode="matching_mean", match_by="name")
    lab = p.labels_of(fidx)
    for light, dk in (("pumped", "pumped_dark"), ("unpumped", "unpumped_dark")):
        mean = data[lab == dk].astype(np.float64).mean(axis=0).astype(np.float32)
        np.testing.assert_allclose(out[lab == light], data[lab == light] - mean, rtol=1e-6, atol=1e-5)


def test_train_without_darks_is_nan_and_invalid():
    tid = np.array([1, 1, 2], np.uint64)
    fidx = np.array([0, 1, 0])
    data = np.ones((3, 2), np.float32)
    out, valid = subtract_intra_darks(data, tid, fidx, FramePattern(["image", "dark"]), mode="train_mean")
    assert np.isnan(out[2]).all() and not valid[2].any()
    assert out[0].tolist() == [0.0, 0.0] and valid[0].all()
    with pytest.raises(ConfigError):
        subtract_intra_darks(data, tid, fidx, FramePattern(["image", "dark"]), mode="median")
    with pytest.raises(ConfigError):
        subtract_intra_darks(data, tid, fidx, FramePattern(["image"]), mode="matching")


def test_result_independent_of_how_trains_are_batched():
    tid, fidx, data = batch((8, 8, 8), seed=6)
    p = FramePattern(PP4)
    whole, _ = subtract_intra_darks(data, tid, fidx, p, mode="train_mean")
    parts = [subtract_intra_darks(data[s], tid[s], fidx[s], p, mode="train_mean")[0]
             for s in (slice(0, 8), slice(8, 24))]
    assert np.array_equal(np.concatenate(parts), whole)
