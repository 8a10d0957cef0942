"""hRIXS centroiding on simulated camera runs: planted photons found, positions, double hits,
thresholds in ADU and in noise sigmas, and an independent scipy.ndimage centre of mass."""
import numpy as np
import pytest
from scipy import ndimage

import extra_data

from smalldata.cameras import characterise_dark
from smalldata.cameras.reading import read_frames
from smalldata.errors import ConfigError
from smalldata.simulate import run_path
from smalldata.simulate.cameras import CameraSim, deposit, simulate_hrixs_run
from smalldata.spectro.centroid import centroid, resolve_threshold

PROPOSAL, DATA, DARK = 2937, 700, 701
SHAPE = (128, 256)


@pytest.fixture(scope="module")
def hrixs(tmp_path_factory):
    """A dark and a data run of a small hRIXS camera; the dark-subtracted frames and the truth."""
    root = tmp_path_factory.mktemp("hrixs")
    sim = CameraSim(camera="hrixs", shape=SHAPE, n_trains=20)
    truth = simulate_hrixs_run(root, PROPOSAL, DATA, sim, "data")
    simulate_hrixs_run(root, PROPOSAL, DARK, sim, "dark")
    preset = sim.preset
    _, dark_frames = read_frames(extra_data.RunDirectory(run_path(root, PROPOSAL, DARK)), preset)
    dark = characterise_dark(dark_frames, "hrixs")
    ids, frames = read_frames(extra_data.RunDirectory(run_path(root, PROPOSAL, DATA)), preset)
    data = frames.astype(np.float32) - dark.mean
    return dict(root=root, truth=truth, dark=dark, data=data, ids=ids, sim=sim)


def _match(truth, hits, frame_of_hit, max_distance=1.0):
    """For each planted hit, the index of the nearest found hit of its frame within max_distance (-1: none)."""
    out = np.full(len(truth["hit_y"]), -1)
    for k, (t, y, x) in enumerate(zip(truth["hit_train"], truth["hit_y"], truth["hit_x"])):
        cand = np.flatnonzero(frame_of_hit == t)
        if len(cand):
            d2 = (hits.y[cand] - y) ** 2 + (hits.x[cand] - x) ** 2
            j = int(np.argmin(d2))
            if d2[j] <= max_distance ** 2:
                out[k] = cand[j]
    return out


def test_planted_single_and_double_hits_found(hrixs):
    truth, data = hrixs["truth"], hrixs["data"]
    adu = float(truth["adu_per_photon"])
    hits = centroid(data, threshold=0.5 * adu, double_threshold=1.5 * adu, mask=hrixs["dark"].mask)
    match = _match(truth, hits, hits.frame)
    single = truth["hit_photons"] == 1
    # >= 99% of the planted single hits (none overlap: min_distance 7 px) are found ...
    assert np.mean(match[single] >= 0) >= 0.99
    # ... as single hits, and the double hits as double
    found = match >= 0
    assert np.mean(~hits.double[match[single & found]]) >= 0.99
    assert np.mean(hits.double[match[~single & found]]) >= 0.99
    assert (~single).sum() > 20
    # no more than 1% spurious hits, and the photons per frame as planted
    assert len(hits.y) - found.sum() <= 0.01 * len(hits.y)
    planted = np.bincount(truth["hit_train"], weights=truth["hit_photons"], minlength=len(data))
    assert np.abs(hits.photons_per_frame() - planted).sum() <= 0.01 * planted.sum()
    # sub-pixel positions: unbiased, scattered as the noise of 16 pixels (offsets -1.5..1.5 px,
    # sum of squared offsets 20 per axis; read noise, rounding to ADU, dark mean) predicts
    dy = hits.y[match[found]] - truth["hit_y"][found]
    dx = hits.x[match[found]] - truth["hit_x"][found]
    noise2 = float(truth["noise"]) ** 2 * (1 + 1 / 20) + 1 / 12
    rms_expected = np.sqrt(2 * 20 * noise2) / adu
    assert abs(dy.mean()) < 0.01 and abs(dx.mean()) < 0.01
    assert np.sqrt(np.mean(dy ** 2 + dx ** 2)) < 1.2 * rms_expected


def test_centroids_agree_with_ndimage_centre_of_mass(hrixs):
    """Independent check: the planted isolated photons of the run, deposited without noise, labelled by
    scipy.ndimage and their centre of mass taken over each label's pixels."""
    truth = hrixs["truth"]
    adu, sigma = float(truth["adu_per_photon"]), float(truth["cloud_sigma_px"])
    frames = np.zeros((len(hrixs["data"]),) + SHAPE)
    for t in range(len(frames)):
        sel = truth["hit_train"] == t
        deposit(frames[t], truth["hit_y"][sel], truth["hit_x"][sel], truth["hit_photons"][sel] * adu, sigma)
    hits = centroid(frames, threshold=0.5 * adu)
    assert len(hits.y) == len(truth["hit_y"])
    for t in range(len(frames)):
        labels, n = ndimage.label(frames[t] > 1e-9 * adu)
        assert n == np.sum(truth["hit_train"] == t)
        theirs = np.array(ndimage.center_of_mass(frames[t], labels, np.arange(1, n + 1)))
        mine = hits.frame == t
        ours = np.stack([hits.y[mine], hits.x[mine]], axis=1)
        # the same photon: nearest centre; the 4x4 box holds all but ~1e-4 of a 0.4 px cloud
        d = np.min(np.hypot(*(ours[:, None, :] - theirs[None, :, :]).transpose(2, 0, 1)), axis=1)
        assert d.max() < 2e-3


def test_threshold_in_noise_sigmas(hrixs):
    dark, data = hrixs["dark"], hrixs["data"]
    thr = resolve_threshold(None, 10.0, dark.noise, dark.mask)
    # 2x2 sum of four pixels of planted noise 2 ADU: sigma 4 ADU
    assert thr == pytest.approx(10 * 2 * float(hrixs["truth"]["noise"]), rel=0.05)
    a = centroid(data, thr)
    b = centroid(data, resolve_threshold(thr, None))
    np.testing.assert_array_equal(a.y, b.y)
    # a threshold far below the noise finds noise, one far above finds nothing
    assert len(centroid(data[:2], 1.0).y) > 10 * len(a.y[a.frame < 2])
    assert len(centroid(data, 1e6).y) == 0


def test_threshold_given_twice_or_not_at_all_refused():
    for adu, sig in ((10.0, 3.0), (None, None)):
        with pytest.raises(ConfigError, match="either in ADU"):
            resolve_threshold(adu, sig)
    with pytest.raises(ConfigError, match="needs the camera's dark noise"):
        resolve_threshold(None, 3.0)


def test_centroid_batch_independent():
    """Each frame's hits depend on that frame only: a batch gives what frames one by one give."""
    rng = np.random.default_rng(3)
    frames = rng.normal(0, 2, (5, 40, 50)).astype(np.float32)
    frames[:, 10:12, 20:22] += 50
    whole = centroid(frames, 30.0)
    for f in range(5):
        one = centroid(frames[f:f + 1], 30.0)
        np.testing.assert_array_equal(one.y, whole.y[whole.frame == f])


def _numpy_hits(frame, threshold):
    """The definition in plain numpy: 2x2 sums above threshold that are the maximum of their 3x3
    neighbourhood of windows, centre of mass of the 4x4 pixels around (clipped at the edges)."""
    s = frame[:-1, :-1] + frame[1:, :-1] + frame[:-1, 1:] + frame[1:, 1:]
    peak = (s > threshold) & (s == ndimage.maximum_filter(s, size=3, mode="constant", cval=-np.inf))
    out = []
    for i, j in zip(*np.nonzero(peak)):
        box = frame[max(i - 1, 0):i + 3, max(j - 1, 0):j + 3].astype(np.float64)
        rows, cols = np.mgrid[max(i - 1, 0):min(i + 3, frame.shape[0]), max(j - 1, 0):min(j + 3, frame.shape[1])]
        tot = box.sum()
        out.append(((box * rows).sum() / tot, (box * cols).sum() / tot, tot) if tot > 0 else (i + 0.5, j + 0.5, tot))
    return np.array(sorted(out))


def test_kernel_matches_plain_numpy_definition():
    """Noise at a low threshold gives thousands of candidates, at the image edges too."""
    rng = np.random.default_rng(8)
    frames = rng.normal(0, 3, (3, 60, 90)).astype(np.float32)
    frames[:, :2, :2] += 60
    frames[:, -2:, -2:] += 60
    hits = centroid(frames, 8.0)
    for f in range(3):
        mine = hits.frame == f
        ours = np.array(sorted(zip(hits.y[mine], hits.x[mine], hits.amplitude[mine])))
        want = _numpy_hits(frames[f], 8.0)
        assert len(want) > 80
        np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-5)
