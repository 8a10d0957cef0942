"""The session on outputs with per-train camera groups next to the per-event rows.

The files are written here with h5py in the output's layout (top-level rows as the producer
writes them, with the writer's own frame coordinates; a camera group ``/<cam>/trainId`` +
``/<cam>/<func>_<key>``, ``/UserDataCfg/<cam>`` with ``type = "camera"``, ``per = "train"``).
The cameras miss trains the events have and have trains the events lack. Every join is checked
against a pandas merge on trainId done here.
"""
import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import tool

from smalldata.ana.session import SmallDataAna
from smalldata.ana.trainrows import reduce_to_trains, row_lookup, take_rows
from smalldata.errors import DataError, SmallDataError
from smalldata.output.coords import label_frame_coordinates

RUN, PROPOSAL = 614, 2937
#: the events' trains and frames per train (train 1005 has 2 frames)
EVENT_TRAINS = np.array([1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1009])
FRAMES = np.array([3, 3, 3, 3, 3, 2, 3, 3, 3])
#: the Viking camera: misses 1001, 1004, 1009; has 998, 999, 1008, 1010 that the events lack
VIKING_TRAINS = np.array([998, 999, 1000, 1002, 1003, 1005, 1006, 1007, 1008, 1010])
#: the hRIXS camera: its own trains
HRIXS_TRAINS = np.array([1000, 1001, 1003, 1011])
N_ENERGY = 5


def _config(detectors: dict) -> str:
    return yaml.safe_dump({"proposal": PROPOSAL, "output_dir": ".", "detectors": detectors,
                           "point_data": {"xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output",
                                                                    "key": "data.intensitySa3TD", "units": "uJ"}}}})


def _write_events(f: h5py.File, train_ids: np.ndarray, pulse_ids: np.ndarray, values: dict) -> None:
    """Top-level rows as the producer writes them: ids, per-event datasets, and the writer's coordinates."""
    f["trainId"] = train_ids.astype(np.uint64)
    f["pulseId"] = pulse_ids.astype(np.uint64)
    f["cellId"] = np.zeros(len(train_ids), np.uint16) if not pulse_ids.any() else (pulse_ids % 7).astype(np.uint16)
    f["trainId"].make_scale("trainId")
    for name in ("pulseId", "cellId"):
        f[name].dims[0].attach_scale(f["trainId"])
    for path, (data, units) in values.items():
        ds = f.create_dataset(path, data=data)
        if units:
            ds.attrs["units"] = units
    label_frame_coordinates(f)  # the writer's own per-group trainId / pulseId copies and scales


def _write_camera(f: h5py.File, name: str, train_ids: np.ndarray, values: dict, camera: str) -> None:
    """A per-train camera group with its own trainId rows (an HDF5 dimension scale)."""
    tid = f.create_dataset(f"{name}/trainId", data=train_ids.astype(np.uint64))
    tid.make_scale("trainId")
    for key, (data, units) in values.items():
        ds = f.create_dataset(f"{name}/{key}", data=data)
        ds.attrs["units"] = units
        ds.dims[0].attach_scale(tid)
    f[name].attrs["rows"] = "train"
    cfg = f.require_group(f"UserDataCfg/{name}")
    cfg.attrs.update({"type": "camera", "per": "train", "camera": camera})


def _meta(f: h5py.File, config: str) -> None:
    f.create_group("meta").attrs.update({"run": RUN, "proposal": PROPOSAL, "config": config,
                                          "config_path": "producer.yaml", "version": "test"})


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A DSSC run (per-pulse rows) with a Viking and an hRIXS camera; returns (path, truth)."""
    rng = np.random.default_rng(7)
    tids = np.repeat(EVENT_TRAINS, FRAMES)
    n = len(tids)
    pulse = np.concatenate([np.arange(k) for k in FRAMES])
    spot = rng.normal(100, 10, n)
    spot[4] = np.nan  # a rejected frame
    xgm = rng.uniform(0, 1000, n)
    azav = rng.normal(size=(n, 4))
    flags = rng.random(n) > 0.5
    total = rng.normal(5e4, 1e3, len(VIKING_TRAINS))
    spectrum = rng.normal(size=(len(VIKING_TRAINS), N_ENERGY))
    hits = rng.integers(0, 50, len(HRIXS_TRAINS)).astype(np.int64)
    path = tmp_path_factory.mktemp("cams") / "r0614.h5"
    with h5py.File(path, "w") as f:
        _write_events(f, tids, 200 + 24 * pulse, {
            "dssc/spot_sum": (spot, "photon"), "dssc/azav_mean": (azav, "photon"),
            "xgm/sa3_intensity": (xgm, "uJ"), "pulses/xray_on": (flags, "")})
        _write_camera(f, "viking", VIKING_TRAINS, {"viking_total": (total, "photon"),
                                                   "viking_spectrum": (spectrum, "photon")}, "newton")
        function = f.create_group("UserDataCfg/viking/viking")  # the spectrum function's energy axis
        function.attrs["type"] = "smalldata.funcs.viking:VikingSpectrum"
        function.create_dataset("energy", data=np.linspace(700, 720, N_ENERGY)).attrs["units"] = "eV"
        function["pixel"] = np.arange(N_ENERGY, dtype=np.float64)
        _write_camera(f, "hrixs", HRIXS_TRAINS, {"centroid_n_hits": (hits, "")}, "marana")
        f.require_group("UserDataCfg/dssc").attrs.update({"type": "dssc", "per": "pulse"})
        _meta(f, _config({"dssc": {"dark_run": 615}, "viking": {"type": "camera", "camera": "newton"},
                          "hrixs": {"type": "camera", "camera": "marana"}}))
    events = pd.DataFrame({"trainId": tids, "pulse": pulse, "spot": spot, "xgm": xgm, "flag": flags})
    viking = pd.DataFrame({"trainId": VIKING_TRAINS, "total": total})
    hrixs = pd.DataFrame({"trainId": HRIXS_TRAINS, "hits": hits})
    return path, {"events": events, "viking": viking, "hrixs": hrixs, "spectrum": spectrum, "azav": azav}


@pytest.fixture(scope="module")
def camera_only(tmp_path_factory):
    """A run of cameras only: top-level rows per train (pulseId 0) with the XGM per train; returns (path, truth)."""
    rng = np.random.default_rng(11)
    tids = np.arange(2000, 2012)
    xgm = rng.uniform(0, 1000, len(tids))
    cam_tids = np.array([1999, 2000, 2001, 2003, 2004, 2005, 2008, 2009, 2010, 2011, 2012, 2013])  # 12 rows too
    total = rng.normal(1e4, 50, len(cam_tids))
    path = tmp_path_factory.mktemp("camonly") / "r0614.h5"
    with h5py.File(path, "w") as f:
        _write_events(f, tids, np.zeros(len(tids)), {"xgm/sa3_intensity": (xgm, "uJ")})
        _write_camera(f, "viking", cam_tids, {"viking_total": (total, "photon")}, "newton")
        _meta(f, _config({"viking": {"type": "camera", "camera": "newton"}}))
    return path, {"events": pd.DataFrame({"trainId": tids, "xgm": xgm}),
                  "viking": pd.DataFrame({"trainId": cam_tids, "total": total})}


def _left_join(events: pd.DataFrame, cam: pd.DataFrame) -> pd.DataFrame:
    """The camera's rows on every event (pandas, independent of the session)."""
    joined = events.merge(cam, on="trainId", how="left", validate="many_to_one")
    assert len(joined) == len(events)
    return joined


# ---------------------------------------------------------------------- the join functions
def test_row_lookup_unsorted_rows_and_duplicates():
    rows, found = row_lookup(np.array([30, 10, 20]), np.array([10, 25, 30, 30]))
    np.testing.assert_array_equal(found, [True, False, True, True])
    np.testing.assert_array_equal(rows[found], [1, 0, 0])
    np.testing.assert_array_equal(take_rows(np.array([3, 1, 2]), rows, found), [1, np.nan, 3, 3])
    _, found = row_lookup(np.array([], np.uint64), np.array([1, 2]))
    assert not found.any()
    with pytest.raises(DataError, match="viking/trainId holds train 10 twice"):
        row_lookup(np.array([10, 20, 10]), np.array([10]), "viking/trainId")


def test_reduce_to_trains_against_pandas():
    rng = np.random.default_rng(3)
    tids = np.repeat([5, 6, 8, 9], [2, 3, 1, 4])
    values = rng.normal(size=len(tids))
    values[[0, 1]] = np.nan  # train 5: no finite value
    target = np.array([9, 7, 6, 5])  # 7: no frame; not sorted
    frame = pd.DataFrame({"t": tids, "v": values})
    for how in ("mean", "sum", "count"):
        expected = frame.groupby("t")["v"].agg(how).reindex(target)
        if how == "sum":
            expected[frame.groupby("t")["v"].count().reindex(target).fillna(0) == 0] = np.nan
        np.testing.assert_allclose(reduce_to_trains(values, tids, target, how), expected.fillna(0 if how == "count"
                                                                                                   else np.nan))
    with pytest.raises(SmallDataError, match="how='median'"):
        reduce_to_trains(values, tids, target, "median")


# ---------------------------------------------------------------------- listing and reading
def test_keys_say_the_rows_of_each_dataset(mixed):
    path, truth = mixed
    ana = SmallDataAna(path)
    assert ana.train_groups == {"viking": len(VIKING_TRAINS), "hrixs": len(HRIXS_TRAINS)}
    assert ana.event_rate == "pulse" and len(ana) == FRAMES.sum()
    assert {"viking/trainId", "viking/viking_total", "viking/viking_spectrum", "hrixs/centroid_n_hits"} <= \
        set(ana.keys())
    assert ana.info["viking/viking_total"]["rows"] == "viking" and ana.info["viking/viking_total"]["rate"] == "train"
    assert ana.info["dssc/spot_sum"]["rows"] == "event" and ana.info["dssc/spot_sum"]["rate"] == "pulse"
    assert set(ana.train_keys("viking")) == {"viking/trainId", "viking/viking_total", "viking/viking_spectrum"}
    assert not set(ana.event_keys()) & set(ana.train_keys())
    np.testing.assert_array_equal(ana["viking/viking_total"], truth["viking"]["total"])
    np.testing.assert_array_equal(ana.train_ids("viking"), VIKING_TRAINS)
    np.testing.assert_array_equal(ana.train_ids(), EVENT_TRAINS)
    assert ana.units("viking/viking_total") == "photon"
    assert "viking: 10 trains" in repr(ana)
    with pytest.raises(SmallDataError, match="'andor' is not a per-train group.*hrixs, viking"):
        ana.train_ids("andor")


def test_on_events_and_per_train_against_pandas(mixed):
    path, truth = mixed
    ana = SmallDataAna(path)
    joined = _left_join(truth["events"], truth["viking"])
    on_events = ana.on_events("viking/viking_total")
    np.testing.assert_array_equal(on_events, joined["total"].to_numpy())
    assert np.isnan(on_events[np.isin(ana["trainId"], [1001, 1004, 1009])]).all()
    np.testing.assert_array_equal(ana.get("viking/viking_total", per="event"), on_events)
    # integers become floats with NaN where the camera has no row
    hits = ana.on_events("hrixs/centroid_n_hits")
    np.testing.assert_array_equal(hits, _left_join(truth["events"], truth["hrixs"])["hits"].to_numpy(float))
    # a per-train profile: every frame gets its train's row
    spectra = ana.on_events("viking/viking_spectrum")
    rows = {t: i for i, t in enumerate(VIKING_TRAINS)}
    for i, t in enumerate(ana["trainId"]):
        expected = truth["spectrum"][rows[t]] if t in rows else np.full(N_ENERGY, np.nan)
        np.testing.assert_array_equal(spectra[i], expected)

    frames = truth["events"].groupby("trainId")
    for how in ("mean", "sum"):
        expected = frames["spot"].agg(how).reindex(VIKING_TRAINS).to_numpy()
        np.testing.assert_allclose(ana.per_train("dssc/spot_sum", "viking", how=how), expected)
    mean = ana.per_train("dssc/spot_sum", "viking")
    assert np.isnan(mean[np.isin(VIKING_TRAINS, [998, 999, 1008, 1010])]).all()  # trains without frames
    # train 1000's first rejected frame (NaN) is left out of the mean
    assert mean[2] == pytest.approx(np.nanmean(truth["events"]["spot"][:3]))
    counts = ana.per_train("dssc/spot_sum", "viking", how="count")
    np.testing.assert_array_equal(counts, frames["spot"].count().reindex(VIKING_TRAINS).fillna(0))
    sel = ana["xgm/sa3_intensity"] > 500
    expected = truth["events"][sel].groupby("trainId")["spot"].mean().reindex(VIKING_TRAINS)
    np.testing.assert_allclose(ana.per_train("dssc/spot_sum", "viking", selection=sel), expected)
    # a profile per event, averaged per train
    azav = ana.per_train("dssc/azav_mean", "viking")
    for j, t in enumerate(VIKING_TRAINS):
        expected = truth["azav"][ana["trainId"] == t].mean(axis=0) if t in EVENT_TRAINS else np.full(4, np.nan)
        np.testing.assert_allclose(azav[j], expected)
    # one camera's value on another's trains
    on_hrixs = ana.per_train("viking/viking_total", "hrixs")
    expected = truth["hrixs"].merge(truth["viking"], on="trainId", how="left")["total"]
    np.testing.assert_array_equal(on_hrixs, expected)
    with pytest.raises(SmallDataError, match="several per-train groups"):
        ana.per_train("dssc/spot_sum")
    with pytest.raises(SmallDataError, match="is per train: selection="):
        ana.per_train("viking/viking_total", "viking", selection=sel)


def test_cuts_across_rates(mixed):
    path, truth = mixed
    ana = SmallDataAna(path)
    joined = _left_join(truth["events"], truth["viking"])
    low = float(np.median(truth["viking"]["total"]))
    # a frame passes when its train's camera value passes; no image: fails
    np.testing.assert_array_equal(ana.cut("viking/viking_total", low), (joined["total"] >= low).to_numpy())
    ana.addCut("viking/viking_total", low, None, cut="bright")
    ana.addCut("xgm/sa3_intensity", 300, None, cut="bright")
    frames = ((joined["total"] >= low) & (joined["xgm"] >= 300)).to_numpy()
    np.testing.assert_array_equal(ana.getFilter("bright"), frames)
    # camera rows: the camera condition on the row, and at least one frame of its train passing the rest
    xgm_ok = truth["events"].assign(ok=truth["events"]["xgm"] >= 300).groupby("trainId")["ok"].any()
    rows = (truth["viking"]["total"] >= low) & xgm_ok.reindex(VIKING_TRAINS, fill_value=False).to_numpy()
    np.testing.assert_array_equal(ana.getFilter("bright", per="viking"), rows.to_numpy())
    # a cut on the camera alone keeps rows of trains without frames
    ana.addCut("viking/viking_total", low, None, cut="camera")
    np.testing.assert_array_equal(ana.getFilter("camera", per="viking"), truth["viking"]["total"] >= low)
    # a frame-level cut on another camera's rows, and one camera's cut on the other's rows
    np.testing.assert_array_equal(ana.cut("xgm/sa3_intensity", 300, per="hrixs"),
                                  xgm_ok.reindex(HRIXS_TRAINS, fill_value=False).to_numpy())
    on_hrixs = truth["hrixs"].merge(truth["viking"], on="trainId", how="left")["total"]
    np.testing.assert_array_equal(ana.cut("viking/viking_total", low, per="hrixs"), (on_hrixs >= low).to_numpy())
    # train_selection: any / all frames of the train
    sel = ana["xgm/sa3_intensity"] >= 300
    any_ok = ana.train_selection(sel, "viking")
    all_ok = ana.train_selection(sel, "viking", how="all")
    grouped = truth["events"].assign(ok=sel).groupby("trainId")["ok"]
    np.testing.assert_array_equal(any_ok, grouped.any().reindex(VIKING_TRAINS, fill_value=False))
    np.testing.assert_array_equal(all_ok, grouped.all().reindex(VIKING_TRAINS, fill_value=False))
    np.testing.assert_array_equal(ana.train_selection(None, "viking"), np.isin(VIKING_TRAINS, EVENT_TRAINS))
    np.testing.assert_array_equal(ana.train_selection("bright", "hrixs"),
                                  truth["events"].assign(ok=frames).groupby("trainId")["ok"].any()
                                  .reindex(HRIXS_TRAINS, fill_value=False))
    # the producer's frame mask of a cut on a camera value
    trains, mask = ana.frame_mask("bright")
    assert mask.sum() == frames.sum() and list(trains) == list(EVENT_TRAINS)


def test_to_xarray_by_event_and_by_train(mixed):
    path, truth = mixed
    ana = SmallDataAna(path)
    ds = ana.to_xarray()
    assert ds["viking_viking_total"].dims == ("viking_trainId",)
    np.testing.assert_array_equal(ds["viking_trainId"], VIKING_TRAINS)
    np.testing.assert_array_equal(ds["viking_viking_total"], truth["viking"]["total"])
    assert ds["viking_viking_total"].attrs == {"path": "viking/viking_total", "units": "photon"}
    assert ds["viking_viking_spectrum"].dims == ("viking_trainId", "viking_viking_energy")
    np.testing.assert_array_equal(ds["viking_viking_energy"], np.linspace(700, 720, N_ENERGY))  # /UserDataCfg
    assert ds["viking_viking_energy"].attrs["units"] == "eV"
    assert ds["hrixs_centroid_n_hits"].dims == ("hrixs_trainId",)
    np.testing.assert_array_equal(ds["dssc_spot_sum"], truth["events"]["spot"])
    assert ds["dssc_spot_sum"].dims == ("event",) and "viking_trainId" not in ds["dssc_spot_sum"].dims

    by_train = ana.to_xarray(by="train")
    every = np.union1d(np.union1d(EVENT_TRAINS, VIKING_TRAINS), HRIXS_TRAINS)
    np.testing.assert_array_equal(by_train["trainId"], every)
    assert by_train["viking_viking_total"].dims == ("trainId",)
    assert by_train["dssc_spot_sum"].dims == ("trainId", "pulse")
    outer = pd.DataFrame({"trainId": every}).merge(truth["viking"], on="trainId", how="left")
    np.testing.assert_array_equal(by_train["viking_viking_total"], outer["total"])
    wide = truth["events"].pivot(index="trainId", columns="pulse", values="spot").reindex(every)
    np.testing.assert_array_equal(by_train["dssc_spot_sum"], wide.to_numpy())
    hits = pd.DataFrame({"trainId": every}).merge(truth["hrixs"], on="trainId", how="left")["hits"]
    np.testing.assert_array_equal(by_train["hrixs_centroid_n_hits"], hits)
    # flags: False where a train has no frame (as for frames a train lacks)
    assert by_train["pulses_xray_on"].dtype == bool
    assert not by_train["pulses_xray_on"].sel(trainId=998).any()
    assert int(by_train["pulses_xray_on"].sum()) == truth["events"]["flag"].sum()
    spectrum = by_train["viking_viking_spectrum"]
    assert spectrum.dims == ("trainId", "viking_viking_energy")
    assert np.isnan(spectrum.sel(trainId=1001)).all()
    np.testing.assert_array_equal(spectrum.sel(trainId=1008), truth["spectrum"][list(VIKING_TRAINS).index(1008)])
    # only some keys
    some = ana.to_xarray(["viking/viking_total", "xgm/sa3_intensity"])
    assert set(some.data_vars) == {"viking_viking_total", "xgm_sa3_intensity"}
    with pytest.raises(SmallDataError, match="'viking/trainId' has not one row"):
        ana.to_xarray(["viking/trainId"])


def test_to_dataframe_per_event_and_per_train(mixed):
    path, truth = mixed
    ana = SmallDataAna(path)
    frame = ana.to_dataframe()
    joined = _left_join(truth["events"], truth["viking"])
    assert list(frame.index.names) == ["trainId", "pulse"] and len(frame) == len(ana)
    np.testing.assert_array_equal(frame.index.get_level_values("trainId"), joined["trainId"])
    np.testing.assert_array_equal(frame["viking/viking_total"], joined["total"])
    np.testing.assert_array_equal(frame["dssc/spot_sum"], joined["spot"])
    assert "viking/viking_spectrum" not in frame and "dssc/azav_mean" not in frame  # scalars only
    assert frame.attrs["units"]["viking/viking_total"] == "photon"

    per_train = ana.to_dataframe(per="train")
    means = truth["events"].groupby("trainId")[["spot", "xgm"]].mean()
    counts = truth["events"].groupby("trainId").size().rename("n")
    expected = (means.join(counts).reset_index()
                .merge(truth["viking"], on="trainId", how="outer")
                .merge(truth["hrixs"], on="trainId", how="outer").sort_values("trainId").set_index("trainId"))
    np.testing.assert_array_equal(per_train.index, expected.index)
    np.testing.assert_allclose(per_train["dssc/spot_sum"], expected["spot"])
    np.testing.assert_allclose(per_train["xgm/sa3_intensity"], expected["xgm"])
    np.testing.assert_array_equal(per_train["viking/viking_total"], expected["total"])
    np.testing.assert_array_equal(per_train["hrixs/centroid_n_hits"], expected["hits"])
    np.testing.assert_array_equal(per_train["n_frames"], expected["n"].fillna(0).astype(int))
    assert per_train.loc[1005, "n_frames"] == 2 and per_train.loc[998, "n_frames"] == 0
    # only one camera asked for: its trains and the events'
    some = ana.to_dataframe(["viking/viking_total", "xgm/sa3_intensity"], per="train")
    np.testing.assert_array_equal(some.index, np.union1d(EVENT_TRAINS, VIKING_TRAINS))
    with pytest.raises(SmallDataError, match="'viking/viking_spectrum' is not a scalar"):
        ana.to_dataframe(["viking/viking_spectrum"])
    with pytest.raises(SmallDataError, match="per must be 'event' or 'train'"):
        ana.to_dataframe(per="pulse")


def test_camera_only_output(camera_only):
    """Top-level rows per train: one event per train; the camera's 12 rows are not taken for events."""
    path, truth = camera_only
    ana = SmallDataAna(path)
    assert ana.event_rate == "train" and len(ana) == 12 and ana.train_groups == {"viking": 12}
    assert ana.info["xgm/sa3_intensity"]["rate"] == "train" and ana.info["xgm/sa3_intensity"]["rows"] == "event"
    assert "viking/viking_total" not in ana.event_keys()  # same length as the events, but its own trains
    joined = _left_join(truth["events"], truth["viking"])
    np.testing.assert_array_equal(ana.on_events("viking/viking_total"), joined["total"])
    xgm = truth["viking"].merge(truth["events"], on="trainId", how="left")["xgm"]
    np.testing.assert_array_equal(ana.per_train("xgm/sa3_intensity"), xgm)  # the only camera by default
    np.testing.assert_array_equal(ana.get("xgm/sa3_intensity", per="train"), xgm)
    keep = ana.cut("viking/viking_total", 1e4)
    np.testing.assert_array_equal(keep, (joined["total"] >= 1e4).to_numpy())
    ana.addCut("xgm/sa3_intensity", 200, 800, cut="x")
    np.testing.assert_array_equal(ana.getFilter("x", per="viking"), ((xgm >= 200) & (xgm <= 800)).to_numpy())
    ds = ana.to_xarray()
    assert ds["viking_viking_total"].dims == ("viking_trainId",) and ds["xgm_sa3_intensity"].dims == ("event",)
    by_train = ana.to_xarray(by="train")
    every = np.union1d(truth["events"]["trainId"], truth["viking"]["trainId"])
    np.testing.assert_array_equal(by_train["trainId"], every)
    assert by_train.sizes["pulse"] == 1
    outer = pd.DataFrame({"trainId": every}).merge(truth["events"], on="trainId", how="left")
    np.testing.assert_array_equal(by_train["xgm_sa3_intensity"][:, 0], outer["xgm"])
    frame = ana.to_dataframe(per="train")
    np.testing.assert_array_equal(frame.index, every)
    np.testing.assert_array_equal(frame["xgm/sa3_intensity"], outer["xgm"])
    np.testing.assert_array_equal(frame["viking/viking_total"],
                                  outer.merge(truth["viking"], on="trainId", how="left")["total"])
    events = ana.to_dataframe()
    np.testing.assert_array_equal(events["viking/viking_total"], joined["total"])


def test_files_without_rates_are_per_pulse(tmp_path):
    """Outputs written before cameras record no type or per: every group is per pulse, as before."""
    path = tmp_path / "old.h5"
    tids = np.repeat([1, 2, 3], 2)
    with h5py.File(path, "w") as f:
        _write_events(f, tids, np.tile([0, 1], 3), {"dssc/spot_sum": (np.arange(6.0), "photon")})
        f.require_group("UserDataCfg/dssc")
        _meta(f, _config({"dssc": {"dark_run": 615}}))
    ana = SmallDataAna(path)
    assert ana.train_groups == {} and ana.event_rate == "pulse" and ana.train_keys() == []
    np.testing.assert_array_equal(ana.per_train("dssc/spot_sum"), [0.5, 2.5, 4.5])  # the events' trains
    assert list(ana.to_dataframe(per="train")["dssc/spot_sum"]) == [0.5, 2.5, 4.5]


def test_a_camera_without_rows_is_one_line(tmp_path):
    path = tmp_path / "r0614.h5"
    with h5py.File(path, "w") as f:
        _write_events(f, np.array([1, 2]), np.zeros(2), {"xgm/sa3_intensity": (np.ones(2), "uJ")})
        f.require_group("UserDataCfg/viking").attrs.update({"type": "camera", "per": "train"})
        _meta(f, _config({"viking": {"type": "camera", "camera": "newton"}}))
    with pytest.raises(DataError, match=r"'viking' is a per-train detector but /viking/trainId is missing"):
        SmallDataAna(path)
    config = tmp_path / "producer.yaml"
    config.write_text(yaml.safe_dump({"proposal": PROPOSAL, "output_dir": str(tmp_path),
                                      "detectors": {"dssc": {"dark_run": 615}}}))
    result = subprocess.run([tool("runSmallDataAna"), "-r", str(RUN), "-c", str(config), "--output", str(path),
                             "--no-shell"], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "/viking/trainId is missing" in result.stderr


def test_several_runs_with_cameras(mixed, tmp_path):
    """Two runs in one session: events concatenated, each camera's rows concatenated on its own axis."""
    from smalldata.ana.multirun import MultiRunAna

    path, truth = mixed
    second = tmp_path / "r0615.h5"
    second.write_bytes(path.read_bytes())
    with h5py.File(second, "r+") as f:
        f["meta"].attrs["run"] = 615
    one, two = SmallDataAna(path), SmallDataAna(second)
    multi = MultiRunAna([one, two])
    ds = multi.to_xarray()
    assert ds.sizes["event"] == 2 * len(one) and ds.sizes["viking_trainId"] == 2 * len(VIKING_TRAINS)
    assert ds["viking_viking_spectrum"].dims == ("viking_trainId", "viking_viking_energy")
    np.testing.assert_array_equal(ds["viking_run"], np.repeat([RUN, 615], len(VIKING_TRAINS)))
    np.testing.assert_array_equal(ds["viking_viking_total"], np.tile(truth["viking"]["total"], 2))
    np.testing.assert_array_equal(ds["dssc_spot_sum"], np.tile(truth["events"]["spot"], 2))
    joined = _left_join(truth["events"], truth["viking"])["total"].to_numpy()
    np.testing.assert_array_equal(multi.on_events("viking/viking_total"), np.tile(joined, 2))
    multi.addCut("viking/viking_total", float(np.median(truth["viking"]["total"])), None)
    np.testing.assert_array_equal(multi.getFilter(), np.tile(one.cut("viking/viking_total",
                                                                     float(np.median(truth["viking"]["total"]))), 2))
    frame = multi.to_dataframe(per="train")
    np.testing.assert_array_equal(frame.loc[615, "viking/viking_total"], one.to_dataframe(per="train")[
        "viking/viking_total"])
    with pytest.raises(SmallDataError, match="rows are per run"):
        multi.per_train("dssc/spot_sum", "viking")


def test_binned_camera_rows_by_a_per_event_scan(mixed):
    """A camera value binned by the XGM: per camera row, its train's mean XGM (pandas groupby)."""
    path, truth = mixed
    ana = SmallDataAna(path)
    edges = np.array([0.0, 400.0, 700.0, 1000.0])
    result = ana.binned("viking/viking_total", by="xgm/sa3_intensity", bins=edges)
    rows = truth["viking"].merge(truth["events"].groupby("trainId")["xgm"].mean().reset_index(), on="trainId",
                                 how="left")
    rows = rows[np.isfinite(rows["xgm"])]  # camera trains without frames have no XGM
    bin_of = np.digitize(rows["xgm"], edges) - 1
    np.testing.assert_allclose(result["mean"], rows.groupby(bin_of)["total"].mean().reindex(range(3)))
    np.testing.assert_array_equal(result["count"], np.bincount(bin_of, minlength=3))
    # a per-event value binned by the camera value: each frame takes its train's camera value
    joined = _left_join(truth["events"], truth["viking"])
    lo, hi = joined["total"].min(), joined["total"].max()
    result = ana.binned("dssc/spot_sum", by="viking/viking_total", bins=np.array([lo, (lo + hi) / 2, hi]))
    half = joined["total"] >= (lo + hi) / 2
    ok = np.isfinite(joined["total"])
    np.testing.assert_allclose(result["mean"], [np.nanmean(joined["spot"][ok & ~half]),
                                                np.nanmean(joined["spot"][ok & half])])
    with pytest.raises(SmallDataError, match=r"getFilter\(cut, per='viking'\)"):
        ana.binned("viking/viking_total", by="xgm/sa3_intensity", selection=np.ones(len(ana), bool))


def test_a_producer_output_with_a_camera_group_added(tmp_path, sim_root, calib_dir):
    """The producer's real top-level layout, a camera group added with h5py: per-event data unchanged, joins right."""
    import shutil

    from helpers import DARK_RUN, DATA_RUN

    from smalldata.config.producer import ProducerConfig
    from smalldata.pipeline.eventloop import run_producer

    cfg = {"proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": str(calib_dir), "output_dir": str(tmp_path),
           "detectors": {"dssc": {"dark_run": DARK_RUN, "gain": 15.0, "mask_asic_edges": False, "functions": [
               {"type": "roi", "name": "spot", "module": 3, "roi": [64, 128, 384, 512]}]}}}
    config = tmp_path / "producer.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run_producer(ProducerConfig.from_file(config), DATA_RUN, max_trains=8)
    plain = tmp_path / f"r{DATA_RUN:04d}.h5"
    path = tmp_path / "with_camera.h5"
    shutil.copy(plain, path)
    before = SmallDataAna(plain)
    trains = np.unique(before["trainId"])
    cam_trains = np.concatenate([trains[::2], trains[-1] + np.array([1, 2])])  # half the trains, two beyond
    total = np.arange(len(cam_trains), dtype=np.float64) * 10.0
    with h5py.File(path, "r+") as f:
        _write_camera(f, "viking", cam_trains, {"viking_total": (total, "photon")}, "newton")
    ana = SmallDataAna(path)
    assert sorted(ana.event_keys()) == sorted(before.event_keys())
    assert ana.train_keys() == ["viking/trainId", "viking/viking_total"]
    events = pd.DataFrame({"trainId": ana["trainId"], "spot": ana["dssc/spot_sum"]})
    joined = _left_join(events, pd.DataFrame({"trainId": cam_trains, "total": total}))
    np.testing.assert_array_equal(ana.on_events("viking/viking_total"), joined["total"])
    np.testing.assert_allclose(ana.per_train("dssc/spot_sum"),
                               events.groupby("trainId")["spot"].mean().reindex(cam_trains))
    ds, old = ana.to_xarray(), before.to_xarray()
    for name in old.data_vars:
        np.testing.assert_array_equal(ds[name], old[name])
    by_train = ana.to_xarray(by="train")
    np.testing.assert_array_equal(by_train["trainId"], np.union1d(trains, cam_trains))
    np.testing.assert_array_equal(by_train["dssc_spot_sum"].sel(trainId=trains),
                                  before.to_xarray(by="train")["dssc_spot_sum"])
    assert np.isnan(by_train["dssc_spot_sum"].sel(trainId=cam_trains[-1])).all()
    np.testing.assert_array_equal(by_train["viking_viking_total"].sel(trainId=cam_trains), total)


def test_a_camera_without_images_and_one_with_a_train_twice(tmp_path):
    """No image in the run: NaN on every event, no rows; a train twice in a group: one line naming it."""
    path = tmp_path / "r0614.h5"
    tids = np.repeat([5, 6, 7], 2)
    with h5py.File(path, "w") as f:
        _write_events(f, tids, np.tile([0, 1], 3), {"xgm/sa3_intensity": (np.arange(6.0), "uJ")})
        _write_camera(f, "viking", np.zeros(0, np.uint64), {"viking_total": (np.zeros(0), "photon")}, "newton")
        _write_camera(f, "hrixs", np.array([6, 7, 6]), {"centroid_n_hits": (np.arange(3.0), "")}, "marana")
        f.require_group("UserDataCfg/dssc").attrs.update({"type": "dssc", "per": "pulse"})
        _meta(f, _config({"dssc": {}, "viking": {"type": "camera"}, "hrixs": {"type": "camera"}}))
    ana = SmallDataAna(path)
    assert ana.train_groups == {"viking": 0, "hrixs": 3}
    assert np.isnan(ana.on_events("viking/viking_total")).all()
    assert ana.per_train("xgm/sa3_intensity", "viking").shape == (0,)
    frame = ana.to_dataframe(["viking/viking_total", "xgm/sa3_intensity"], per="train")
    np.testing.assert_array_equal(frame.index, [5, 6, 7])
    assert frame["viking/viking_total"].isna().all()
    np.testing.assert_array_equal(frame["xgm/sa3_intensity"], [0.5, 2.5, 4.5])
    assert ana.to_xarray(["viking/viking_total"]).sizes["viking_trainId"] == 0
    with pytest.raises(DataError, match="hrixs/trainId holds train 6 twice"):
        ana.on_events("hrixs/centroid_n_hits")


def test_a_group_marked_only_by_its_rows_attribute(mixed, tmp_path):
    """The writer marks a per-train group twice (its ``rows`` attribute, ``/UserDataCfg`` ``per``); either is enough."""
    path, truth = mixed
    copy = tmp_path / "r0614.h5"
    copy.write_bytes(path.read_bytes())
    with h5py.File(copy, "r+") as f:
        del f["UserDataCfg/viking"].attrs["per"]
        del f["hrixs"].attrs["rows"]
    ana = SmallDataAna(copy)
    assert ana.train_groups == {"viking": len(VIKING_TRAINS), "hrixs": len(HRIXS_TRAINS)}
    np.testing.assert_array_equal(ana.on_events("viking/viking_total"),
                                  _left_join(truth["events"], truth["viking"])["total"])


def test_session_banner_names_the_camera_joins(mixed, camera_only):
    from smalldata.cli.runSmallDataAna import banner

    text = banner(SmallDataAna(mixed[0]))
    assert "hrixs: 4 trains, viking: 10 trains" in text
    assert 'ana.on_events("viking/viking_total"); ana.per_train("xgm/sa3_intensity", cam="viking")' in text
    text = banner(SmallDataAna(camera_only[0]))
    assert "(one per train)" in text and 'ana["viking/viking_total"]' in text


def test_derived_variable_from_a_camera_value(mixed, tmp_path):
    """A camera value on the events, normalised per frame, kept as a derived variable (per event)."""
    path, truth = mixed
    copy = tmp_path / "r0614.h5"
    copy.write_bytes(path.read_bytes())
    ana = SmallDataAna(copy)
    ratio = ana.on_events("viking/viking_total") / ana["xgm/sa3_intensity"]
    ana.addVar("derived/viking_per_uj", ratio, "photon/uJ")
    assert ana.info["derived/viking_per_uj"]["rows"] == "event" and ana.rows_of("derived/viking_per_uj") == "event"
    joined = _left_join(truth["events"], truth["viking"])
    expected = joined.assign(r=joined["total"] / joined["xgm"]).groupby("trainId")["r"].mean().reindex(VIKING_TRAINS)
    np.testing.assert_allclose(ana.per_train("derived/viking_per_uj", "viking"), expected)
    again = SmallDataAna(copy)
    np.testing.assert_array_equal(again.to_dataframe()["derived/viking_per_uj"], ratio)


def test_plotVar_of_camera_rows_and_across_rates(mixed, tmp_path):
    """Histograms count the rows of the first name; the second is joined to them by train (pandas)."""
    path, truth = mixed
    ana = SmallDataAna(path, plot_dir=tmp_path)
    edges = np.linspace(4.5e4, 5.5e4, 6)
    hist = ana.plotVar("viking/viking_total", bins=edges)
    np.testing.assert_array_equal(hist["counts"], np.histogram(truth["viking"]["total"], edges)[0])
    xgm_edges, total_edges = np.linspace(0, 1000, 4), np.linspace(4.5e4, 5.5e4, 3)
    hist = ana.plotVar("viking/viking_total", "xgm/sa3_intensity", bins=[total_edges, xgm_edges])
    rows = truth["viking"].merge(truth["events"].groupby("trainId")["xgm"].mean().reset_index(), on="trainId",
                                 how="left").dropna()
    np.testing.assert_array_equal(hist["counts"], np.histogram2d(rows["total"], rows["xgm"],
                                                                 [total_edges, xgm_edges])[0])
    hist = ana.plotVar("xgm/sa3_intensity", "viking/viking_total", bins=[xgm_edges, total_edges])
    joined = _left_join(truth["events"], truth["viking"]).dropna(subset=["total"])
    np.testing.assert_array_equal(hist["counts"], np.histogram2d(joined["xgm"], joined["total"],
                                                                 [xgm_edges, total_edges])[0])
    ana.addCut("viking/viking_total", 5e4, cut="c")
    keep = ana.getFilter("c", per="viking")
    hist = ana.plotVar("viking/viking_total", bins=edges, selection=keep)
    np.testing.assert_array_equal(hist["counts"], np.histogram(truth["viking"]["total"][keep], edges)[0])
    with pytest.raises(SmallDataError, match=r"per='viking'"):
        ana.plotVar("viking/viking_total", selection=np.ones(len(ana), bool))
