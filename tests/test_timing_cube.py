"""The cube over two variables (total delay x photon energy) against numpy histograms of the same frames."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from smalldata.errors import ConfigError
from smalldata.sums.cube2 import read_cube2
from timing_runs import CUBE_DELAY_EDGES, ENERGIES, RUN, config_dict, timing_run, write_config


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return timing_run(tmp_path_factory)


def test_two_variable_cube_equals_numpy_histogram(root):
    with h5py.File(root / "out" / f"r{RUN:04d}.h5", "r") as f:
        cube = read_cube2(f["Sums/dssc_cube"])
        delay, energy = f["delay/total"][()], f["scan/photon_energy"][()]
        label, keep = f["pattern/label_id"][()], f["rejection/reasons"][()] == 0
        roi_sum = f["dssc/roi_sum"][()]
        labels = [s.decode() for s in f["UserDataCfg/frames/pattern"].attrs["labels"]] \
            if isinstance(f["UserDataCfg/frames/pattern"].attrs["labels"][0], bytes) \
            else list(f["UserDataCfg/frames/pattern"].attrs["labels"])
    assert cube["scan_names"] == ["delay/total", "scan/photon_energy"]
    assert cube["labels"] == labels
    np.testing.assert_array_equal(cube["axis0_edges"], CUBE_DELAY_EDGES)
    assert cube["axis0_units"] == "ps" and cube["axis1_units"] == "eV"
    np.testing.assert_array_equal(cube["axis1_centres"], ENERGIES)
    energy_edges = [ENERGIES[0] - 2, 0.5 * (ENERGIES[0] + ENERGIES[1]), ENERGIES[1] + 2]
    total = 0
    for k, name in enumerate(labels):
        sel = keep & (label == k)
        # the last delay bin is [e, e_last) in the cube, as in np.histogramdd apart from its right edge
        counts, _ = np.histogramdd((delay[sel], energy[sel]), bins=(CUBE_DELAY_EDGES, energy_edges))
        np.testing.assert_array_equal(cube["count"][:, :, k], counts)
        total += counts.sum()
        # the cube's pixels of the ROI (module rows 0..15, columns 0..31) summed per bin = the ROI sums' histogram
        roi_hist, _ = np.histogramdd((delay[sel], energy[sel]), bins=(CUBE_DELAY_EDGES, energy_edges),
                                     weights=roi_sum[sel])
        cube_roi = cube["sum"][:, :, k, 0, :16, :32].sum(axis=(-2, -1))
        np.testing.assert_allclose(cube_roi, roi_hist, atol=16 * 32 * counts.max() * 2.0 ** -12, rtol=1e-9)
    # frames of both labels in both energies and several delay bins: the cube is not trivially full or empty
    assert 0 < total < len(delay)
    from smalldata.ana.session import SmallDataAna

    np.testing.assert_array_equal(SmallDataAna(root / "out" / f"r{RUN:04d}.h5").cube2()["count"], cube["count"])
    assert (cube["count"].sum(axis=(1, 2)) > 0).sum() >= 5 and (cube["count"].sum(axis=(0, 2)) > 0).all()


def test_second_axis_config_errors(root):
    cfg = config_dict(root)
    cfg["detectors"]["dssc"]["cube"]["second"] = {"scan": "scan/nothing", "unique": True}
    with pytest.raises(ConfigError, match=r"cube.second.scan.*not a point_data entry"):
        write_config(root, "bad_second", cfg)
    cfg["detectors"]["dssc"]["cube"]["second"] = {"scan": "scan/photon_energy", "unique": True, "width": 1.0}
    with pytest.raises(ConfigError, match="exactly one of edges, width or unique"):
        write_config(root, "bad_second2", cfg)
