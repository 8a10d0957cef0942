"""The compact output: dark constants by reference (read back, moved, changed), embedded on request,
positions in float32, sums compressed, the assembled cube mean at the sums' resolution."""
import shutil

import h5py
import numpy as np
import pytest
from helpers import DARK_RUN, DATA_RUN, PROPOSAL
from test_producer import FUNCS, producer_yaml

from smalldata.calib.dark import dark_file_path, read_dark_file
from smalldata.calib.darkref import MEDIAN_CELLS, file_sha256, read_output_dark
from smalldata.config.producer import ProducerConfig
from smalldata.errors import CalibrationError
from smalldata.pipeline.eventloop import run_producer
from smalldata.sums.cube import CubeAccumulator


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, sim_root, calib_dir):
    """The same run with the dark by reference (a private copy of the dark file) and embedded."""
    tmp = tmp_path_factory.mktemp("compact")
    calib = tmp / "calib"
    calib.mkdir()
    shutil.copy(dark_file_path(calib_dir, PROPOSAL, DARK_RUN), calib)
    made = {}
    for embed in (False, True):
        cfg = producer_yaml(tmp, sim_root, calib, FUNCS, name=f"p{embed}.yaml", extra=lambda c, e=embed: (
            c["detectors"]["dssc"].update(embed_dark=e, cube={"scan": "scan/delay", "unique": True,
                                                              "assembled": True}),
            c.update(output_dir=str(tmp / f"out{e}"))))
        made[embed] = run_producer(ProducerConfig.from_file(cfg), DATA_RUN).output
    return calib, made[False], made[True]


def test_reference_reads_back_the_same_arrays(outputs):
    calib, by_ref, embedded = outputs
    dark_file = dark_file_path(calib, PROPOSAL, DARK_RUN)
    with h5py.File(by_ref, "r") as f:
        g = f["UserDataCfg/dssc"]
        assert "pedestal" not in g and "noise" not in g
        ref = g["dark"]
        assert ref.attrs["path"] == str(dark_file.resolve()) and ref.attrs["run"] == DARK_RUN
        assert ref.attrs["sha256"] == file_sha256(dark_file) and not ref.attrs["embedded"]
        modules = ref["modules"][()]
        assert g["x"].dtype == np.float32 and g["x"].attrs["units"] == "m"
        ped_median, noise_median = ref["pedestal_median"][()], ref["noise_median"][()]
    assert list(modules) == [2, 3]
    dark = read_output_dark(by_ref)
    direct = read_dark_file(dark_file, modules)
    np.testing.assert_array_equal(dark.pedestal, direct.pedestal)
    np.testing.assert_array_equal(dark.noise, direct.noise)
    good = direct.status_mask == 0
    n_cells = direct.pedestal.shape[1]  # the summary looks at up to MEDIAN_CELLS cells, evenly spread
    cells = np.unique(np.linspace(0, n_cells - 1, min(n_cells, MEDIAN_CELLS)).round().astype(int))
    np.testing.assert_allclose(ped_median, [np.median(direct.pedestal[i][cells][:, good[i]]) for i in range(2)])
    # the run needed no noise (only ROIs): its median comes from those cells of the file
    np.testing.assert_allclose(noise_median, [np.median(direct.noise[i][cells][:, good[i]]) for i in range(2)])
    # the embedded copy holds the very same arrays, and reads back through the same function
    with h5py.File(embedded, "r") as f:
        assert f["UserDataCfg/dssc/dark"].attrs["embedded"]
        np.testing.assert_array_equal(f["UserDataCfg/dssc/pedestal"][()], direct.pedestal)
    np.testing.assert_array_equal(read_output_dark(embedded).noise, direct.noise)


def test_per_event_content_does_not_depend_on_embedding(outputs):
    from helpers import read_all

    _, by_ref, embedded = outputs
    a, b = read_all(by_ref), read_all(embedded)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_moved_or_changed_dark_is_reported(outputs, tmp_path):
    calib, by_ref, _ = outputs
    dark_file = dark_file_path(calib, PROPOSAL, DARK_RUN)
    moved = tmp_path / dark_file.name
    shutil.move(dark_file, moved)
    try:
        with pytest.raises(CalibrationError, match="is gone \\(moved or deleted\\)") as err:
            read_output_dark(by_ref)
        assert "\n" not in str(err.value)
        np.testing.assert_array_equal(read_output_dark(by_ref, path=moved).pedestal,
                                      read_dark_file(moved, [2, 3]).pedestal)
        with h5py.File(moved, "r+") as f:
            f["pedestal"][0, 0, 0, 0] += 1.0
        with pytest.raises(CalibrationError, match="changed since"):
            read_output_dark(by_ref, path=moved)
    finally:
        shutil.move(moved, dark_file)


def test_assembled_cube_mean_at_the_sums_resolution(outputs):
    """``mean_assembled`` is the cube's exact mean, assembled with the geometry, rounded to 2**-scale_bits."""
    from smalldata.geometry.positions import load_dssc_geometry

    _, by_ref, _ = outputs
    with h5py.File(by_ref, "r") as f:
        group = f["Sums/dssc_cube"]
        cube = CubeAccumulator.read(group)
        modules = [int(m) for m in group.attrs["modules"]]
        ds = group["mean_assembled"]
        assert ds.dtype == np.float32 and ds.compression == "gzip" and ds.shuffle
        assert ds.chunks == (1, 1) + ds.shape[2:] and group["sum"].chunks == (1, 1, 1, 128, 512)
        step = float(ds.attrs["resolution"])
        stored = ds[()]
    assert step == 2.0 ** -cube.scale_bits and modules == [2, 3]
    mean = cube.mean()
    full = np.full(mean.shape[:2] + (16, 128, 512), np.nan)
    full[:, :, modules] = mean
    exact, _ = load_dssc_geometry().position_modules(full)
    assert stored.shape == exact.shape and cube.count.sum() > 0
    np.testing.assert_array_equal(np.isnan(stored), np.isnan(exact))
    on = ~np.isnan(exact)
    assert on.sum() == np.isfinite(mean).sum() > 0
    assert np.abs(stored[on] - exact[on]).max() <= step / 2 * (1 + 1e-6)
    np.testing.assert_array_equal(np.rint(stored[on] / step) * step, stored[on])  # on the grid


def test_checksum_read_in_background_and_again_after_a_change(tmp_path, calib_dir):
    """The checksum started in the background is the file's; a file changed meanwhile is hashed anew."""
    import hashlib

    from smalldata.calib.darkref import hash_in_background

    copy = tmp_path / "dark.h5"
    shutil.copy(dark_file_path(calib_dir, PROPOSAL, DARK_RUN), copy)
    original = hashlib.sha256(copy.read_bytes()).hexdigest()
    hash_in_background(copy)
    assert file_sha256(copy) == original
    hash_in_background(copy)
    with open(copy, "ab") as f:  # changed after the hash started: its size and time differ
        f.write(b"changed")
    changed = file_sha256(copy)
    assert changed == hashlib.sha256(copy.read_bytes()).hexdigest() and changed != original


def test_noise_loaded_only_when_needed(tmp_path, sim_root, calib_dir):
    """The dark noise (as large as the pedestal) is read for common mode with its threshold from the
    noise, embedded constants, and functions (or children) whose needs_noise() says so; not otherwise."""
    from smalldata.io.runaccess import RunAccess
    from smalldata.pipeline.detectors import dark_requests

    def decide(functions, **det):
        cfg = producer_yaml(tmp_path, sim_root, calib_dir, functions, extra=lambda c: c["detectors"]["dssc"].update(det))
        config = ProducerConfig.from_file(cfg)
        access = RunAccess.open(PROPOSAL, DATA_RUN, str(sim_root))
        return dark_requests(config, PROPOSAL, access)["dssc"][2]

    drop = {"type": "droplet", "name": "drop", "threshold": 0.5, "threshold_low": 0.3}
    assert not decide(FUNCS)
    assert decide(FUNCS, common_mode="asic_row_median")
    assert not decide(FUNCS, common_mode="asic_row_median", common_mode_max=20.0)
    assert decide(FUNCS, embed_dark=True)
    assert decide(FUNCS + [{**drop, "threshold_unit": "noise"}])
    assert not decide(FUNCS + [{**drop, "threshold_unit": "data"}])
    photons = {"type": "photons", "name": "ph", "adu_per_photon": 10.0, "threshold_unit": "noise"}
    assert decide([{**FUNCS[1], "children": [photons]}])
