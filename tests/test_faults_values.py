"""Values that look valid but are not: a module's cell sequence slipped in one train, an infinite XGM reading."""
import h5py
import numpy as np
import pytest
from faults import damaged_copy, fault_config, plant_slipped_cells, plant_xgm_values
from helpers import DATA_RUN, read_all

from smalldata.config.producer import ProducerConfig
from smalldata.io.cellcheck import CellCheck
from smalldata.pipeline.eventloop import run_producer
from smalldata.pulses.rejection import Reason, threshold_reasons


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sim_root, calib_dir):
    """The undamaged run's output."""
    tmp = tmp_path_factory.mktemp("reference")
    return read_all(run_producer(ProducerConfig.from_file(fault_config(tmp, sim_root, calib_dir)), DATA_RUN).output)


def reasons_of(output):
    with h5py.File(output) as f:
        return {(int(t), w.decode()): r.decode() for t, w, r in
                zip(f["meta/invalid_trainId"][()], f["meta/invalid_where"][()], f["meta/invalid_reason"][()])}


def test_cells_of_one_train_slipped_in_one_module(tmp_path, sim_root, calib_dir, sim_config, reference):
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    train = plant_slipped_cells(run_dir, module=2, position=7, n_cells=sim_config.frames_per_train)
    cfg = fault_config(tmp_path, tmp_path / "root", calib_dir)
    output = run_producer(ProducerConfig.from_file(cfg), DATA_RUN).output
    out = read_all(output)
    rows = out["trainId"] == train
    assert np.array_equal(out["trainId"], reference["trainId"])
    # module 2's frames of that train are not used (no pixel) and the fault names the module
    assert np.all(out["dssc/m2_npix"][rows] == 0) and np.all(reference["dssc/m2_npix"][rows] > 0)
    np.testing.assert_array_equal(out["dssc/m2_sum"][~rows], reference["dssc/m2_sum"][~rows])
    np.testing.assert_array_equal(out["dssc/m3_sum"], reference["dssc/m3_sum"])
    reasons = reasons_of(output)
    assert [k for k in reasons if k[1].startswith("module")] == [(train, "module 2")]
    assert "cellId" in reasons[(train, "module 2")] and "module 3" in reasons[(train, "module 2")]
    # the frames' cells are those of the module that kept its sequence
    np.testing.assert_array_equal(out["cellId"], reference["cellId"])


class _Usual(CellCheck):
    """A CellCheck whose modules' usual cells are given (no run behind it)."""

    def __init__(self, usual):
        super().__init__(frame_index=None)
        self._usual = {m: np.asarray(c) for m, c in usual.items()}


def test_slipped_cells_name_the_module_that_left_its_own_sequence():
    # module 5 always records cells shifted by one (its own sequence, calibrated with its own cells)
    check = _Usual({1: [0, 1, 2, 3], 4: [0, 1, 2, 3], 5: [1, 2, 3, 0]})
    frame_index = np.tile(np.arange(4), 3)
    cells = np.stack([np.tile([0, 1, 2, 3], 3), np.tile([0, 1, 2, 3], 3), np.tile([1, 2, 3, 0], 3)], axis=1)
    present = np.ones(cells.shape, dtype=bool)
    assert not check.slipped((1, 4, 5), present, cells, frame_index).any()
    cells[4:8, 1] = [1, 2, 3, 0]  # module 4 slips in the second train
    present[8, 0] = False  # a missing frame of module 1 changes nothing
    expected = np.zeros(cells.shape, dtype=bool)
    expected[4:8, 1] = True
    np.testing.assert_array_equal(check.slipped((1, 4, 5), present, cells, frame_index), expected)
    # a module alone in its frame is not compared with anything
    present[4:8, [0, 2]] = False
    assert not check.slipped((1, 4, 5), present, cells, frame_index).any()


def test_infinite_xgm_is_no_value(tmp_path, sim_root, calib_dir, reference):
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    t_inf = plant_xgm_values(run_dir, position=3, values={0: np.inf})
    t_nan = plant_xgm_values(run_dir, position=5, values={0: np.nan})

    def extra(cfg):
        cfg["rejection"] = {"xgm": "xgm/sa3_intensity", "xgm_min": 0.0}
        cfg["detectors"]["dssc"]["cube"] = {"scan": "scan/delay", "unique": True, "xgm": "xgm/sa3_intensity"}
    output = run_producer(ProducerConfig.from_file(fault_config(tmp_path, tmp_path / "root", calib_dir, extra)),
                          DATA_RUN).output
    out = read_all(output)
    xgm, ref = out["xgm/sa3_intensity"], reference["xgm/sa3_intensity"]
    new = np.isnan(xgm) & ~np.isnan(ref)
    assert sorted(out["trainId"][new].tolist()) == [t_inf, t_nan]  # one frame each, both without a value
    assert np.all(np.isfinite(xgm) | np.isnan(xgm))
    np.testing.assert_array_equal(xgm[~new], ref[~new])
    # counted alike in /meta/losses
    with h5py.File(output) as f:
        assert f["meta/losses"].attrs["nan xgm/sa3_intensity"] == np.count_nonzero(np.isnan(xgm))
        cube = f["Sums/dssc_cube"]
        centres, xgm_sum, count = cube["bin_centres"][()], cube["xgm_sum"][()].sum(axis=1), cube["count"][()]
    # rejected alike: no value is below any limit
    reasons = out["rejection/reasons"]
    assert reasons[new].tolist() == [int(Reason.XGM_LOW)] * 2
    # the cube's XGM sums: the finite values of its frames (kept ones), to the fixed-point resolution
    kept = reasons == 0
    for centre, total, n in zip(centres, xgm_sum, count.sum(axis=1)):
        mine = kept & (out["scan/delay"] == centre)
        assert n == np.count_nonzero(mine)
        assert abs(total - np.nansum(xgm[mine])) <= np.count_nonzero(mine) * 2.0 ** -16


def test_threshold_reasons_treat_inf_as_no_value():
    values = np.array([1.0, np.nan, np.inf, -np.inf, 5.0])
    low, high = int(Reason.XGM_LOW), int(Reason.XGM_HIGH)
    np.testing.assert_array_equal(threshold_reasons(values, 0.5, 4.0, low, high), [0, low, low, low, high])
    np.testing.assert_array_equal(threshold_reasons(values, 0.5, None, low, high), [0, low, low, low, 0])
