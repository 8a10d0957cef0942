"""Planted index faults: every row's ids checked against the data; a mismatch is invalid and reported."""
import h5py
import numpy as np
import pytest
from faults import (DIGITIZER, XGM, damaged_copy, fault_config, incomplete_pairs, invalid_pairs, invalid_reasons,
                    plant_index_gap, plant_shifted_cells, plant_swapped_index, plant_zero_train_id, validate)
from helpers import DATA_RUN, read_all

from smalldata.config.producer import ProducerConfig
from smalldata.pipeline.eventloop import run_producer


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sim_root, calib_dir):
    """The undamaged run's output."""
    tmp = tmp_path_factory.mktemp("reference")
    summary = run_producer(ProducerConfig.from_file(fault_config(tmp, sim_root, calib_dir)), DATA_RUN)
    return read_all(summary.output)


def produce(tmp_path, root, calib_dir, extra=None):
    return run_producer(ProducerConfig.from_file(fault_config(tmp_path, root, calib_dir, extra)), DATA_RUN).output


def check_module_rows(ref, out, output, module, expect_invalid, skipped=()):
    """Every row of ``module`` equals the reference or is invalid (no pixel) and reported; returns invalid trains.

    ``skipped``: trains left out of the output (no module has rows that are theirs), listed in /meta.
    """
    name = f"dssc/m{module}"
    with h5py.File(output) as f:
        assert set(f["meta/skipped_trainId"][()].tolist()) == set(skipped)
    ref = {k: v[~np.isin(ref["trainId"], list(skipped))] for k, v in ref.items()}
    assert np.array_equal(out["trainId"], ref["trainId"])  # no row moved to another train
    lost = out[f"{name}_npix"] == 0
    same = np.isclose(out[f"{name}_sum"], ref[f"{name}_sum"], rtol=0, atol=1e-3) & \
        (out[f"{name}_npix"] == ref[f"{name}_npix"])
    assert np.all(same | lost), f"{name}: rows neither right nor invalid"
    newly_lost = set(np.unique(out["trainId"][lost & (ref[f"{name}_npix"] > 0)]).tolist())
    reported = {t for t, w in invalid_pairs(output) if w == f"module {module}"} | \
        {t for t, m in incomplete_pairs(output) if m == module}
    assert newly_lost <= reported, "a lost (train, module) is not reported"
    assert newly_lost == set(expect_invalid)
    return newly_lost


def test_zero_train_id_in_module_index(tmp_path, sim_root, calib_dir, reference):
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    tid = plant_zero_train_id(run_dir, module=2, position=2)
    assert validate(run_dir).returncode != 0  # the oracle calls this file inconsistent
    output = produce(tmp_path, tmp_path / "root", calib_dir)
    out = read_all(output)
    # train 2 lost its INDEX entry (incomplete); extra-data gives 3..9 their neighbour's rows: none is used, and
    # trains 5 and 6, which module 3 lacks, have no frame of their own left (skipped)
    skipped = {tid + 3, tid + 4}
    check_module_rows(reference, out, output, 2, expect_invalid=set(range(tid, tid + 8)) - skipped, skipped=skipped)
    reasons = {(t, w): r for t, w, r in invalid_reasons(output)}
    assert all("INDEX/trainId is 0 at entry 2" in reasons[(t, "module 2")] for t in range(tid + 1, tid + 8))
    assert (tid, 2) in incomplete_pairs(output)
    check_module_rows(reference, out, output, 3, expect_invalid=[], skipped=skipped)
    with h5py.File(output) as f:
        assert f["meta/losses"].attrs["trains_invalid_ids module 2"] == 7


def test_swapped_index_entries(tmp_path, sim_root, calib_dir, reference):
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    a, b = plant_swapped_index(run_dir, module=3, a=2, b=3)
    assert validate(run_dir).returncode != 0
    output = produce(tmp_path, tmp_path / "root", calib_dir)
    out = read_all(output)
    lost = check_module_rows(reference, out, output, 3, expect_invalid=[a, b])
    assert lost == {a, b}
    check_module_rows(reference, out, output, 2, expect_invalid=[])


@pytest.mark.parametrize("source,aggregator,group,output_key", [
    (XGM, "DA01", "data", "xgm/sa3_intensity"),
    (DIGITIZER, "DA01", "digitizers", "digitizer/mcp"),
])
def test_gap_in_point_source_index(tmp_path, sim_root, calib_dir, reference, source, aggregator, group, output_key):
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    moved = plant_index_gap(run_dir, aggregator, source, group, position=3)
    # extra-data-validate sees a consistent INDEX here; extra-data gives the moved rows to the wrong trains
    import extra_data
    run = extra_data.RunDirectory(str(run_dir))
    assert not np.array_equal(run[source, f"{group}.trainId"].ndarray(),
                              run[source, f"{group}.trainId"].train_id_coordinates())

    def extra(cfg):
        cfg["digitizer"] = {"source": DIGITIZER, "key": "digitizers.channel_1_A.raw.samples", "name": "mcp"}
        cfg["pulses"] = {"source": "SCS_RR_UTC/TSYS/TIMESERVER:outputBunchPattern", "key": "data.bunchPatternTable",
                         "laser_pulse_offset": 0}  # the simulated PPL bits start at slot 0
    output = produce(tmp_path, tmp_path / "root", calib_dir, extra if "digitizer" in output_key else None)
    out = read_all(output)
    values = out[output_key]
    rows = np.isin(out["trainId"], moved)
    assert np.all(np.isnan(values[rows]))  # never a neighbour's value
    if output_key in reference:
        np.testing.assert_array_equal(values[~rows], reference[output_key][~rows])
    reported = {t for t, w in invalid_pairs(output) if w == source}
    assert set(moved[1:]) <= reported  # rows holding another train's id: listed; the lost train: NaN
    if output_key == "xgm/sa3_intensity":
        with h5py.File(output) as f:
            assert f["meta/losses"].attrs[f"nan {output_key}"] == np.count_nonzero(rows)


def test_module_with_other_cells_uses_its_own_pedestal(tmp_path, sim_root, calib_dir, reference):
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    # module 3 records cells shifted by one, and its raw values are re-based to match: raw - ped[new cell]
    # must equal the reference raw - ped[old cell], frame by frame
    from smalldata.calib.dark import read_dark_file
    from faults import dssc
    dark = read_dark_file(next(calib_dir.glob("dark_*.h5")), modules=[3])
    ped = dark.pedestal[0]
    for path in run_dir.glob("RAW-R*-DSSC03-S*.h5"):
        with h5py.File(path, "r+") as f:
            cells = f[f"INSTRUMENT/{dssc(3)}/image/cellId"][()][:, 0].astype(np.int64)
            raw = f[f"INSTRUMENT/{dssc(3)}/image/data"][()].astype(np.float64)
            new = (cells + 1) % 4
            shifted = raw[:, 0] - ped[cells] + ped[new]
            ok = (raw[:, 0] < 511) & (np.rint(shifted) >= 0) & (np.rint(shifted) < 511)
            raw[:, 0] = np.where(ok, np.rint(shifted), raw[:, 0])
            f[f"INSTRUMENT/{dssc(3)}/image/data"][...] = raw.astype(np.uint16)
    plant_shifted_cells(run_dir, 3, 1, 4)
    output = produce(tmp_path, tmp_path / "root", calib_dir)
    out = read_all(output)
    np.testing.assert_array_equal(out["dssc/m2_sum"], reference["dssc/m2_sum"])
    # rounding the re-based raw values to integers moves each pixel by at most 0.5 ADU
    npix = reference["dssc/m3_npix"]
    assert np.all(np.abs(out["dssc/m3_sum"] - reference["dssc/m3_sum"]) <= 0.5 * npix + 1e-3)
    assert np.mean(np.abs(out["dssc/m3_sum"] - reference["dssc/m3_sum"]) / np.maximum(npix, 1)) < 0.3
