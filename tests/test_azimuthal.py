"""Azimuthal binning (smalldata.funcs.azimuthal): pyFAI agreement, planted ring, validity, config errors.

All tests use the real DSSC 1M geometry (extra-geom's shipped file, 16 modules).
"""
import types

import numpy as np
import pytest
from smalldata.funcs.azimuthal import AzimuthalBinning, BinSums

from smalldata.constants import wavelength_m
from smalldata.errors import ConfigError
from smalldata.geometry.positions import load_dssc_geometry, pixel_positions
from smalldata.plugin.frames import Frames

MODULES = tuple(range(16))
SHAPE = (16, 128, 512)
CENTER = (3.1e-3, -2.7e-3)  # m, extra-geom frame
DISTANCE = 0.35  # m: short, so that 2theta reaches ~25 deg and the corrections matter
ENERGY = 930.0  # eV
POL = 0.99  # horizontally polarised fraction
EPS32 = float(np.finfo(np.float32).eps)


def fake_det(x, y, z, mask, modules=MODULES, units="photon", geometry=None):
    """The DetObject attributes an AzimuthalBinning uses."""
    return types.SimpleNamespace(modules=tuple(modules), x=x, y=y, z=z, mask=mask, units=units, geometry=geometry)


def make_frames(data, valid, modules=MODULES):
    n = len(data)
    ids = np.arange(n, dtype=np.uint64)
    return Frames(data=np.ascontiguousarray(data, dtype=np.float32), valid=valid, units="photon",
                  train_ids=ids, pulse_ids=ids, cell_ids=ids.astype(np.uint16), modules=tuple(modules))


@pytest.fixture(scope="module")
def geom():
    return load_dssc_geometry()


@pytest.fixture(scope="module")
def positions(geom):
    return pixel_positions(geom, MODULES)


@pytest.fixture(scope="module")
def static_mask():
    mask = np.random.default_rng(7).random(SHAPE) > 0.02
    mask[4, :64, :64] = False  # one ASIC
    return mask


@pytest.fixture(scope="module")
def pyfai(geom):
    """pyFAI integrator on extra-geom's pyFAI detector: poni1 = centre y, poni2 = centre x."""
    import pyFAI.integrator.azimuthal as integrator
    detector = geom.to_pyfai_detector()
    ai = integrator.AzimuthalIntegrator(dist=DISTANCE, poni1=CENTER[1], poni2=CENTER[0],
                                        detector=detector, wavelength=wavelength_m(ENERGY))
    p1, p2, _ = detector.calc_cartesian_positions()
    return ai, p1.reshape(SHAPE).astype(np.float64), p2.reshape(SHAPE).astype(np.float64)


def reference(func, data, valid):
    """Brute-force numpy binning of each frame: sum(I) / sum(c) and count per (phi, q) bin."""
    iq = np.digitize(func.q_map, func.q_edges) - 1
    iq[func.q_map == func.q_edges[-1]] = func.n_q - 1
    iphi = np.digitize(func.phi_map, func.phi_edges) - 1
    iphi[func.phi_map == func.phi_edges[-1]] = func.n_phi - 1
    n_bins = func.n_q * func.n_phi
    means, counts = [], []
    for frame, ok in zip(data, valid):
        use = func.pixel_mask & ok
        b = (iphi * func.n_q + iq)[use]
        s = np.bincount(b, weights=frame[use].astype(np.float64), minlength=n_bins)
        c = np.bincount(b, weights=func.correction[use], minlength=n_bins)
        n = np.bincount(b, minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(n > 0, s / c, np.nan))
        counts.append(n)
    shape = (len(data), func.n_phi, func.n_q)
    return np.reshape(means, shape), np.reshape(counts, shape)


# ---------------------------------------------------------------------- geometry vs pyFAI
def test_pyfai_axes_are_extra_geom_y_and_x(geom, positions, pyfai):
    """pyFAI dim1 (slow, poni1) is extra-geom y; dim2 (fast, poni2) is x, up to pyFAI's hexagon centre."""
    _, p1, p2 = pyfai
    x, y, _ = positions
    assert np.abs(p1 - y).max() < 5e-8  # pyFAI stores corners as float32: ~0.13 m x 6e-8
    # pyFAI interpolates a pixel centre from the first 4 of the 6 hexagon corners: a quarter
    # pixel along the module's fast-scan vector from the true centre extra-geom gives.
    fs_x = np.array([geom.modules[m][0].fs_vec[0] for m in MODULES])[:, None, None]
    assert np.abs(p2 - (x + fs_x / 4)).max() < 5e-8


def test_pixel_q_phi_and_correction_match_pyfai(pyfai, static_mask):
    ai, p1, p2 = pyfai
    func = AzimuthalBinning(center=CENTER, distance=DISTANCE, photon_energy=ENERGY, polarization_fraction=POL)
    func.setFromDet(fake_det(p2, p1, np.zeros(SHAPE), static_mask))
    q_pyfai = ai.center_array(unit="q_nm^-1").reshape(SHAPE) * 1e9
    np.testing.assert_allclose(func.q_map, q_pyfai, rtol=1e-12)
    chi = ai.center_array(unit="chi_rad").reshape(SHAPE)
    assert np.abs(np.angle(np.exp(1j * (func.phi_map - chi)))).max() < 1e-12
    corr = ai.solidAngleArray().reshape(SHAPE) * ai.polarization(factor=2 * POL - 1).reshape(SHAPE)
    np.testing.assert_allclose(func.correction, corr, rtol=1e-6)  # pyFAI keeps float32
    assert func.correction.min() < 0.8  # the corrections are not trivial here


@pytest.mark.parametrize("solid_angle, polarization, sector", [
    (True, POL, None), (False, None, None), (True, 0.7, (-0.7, 1.1))])
def test_binned_mean_matches_pyfai(pyfai, static_mask, solid_angle, polarization, sector):
    """Same pixels, edges, mask and corrections as pyFAI's no-splitting histogram: every bin agrees."""
    ai, p1, p2 = pyfai
    n_q, lo, hi = 90, 0.04, 2.2  # nm^-1; lo below every pixel, hi inside the detector
    # pyFAI's histogram widens the upper bound of radial_range by one float32 epsilon, and
    # truncates (not floors) the bin index, so pixels up to one bin below the lower bound
    # land in its first bin: the range starts below the smallest q to stay clear of that.
    edges_nm = np.linspace(lo, hi * (1 + EPS32), n_q + 1)
    func = AzimuthalBinning(center=CENTER, distance=DISTANCE, photon_energy=ENERGY,
                            q_bins=list(edges_nm * 1e9), polarization_fraction=polarization,
                            solid_angle=solid_angle, phi_bins=1 if sector is None else list(sector))
    func.setFromDet(fake_det(p2, p1, np.zeros(SHAPE), static_mask))

    rng = np.random.default_rng(3)
    q = func.q_map
    ring = 40 * np.exp(-0.5 * ((q - 1.1e9) / 4e7) ** 2) + 0.5 * func.correction
    data = np.stack([rng.gamma(2.0, 3.0, SHAPE), rng.poisson(ring)]).astype(np.float32)
    out = func.process(make_frames(data, np.broadcast_to(static_mask, data.shape)))

    kwargs = dict(unit="q_nm^-1", radial_range=(lo, hi), method=("no", "histogram", "cython"),
                  correctSolidAngle=solid_angle, mask=(~static_mask).reshape(-1, 512).astype(np.int8),
                  polarization_factor=None if polarization is None else 2 * polarization - 1,
                  azimuth_range=None if sector is None else tuple(np.degrees(sector)))
    for i, image in enumerate(data):
        res = ai.integrate1d(image.reshape(-1, 512), n_q, **kwargs)
        np.testing.assert_allclose(res.radial, func.q_centers * 1e-9, rtol=1e-12)
        np.testing.assert_array_equal(out["count"][i, 0], res.count)
        both = res.count > 0
        assert both.sum() > 0.8 * n_q
        np.testing.assert_allclose(out["mean"][i, 0][both], res.intensity[both], rtol=1e-4)
        assert np.isnan(out["mean"][i, 0][~both]).all()


# ---------------------------------------------------------------------- planted ring
def test_planted_ring_recovered(positions):
    """A Gaussian ring at q0 planted through the real geometry (simulator physics) comes back at q0."""
    from smalldata.simulate import physics
    x, y, z = positions
    center, distance, energy, q0, sigma = (-1.5e-3, 2.0e-3), 5.0, 860.0, 1.0e8, 4.0e6
    expected = physics.ring_expectation(physics.q_map(x, y, center, distance, energy), q0, sigma, 3.0) + 0.05
    rng = np.random.default_rng(11)
    data = np.stack([physics.poisson_on(expected, rng) for _ in range(4)]).astype(np.float32)
    func = AzimuthalBinning(center=center, distance=distance, photon_energy=energy, q_bins=80)
    func.setFromDet(fake_det(x, y, z, np.ones(SHAPE, bool)))
    profile = np.nanmean(func.process(make_frames(data, np.ones(data.shape, bool)))["mean"][:, 0], axis=0)
    q = func.q_centers
    near = np.abs(q - q[np.nanargmax(profile)]) < 2 * sigma
    weight = profile[near] - 0.05
    q_peak = (q[near] * weight).sum() / weight.sum()
    half_bin = 0.5 * (func.q_edges[1] - func.q_edges[0])
    assert abs(q_peak - q0) < half_bin
    assert np.nanmax(profile) == pytest.approx(3.05, rel=0.15)  # the ring's height, per pixel


# ---------------------------------------------------------------------- per-frame validity
def test_per_frame_validity_changes_counts(positions, static_mask):
    """A missing module in one frame and saturated pixels in another leave only valid pixels counted."""
    x, y, z = positions
    func = AzimuthalBinning(center=CENTER, distance=DISTANCE, photon_energy=ENERGY, q_bins=50, phi_bins=4,
                            polarization_fraction=POL)
    func.setFromDet(fake_det(x, y, z, static_mask))
    rng = np.random.default_rng(5)
    data = rng.poisson(4.0, (3,) + SHAPE).astype(np.float32)
    valid = np.broadcast_to(static_mask, data.shape).copy()
    valid[1, 5] = False
    data[1, 5] = np.nan  # a missing module's values must not matter
    saturated = rng.random(SHAPE) < 0.001
    valid[2][saturated] = False
    data[2][saturated] = 1e30
    data[0][~static_mask] = np.inf  # neither must statically masked pixels

    frames = make_frames(data, valid)
    before = frames.data.copy()
    out = func.process(frames)
    assert np.array_equal(frames.data, before, equal_nan=True)  # the batch is left as it was
    ref_mean, ref_count = reference(func, data, valid)
    np.testing.assert_array_equal(out["count"], ref_count)
    np.testing.assert_allclose(out["mean"], ref_mean, rtol=1e-6)
    assert np.isfinite(out["mean"][out["count"] > 0]).all()

    for i in range(len(data)):  # any batch size gives the same numbers, bit for bit
        single = func.process(frames.subset(np.array([i])))
        np.testing.assert_array_equal(single["mean"][0], out["mean"][i])
        np.testing.assert_array_equal(single["count"][0], out["count"][i])

    def hist(select):
        return reference(func, data[:1], select[None])[1][0]

    module5 = np.zeros(SHAPE, bool)
    module5[5] = True
    assert hist(module5).sum() > 0
    np.testing.assert_array_equal(out["count"][1], out["count"][0] - hist(module5))
    np.testing.assert_array_equal(out["count"][2], out["count"][0] - hist(saturated))


def test_products_of_several_frames_equal_single(static_mask):
    rng = np.random.default_rng(2)
    bins = rng.integers(-1, 37, SHAPE)
    weights = rng.random(SHAPE) + 0.5
    data = rng.normal(10.0, 3.0, (5,) + SHAPE).astype(np.float32)
    valid = rng.random(data.shape) > 0.01
    one = BinSums(bins, 37, weights)(data, valid)
    data.flags.writeable = False  # read-only input takes the copying path
    three = BinSums(bins, 37, weights, frames_per_product=3, part_size=100, tile_size=1000)(data, valid)
    for a, b in zip(one, three):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    sel = (bins >= 0) & valid[4]
    np.testing.assert_allclose(one[0][4], np.bincount(bins[sel], weights=data[4][sel], minlength=37), rtol=1e-6)


# ---------------------------------------------------------------------- description, options
def test_outputs_description_and_options(positions, static_mask, tmp_path):
    x, y, z = positions
    func = AzimuthalBinning(center=CENTER, distance=DISTANCE, photon_energy=ENERGY, q_bins=40, normalise="sum")
    func.setFromDet(fake_det(x, y, z, static_mask))
    data = np.full((2,) + SHAPE, 2.0, np.float32)
    out = func.process(make_frames(data, np.broadcast_to(static_mask, data.shape)))
    assert set(out) == {"sum", "count"} and out["sum"].shape == (2, 1, 40) and out["count"].dtype == np.int32
    assert func.output_units() == {"sum": "photon", "count": "pixel"}
    ref_mean, ref_count = reference(func, data, np.broadcast_to(static_mask, data.shape))
    np.testing.assert_allclose(out["sum"], np.where(ref_count > 0, ref_mean * ref_count, 0.0), rtol=1e-6)
    assert func.child_frames(None, out) is None
    arrays = func.config_arrays()
    assert arrays["q_map"].shape == SHAPE and arrays["q_map"].dtype == np.float32
    assert arrays["q_edges"].shape == (41,) and arrays["phi_centers"].shape == (1,)
    assert arrays["q_edges"][0] == pytest.approx(func.q_map[static_mask].min())
    assert arrays["q_edges"][-1] == pytest.approx(func.q_map[static_mask].max())
    assert out["count"].sum(axis=(1, 2))[0] == static_mask.sum()  # default range holds every good pixel
    assert set(func.config_units()) <= set(arrays)
    # the parameters are the config keys and rebuild the same function
    again = AzimuthalBinning(**func.params())
    assert again.params() == func.params()
    from smalldata.plugin.registry import resolve_function_type
    assert resolve_function_type("azimuthal") is AzimuthalBinning

    # a user mask file of the whole detector on a detector of two modules
    user = np.ones(SHAPE, bool)
    user[2] = False
    path = tmp_path / "mask.npy"
    np.save(path, user)
    sub = AzimuthalBinning(center=CENTER, distance=DISTANCE, photon_energy=ENERGY, q_bins=20, user_mask=str(path))
    sub.setFromDet(fake_det(x[[2, 3]], y[[2, 3]], z[[2, 3]], static_mask[[2, 3]], modules=(2, 3)))
    assert not sub.pixel_mask[0].any() and sub.pixel_mask[1].sum() == static_mask[3].sum()
    res = sub.process(make_frames(data[:, [2, 3]], np.ones((2, 2, 128, 512), bool), modules=(2, 3)))
    assert res["count"][0].sum() == static_mask[3].sum()
    ref_mean, ref_count = reference(sub, data[:, [2, 3]], np.ones((2, 2, 128, 512), bool))
    np.testing.assert_array_equal(res["count"], ref_count)
    np.testing.assert_allclose(res["mean"], ref_mean, rtol=1e-6)


# ---------------------------------------------------------------------- config errors
@pytest.mark.parametrize("param, kwargs", [
    ("q_range", dict(q_range=(1e9, 1e9))),
    ("q_range", dict(q_range=(2e9, 1e9))),
    ("q_range", dict(q_range=(-1e9, 1e9))),
    ("q_range", dict(q_bins=[1e9, 2e9], q_range=(0.0, 3e9))),
    ("distance", dict(distance=-1.0)),
    ("distance", dict(distance=0)),
    ("photon_energy", dict(photon_energy=0.0)),
    ("q_bins", dict(q_bins=0)),
    ("q_bins", dict(q_bins=2.5)),
    ("q_bins", dict(q_bins=[3e9, 2e9])),
    ("q_bins", dict(q_bins=[1e9])),
    ("q_bins", dict(q_bins=True)),
    ("phi_bins", dict(phi_bins=-2)),
    ("phi_bins", dict(phi_bins=[0.0, 4.0])),
    ("phi_range", dict(phi_range=(0.0, 7.0))),
    ("center", dict(center=(1.0,))),
    ("polarization_fraction", dict(polarization_fraction=1.5)),
    ("solid_angle", dict(solid_angle="yes")),
    ("normalise", dict(normalise="median")),
    ("user_mask", dict(user_mask="/nonexistent/mask.npy")),
    ("user_mask", dict(user_mask=np.ones((3, 3), bool))),
    ("name", dict(name="bad name")),
])
def test_config_errors_name_the_parameter(param, kwargs):
    with pytest.raises(ConfigError) as info:
        AzimuthalBinning(**kwargs)
    assert info.value.path == param
    assert param in str(info.value)


def test_no_good_pixel_for_default_range(positions):
    x, y, z = positions
    func = AzimuthalBinning()
    with pytest.raises(ConfigError) as info:
        func.setFromDet(fake_det(x, y, z, np.zeros(SHAPE, bool)))
    assert info.value.path == "q_range"


def test_built_from_yaml_config():
    from smalldata.config.functions import build_function

    path = "detectors.dssc.functions[0]"
    func = build_function({"type": "azimuthal", "center": [0.001, -0.002], "distance": 5, "q_bins": 50,
                           "q_range": [1e7, 2e8], "polarization_fraction": 0.99}, path)
    assert isinstance(func, AzimuthalBinning) and func.name == "azimuthal"
    assert func.center == (0.001, -0.002) and func.q_range == (1e7, 2e8) and func.distance == 5.0
    with pytest.raises(ConfigError) as info:
        build_function({"type": "azimuthal", "q_range": [1e9, 1e9]}, path)
    assert info.value.path == f"{path}.q_range"


def test_fused_path_matches_pyfai(pyfai, static_mask):
    """The fused kernel (calibration + binning in one pass) against pyFAI on integer raw frames
    (zero pedestal, no gain: the calibrated frame is the raw frame), with saturated pixels."""
    from smalldata.calib.detobject import DetObject
    from smalldata.fused.plan import FusedPlan
    from smalldata.plugin.frames import RawBatch

    ai, p1, p2 = pyfai
    n_q, lo, hi = 90, 0.04, 2.2
    edges_nm = np.linspace(lo, hi * (1 + EPS32), n_q + 1)
    zeros = np.zeros((16, 1) + SHAPE[1:], np.float32)
    det = DetObject("dssc", MODULES, zeros, zeros + 1, np.arange(1), np.zeros(SHAPE, np.uint8),
                    mask_asic_edges=False)
    det.set_positions(p2, p1, np.zeros(SHAPE))  # pyFAI's pixel positions
    det.mask = static_mask
    func = AzimuthalBinning(center=CENTER, distance=DISTANCE, photon_energy=ENERGY, q_bins=list(edges_nm * 1e9),
                            polarization_fraction=POL)
    func.setFromDet(det)
    rng = np.random.default_rng(5)
    ring = 40 * np.exp(-0.5 * ((func.q_map - 1.1e9) / 4e7) ** 2) + 0.5 * func.correction
    raw = np.stack([rng.poisson(ring), rng.poisson(6.0, SHAPE)]).astype(np.uint16)
    raw[1, 5, 10:20, :] = 511  # saturated: not valid in frame 1 only
    ids = np.arange(2, dtype=np.uint64)
    batch = RawBatch(ids, ids, np.zeros(2, np.uint16), ids.astype(np.int64), MODULES, raw, np.ones((2, 16), bool))
    frames = FusedPlan(det, [func]).run(batch)
    assert frames.data is None  # nothing needs the calibrated frames
    out = func.process(frames)
    kwargs = dict(unit="q_nm^-1", radial_range=(lo, hi), method=("no", "histogram", "cython"),
                  correctSolidAngle=True, polarization_factor=2 * POL - 1)
    for i in range(2):
        valid = static_mask & (raw[i] < 511)
        res = ai.integrate1d(raw[i].astype(np.float32).reshape(-1, 512), n_q,
                             mask=(~valid).reshape(-1, 512).astype(np.int8), **kwargs)
        np.testing.assert_array_equal(out["count"][i, 0], res.count)
        both = res.count > 0
        assert both.sum() > 0.8 * n_q
        np.testing.assert_allclose(out["mean"][i, 0][both], res.intensity[both], rtol=1e-5)
    assert (out["count"][1] < out["count"][0]).any()
