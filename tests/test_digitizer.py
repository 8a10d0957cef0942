"""Digitizer pulse integrals (smalldata.pulses.digitizer) against planted Gaussian pulses."""
import numpy as np
import pytest

from smalldata.errors import ConfigError
from smalldata.pulses.bunchpattern import align_per_pulse, frame_pulse_info, slots_of
from smalldata.pulses.digitizer import PulseIntegration, check_windows, pulse_integrals, pulse_positions

SIGMA = 4.0


def synthetic(n_trains=6, n_samples=6000, baseline=100.0, noise=3.0, seed=0):
    """Traces with negative Gaussian pulses of known area at slot-derived positions."""
    rng = np.random.default_rng(seed)
    slot_map = np.zeros((n_trains, 2700), bool)
    n_pulses = rng.integers(1, 20, n_trains)
    for t, n in enumerate(n_pulses):
        slot_map[t, 300 + 12 * np.arange(n)] = True
    slots, n = slots_of(slot_map)
    pos = pulse_positions(slots, first_slot=300, first_sample=200, samples_per_slot=22)
    depth = np.where(slots >= 0, rng.uniform(50, 400, slots.shape), 0.0)
    area = depth * SIGMA * np.sqrt(2 * np.pi)
    s = np.arange(n_samples)
    traces = np.full((n_trains, n_samples), baseline) + rng.normal(0, noise, (n_trains, n_samples))
    for t in range(n_trains):
        for k in range(n[t]):
            traces[t] -= depth[t, k] * np.exp(-0.5 * ((s - pos[t, k]) / SIGMA) ** 2)
    return slots, n, pos, np.rint(traces).astype(np.int16), np.where(slots >= 0, area, np.nan)


def test_positions_from_slots():
    slots = np.array([[300, 312, -1]])
    assert pulse_positions(slots, 300, 200, 22).tolist() == [[200, 464, -1]]
    # non-integer samples per slot round to the nearest sample (halves up)
    assert pulse_positions(np.array([[0, 1, 2, 3]]), 0, 10, 2.5).tolist() == [[10, 13, 15, 18]]


def test_integrals_recover_planted_areas_within_noise():
    slots, n, pos, traces, area = synthetic()
    integ = PulseIntegration(first_slot=300, first_sample=200, samples_per_slot=22,
                             baseline_window=(-40, -20), peak_window=(-20, 21))
    got = integ(traces, slots)
    assert got.shape == area.shape
    assert np.array_equal(np.isnan(got), np.isnan(area))
    err = (got - area)[~np.isnan(area)]
    # noise of the integral: 41 samples of sigma 3 plus 41 x the 20-sample baseline mean error
    sigma_int = 3.0 * np.sqrt(41 + 41 ** 2 / 20)
    assert np.abs(err).max() < 5 * sigma_int
    assert abs(err.mean()) < 4 * sigma_int / np.sqrt(len(err))
    rel = np.abs(err) / area[~np.isnan(area)]
    assert np.median(rel) < 0.02


def test_integrals_equal_loop_formula_exactly():
    rng = np.random.default_rng(3)
    traces = rng.integers(-500, 500, (3, 400)).astype(np.int16)
    pos = np.array([[50, 120, 395], [30, -1, -1], [10, 200, 300]])
    got = pulse_integrals(traces, pos, baseline_window=(-25, -5), peak_window=(-5, 8))
    for t in range(3):
        for k in range(3):
            p = pos[t, k]
            if p < 0 or p - 25 < 0 or p + 8 > 400:
                assert np.isnan(got[t, k])
                continue
            base = traces[t, p - 25:p - 5].astype(float).mean()
            assert got[t, k] == pytest.approx((base - traces[t, p - 5:p + 8].astype(float)).sum(), abs=1e-9)
    assert np.isnan(got[0, 2]) and np.isnan(got[2, 0]) and np.isnan(got[1, 1])


def test_float_traces_and_window_validation():
    tr = np.full((1, 100), 10.0)
    tr[0, 50:53] -= 2.0
    assert pulse_integrals(tr, np.array([[51]]), (-10, -2), (-1, 2))[0, 0] == pytest.approx(6.0)
    for base, peak in (((-5, -10), (0, 5)), ((-10, 1), (0, 5)), ((0, 0), (1, 2)), (("a", 1), (1, 2)),
                       ((-3.5, -1), (0, 2))):
        with pytest.raises(ConfigError):
            check_windows(base, peak)


@pytest.mark.parametrize("kw", [dict(samples_per_slot=0), dict(samples_per_slot="x"), dict(first_sample=-1),
                                dict(first_slot=2700), dict(first_slot=True)])
def test_bad_parameters(kw):
    with pytest.raises(ConfigError):
        PulseIntegration(**kw)


def test_integrals_to_frames_with_intra_darks():
    """Digitizer integrals reach the X-ray frames through the bunch pattern."""
    import euxfel_bunch_pattern as ebp
    slots, n, pos, traces, area = synthetic(n_trains=2, seed=5)
    bpt = np.zeros((2, 2700), np.uint32)
    for t in range(2):
        bpt[t, slots[t, :n[t]]] |= ebp.DESTINATION_T4D | ebp.PHOTON_LINE_DEFLECTION
    frames = 2 * n  # one intra-dark between pulses (frames every 6 slots)
    info = frame_pulse_info(bpt, frames, first_slot=300, slot_spacing=6)
    integ = PulseIntegration(300, 200, 22, (-40, -20), (-20, 21))(traces, slots)
    per_frame = align_per_pulse(integ, info["pulse_index"], info["train_of_frame"])
    assert np.isnan(per_frame[~info["xray_on"]]).all()
    expect = np.concatenate([area[t, :n[t]] for t in range(2)])
    np.testing.assert_allclose(per_frame[info["xray_on"]], expect, rtol=0.1)


def test_simulated_run_planted_integrals(tmp_path_factory):
    from extra_data import RunDirectory
    from test_pulses import simulated_pulse_run

    from smalldata.constants import BUNCH_PATTERN_KEY, BUNCH_PATTERN_SOURCE, DIGITIZER_SOURCE, DIGITIZER_TRACE_KEY
    from smalldata.pulses.bunchpattern import sase_pulse_slots, train_rows
    from smalldata.pulses.laser import LaserAnchor

    cfg, path, truth = simulated_pulse_run(tmp_path_factory)
    run = RunDirectory(str(path))
    bpt = run.get_array(BUNCH_PATTERN_SOURCE, BUNCH_PATTERN_KEY)
    traces = run.get_array(DIGITIZER_SOURCE, DIGITIZER_TRACE_KEY)
    assert np.array_equal(bpt.trainId.values, traces.trainId.values)
    slots, n = sase_pulse_slots(bpt.values)
    sigma = cfg.digitizer_pulse_sigma_samples
    w = int(5 * sigma)
    integ = PulseIntegration(cfg.first_slot, cfg.digitizer_first_sample, cfg.digitizer_samples_per_slot,
                             baseline_window=(-w - 40, -w), peak_window=(-w, w + 1))
    per_pulse = integ(traces.values, slots)
    # the run's pump-laser bits start at slot 0 (facility convention): anchor them on the first X-ray pulse
    info = frame_pulse_info(bpt.values, truth["frames_per_train"], cfg.first_slot, cfg.slot_spacing,
                            laser_anchor=LaserAnchor(bunch_table_offset=0))
    got = align_per_pulse(per_pulse, info["pulse_index"], train_rows(truth["frame_train_id"], traces.trainId.values))
    x = truth["frame_xray"]
    planted = truth["frame_digitizer_integral"][x]
    var = cfg.digitizer_noise_adu ** 2 + 1 / 12  # per sample: noise and int16 rounding
    noise = np.sqrt(var * ((2 * w + 1) + (2 * w + 1) ** 2 / 40))
    assert np.abs(got[x] - planted).max() < 5 * noise
    assert np.isnan(got[~x]).all()
