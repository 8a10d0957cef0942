"""Droplets, greedy photon assignment, p(k) and contrast: planted photons are recovered."""
import functools
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import smalldata.funcs.droplet as droplet_mod
from smalldata.funcs.droplet import Droplet, find_droplets
from smalldata.funcs.photons import Photons, contrast_from_pk, greedy_counts

from smalldata.errors import ConfigError
from smalldata.plugin.frames import Frames
from smalldata.plugin.ragged import Ragged
from smalldata.simulate.physics import speckle_intensity

GAIN = 10.0  # ADU per photon


def make_det(modules=(0, 1), noise=1.0, units="ADU", gain=None, mask=None):
    m = len(modules)
    return SimpleNamespace(
        modules=tuple(modules), units=units, gain=gain,
        mask=np.ones((m, 128, 512), bool) if mask is None else mask,
        noise_in_units=np.broadcast_to(np.float32(noise), (m, 128, 512)).astype(np.float32))


def make_frames(data, valid=None, modules=(0, 1), units="ADU"):
    data = np.asarray(data, dtype=np.float32)
    n = len(data)
    return Frames(data=data, valid=np.ones(data.shape, bool) if valid is None else valid, units=units,
                  train_ids=np.arange(n, dtype=np.uint64), pulse_ids=np.zeros(n, np.uint64),
                  cell_ids=np.zeros(n, np.uint16), modules=modules)


def run(func, det, frames):
    func.setup(det)
    return func.run(frames)


def photon_image(frames, photons_out, key="photons_list"):
    """Rebuild a per-pixel photon-count image from the ragged photon list."""
    img = np.zeros(frames.data.shape, np.int64)
    rag = photons_out[key]
    ev = rag.event_index
    img[ev, rag.values["module"], rag.values["row"], rag.values["col"]] = rag.values["photons"]
    return img


def greedy_reference(x, n):
    """The greedy guess, one photon at a time (reference for the vectorised version)."""
    x = np.array(x, dtype=float)
    k = np.zeros(len(x), int)
    for _ in range(n):
        i = int(np.argmax(x))
        k[i] += 1
        x[i] -= 1.0
    return k


# ---------------------------------------------------------------------------------------------
def test_isolated_photons_recovered_exactly():
    rng = np.random.default_rng(11)
    n, m = 4, 2
    truth = np.zeros((n, m, 128, 512), np.int64)
    signal = np.zeros(truth.shape)
    # candidate sites on a grid of pitch 4 (never touching), 2 pixels away from ASIC borders
    ys, xs = np.meshgrid(np.arange(2, 128, 4), np.arange(2, 512, 4), indexing="ij")
    sites = np.stack([ys.ravel(), xs.ravel()], 1)
    sites = sites[(sites[:, 0] % 64 < 62) & (sites[:, 1] % 64 < 62)]
    for e in range(n):
        for j in range(m):
            pick = sites[rng.choice(len(sites), 150, replace=False)]
            k = np.where(rng.random(150) < 0.1, 2, 1)  # a few pixels with 2 photons
            # charge sharing of single photons: 25 % of the signal to the right neighbour
            share = (rng.random(150) < 0.3) & (k == 1)
            for (r, c), kk, sh in zip(pick, k, share):
                truth[e, j, r, c] = kk
                frac = 0.25 if sh else 0.0
                signal[e, j, r, c] += kk * GAIN * (1 - frac)
                signal[e, j, r, c + 1] += kk * GAIN * frac
    data = signal + rng.normal(0, 0.6, signal.shape)
    frames = make_frames(data)
    drop = Droplet(threshold=5.0, threshold_low=3.0, threshold_unit="data", adu_per_photon=GAIN,
                   save_droplets=True, max_droplets_per_event=10_000)
    drop.addFunc(Photons(save_photons=True, adu_per_photon=GAIN))
    out = run(drop, make_det(), frames)
    per_event = (truth > 0).reshape(n, -1).sum(1)
    np.testing.assert_array_equal(out["droplet_n_droplets"], per_event)
    np.testing.assert_array_equal(out["droplet_photons"], truth.reshape(n, -1).sum(1))
    np.testing.assert_array_equal(out["droplet_photons_n_photons"], truth.reshape(n, -1).sum(1))
    found = photon_image(frames, out, "droplet_photons_list")
    np.testing.assert_array_equal(found, truth)
    # droplet centres of mass sit on the planted pixel (or between it and its sharing neighbour)
    rag = out["droplet_list"]
    assert not out["droplet_capped"].any()
    assert np.all(np.abs(rag.values["row"] - np.round(rag.values["row"])) < 1e-3)
    assert rag.values["npix"].max() <= 2


def test_low_occupancy_recovers_99_percent():
    rng = np.random.default_rng(5)
    n, m = 8, 2
    truth = rng.poisson(0.01, (n, m, 128, 512))
    signal = truth * GAIN
    # half of the photons share 20 % of their charge with a neighbour below (same ASIC)
    share = (rng.random(truth.shape) < 0.5) & (truth > 0)
    share[:, :, 63::64, :] = False
    moved = 0.2 * signal * share
    signal = signal - moved
    signal[:, :, 1:, :] += moved[:, :, :-1, :]
    data = signal + rng.normal(0, 1.0, signal.shape)
    frames = make_frames(data)
    ph = Photons(save_photons=True, adu_per_photon=GAIN, kmax=4)  # noise units: 5 and 3 sigma
    out = run(ph, make_det(noise=1.0), frames)
    found = photon_image(frames, out)
    recovered = np.minimum(found, truth).sum() / truth.sum()
    assert recovered >= 0.99, recovered
    assert abs(out["photons_n_photons"].sum() / truth.sum() - 1) < 0.01
    np.testing.assert_array_equal(out["photons_n_pixels"], np.full(n, m * 128 * 512))
    np.testing.assert_array_equal(out["photons_pk"].sum(1), out["photons_n_pixels"])


@pytest.mark.parametrize("method", ["compiled", "reference"])
def test_droplets_never_cross_asics_modules_frames_or_bad_pixels(monkeypatch, method):
    monkeypatch.setattr(droplet_mod, "find_droplets", functools.partial(find_droplets, method=method))
    data = np.zeros((2, 2, 128, 512), np.float32)
    valid = np.ones(data.shape, bool)
    pairs = [((0, 0, 10, 63), (0, 0, 10, 64)),      # ASIC column border 63|64
             ((0, 0, 20, 127), (0, 0, 20, 128)),    # ASIC column border 127|128
             ((0, 0, 63, 200), (0, 0, 64, 200)),    # ASIC row border 63|64
             ((0, 0, 5, 511), (0, 0, 6, 0)),        # end of a row / start of the next
             ((0, 0, 127, 300), (0, 1, 0, 300)),    # module 0 last row / module 1 first row
             ((0, 1, 127, 40), (1, 0, 0, 40))]      # frame 0 / frame 1
    for a, b in pairs:
        data[a] = data[b] = 50
    data[1, 1, 30, 30:33] = 50                      # a row of three with a bad pixel in the middle
    valid[1, 1, 30, 31] = False
    data[1, 1, 40, 20:22] = 50                      # one droplet inside an ASIC (control)
    drop = Droplet(threshold=10, threshold_low=5, threshold_unit="data", adu_per_photon=50,
                   save_droplets=True)
    out = run(drop, make_det(), make_frames(data, valid))
    # frame 0: 5 pairs on frame 0 = 10 halves + the module-1 half of the frame pair -> 11 + 0
    assert out["droplet_n_droplets"].tolist() == [11, 1 + 2 + 1]
    rag = out["droplet_list"]
    assert set(rag.values["npix"].tolist()) == {1, 2}
    assert (rag.values["npix"] == 2).sum() == 1  # only the control pair joined
    np.testing.assert_array_equal(out["droplet_photons"], [11, 5])


def test_same_numbers_for_any_batch():
    rng = np.random.default_rng(6)
    data = rng.poisson(0.05, (4, 2, 128, 512)) * GAIN + rng.normal(0, 1, (4, 2, 128, 512))
    frames = make_frames(data)
    drop = Droplet(adu_per_photon=GAIN, save_droplets=True, max_droplets_per_event=500)
    drop.addFunc(Photons(adu_per_photon=GAIN, save_photons=True))
    drop.setup(make_det())
    whole = drop.run(frames)
    for i in range(4):
        one = drop.run(frames.subset(np.array([i])))
        for key, value in one.items():
            if isinstance(value, Ragged):
                for field in value.values:
                    np.testing.assert_array_equal(value.values[field], whole[key].event(i)[field], err_msg=key)
            else:
                np.testing.assert_array_equal(value[0], whole[key][i], err_msg=key)


def test_crop_frames_are_one_plane():
    data = np.zeros((2, 40, 70), np.float32)
    data[0, 10, 63:65] = 30  # crop coordinates: no ASIC cut inside a derived crop
    data[1, 5, 5] = 30
    frames = make_frames(data, modules=None)
    out = run(Droplet(threshold=5, threshold_low=2, threshold_unit="noise", adu_per_photon=30,
                      save_droplets=True), make_det(noise=2.0), frames)
    assert out["droplet_n_droplets"].tolist() == [1, 1]
    assert out["droplet_photons"].tolist() == [2, 1]
    assert out["droplet_list"].values["module"].tolist() == [-1, -1]
    np.testing.assert_allclose(out["droplet_list"].values["col"], [63.5, 5])


def test_greedy_vectorised_matches_one_photon_at_a_time():
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 9, 3000)
    group = np.repeat(np.arange(len(sizes)), sizes)
    x = rng.random(len(group)) * rng.choice([1.5, 4.0, 30.0], len(group))
    n = rng.integers(0, 15, len(sizes))
    n[::97] = 200  # a few very bright droplets
    k = greedy_counts(group, x, n)
    np.testing.assert_array_equal(np.bincount(group, weights=k).astype(int), n)
    bounds = np.r_[0, np.cumsum(sizes)]
    for g in range(len(sizes)):
        np.testing.assert_array_equal(k[bounds[g]:bounds[g + 1]], greedy_reference(x[bounds[g]:bounds[g + 1]], n[g]))


def test_noise_thresholds_follow_pixel_noise_and_module_subset():
    det = make_det(modules=(0, 3, 7), noise=1.0)
    det.noise_in_units = det.noise_in_units.copy()
    det.noise_in_units[2, 50, 50] = 4.0  # a noisy pixel in module 7
    data = np.zeros((1, 1, 128, 512), np.float32)
    data[0, 0, 50, 50] = 8.0  # below 5 x 4, not a droplet
    data[0, 0, 10, 10] = 8.0  # above 5 x 1
    frames = make_frames(data, modules=(7,))
    out = run(Droplet(save_droplets=True), det, frames)
    assert out["droplet_n_droplets"].tolist() == [1]
    assert out["droplet_list"].values["module"].tolist() == [7]
    assert "droplet_photons" not in out  # ADU data without a gain: no photon estimate


def test_thresholds_in_photons():
    rng = np.random.default_rng(4)
    data = rng.poisson(0.05, (2, 2, 128, 512)) * GAIN + rng.normal(0, 1, (2, 2, 128, 512))
    frames = make_frames(data)
    a = run(Droplet(threshold=0.5, threshold_low=0.3, threshold_unit="photon", adu_per_photon=GAIN), make_det(), frames)
    b = run(Droplet(threshold=5.0, threshold_low=3.0, threshold_unit="data", adu_per_photon=GAIN), make_det(), frames)
    assert a["droplet_n_droplets"].sum() > 1000
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ConfigError, match="thresholds in photons need adu_per_photon"):
        Droplet(threshold_unit="photon").setup(make_det())


def test_photon_units_need_no_gain():
    det = make_det(noise=0.1, units="photon", gain=np.full((2, 128, 512), 7.0, np.float32))
    data = np.zeros((1, 2, 128, 512), np.float32)
    data[0, 1, 3, 4] = 2.1
    out = run(Photons(kmax=3), det, make_frames(data, units="photon"))
    assert out["photons_n_photons"].tolist() == [2]
    assert out["photons_pk"][0, 1:].tolist() == [0, 1, 0]


def test_ragged_output_and_cap():
    data = np.zeros((2, 1, 128, 512), np.float32)
    for i in range(5):
        data[0, 0, 10, 10 + 3 * i] = 10.0 * (i + 1)
    data[1, 0, 100, 300:302] = [30.0, 10.0]
    data[1, 0, 0, 0] = 20.0
    drop = Droplet(threshold=5, threshold_low=2, threshold_unit="data", adu_per_photon=10.0,
                   save_droplets=True, max_droplets_per_event=3)
    drop.addFunc(Photons(adu_per_photon=10.0, save_photons=True, max_photons_per_event=4))
    out = run(drop, make_det(modules=(4,)), make_frames(data, modules=(4,)))
    rag = out["droplet_list"]
    assert isinstance(rag, Ragged) and len(rag) == 2
    assert out["droplet_n_droplets"].tolist() == [5, 2]
    assert rag.counts.tolist() == [3, 2]
    assert out["droplet_capped"].tolist() == [True, False]
    ev0, ev1 = rag.event(0), rag.event(1)
    np.testing.assert_allclose(ev0["adu"], [10, 20, 30])  # the first three in detector order
    np.testing.assert_allclose(ev0["col"], [10, 13, 16])
    assert ev1["npix"].tolist() == [1, 2] and ev1["module"].tolist() == [4, 4]
    np.testing.assert_allclose(ev1["col"], [0, 300.25])
    # photons: 1+2+3+4+5 = 15 on 5 pixels in event 0 (list capped at 4); event 1: 2 on (0, 0)
    # and 4 in the pair [3, 1] photons' worth: greedy gives 3 + 1 (the tie at 1 goes to the first pixel)
    prag = out["droplet_photons_list"]
    assert out["droplet_photons_n_photons"].tolist() == [15, 6]
    assert prag.counts.tolist() == [4, 3] and out["droplet_photons_capped"].tolist() == [True, False]
    assert prag.event(1)["photons"].tolist() == [2, 3, 1]
    # flat + count layout round trip through plain h5py
    with h5py.File("/dev/null", "w", driver="core", backing_store=False) as f:
        for key, value in rag.values.items():
            f[f"d/{key}"] = value
        f["d/count"] = rag.counts
        back = Ragged.from_group(f["d"])
    np.testing.assert_array_equal(back.values["adu"], rag.values["adu"])
    both = Ragged.concatenate([rag, back.subset([1])])
    assert both.counts.tolist() == [3, 2, 2]
    np.testing.assert_array_equal(both.to_lists("col")[2], ev1["col"])


def test_contrast_from_pk_and_its_error():
    rng = np.random.default_rng(9)
    kmax, npix = 30, 200_000
    # negative binomial with M modes has contrast 1/M
    m_modes, mean = 4.0, 0.3
    betas, errs = [], []
    for _ in range(60):
        lam = rng.gamma(m_modes, mean / m_modes, npix)
        k = np.minimum(rng.poisson(lam), kmax)
        b, e = contrast_from_pk(np.bincount(k, minlength=kmax + 1), npix)
        betas.append(b)
        errs.append(e)
    betas, errs = np.array(betas), np.array(errs)
    assert abs(betas.mean() - 1 / m_modes) < 3 * errs.mean() / np.sqrt(len(betas))
    assert 0.8 < betas.std() / errs.mean() < 1.25  # the error describes the scatter
    poisson = np.bincount(rng.poisson(mean, npix), minlength=kmax + 1)
    b0, e0 = contrast_from_pk(poisson[None], [npix])
    assert abs(b0[0]) < 3 * e0[0]
    assert np.isnan(contrast_from_pk(np.array([100, 0, 0]))[0])


def planted_speckle(shape, contrast, size, rng):
    """The simulator's planted speckle (see tests/test_autocorrelation.py)."""
    return speckle_intensity(shape, contrast, size, rng)


def test_pk_of_speckle_gives_planted_contrast():
    rng = np.random.default_rng(21)
    n, m, contrast, mean = 16, 2, 0.35, 0.12
    intensity = planted_speckle((n, m, 128, 512), contrast, 1.0, rng)
    truth = rng.poisson(intensity * mean)
    data = truth * GAIN + rng.normal(0, 1.0, truth.shape)
    mask = np.ones((m, 128, 512), bool)
    mask[:, :, :4] = False
    valid = np.broadcast_to(mask, data.shape).copy()
    drop = Droplet(adu_per_photon=GAIN)
    drop.addFunc(Photons(kmax=8, adu_per_photon=GAIN))
    out = run(drop, make_det(mask=mask), make_frames(data, valid))
    pk = out["droplet_photons_pk"]
    assert out["droplet_photons_n_pixels"].tolist() == [m * 128 * 508] * n
    per_frame, _ = contrast_from_pk(pk, out["droplet_photons_n_pixels"])
    sigma = per_frame.std(ddof=1) / np.sqrt(n)
    beta, err = contrast_from_pk(pk.sum(0), out["droplet_photons_n_pixels"].sum())
    assert sigma < 0.02
    assert abs(beta - contrast) < 3 * sigma, (beta, sigma)
    # photon assignment reproduces the planted counts' histogram almost exactly
    planted = np.bincount(np.minimum(truth[:, :, :, 4:], 8).ravel(), minlength=9)
    np.testing.assert_allclose(pk.sum(0)[1:4], planted[1:4], rtol=0.01)


@pytest.mark.parametrize("kwargs, key", [
    (dict(threshold=3.0, threshold_low=5.0), "threshold_low"),
    (dict(threshold_low=0.0), "threshold_low"),
    (dict(threshold_unit="sigma"), "threshold_unit"),
    (dict(adu_per_photon=-8.0), "adu_per_photon"),
    (dict(rounding_offset=1.0), "rounding_offset"),
    (dict(min_sum=-1.0), "min_sum"),
    (dict(max_droplets_per_event=0), "max_droplets_per_event"),
])
def test_droplet_config_errors(kwargs, key):
    with pytest.raises(ConfigError) as err:
        Droplet(**kwargs)
    assert err.value.path == key


def test_photon_config_errors():
    with pytest.raises(ConfigError, match="kmax"):
        Photons(kmax=0)
    with pytest.raises(ConfigError, match="adu_per_photon"):
        Photons(adu_per_photon=0)
    with pytest.raises(ConfigError, match="no gain"):
        Photons().setup(make_det())
    with pytest.raises(ConfigError, match="not positive"):
        Photons().setup(make_det(gain=-3.0))


def test_registry_names():
    from smalldata.plugin.registry import resolve_function_type

    assert resolve_function_type("droplet") is Droplet
    assert resolve_function_type("photons") is Photons
    assert set(Droplet.parameter_names()) >= {"threshold", "threshold_low", "threshold_unit",
                                              "adu_per_photon", "max_droplets_per_event"}
