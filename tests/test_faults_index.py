"""Damaged INDEX sections: a 0 in INDEX/trainId, counts beyond the rows; nothing shifted, lost silently or crashed."""
import subprocess

import h5py
import numpy as np
import pytest
from faults import (XGM, damaged_copy, fault_config, invalid_pairs, plant_index_count, plant_short_dataset,
                    plant_zero_index_entry, validate)
from helpers import DATA_RUN, read_all, tool

from smalldata.config.producer import ProducerConfig
from smalldata.errors import DataError
from smalldata.pipeline.eventloop import run_producer

DELAY = "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY"
POSITION = 2  # the damaged entry: trains 3..9 of the first sequence file follow it, the delay steps at train 6


def cube_config(cfg):
    """A cube binned by the delay (one bin per value), normalised by the XGM."""
    cfg["detectors"]["dssc"]["cube"] = {"scan": "scan/delay", "unique": True, "xgm": "xgm/sa3_intensity"}


def produce(tmp_path, root, calib_dir):
    return run_producer(ProducerConfig.from_file(fault_config(tmp_path, root, calib_dir, cube_config)), DATA_RUN).output


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sim_root, calib_dir):
    """The undamaged run's output and its cube's frame counts per delay."""
    output = produce(tmp_path_factory.mktemp("reference"), sim_root, calib_dir)
    return read_all(output), cube_counts(output)


def cube_counts(output):
    """``{delay: frames}`` of the cube."""
    with h5py.File(output) as f:
        cube = f["Sums/dssc_cube"]
        return dict(zip(cube["bin_centres"][()].tolist(), cube["count"][()].sum(axis=1).tolist()))


def meta(output):
    with h5py.File(output) as f:
        m = f["meta"]
        return {"skipped": m["skipped_trainId"][()].tolist(), "n_trains": int(m.attrs["n_trains_input"]),
                "losses": dict(m["losses"].attrs)}


def rows_of(ref, train_ids):
    """Reference rows of the trains ``train_ids`` (in order)."""
    return np.isin(ref["trainId"], train_ids)


def check_never_shifted(ref, out, path):
    """Each row's value is its train's own (as in the reference) or NaN; returns the NaN rows."""
    keep = rows_of(ref, out["trainId"])
    assert np.array_equal(ref["trainId"][keep], out["trainId"])
    same = out[path] == ref[path][keep]
    assert np.all(same | np.isnan(out[path])), f"{path}: a value moved to another train"
    return np.isnan(out[path]) & ~np.isnan(ref[path][keep])


def test_zero_train_id_in_every_file_of_a_train(tmp_path, sim_root, calib_dir, reference):
    """The train vanishes from extra-data's list and the next trains of every source shift by one."""
    ref, ref_cube = reference
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    names = {}
    for aggregator in ("DA01", "DSSC02", "DSSC03"):
        lost = plant_zero_index_entry(run_dir, aggregator, POSITION)
        names[aggregator] = next(run_dir.glob(f"RAW-R*-{aggregator}-S00000.h5")).name
    assert validate(run_dir).returncode != 0
    import extra_data
    assert lost not in extra_data.RunDirectory(str(run_dir)).train_ids  # the oracle reads no such train
    output = produce(tmp_path, tmp_path / "root", calib_dir)
    out, info = read_all(output), meta(output)
    # listed as skipped, with the reason per file, never silently gone
    assert info["n_trains"] == len(np.unique(ref["trainId"]))
    assert lost in info["skipped"] and lost not in out["trainId"]
    assert {(lost, name) for name in names.values()} <= invalid_pairs(output)
    with h5py.File(output, "r") as f:  # the skip reason names the damaged files, not only the empty train
        reasons = dict(zip(f["meta/skipped_trainId"][()].tolist(), f["meta/skipped_reason"].asstr()[()]))
    assert all(name in reasons[lost] for name in names.values()), reasons[lost]
    # the rest of the first sequence file: extra-data gives every source of these trains the entries of the
    # train before; no module has frames of their own left, so they are skipped too, each listed per module
    shifted = set(range(lost + 1, lost + 8))
    assert set(info["skipped"]) == {lost} | shifted
    assert {(t, f"module {m}") for t in shifted for m in (2, 3)} <= invalid_pairs(output)
    assert not np.isin(out["trainId"], list(shifted)).any()
    for path in ("scan/delay", "xgm/sa3_intensity"):
        check_never_shifted(ref, out, path)
    for module in (2, 3):
        name = f"dssc/m{module}"
        np.testing.assert_array_equal(out[f"{name}_sum"], ref[f"{name}_sum"][rows_of(ref, out["trainId"])])
    # the cube: each delay bin holds exactly the frames whose own delay is that value, and lost what was listed
    cube = cube_counts(output)
    delay = out["scan/delay"]
    assert cube == {d: int(np.count_nonzero(delay == d)) for d in cube}
    listed = np.count_nonzero(np.isin(ref["trainId"], info["skipped"])) + np.count_nonzero(np.isnan(delay))
    assert sum(ref_cube.values()) - sum(cube.values()) == listed
    assert all(cube[d] <= ref_cube[d] for d in cube)


def test_zero_train_id_in_the_slow_data_file(tmp_path, sim_root, calib_dir, reference):
    """Only the file with the XGM and the delay is damaged: the detector is intact, the delay never shifted."""
    ref, _ = reference
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    lost = plant_zero_index_entry(run_dir, "DA01", POSITION)
    output = produce(tmp_path, tmp_path / "root", calib_dir)
    out, info = read_all(output), meta(output)
    assert np.array_equal(out["trainId"], ref["trainId"]) and info["skipped"] == []
    for module in (2, 3):
        np.testing.assert_array_equal(out[f"dssc/m{module}_sum"], ref[f"dssc/m{module}_sum"])
    name = next(run_dir.glob("RAW-R*-DA01-S00000.h5")).name
    assert (lost, name) in invalid_pairs(output)
    for path, source in (("scan/delay", DELAY), ("xgm/sa3_intensity", XGM)):
        nan = check_never_shifted(ref, out, path)
        assert set(np.unique(out["trainId"][nan]).tolist()) == set(range(lost, lost + 8))
        assert {(t, source) for t in range(lost + 1, lost + 8)} <= invalid_pairs(output)
    # the step of the delay at train 6 stays at train 6
    step = ref["trainId"][np.flatnonzero(np.diff(ref["scan/delay"]) != 0)[0] + 1]
    assert lost < step < lost + 8
    assert info["losses"]["nan scan/delay"] == np.count_nonzero(np.isin(out["trainId"], range(lost, lost + 8)))


@pytest.mark.parametrize("plant,match", [
    (lambda d: plant_index_count(d, module=2, position=4), "gives rows 16..20 to one train and row 20 to the next"),
    (lambda d: plant_index_count(d, module=2, position=9), "counts 41 rows but image.data holds 40"),
    (lambda d: plant_short_dataset(d, module=2, key="cellId", missing=3), "counts 40 rows but image.cellId holds 37"),
])
def test_index_beyond_the_rows_is_one_line(tmp_path, sim_root, calib_dir, plant, match):
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    plant(run_dir)
    assert validate(run_dir).returncode != 0
    with pytest.raises(DataError) as info:
        produce(tmp_path, tmp_path / "root", calib_dir)
    message = str(info.value)
    assert "\n" not in message and match in message and "RAW-R0614-DSSC02-S00000.h5" in message, message
    assert "leave module 2 out of detectors" in message
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_index_count_too_large_on_the_command_line(tmp_path, sim_root, calib_dir):
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    plant_index_count(run_dir, module=3, position=0)
    cfg = fault_config(tmp_path, tmp_path / "root", calib_dir)
    result = subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg)], capture_output=True,
                            text=True, timeout=300)
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(("INFO ", "WARNING "))]
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert "RAW-R0614-DSSC03-S00000.h5" in lines[0] and "a count too large" in lines[0]
