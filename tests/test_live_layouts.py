"""Decoding the three raw layouts of a karabo-bridge message against planted frames; refusals."""
import numpy as np
import pytest

from smalldata.errors import DataError
from smalldata.live.layouts import (ONLINE_SOURCE, STACKED_SOURCE, corrected_sources, decode_train,
                                    detect_layout)

TID, N = 1234, 3


def planted(rng):
    """Frames of modules 1 and 14 (the others absent), ids and a point value."""
    frames = {m: rng.integers(1, 511, (N, 128, 512), dtype=np.uint16) for m in (1, 14)}
    return frames, np.arange(100, 100 + N, dtype=np.uint64), np.array([5, 6, 7], np.uint16)


def meta_of(data):
    return {s: {"source": s, "timestamp.tid": TID} for s in data}


@pytest.mark.parametrize("layout", ["modules", "stacked", "online"])
def test_layouts_give_the_planted_frames(layout):
    frames, pids, cids = planted(np.random.default_rng(1))
    data = {"SCS_BLU_XGM/XGM/DOOCS:output": {"data.intensitySa3TD": np.arange(4.0)}}
    if layout == "modules":
        for m, f in frames.items():
            data[f"SCS_DET_DSSC1M-1/DET/{m}CH0:xtdf"] = {"image.data": f[:, None], "image.pulseId": pids[:, None],
                                                          "image.cellId": cids[:, None]}
        data["SCS_DET_DSSC1M-1/DET/7CH0:xtdf"] = {"header.trainId": TID}  # a module that missed the train
    else:
        stack = np.zeros((N, 16, 128, 512), np.uint16)
        for m, f in frames.items():
            stack[:, m] = f
        if layout == "stacked":
            data[STACKED_SOURCE] = {"image.data": stack[:, None], "image.pulseId": pids[:, None],
                                    "image.cellId": cids[:, None]}
        else:  # (modules, x, y, cells)
            data[ONLINE_SOURCE] = {"image.data": np.transpose(stack, (1, 3, 2, 0)), "image.pulseId": pids,
                                   "image.cellId": cids}
    assert detect_layout(data) == layout
    train = decode_train(data, meta_of(data), layout)
    assert train.train_id == TID and sorted(train.modules) == [1, 14]
    for m, f in frames.items():
        assert np.array_equal(train.modules[m].data, f)
        assert np.array_equal(train.modules[m].pulse_ids, pids) and np.array_equal(train.modules[m].cell_ids, cids)
    assert np.array_equal(train.values[("SCS_BLU_XGM/XGM/DOOCS:output", "data.intensitySa3TD")], np.arange(4.0))


def test_online_without_ids_and_corrected_refused():
    frames, _, _ = planted(np.random.default_rng(2))
    stack = np.zeros((16, 512, 128, N), np.uint16)
    stack[1] = np.transpose(frames[1], (2, 1, 0))
    data = {ONLINE_SOURCE: {"image.data": stack}}
    train = decode_train(data, meta_of(data), "online")
    assert np.array_equal(train.modules[1].cell_ids, np.arange(N)) and list(train.modules) == [1]
    corrected = {"SCS_CDIDET_DSSC/CAL/APPEND_CORRECTED": {"image.data": stack.astype(np.float32)}}
    assert detect_layout(corrected) is None and corrected_sources(corrected) == list(corrected)
    with pytest.raises(DataError, match="not raw uint16"):
        decode_train({ONLINE_SOURCE: {"image.data": stack.astype(np.float32)}}, meta_of(data), "online")


def test_stacked_without_ids_takes_the_previous_trains():
    """extra-data takes a stacked train's ids from one module; one that missed the train has none."""
    frames, pids, cids = planted(np.random.default_rng(3))
    stack = np.zeros((N, 1, 16, 128, 512), np.uint16)
    stack[:, 0, 1] = frames[1]
    with_ids = {STACKED_SOURCE: {"image.data": stack, "image.pulseId": pids[:, None], "image.cellId": cids[:, None]}}
    without = {STACKED_SOURCE: {"image.data": stack, "header.trainId": TID}}
    previous = {}
    first = decode_train(with_ids, meta_of(with_ids), "stacked", previous)
    second = decode_train(without, meta_of(without), "stacked", previous)
    assert not first.ids_from_previous and second.ids_from_previous
    assert np.array_equal(second.modules[1].pulse_ids, pids) and np.array_equal(second.modules[1].cell_ids, cids)
    assert decode_train(without, meta_of(without), "stacked", {}).modules == {}  # nothing to take them from


def test_live_access_grows_and_bounds_its_history():
    """Counts and point values of thousands of trains: exact, and small values kept for the last trains only."""
    from smalldata.live.access import HISTORY_TRAINS, LiveAccess
    from smalldata.live.layouts import LiveTrain, ModuleFrames

    def train(tid):
        n = 1 + tid % 5
        ids = np.arange(n, dtype=np.uint64)
        return LiveTrain(tid, {2: ModuleFrames(None, ids, ids.astype(np.uint16))},
                         {("SRC", "v"): float(tid)}, frozenset({"SRC"}))

    tids = np.arange(10, 10 + HISTORY_TRAINS + 700)
    access = LiveAccess("tcp://127.0.0.1:1", [train(int(tids[0]))])
    for a in range(1, len(tids), 97):  # rounds of 97 trains
        access.add([train(int(t)) for t in tids[a:a + 97]])
        access.forget(tids[a:a + 97])
    assert np.array_equal(access.train_ids, tids)
    assert np.array_equal(access.module_frame_counts(2), 1 + tids % 5)
    assert not access.module_frame_counts(3).any()
    values = access.train_values("SRC", "v", tids)
    kept = np.arange(len(tids)) >= len(tids) - HISTORY_TRAINS
    assert np.array_equal(values[kept], tids[kept].astype(float)) and np.isnan(values[~kept]).all()
