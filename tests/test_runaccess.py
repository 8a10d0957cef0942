"""Run access: batches equal extra-data's own reads, across sequence files and missing trains."""
import numpy as np
import pytest
from extra_data import RunDirectory, by_id
from helpers import DATA_RUN, PROPOSAL

from smalldata.errors import DataError
from smalldata.io.runaccess import RunAccess, find_run_directory
from smalldata.simulate import run_path


@pytest.mark.parametrize("block", [(0, 24), (3, 12), (4, 8), (15, 19)])
def test_read_raw_equals_extra_data(sim_root, block):
    access = RunAccess.open(PROPOSAL, DATA_RUN, str(sim_root))
    run = RunDirectory(str(run_path(sim_root, PROPOSAL, DATA_RUN)))
    tids = access.train_ids[block[0]:block[1]]
    raw = access.read_raw((2, 3), tids)
    sel = run.select_trains(by_id[tids])
    for j, m in enumerate((2, 3)):
        src = f"SCS_DET_DSSC1M-1/DET/{m}CH0:xtdf"
        ref = sel[src, "image.data"].ndarray()[:, 0]
        ref_tid = sel[src, "image.trainId"].ndarray()[:, 0]
        ref_pid = sel[src, "image.pulseId"].ndarray()[:, 0]
        got = raw.data[raw.present[:, j], j]
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(raw.train_ids[raw.present[:, j]], ref_tid)
        np.testing.assert_array_equal(raw.pulse_ids[raw.present[:, j]], ref_pid)
        assert np.all(raw.data[~raw.present[:, j], j] == 0)
    # module 3 misses train indices 5 and 6: absent there, present elsewhere
    missing = np.isin(raw.train_ids, access.train_ids[[5, 6]])
    np.testing.assert_array_equal(raw.present[:, 1], ~missing)
    assert raw.present[:, 0].all()


@pytest.mark.parametrize("window", [(0, 3), (3, 4), (1, 9)])
def test_window_reads_the_same_frames_as_whole_trains(sim_root, window):
    """A window of frame positions reads exactly those rows of each train (module 3 misses two trains),
    into a batch of only that many frames per train, with their positions in the train."""
    access = RunAccess.open(PROPOSAL, DATA_RUN, str(sim_root))
    tids = access.train_ids[3:8]
    whole = access.read_raw((2, 3), tids)
    whole = {k: getattr(whole, k).copy() for k in ("data", "present", "train_ids", "pulse_ids", "cell_ids",
                                                    "frame_index")}
    part = access.read_raw((2, 3), tids, window)
    keep = (whole["frame_index"] >= window[0]) & (whole["frame_index"] < window[1])
    assert len(part) == keep.sum() < len(whole["data"])
    for key, expected in whole.items():
        np.testing.assert_array_equal(getattr(part, key), expected[keep], err_msg=key)
    assert access.buffers.holds(part.data) and part.data.base is not None


def test_non_consecutive_trains_and_errors(sim_root):
    access = RunAccess.open(PROPOSAL, DATA_RUN, str(sim_root))
    tids = access.train_ids[[1, 9, 10, 20]]
    raw = access.read_raw((2,), tids)
    assert list(np.unique(raw.train_ids)) == list(tids)
    run = RunDirectory(str(run_path(sim_root, PROPOSAL, DATA_RUN)))
    ref = run.select_trains(by_id[tids])["SCS_DET_DSSC1M-1/DET/2CH0:xtdf", "image.data"].ndarray()[:, 0]
    np.testing.assert_array_equal(raw.data[:, 0], ref)
    with pytest.raises(DataError, match="not all in run"):
        access.read_raw((2,), np.array([1], dtype=np.uint64))
    with pytest.raises(DataError, match="r0999"):
        find_run_directory(PROPOSAL, 999, str(sim_root))



def test_from_run_accepts_number_directory_collection_and_access(sim_root, tmp_path):
    folder = run_path(sim_root, PROPOSAL, DATA_RUN)
    expected = np.asarray(RunDirectory(str(folder)).train_ids, dtype=np.uint64)
    by_number = RunAccess.from_run(DATA_RUN, str(sim_root), PROPOSAL)
    by_folder = RunAccess.from_run(folder)
    by_collection = RunAccess.from_run(RunDirectory(str(folder)))
    for access in (by_number, by_folder, by_collection):
        np.testing.assert_array_equal(access.train_ids, expected)
        assert access.available_modules() == by_number.available_modules()
    assert RunAccess.from_run(by_folder) is by_folder
    with pytest.raises(DataError, match="proposal number is needed"):
        RunAccess.from_run(DATA_RUN)
    with pytest.raises(DataError, match="does not exist"):
        RunAccess.from_run(tmp_path / "nowhere")

def test_point_values_per_train_and_block_cache(sim_root):
    from smalldata.simulate import read_truth

    access = RunAccess.open(PROPOSAL, DATA_RUN, str(sim_root))
    access.block_trains = 5
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    got = np.concatenate([access.train_values("SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "actualPosition.value",
                                              access.train_ids[a:a + 3]) for a in range(0, 24, 3)])
    np.testing.assert_array_equal(got, truth["train_delay"])
    with pytest.raises(DataError, match="no source"):
        access.train_values("NOPE/DEV", "x.value", access.train_ids[:2])


def test_batch_buffers_reused_and_never_overwritten_while_held(sim_root):
    """A batch given back (``access.release(raw)``) lends its array to the next read; a batch the
    caller keeps is never written over by later reads, whether or not others are given back."""
    access = RunAccess.from_directory(run_path(sim_root, PROPOSAL, DATA_RUN))
    modules = access.available_modules()
    tids = access.train_ids
    bases = []
    for i in range(6):  # the event loop's way: read, use, give back
        raw = access.read_raw(modules, tids[i:i + 1])
        bases.append(raw.data.base)
        access.release(raw)
    assert all(b is bases[0] for b in bases)
    kept = [access.read_raw(modules, tids[i:i + 1]) for i in range(3)]  # all three held at once
    copies = [k.data.copy() for k in kept]
    for i in range(3, 6):
        raw = access.read_raw(modules, tids[i:i + 1])
        access.release(raw)
    for k, c in zip(kept, copies):
        np.testing.assert_array_equal(k.data, c)
    assert len({id(k.data.base) for k in kept}) == 3
    for i, k in enumerate(kept):
        expected = access.read_raw(modules, tids[i:i + 1])
        np.testing.assert_array_equal(k.data, expected.data)
        assert not np.shares_memory(k.data, expected.data)


def test_buffer_pool_hands_out_only_what_was_given_back():
    from smalldata.io.buffers import BufferPool

    pool = BufferPool(max_held=2)
    a = pool.take((4, 3), np.uint16)
    b = pool.take((4, 3), np.uint16)
    assert not np.shares_memory(a, b) and pool.holds(a) and pool.holds(b)
    pool.release(a[:2])  # a view of it gives the whole array back
    assert not pool.holds(a)
    c = pool.take((3, 3), np.uint16)  # fewer rows: the first rows of a
    assert np.shares_memory(c, a) and c.shape == (3, 3)
    d = pool.take((4, 3), np.uint16)  # nothing given back: a new array; the pool forgets b (the oldest held)
    assert not np.shares_memory(d, a) and not np.shares_memory(d, b) and not pool.holds(b) and len(pool) == 2
    pool.release(b)  # forgotten: ignored, never handed out again
    assert not np.shares_memory(pool.take((4, 3), np.uint16), b)
    pool.release(d)
    e = pool.take((4, 3), np.float32)  # another dtype: the released uint16 array is dropped
    assert e.dtype == np.float32 and not np.shares_memory(e, d)
    with pytest.raises(ValueError):
        BufferPool(max_held=0)
