"""A DSSC run with a per-train camera (the Viking's Newton) through smd_dark and smd_producer: each
detector's rows at its own rate, 1 and 2 ranks identical, a camera's result vetoing DSSC frames,
and the camera's outputs binned by the scan variable, each checked against an independent
computation from the raw files and the planted truth."""
import subprocess

import extra_data
import h5py
import numpy as np
import pytest
import yaml

from helpers import mpiexec, read_all, tool
from smalldata.pulses.rejection import Reason
from smalldata.simulate import read_truth, run_path

PROPOSAL, DATA, DARK = 2937, 760, 761
SHAPE = (32, 64)
DELAY = ("SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "actualPosition.value")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed_producer")
    res = subprocess.run([tool("smd_simulate"), "--root", str(root), "-p", str(PROPOSAL), "-r", str(DATA),
                          "--dark-run", str(DARK), "--preset", "small", "--modules", "3", "--trains", "18",
                          "--frames-per-train", "3", "--dark-trains", "20", "--sequence-trains", "5",
                          "--camera", "newton", "--camera-shape", *map(str, SHAPE)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    truth = read_truth(root, PROPOSAL, DATA)
    r0, r1 = (int(v) for v in truth["camera_band_rows"])
    # half of the camera's trains have less light in the band than this: their DSSC frames are vetoed
    threshold = float(np.median(truth["camera_spectrum_pe"].sum(axis=1) / truth["camera_pe_per_count"]))
    cfg = root / "producer.yaml"
    cfg.write_text(yaml.safe_dump({
        "proposal": PROPOSAL, "data_root": str(root), "calib_dir": "calib", "output_dir": "out",
        "point_data": {"scan": {"delay": {"source": DELAY[0], "key": DELAY[1], "units": "mm"}}},
        "detectors": {
            "dssc": {"dark_run": DARK, "dark": {"min_frames": 10}, "modules": [3],
                     "functions": [{"type": "roi", "name": "box", "module": 3, "roi": [0, 128, 0, 512]}],
                     "vetoes": [{"detector": "viking", "key": "band_sum", "op": "<", "value": threshold}]},
            "viking": {"type": "camera", "camera": "newton", "shape": list(SHAPE), "dark_run": DARK,
                       "functions": [{"type": "roi", "name": "band", "roi": [r0, r1, 0, SHAPE[1]]}],
                       "cube": {"scan": "scan/delay", "unique": True, "keys": ["band_sum"]}}}}))
    res = subprocess.run([tool("smd_dark"), "-r", str(DARK), "-c", str(cfg), "--quiet"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    outputs = {}
    for ranks in (1, 2):
        out = root / f"n{ranks}.h5"
        prefix = mpiexec(ranks) if ranks > 1 else []
        res = subprocess.run(prefix + [tool("smd_producer"), "-r", str(DATA), "-c", str(cfg), "--output", str(out),
                                       "--batch-size", "4"], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        outputs[ranks] = out
    return dict(root=root, truth=truth, threshold=threshold, outputs=outputs)


@pytest.mark.mpi
def test_one_and_two_ranks_identical(mixed):
    a, b = read_all(mixed["outputs"][1]), read_all(mixed["outputs"][2])
    assert a.keys() == b.keys()
    assert {"dssc/box_sum", "viking/band_sum", "viking/trainId", "Sums/viking_cube/band_sum_sum"} <= a.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_each_detector_at_its_own_rate(mixed):
    truth = mixed["truth"]
    with h5py.File(mixed["outputs"][1], "r") as f:
        assert len(f["trainId"]) == 18 * 3  # every DSSC frame
        np.testing.assert_array_equal(f["viking/trainId"][()], truth["camera_train_ids"])
        assert len(f["viking/band_sum"]) == len(truth["camera_train_ids"]) < 18  # trains without an image
        missing = set(np.unique(f["trainId"][()]).tolist()) - set(truth["camera_train_ids"].tolist())
        np.testing.assert_array_equal(f["meta/no_image/viking"][()], sorted(missing))
        assert f["UserDataCfg/dssc"].attrs["per"] == "pulse" and f["UserDataCfg/viking"].attrs["per"] == "train"
        assert f["viking/band_sum"].dims[0][0].name == "/viking/trainId"  # its own axis, not the frames'


def test_camera_result_vetoes_dssc_frames(mixed):
    """A DSSC frame is vetoed when its train's band sum is below the threshold or the camera has no image."""
    with h5py.File(mixed["outputs"][1], "r") as f:
        frame_trains, reasons, box = f["trainId"][()], f["rejection/reasons"][()], f["dssc/box_sum"][()]
        band = dict(zip(f["viking/trainId"][()].tolist(), f["viking/band_sum"][()].tolist()))
    expected = np.array([band.get(int(t), -np.inf) < mixed["threshold"] for t in frame_trains])
    assert 0 < expected.sum() < len(expected)
    vetoed = (reasons & Reason.VETO) != 0
    np.testing.assert_array_equal(vetoed, expected)
    assert np.all(np.isnan(box[vetoed])) and np.all(np.isfinite(box[~vetoed]))


def test_camera_outputs_binned_by_delay(mixed):
    """The cube equals a numpy grouping of the camera's rows by the delay read from the raw files."""
    run = extra_data.RunDirectory(run_path(mixed["root"], PROPOSAL, DATA))
    delay = run[DELAY].xarray()
    with h5py.File(mixed["outputs"][1], "r") as f:
        ids, band = f["viking/trainId"][()], f["viking/band_sum"][()]
        cube = {k: f[f"Sums/viking_cube/{k}"][()] for k in ("centres", "count", "band_sum_sum", "band_sum_mean")}
    values = delay.sel(trainId=ids).values
    centres = np.unique(values)
    assert len(centres) > 1
    np.testing.assert_array_equal(cube["centres"], centres)
    np.testing.assert_array_equal(cube["count"], [np.sum(values == c) for c in centres])
    np.testing.assert_allclose(cube["band_sum_sum"], [band[values == c].sum() for c in centres], rtol=1e-12)
    np.testing.assert_allclose(cube["band_sum_mean"], [band[values == c].mean() for c in centres], rtol=1e-12)


def test_session_joins_the_producers_output(mixed):
    """The session on the real mixed output: camera values on the frames of their train, frames reduced
    per camera train, and one table per train, against a pandas merge of the file's own rows."""
    import pandas as pd

    from smalldata import SmallDataAna

    with h5py.File(mixed["outputs"][1], "r") as f:
        events = pd.DataFrame({"trainId": f["trainId"][()], "box": f["dssc/box_sum"][()]})
        camera = pd.DataFrame({"trainId": f["viking/trainId"][()], "band": f["viking/band_sum"][()]})
    ana = SmallDataAna(mixed["outputs"][1])
    joined = events.merge(camera, on="trainId", how="left")
    np.testing.assert_array_equal(ana.on_events("viking/band_sum"), joined["band"].to_numpy())
    means = events.groupby("trainId")["box"].mean()
    expected = means.reindex(camera["trainId"]).to_numpy()
    np.testing.assert_allclose(ana.per_train("dssc/box_sum", "viking", how="mean"), expected, equal_nan=True)
    table = ana.to_dataframe(per="train")
    assert set(camera["trainId"]) | set(events["trainId"]) == set(table.index)
    np.testing.assert_allclose(table.loc[camera["trainId"], "viking/band_sum"].to_numpy(), camera["band"])


def test_veto_on_a_camera_output_that_is_not_a_scalar(mixed, tmp_path):
    """A veto needs one value per train: a camera's spectrum is refused at set-up, naming the veto."""
    cfg = yaml.safe_load((mixed["root"] / "producer.yaml").read_text())
    cfg["detectors"]["viking"]["functions"].append({"type": "projection", "name": "spec", "axis": 0, "module": 0})
    cfg["detectors"]["dssc"]["vetoes"][0]["key"] = "spec_profile"
    path = mixed["root"] / "bad_veto.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "x.h5"
    res = subprocess.run([tool("smd_producer"), "-r", str(DATA), "-c", str(path), "--output", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "detectors.dssc.vetoes[0].key" in res.stderr and "spec_profile" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
