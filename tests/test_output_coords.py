"""Every group of a producer output opens on its own in xarray with its frame and bin coordinates."""
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import yaml
from helpers import DATA_RUN

from smalldata.config.producer import ProducerConfig
from smalldata.config.yamlfile import load_yaml
from smalldata.pipeline.eventloop import run_producer

EVENT_GROUPS = ("dssc", "xgm", "scan", "pulses", "pattern", "rejection", "digitizer")


@pytest.fixture(scope="module")
def output(tmp_path_factory, sim_root, calib_dir):
    """The demo's config on the session's runs, with two azimuth bins and droplet lists saved."""
    tmp = tmp_path_factory.mktemp("coords")
    cfg = load_yaml(Path(__file__).resolve().parents[1] / "configs" / "producer.yaml")
    cfg.update(data_root=str(sim_root), calib_dir=str(calib_dir), output_dir=str(tmp))
    funcs = cfg["detectors"]["dssc"]["functions"]
    azav = next(f for f in funcs if f["type"] == "azimuthal")
    azav.update(phi_bins=2)
    next(f for f in funcs if f["type"] == "droplet").update(save_droplets=True)
    cfg["detectors"]["dssc"].pop("cube", None)
    path = tmp / "producer.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return run_producer(ProducerConfig.from_file(path), DATA_RUN, max_trains=6).output


def test_each_group_carries_train_and_pulse_coordinates(output):
    with h5py.File(output, "r") as f:
        train_ids, pulse_ids = f["trainId"][()], f["pulseId"][()]
    assert len(np.unique(train_ids)) > 1 and len(train_ids) > len(np.unique(train_ids))
    for group in EVENT_GROUPS:
        ds = xr.open_dataset(output, group=group, engine="h5netcdf")
        assert "trainId" in ds.indexes, group
        np.testing.assert_array_equal(ds["trainId"].values, train_ids, err_msg=group)
        assert "pulseId" in ds.coords and ds["pulseId"].dims == ("trainId",), group
        np.testing.assert_array_equal(ds["pulseId"].values, pulse_ids, err_msg=group)
        assert ds.data_vars and all(v.dims[0] == "trainId" for v in ds.data_vars.values()), group
    root = xr.open_dataset(output, engine="h5netcdf")
    assert "pulseId" in root.coords and "trainId" in root.indexes


def test_sel_by_train_returns_that_trains_frames(output):
    with h5py.File(output, "r") as f:
        train_ids = f["trainId"][()]
        expected = {key: f[key][()] for key in ("xgm/sa3_intensity", "dssc/azav_mean", "dssc/speckle_sum")}
        pulse_ids = f["pulseId"][()]
    t = int(train_ids[len(train_ids) // 2])
    rows = train_ids == t
    for key, values in expected.items():
        group, name = key.split("/")
        picked = xr.open_dataset(output, group=group, engine="h5netcdf").sel(trainId=t)
        np.testing.assert_array_equal(picked[name].values, values[rows], err_msg=key)
        np.testing.assert_array_equal(picked["pulseId"].values, pulse_ids[rows], err_msg=key)
        assert np.all(picked["trainId"].values == t)


def test_azimuthal_profiles_have_q_and_phi(output):
    ds = xr.open_dataset(output, group="dssc", engine="h5netcdf")
    with h5py.File(output, "r") as f:
        q = f["UserDataCfg/dssc/azav/q_centers"][()]
        phi = f["UserDataCfg/dssc/azav/phi_centers"][()]
        edges = f["UserDataCfg/dssc/azav/q_edges"][()]
    for name in ("azav_mean", "azav_count"):
        assert ds[name].dims == ("trainId", "azav_phi", "azav_q"), ds[name].dims
    np.testing.assert_array_equal(ds["azav_q"].values, q)
    np.testing.assert_allclose(ds["azav_q"].values, 0.5 * (edges[1:] + edges[:-1]))
    assert ds["azav_q"].attrs["units"] == "1/m" and len(q) == 80
    # the config's range in 1/m, evenly split into 80 bins: an independent check of the values
    np.testing.assert_allclose(ds["azav_q"].values, 6.0e7 + (np.arange(80) + 0.5) * (8.0e7 / 80), rtol=1e-12)
    np.testing.assert_array_equal(ds["azav_phi"].values, phi)
    assert ds["azav_phi"].attrs["units"] == "rad" and len(phi) == 2
    profile = ds["azav_mean"].sel(azav_q=1.0e8, method="nearest")
    assert profile.dims == ("trainId", "azav_phi")


def test_ragged_lists_and_datatree(output):
    with h5py.File(output, "r") as f:
        counts = f["dssc/droplet_list/count"][()]
    lists = xr.open_dataset(output, group="dssc/droplet_list", engine="h5netcdf")
    np.testing.assert_array_equal(lists["count"].values, counts)
    assert lists["count"].dims == ("trainId",)
    fields = [v for k, v in lists.data_vars.items() if k != "count"]
    assert fields and all(v.dims[0] == "entry" and v.shape[0] == counts.sum() for v in fields)
    tree = xr.open_datatree(output, engine="h5netcdf", phony_dims="sort")
    assert tree["dssc"].to_dataset()["azav_mean"].dims == ("trainId", "azav_phi", "azav_q")


def test_plain_h5py_reading_unchanged(output):
    with h5py.File(output, "r") as f:
        n = f["trainId"].shape[0]
        assert f["dssc/azav_mean"].shape == (n, 2, 80) and f["dssc/azav_mean"].attrs["units"] == "photon"
        assert f["xgm/sa3_intensity"].attrs["units"] == "uJ"
        # the coordinates in a group are copies of the root's
        for group in EVENT_GROUPS:
            np.testing.assert_array_equal(f[f"{group}/trainId"][()], f["trainId"][()])
            np.testing.assert_array_equal(f[f"{group}/pulseId"][()], f["pulseId"][()])


def test_session_lists_events_not_coordinate_copies(output):
    """The session's variables are the per-event datasets: no group's trainId/pulseId copy, no q or phi axis."""
    from smalldata.ana.session import SmallDataAna

    ana = SmallDataAna(output)
    with h5py.File(output, "r") as f:
        assert "dssc/trainId" in f and "dssc/azav_q" in f
        expected = []
        f.visititems(lambda name, obj: expected.append(name) if isinstance(obj, h5py.Dataset)
                     and obj.shape[:1] == f["trainId"].shape and not name.startswith(("UserDataCfg", "meta", "Sums"))
                     and name.rsplit("/", 1)[-1] not in ("trainId", "pulseId") else None)
    assert set(expected) <= set(ana.events)
    assert not [e for e in ana.events if e.rsplit("/", 1)[-1] in ("trainId", "pulseId") and "/" in e]
    assert not [e for e in ana.events if e.endswith(("azav_q", "azav_phi"))]
    frame = ana.to_dataframe()
    assert not [c for c in frame.columns if c.endswith(("_trainId", "_pulseId"))]
