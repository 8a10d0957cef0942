"""Bunch-pattern decoding and frame/pulse alignment (smalldata.pulses.bunchpattern)."""
import logging

import euxfel_bunch_pattern as ebp
import numpy as np
import pytest

from smalldata.errors import ConfigError, DataError
from smalldata.pulses.laser import LaserAnchor, LaserAnchorError
from smalldata.pulses.bunchpattern import (
    align_frames,
    align_per_pulse,
    decode_bunch_pattern,
    frame_pulse_info,
    frames_to_trains,
    infer_slot_spacing,
    sase_pulse_slots,
    slots_of,
    train_rows,
)

SASE3 = ebp.DESTINATION_T4D | ebp.PHOTON_LINE_DEFLECTION | 8  # charge code 8
SASE1 = ebp.DESTINATION_T4D | 8
LASER = int(ebp.PPL_BITS.LP_SCS)


def table(n_trains=1):
    return np.zeros((n_trains, 2700), dtype=np.uint32)


def test_decode_matches_package_indices():
    bpt = table(3)
    bpt[0, 200:440:24] |= SASE3
    bpt[0, 212:440:24] |= SASE1          # SASE1 pulses in between: not X-rays at SCS
    bpt[0, 200:440:48] |= LASER
    bpt[1, 100] |= SASE3 | LASER
    bpt[1, 300] |= int(ebp.PPL_BITS.LP_SQS)  # another instrument's laser
    xray, laser = decode_bunch_pattern(bpt)
    for t in range(3):
        assert np.array_equal(np.flatnonzero(xray[t]), ebp.indices_at_sase(bpt[t], 3))
        assert np.array_equal(np.flatnonzero(laser[t]), ebp.indices_at_laser(bpt[t], ebp.PPL_BITS.LP_SCS))
    assert xray.sum(axis=1).tolist() == [10, 1, 0]
    assert laser.sum(axis=1).tolist() == [5, 1, 0]
    slots, n = sase_pulse_slots(bpt)
    assert n.tolist() == [10, 1, 0]
    assert slots[0].tolist() == list(range(200, 440, 24))
    assert slots[1].tolist() == [100] + [-1] * 9
    assert slots[2].tolist() == [-1] * 10


def test_slots_and_spacing():
    m = np.zeros((4, 2700), bool)
    m[0, [10, 20, 30]] = True
    m[1, [5, 7, 20]] = True
    m[2, 9] = True
    slots, n = slots_of(m)
    assert slots.shape == (4, 3)
    assert infer_slot_spacing(slots, n).tolist() == [10, -1, 0, 0]


def test_frames_equal_pulses_inferred_alignment():
    bpt = table(2)
    bpt[0, 200:200 + 10 * 24:24] |= SASE3
    bpt[0, 0:10 * 24:48] |= LASER      # PPL bits start at 0; the laser is on pulses 0, 2, 4, ...
    bpt[1, 300:300 + 6 * 16:16] |= SASE3
    info = frame_pulse_info(bpt, np.array([10, 6]), laser_anchor=LaserAnchor(pulse_offset=0))
    assert info["slot"].tolist() == list(range(200, 440, 24)) + list(range(300, 396, 16))
    assert info["xray_on"].all() and info["aligned"].all()
    assert info["pulse_index"].tolist() == list(range(10)) + list(range(6))
    assert info["laser_on"].tolist() == [True, False] * 5 + [False] * 6
    assert info["train_of_frame"].tolist() == [0] * 10 + [1] * 6
    assert info["frame_index"].tolist() == list(range(10)) + list(range(6))


def test_intra_darks_between_pulses():
    # frames every 12 slots, X-rays every 24: pattern [image, dark]; laser on every 4th frame
    bpt = table(2)
    bpt[:, 100:100 + 8 * 12:24] |= SASE3
    bpt[:, 0:8 * 12:48] |= LASER    # PPL bits start at 0; the laser's first pulse is at slot 100
    info = frame_pulse_info(bpt, np.array([8, 5]), first_slot=100, slot_spacing=12,
                            laser_anchor=LaserAnchor(bunch_table_position=100))
    assert info["xray_on"].tolist() == [True, False] * 4 + [True, False, True, False, True]
    assert info["pulse_index"].tolist() == [0, -1, 1, -1, 2, -1, 3, -1] + [0, -1, 1, -1, 2]
    assert info["laser_on"].tolist() == [True, False, False, False] * 2 + [True, False, False, False, True]
    xgm = np.arange(2 * 1000, dtype=np.float32).reshape(2, 1000)
    per_frame = align_per_pulse(xgm, info["pulse_index"], info["train_of_frame"])
    expect = [0, np.nan, 1, np.nan, 2, np.nan, 3, np.nan, 1000, np.nan, 1001, np.nan, 1002]
    np.testing.assert_array_equal(per_frame, np.array(expect, dtype=np.float32))


def test_pulse_index_counts_only_sase3_and_skips_unrecorded_pulses():
    bpt = table(1)
    bpt[0, [50, 60, 70, 80, 90]] |= SASE3
    bpt[0, [55, 65]] |= SASE1
    info = align_frames(bpt, np.zeros(3, int), np.array([0, 1, 2]), first_slot=60, slot_spacing=10)
    assert info["pulse_index"].tolist() == [1, 2, 3]   # slot 50 is the train's pulse 0


def test_unalignable_trains(caplog):
    bpt = table(3)
    bpt[0, 200:200 + 4 * 24:24] |= SASE3   # 4 pulses
    bpt[1, 200:200 + 3 * 24:24] |= SASE3   # 3 pulses for 4 frames: spacing not inferable
    # train 2: no pulses at all
    with caplog.at_level(logging.WARNING, logger="smalldata.pulses.bunchpattern"):
        info = frame_pulse_info(bpt, np.array([4, 4, 2]))
    assert info["aligned"].tolist() == [True] * 4 + [False] * 6
    assert info["slot"][4:].tolist() == [-1] * 6
    assert not info["xray_on"][4:].any() and (info["pulse_index"][4:] == -1).all()
    assert "slot_spacing cannot be inferred" in caplog.text
    # explicit parameters align the beam-off train (no X-rays there)
    info = frame_pulse_info(bpt, np.array([4, 4, 2]), first_slot=200, slot_spacing=24)
    assert info["aligned"].all()
    assert info["xray_on"].tolist() == [True] * 4 + [True, True, True, False] + [False, False]


def test_frames_beyond_table_and_missing_train():
    bpt = table(1)
    bpt[0, 2600::50] |= SASE3
    info = align_frames(bpt, np.array([0, 0, 0, -1]), np.array([0, 1, 2, 0]), first_slot=2600, slot_spacing=50)
    assert info["slot"].tolist() == [2600, 2650, -1, -1]
    assert info["xray_on"].tolist() == [True, True, False, False]


def test_single_pulse_single_frame():
    bpt = table(1)
    bpt[0, 500] |= SASE3
    info = frame_pulse_info(bpt, np.array([1]))
    assert info["slot"].tolist() == [500] and info["pulse_index"].tolist() == [0]


def test_align_per_pulse_n_valid_and_errors():
    vals = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out = align_per_pulse(vals, np.array([0, 2, 2, -1, 5]), np.array([0, 0, 1, 1, 0]), n_valid=np.array([3, 2]))
    np.testing.assert_array_equal(out, [1.0, 3.0, np.nan, np.nan, np.nan])
    with pytest.raises(DataError):
        align_per_pulse(vals, np.array([0]), np.array([2]))
    with pytest.raises(DataError):
        align_per_pulse(vals[0], np.array([0]), np.array([0]))


def test_bad_parameters():
    bpt = table(1)
    for kw in (dict(first_slot=-1), dict(slot_spacing=0), dict(slot_spacing=1.5),
               dict(laser="LP_XYZ"), dict(sase=4)):
        with pytest.raises(ConfigError):
            frame_pulse_info(bpt, np.array([2]), **kw)
    with pytest.raises(DataError):
        frame_pulse_info(np.zeros((1, 2, 100), np.uint32), np.array([2]))
    with pytest.raises(DataError):
        frame_pulse_info(bpt, np.array([2, 3]))


def test_laser_anchors_place_ppl_bits():
    # X-rays every 24 slots from 200; laser at half the X-ray rate from the 3rd X-ray pulse (slot 248)
    bpt = table(3)
    bpt[:, 200:200 + 8 * 24:24] |= SASE3
    bpt[:, 0:6 * 24:48] |= LASER                  # 3 laser pulses, bits from slot 0
    bpt[1] &= ~np.uint32(SASE3)                   # train 1: beam off, the laser runs on
    expected = np.zeros(8, bool)
    expected[[2, 4, 6]] = True
    for anchor in (LaserAnchor(bunch_table_position=248), LaserAnchor(bunch_table_offset=48),
                   LaserAnchor(pulse_offset=2)):
        info = frame_pulse_info(bpt, np.array([8, 8, 8]), first_slot=200, slot_spacing=24, laser_anchor=anchor)
        assert info["laser_first_slot"].tolist() == [248, 248, 248]     # train 1 extrapolated from train 0
        assert info["laser_on"].tolist() == expected.tolist() * 3
    # a fractional pulse offset is truncated to whole slots, as EXtra does
    info = frame_pulse_info(bpt, np.array([8, 8, 8]), first_slot=200, slot_spacing=24,
                            laser_anchor=LaserAnchor(pulse_offset=0.6))
    assert info["laser_first_slot"].tolist() == [214] * 3 and not info["laser_on"].any()


def test_unanchored_laser_refused_with_the_keys():
    bpt = table(2)
    bpt[:, 200:300:24] |= SASE3
    bpt[1, 0] |= LASER
    with pytest.raises(LaserAnchorError, match="laser_bunch_table_position.*laser_bunch_table_offset.*"
                                               "laser_pulse_offset"):
        frame_pulse_info(bpt, np.array([4, 4]))
    bpt[1, 200:300:24] = LASER * (np.arange(200, 300, 24) == 0)   # train 1: no X-rays, laser bit only
    info = frame_pulse_info(bpt, np.array([4, 4]), first_slot=200, slot_spacing=24,
                            laser_anchor=LaserAnchor(bunch_table_offset=0))
    assert info["laser_on"].tolist() == [False] * 4 + [True, False, False, False]   # anchored by train 0
    with pytest.raises(LaserAnchorError, match="laser_bunch_table_position"):
        frame_pulse_info(bpt[1:], np.array([4]), first_slot=200, slot_spacing=24,
                         laser_anchor=LaserAnchor(bunch_table_offset=0))
    with pytest.raises(ConfigError, match="keep one"):
        LaserAnchor(bunch_table_position=3, pulse_offset=1)
    with pytest.raises(ConfigError, match="laser_pulse_offset"):
        LaserAnchor()


def test_other_table_length():
    bpt = np.zeros((2, 4096), np.uint32)
    bpt[:, 3000:3000 + 4 * 300:300] |= SASE3      # pulses beyond slot 2700
    bpt[:, 0:4 * 300:600] |= LASER
    info = frame_pulse_info(bpt, np.array([4, 4]), laser_anchor=LaserAnchor(pulse_offset=0))
    assert info["slot"].tolist() == [3000, 3300, 3600, 3900] * 2 and info["xray_on"].all()
    assert info["laser_on"].tolist() == [True, False] * 4


def test_helpers():
    tof, fidx = frames_to_trains(np.array([2, 0, 3]))
    assert tof.tolist() == [0, 0, 2, 2, 2] and fidx.tolist() == [0, 1, 0, 1, 2]
    rows = train_rows(np.array([12, 10, 11, 99]), np.array([10, 12, 11]))
    assert rows.tolist() == [1, 0, 2, -1]
    assert train_rows(np.array([1]), np.array([], dtype=np.uint64)).tolist() == [-1]


# ---------------------------------------------------------------------------- simulated run
SIM_PATTERN = ("pumped", "pumped_dark", "unpumped", "unpumped_dark")


def simulated_pulse_run(tmp_path_factory):
    """A small simulated run with intra-darks and a frame-count change (made once per session)."""
    from smalldata.simulate import SimulationConfig, read_truth, run_path, simulate_data_run

    root = tmp_path_factory.getbasetemp() / "pulses_sim"
    cfg = SimulationConfig.small(modules=(15,), n_trains=12, frames_per_train=8, frames_per_train_change=(6, 6),
                                 pattern=SIM_PATTERN, slot_spacing=12, sequence_trains=12)
    if not run_path(root, 2937, 614).exists():
        simulate_data_run(root, 2937, 614, cfg)
    return cfg, run_path(root, 2937, 614), read_truth(root, 2937, 614)


def test_simulated_run_truth_recovered_exactly(tmp_path_factory):
    from extra_data import RunDirectory

    from smalldata.constants import BUNCH_PATTERN_KEY, BUNCH_PATTERN_SOURCE, XGM_SCS_KEY, XGM_SCS_SOURCE

    cfg, path, truth = simulated_pulse_run(tmp_path_factory)
    run = RunDirectory(str(path))
    bp = run.get_array(BUNCH_PATTERN_SOURCE, BUNCH_PATTERN_KEY)
    xgm = run.get_array(XGM_SCS_SOURCE, XGM_SCS_KEY)
    counts = truth["frames_per_train"]
    assert np.array_equal(bp.trainId.values, truth["train_ids"])
    info = frame_pulse_info(bp.values, counts, first_slot=cfg.first_slot, slot_spacing=cfg.slot_spacing,
                            laser_anchor=LaserAnchor(bunch_table_offset=int(truth["laser_bunch_table_offset"])))
    assert np.array_equal(info["slot"], truth["frame_pulse_id"].astype(np.int64))
    assert np.array_equal(info["xray_on"], truth["frame_xray"])
    assert np.array_equal(info["laser_on"], truth["frame_laser"])
    assert info["laser_on"].sum() > 0 and (~info["xray_on"]).sum() > 0
    rows = train_rows(truth["frame_train_id"], xgm.trainId.values)
    per_frame = align_per_pulse(xgm.values, info["pulse_index"], rows)
    x = truth["frame_xray"]
    assert np.array_equal(per_frame[x], truth["frame_xgm"][x].astype(np.float32))
    assert np.isnan(per_frame[~x]).all()


class _TableRun:
    """The part of RunAccess that FrameStage uses, over an in-memory bunch-pattern table."""

    block_trains = 256
    path = "in-memory run"

    def __init__(self, train_ids, rows):
        self.train_ids, self.rows = np.asarray(train_ids, np.uint64), rows

    def has_key(self, source, key):
        return True

    def train_values(self, source, key, train_ids):
        return self.rows[np.searchsorted(self.train_ids, train_ids)].astype(np.float64)


def test_extrapolated_anchor_independent_of_batches():
    """Beam-off trains take the anchor of the last train with X-rays, also from an earlier batch."""
    from smalldata.plugin.frames import RawBatch
    from smalldata.pulses.framestage import FrameStage

    tids = np.arange(100, 106, dtype=np.uint64)
    bpt = table(6)
    bpt[:2, 200:296:24] |= SASE3                  # trains 100, 101: X-rays from slot 224 / 200
    bpt[0, 200] = 0
    bpt[:, 0:96:48] |= LASER                      # the laser runs on in beam-off trains 102..105
    access = _TableRun(tids, bpt)
    pulses = {"source": "bp", "key": "table", "sase": 3, "laser": "LP_SCS", "first_slot": 200, "slot_spacing": 24,
              "laser_bunch_table_position": None, "laser_bunch_table_offset": 0, "laser_pulse_offset": None}
    stage = FrameStage(pulses, None, None, None, access, tids)

    def laser_of(batch_tids):
        n = 4 * len(batch_tids)
        raw = RawBatch(train_ids=np.repeat(batch_tids, 4), pulse_ids=np.zeros(n, np.uint64),
                       cell_ids=np.zeros(n, np.uint16), frame_index=np.tile(np.arange(4), len(batch_tids)),
                       modules=(0,), data=np.zeros((n, 1, 1, 1), np.uint16), present=np.ones((n, 1), bool))
        info, _, _ = stage.frame_info(raw)
        return info.laser_on

    whole = laser_of(tids)
    pieces = np.concatenate([laser_of(tids[:3]), laser_of(tids[3:4]), laser_of(tids[4:])])
    np.testing.assert_array_equal(pieces, whole)
    # train 100 anchors at 224, train 101 and all later ones (extrapolated) at 200
    assert whole.reshape(6, 4).tolist() == [[False, True, False, True]] + [[True, False, True, False]] * 5


def test_laser_before_the_table_refused():
    bpt = table(1)
    bpt[0, [10, 34]] |= SASE3
    bpt[0, 0] |= LASER
    for anchor in (LaserAnchor(bunch_table_offset=-20), LaserAnchor(pulse_offset=-1)):
        with pytest.raises(LaserAnchorError, match="before slot 0"):
            frame_pulse_info(bpt, np.array([2]), laser_anchor=anchor)
    info = frame_pulse_info(bpt, np.array([2]), laser_anchor=LaserAnchor(bunch_table_offset=-10))
    assert info["laser_first_slot"].tolist() == [0] and info["laser_on"].tolist() == [False, False]


def test_point_reader_per_pulse_values_stop_at_the_trains_pulse_count():
    from types import SimpleNamespace

    from smalldata.io.pointdata import PointReader

    class Access:  # two trains of per-pulse values, as RunAccess.train_values returns them
        def has_key(self, source, key):
            return True

        def train_values(self, source, key, train_ids):
            assert list(train_ids) == [10, 11]
            return np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])

    spec = {"source": "XGM", "key": "data.intensitySa3TD", "per": "pulse", "units": "uJ", "filler": None}
    reader = PointReader({("xgm", "sa3"): spec}, Access())
    raw = SimpleNamespace(train_ids=np.array([10, 10, 10, 11, 11, 11], np.uint64), frame_index=np.arange(6) % 3)
    pulse_index = np.array([0, 1, 2, 0, 1, -1])
    everything, units = reader.read(raw, pulse_index=pulse_index)
    np.testing.assert_array_equal(everything["xgm/sa3"], [1, 2, 3, 4, 5, np.nan])
    assert units == {"xgm/sa3": "uJ"}
    counted, _ = reader.read(raw, pulse_index=pulse_index, train_pulses=np.array([3, 1]))
    np.testing.assert_array_equal(counted["xgm/sa3"], [1, 2, 3, 4, np.nan, np.nan])  # train 11 has one pulse
