"""The compiled droplet pass equals the ndimage.label reference and an oracle written here."""
import numpy as np
import pytest
from scipy import ndimage
from smalldata.funcs.droplet import find_droplets
from smalldata.funcs.droplet_find import DropletSet

GAIN = 10.0  # ADU per photon


DROPLET_FIELDS = ("pixel_plane", "pixel_row", "pixel_col", "pixel_droplet", "pixel_value", "event", "plane",
                  "adu", "row", "col", "npix", "counts", "event_adu")


def assert_same_droplets(a: DropletSet, b: DropletSet, fields=DROPLET_FIELDS):
    """Same droplets in the same order, same numbers bit for bit (NaN positions of zero sums alike)."""
    for field in fields:
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype, field
        np.testing.assert_array_equal(x, y, err_msg=field, strict=True)


def ndimage_droplets(data, valid, seed, grow, asic=64):
    """Per-plane oracle: ``scipy.ndimage.label`` of each ASIC, seeded components, their sums.

    Returns rows (event, plane, first pixel's row and column, npix, adu, sum of value * row,
    sum of value * column) sorted by event, plane, first pixel."""
    rows = []
    n, m, h, w = data.shape
    for e in range(n):
        for p in range(m):
            for r0 in range(0, h, asic):
                for c0 in range(0, w, asic):
                    img = data[e, p, r0:r0 + asic, c0:c0 + asic].astype(np.float64)
                    ok = valid[e, p, r0:r0 + asic, c0:c0 + asic]
                    g = np.broadcast_to(grow, (m, h, w))[p, r0:r0 + asic, c0:c0 + asic]
                    s = np.broadcast_to(seed, (m, h, w))[p, r0:r0 + asic, c0:c0 + asic]
                    lab, nl = ndimage.label(ok & (data[e, p, r0:r0 + asic, c0:c0 + asic] > g))
                    for i in range(1, nl + 1):
                        rr, cc = np.nonzero(lab == i)
                        if not (data[e, p, r0 + rr, c0 + cc] > s[rr, cc]).any():
                            continue
                        v = img[rr, cc]
                        rows.append((e, p, r0 + rr[0], c0 + cc[0], len(rr), v.sum(),
                                     (v * (r0 + rr)).sum(), (v * (c0 + cc)).sum()))
    rows = np.array(rows, dtype=np.float64).reshape(-1, 8)
    return rows[np.lexsort((rows[:, 3], rows[:, 2], rows[:, 1], rows[:, 0]))]


def planted_droplets(rng, shape=(3, 2, 128, 512)):
    """Photons (20 % of the charge shared with a neighbour), noise and bad pixels; in ADU."""
    k = rng.poisson(0.05, shape)
    signal = k * GAIN
    share = (rng.random(shape) < 0.5) & (k > 0)
    moved = 0.2 * signal * share
    signal = signal - moved
    signal[..., :, 1:] += moved[..., :, :-1]
    data = (signal + rng.normal(0, 1, shape)).astype(np.float32)
    data[0, 0, 60:70, 60:70] = 40.0  # a block across the ASIC corner (4 droplets, one per ASIC)
    valid = rng.random(shape) > 0.01
    return data, valid


@pytest.mark.parametrize("min_sum", [0.0, 12.0])
def test_compiled_droplets_equal_the_ndimage_reference(min_sum):
    rng = np.random.default_rng(2)
    data, valid = planted_droplets(rng)
    noise = (0.8 + 0.4 * rng.random((2, 128, 512))).astype(np.float32)
    seed, grow = np.float32(5.0) * noise, np.float32(3.0) * noise
    fast = find_droplets(data, valid, seed, grow, min_sum, method="compiled")
    ref = find_droplets(data, valid, seed, grow, min_sum, method="reference")
    assert len(fast) > 2000 and fast.npix.max() >= 25
    assert_same_droplets(fast, ref)
    # both equal a plain per-ASIC ndimage.label of each plane (the sums to rounding: another order)
    oracle = ndimage_droplets(data, valid, seed, grow)
    oracle = oracle[oracle[:, 5] >= min_sum] if min_sum > 0 else oracle
    first = np.lexsort((fast.pixel_col, fast.pixel_row, fast.pixel_droplet))
    first = first[np.r_[True, np.diff(fast.pixel_droplet[first]) > 0]]
    np.testing.assert_array_equal(fast.event, oracle[:, 0])
    np.testing.assert_array_equal(fast.plane, oracle[:, 1])
    np.testing.assert_array_equal(fast.pixel_row[first], oracle[:, 2])
    np.testing.assert_array_equal(fast.pixel_col[first], oracle[:, 3])
    np.testing.assert_array_equal(fast.npix, oracle[:, 4])
    np.testing.assert_allclose(fast.adu, oracle[:, 5], rtol=1e-12)
    np.testing.assert_allclose(fast.row, oracle[:, 6] / oracle[:, 5], rtol=1e-12)
    np.testing.assert_allclose(fast.col, oracle[:, 7] / oracle[:, 5], rtol=1e-12)
    n_events = len(data)
    np.testing.assert_array_equal(fast.counts, np.bincount(oracle[:, 0].astype(int), minlength=n_events))
    np.testing.assert_array_equal(fast.event_adu, np.bincount(fast.event, weights=fast.adu, minlength=n_events))
    np.testing.assert_allclose(fast.event_adu, np.bincount(oracle[:, 0].astype(int), weights=oracle[:, 5],
                                                           minlength=n_events), rtol=1e-12)


def test_compiled_and_reference_agree_on_every_input_kind():
    rng = np.random.default_rng(8)
    data, valid = planted_droplets(rng, (2, 1, 128, 512))
    crop = data[:, 0, 10:90, 30:200]  # a non-contiguous 2-D crop: one plane per frame, no ASIC cut
    cases = [(data, valid, 5.0 * GAIN / 10, 3.0 * GAIN / 10, {}),
             (data.astype(np.float64), valid, 5.0, 3.0, {}),                         # float64 data
             (data, valid, 5.0, 3.0, {"split_asics": False}),
             (crop, valid[:, 0, 10:90, 30:200], 5.0, 3.0, {}),
             (np.zeros_like(data), valid, 5.0, 3.0, {}),                               # no droplet at all
             (data[:0], valid[:0], 5.0, 3.0, {})]                                      # no frame at all
    for i, (d, v, seed, grow, kw) in enumerate(cases):
        fast = find_droplets(d, v, seed, grow, method="compiled", **kw)
        ref = find_droplets(d, v, seed, grow, method="reference", **kw)
        assert_same_droplets(fast, ref)
        if i < 4:
            assert len(fast) > 50, i
    bare = find_droplets(data, valid, 5.0, 3.0, method="compiled", with_pixels=False)
    assert bare.pixel_row is None and bare.pixel_value is None
    assert_same_droplets(bare, find_droplets(data, valid, 5.0, 3.0, method="reference"), DROPLET_FIELDS[5:])
    with pytest.raises(ValueError, match="droplet finding method"):
        find_droplets(data, valid, 5.0, 3.0, method="sparse")
