"""The interactive session's features on planted truth, headless (matplotlib Agg, PNGs written).

FitCircle / AzInt on the simulator's planted ring, SelectRegion / MakeMask / frame cuts written
into the config and used by the producer's next run, plotScan's pump effect, histograms, the
xarray export and the real runSmallDataAna in a pseudo-terminal.
"""
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from helpers import DARK_RUN, DATA_RUN, PROPOSAL, tool

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from smalldata.ana.images import DetImage  # noqa: E402
from smalldata.ana.session import SmallDataAna  # noqa: E402
from smalldata.config.producer import ProducerConfig  # noqa: E402
from smalldata.errors import SmallDataError  # noqa: E402
from smalldata.pipeline.eventloop import run_producer  # noqa: E402

PIXEL = np.array([236e-6, 204.4e-6])  # assembled-image pixel (x, y) of the DSSC, metres


@pytest.fixture(scope="module")
def session(tmp_path_factory, sim_root, calib_dir):
    tmp = tmp_path_factory.mktemp("ana_features")
    cfg = {
        "proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": str(calib_dir), "output_dir": str(tmp),
        "point_data": {"xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output",
                                                 "key": "data.intensitySa3TD", "per": "pulse", "units": "uJ"}},
                       "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value",
                                          "units": "mm"}}},
        "pattern": {"labels": ["pumped", "unpumped"]},
        "pulses": {"laser_pulse_offset": 0},  # the simulated pump-laser bits sit on the first X-ray pulse
        "detectors": {"dssc": {"dark_run": DARK_RUN, "gain": 15.0, "functions": [
            {"type": "roi", "name": "ring", "module": 2, "roi": [0, 128, 0, 512]},
            {"type": "roi", "name": "spot", "module": 3, "roi": [64, 128, 384, 512],
             "children": [{"type": "projection", "name": "proj", "axis": 0}]},
            {"type": "azimuthal", "name": "azav", "center": [0.0004, -0.0003], "distance": 5.0,
             "photon_energy": 860.0, "q_bins": 20, "q_range": [9.0e7, 1.1e8]}]}},
    }
    path = tmp / "producer.yaml"
    path.write_text("# producer config of the session tests\n" + yaml.safe_dump(cfg, sort_keys=False))
    run_producer(ProducerConfig.from_file(path), DATA_RUN)
    ana = SmallDataAna.from_run(DATA_RUN, path, plot_dir=tmp / "plots")
    return ana


def test_geometry_conversions_match_extra_geom(session):
    geometry = session.geometry("dssc")
    positions = geometry.geom.get_pixel_positions()  # the oracle: extra-geom's pixel centres
    m, r, c = np.meshgrid([0, 5, 10, 15], [0, 17, 127], [0, 255, 256, 511], indexing="ij")
    x, y = geometry.module_to_metres(m, r, c)
    np.testing.assert_allclose(np.stack([x, y], -1), positions[m, r, c, :2], atol=1e-12)
    inner = m, np.clip(r, 1, 126) + 0.25, np.clip(c, 1, 510) - 0.3  # fractions of a pixel
    back = geometry.metres_to_module(*geometry.module_to_metres(*inner))
    np.testing.assert_array_equal(back[0], m)
    np.testing.assert_allclose(np.stack(back[1:]), np.stack(inner[1:]), atol=1e-9)
    row, col = geometry.module_to_pixel(m, r, c)
    drawn = geometry.pixel_to_module(row, col)
    np.testing.assert_array_equal(np.stack(drawn), np.stack([m, r, c]))
    # the assembled grid's metres are those of the pixel drawn there, within one grid pixel
    gx, gy = geometry.pixel_to_metres(row, col)
    assert np.abs(gx - x).max() < PIXEL[0] and np.abs(gy - y).max() < PIXEL[1]


def test_fitcircle_and_azint_recover_planted_centre(session):
    from smalldata.simulate import SimulationConfig
    from smalldata.simulate.physics import ring_expectation_map

    planted = (1.5e-3, -0.8e-3)
    cfg = SimulationConfig.small(modules=tuple(range(16)), beam_center=planted)
    ring = ring_expectation_map(cfg)  # photons per pixel per pulse of the planted ring
    rng = np.random.default_rng(7)
    frames = 100  # an average image of 100 pulses: Poisson photons and read-out noise
    image = rng.poisson(ring * frames) / frames + rng.normal(0, 0.13 / np.sqrt(frames), ring.shape)
    image[3, 64:128, 384:512] += 0.5  # a bright speckle region off the ring
    img = DetImage(image, range(16), session.geometry("dssc"), units="photon")
    fit = session.FitCircle(img, threshold=0.7 * cfg.ring_peak_photons)
    assert np.all(np.abs(np.subtract(fit.center, planted)) < 0.5 * PIXEL), np.subtract(fit.center, planted) / PIXEL
    assert session.plots.last_path.name.endswith("FitCircle.png") and session.plots.last_path.stat().st_size > 1000
    # clicked points: eight assembled-image points on the planted ring (its radius from q)
    from smalldata.constants import wavelength_m

    radius = cfg.distance * np.tan(2 * np.arcsin(cfg.ring_q * wavelength_m(cfg.photon_energy) / (4 * np.pi)))
    assert abs(fit.radius - radius) < 2 * PIXEL[1]
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    rows, cols = img.geometry.metres_to_pixel(planted[0] + radius * np.cos(angles),
                                              planted[1] + radius * np.sin(angles))
    by_points = session.FitCircle(img, points=np.column_stack([rows, cols]))
    assert np.all(np.abs(np.subtract(by_points.center, planted)) < 0.5 * PIXEL)
    # AzInt from a centre 1 mm off: refined to the planted one, ring at the planted q
    result = session.AzInt(img, center=(planted[0] + 1e-3, planted[1] - 1e-3), distance=cfg.distance,
                           photon_energy=cfg.photon_energy, q_bins=40, q_range=(9e7, 1.1e8), refine=True)
    assert np.all(np.abs(np.subtract(result.center, planted)) < 0.5 * PIXEL)
    assert abs(result.peak_q - cfg.ring_q) <= (result.q[1] - result.q[0])
    assert session._tuned["center"]["dssc"] == result.center


def test_select_region_mask_and_cut_round_trip_to_the_producer(session, tmp_path):
    ana = session
    img = ana.AvImage("dssc", max_trains=6, modules=[2, 3])
    # an ROI drawn as a box on the assembled image (the mouse gives the same numbers)
    corners = ana.geometry("dssc").module_to_pixel(2, [20, 59], [300, 399])
    box = [corners[0].min(), corners[0].max(), corners[1].min(), corners[1].max()]
    region = ana.SelectRegion(img, box=box, name="tuned")
    assert (region.module, region.roi) == (2, [20, 60, 300, 400])
    with pytest.raises(SmallDataError, match="spans modules"):
        ana.SelectRegion(img, box=[0, ana.geometry("dssc").shape[0] - 1, 0, ana.geometry("dssc").shape[1] - 1])
    mask = ana.MakeMask(img, rois=[(2, [20, 30, 300, 320])], threshold_high=3.0)
    assert not mask.mask[0, 20:30, 300:320].any() and mask.n_masked >= 200
    xgm = ana["xgm/sa3_intensity"]
    ana.addCut("xgm/sa3_intensity", float(np.median(xgm)), None, cut="strong")
    keep = ana.getFilter("strong")
    assert keep.sum() == np.sum(xgm >= np.median(xgm))
    tuned = ana.write_config(tmp_path / "tuned.yaml", frame_cut="strong")
    text = tuned.read_text()
    assert text.startswith("# producer config of the session tests") and "roi: [20, 60, 300, 400]" in text
    # the producer accepts the written config unchanged and uses the ROI, the mask and the cut
    config = ProducerConfig.from_file(tuned)
    out = tmp_path / "r_tuned.h5"
    run_producer(config, DATA_RUN, output=out)
    again = SmallDataAna(out, config_path=tuned)
    np.testing.assert_array_equal(again["trainId"], ana["trainId"])
    reasons = again["rejection/reasons"]
    np.testing.assert_array_equal(reasons & 16 == 0, keep)  # bit 16: the user's frame mask
    sums = again["dssc/tuned_sum"]
    assert np.isnan(sums[~keep]).all()
    with h5py.File(out) as f:
        modules = list(f["UserDataCfg/dssc/modules"][()])
        good = f["UserDataCfg/dssc/mask"][modules.index(2)]
    assert not good[20:30, 300:320].any()
    # ROI sums equal the numpy sum of the calibrated frames over the chosen region's good pixels
    expected = np.full(len(again), np.nan)
    rows = {(t, p): i for i, (t, p) in enumerate(zip(again["trainId"].tolist(), again["pulseId"].tolist()))}
    for frames, pick in again.calibrated_frames("dssc", selection=keep, max_trains=100, modules=[2]):
        crop = frames.data[:, 0, 20:60, 300:400]
        ok = frames.valid[:, 0, 20:60, 300:400]
        for k in np.flatnonzero(pick):
            expected[rows[(int(frames.train_ids[k]), int(frames.pulse_ids[k]))]] = crop[k][ok[k]].sum(dtype=np.float64)
    np.testing.assert_allclose(sums[keep], expected[keep], rtol=1e-5)


def test_plot_scan_difference_is_the_planted_pump_effect(session, sim_root):
    from smalldata.simulate import read_truth
    from smalldata.simulate.physics import pump_factor

    ana = session
    result = ana.plotScan("dssc/ring_sum", by="scan/delay", normalise_by="xgm/sa3_intensity")
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    with h5py.File(ana.path) as f:
        modules = list(f["UserDataCfg/dssc/modules"][()])
        good = f["UserDataCfg/dssc/mask"][modules.index(2)]
    # planted photons in the ROI per pulse of mean XGM (module 2: the ring only), per uJ
    per_uj = truth["mean_photons"][list(truth["modules"]).index(2)][good].sum() / truth["xgm_mean_uj"]
    factor = pump_factor(result["centres"], truth["pump_amplitude"], truth["pump_t0"], truth["pump_tau"])
    planted = per_uj * (factor - 1)
    err = result["difference_err"]
    assert np.all(np.abs(result["difference"] - planted) < 3 * err + 0.01 * per_uj), (result["difference"], planted)
    assert planted.min() < -5 * err.max()  # the effect is well above the errors
    np.testing.assert_allclose(result["unpumped"]["mean"], per_uj, rtol=0.05)
    assert ana.plots.last_path.name.endswith("plotScan.png")


def test_plot_var_and_pixel_histogram(session):
    ana = session
    xgm = ana["xgm/sa3_intensity"]
    hist = ana.plotVar("xgm/sa3_intensity", bins=20)
    assert hist["counts"].sum() == np.isfinite(xgm).sum()
    hist2 = ana.plotVar("xgm/sa3_intensity", "dssc/ring_sum", bins=10)
    assert hist2["counts"].sum() == np.sum(np.isfinite(xgm) & np.isfinite(ana["dssc/ring_sum"]))
    pixels = ana.pixelHistogram("dssc", max_trains=3, roi=(3, [64, 128, 384, 512]))
    # with the right gain the photon peaks sit at 0 and 1 photon
    assert abs(pixels["peaks"][0]) < 0.05 and abs(pixels["peaks"][1] - 1) < 0.05, pixels["peaks"]
    assert abs(pixels["gain_factor"] - 1) < 0.05


def test_to_xarray_and_netcdf_readers(session):
    import xarray as xr

    ana = session
    ds = ana.to_xarray()
    for key in ana.event_keys():
        if key in ("trainId", "pulseId", "cellId"):
            assert key in ds.coords
            continue
        var = ds[key.replace("/", "_")]
        assert var.attrs["path"] == key and var.attrs.get("units", "") == ana.units(key)
        np.testing.assert_array_equal(var.values, ana[key])
    assert ds["dssc_spot_sum"].attrs["units"] == "photon" and ds["xgm_sa3_intensity"].attrs["units"] == "uJ"
    with h5py.File(ana.path) as f:
        np.testing.assert_array_equal(ds["dssc_azav_q"], f["UserDataCfg/dssc/azav/q_centers"][()])
    np.testing.assert_array_equal(ds["dssc_spot_proj_column"], np.arange(384, 512))
    by_train = ana.to_xarray(by="train")
    assert by_train["dssc_spot_sum"].dims == ("trainId", "pulse")
    assert int(np.isfinite(by_train["dssc_spot_sum"]).sum()) == len(ana)
    xray_on = by_train["pulses_xray_on"]
    assert xray_on.dtype == bool and int(xray_on.sum()) == ana["pulses/xray_on"].sum() > 0
    frame = ana.to_dataframe()
    assert len(frame) == len(ana) and frame.attrs["units"]["xgm/sa3_intensity"] == "uJ"
    # generic netCDF readers align every per-event dataset on trainId (HDF5 dimension scales)
    root = xr.open_dataset(ana.path, engine="h5netcdf")
    assert root["trainId"].dims == ("trainId",) and "trainId" in root.indexes
    tree = xr.open_datatree(ana.path, engine="h5netcdf", phony_dims="sort")
    dssc = tree["dssc"].to_dataset()
    assert dssc["spot_sum"].dims == ("trainId",) and dssc["azav_mean"].dims[0] == "trainId"
    np.testing.assert_array_equal(tree["dssc"]["trainId"], ana["trainId"])


def test_session_in_a_terminal(session, tmp_path):
    import pexpect

    env = dict(os.environ, MPLBACKEND="Agg", IPYTHONDIR=str(tmp_path / "ipython"), TERM="dumb")
    child = pexpect.spawn(tool("runSmallDataAna"), ["-r", str(DATA_RUN), "-c", str(session.config_path),
                                                    "--save-dir", str(tmp_path / "png")],
                          env=env, encoding="utf-8", timeout=60, dimensions=(40, 200))
    try:
        child.expect(r"In \[1\]")
        child.sendline('print(plt.__name__, np.__name__, type(ana).__name__, plt.isinteractive())')
        child.expect("matplotlib.pyplot numpy SmallDataAna True")  # %matplotlib: pyplot in interactive mode
        child.sendline('ana.plotVar("xgm/sa3_intensity");')
        child.expect(r"plot written to (\S+\.png)")
        png = child.match.group(1)
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert png.startswith(str(tmp_path / "png")) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_to_xarray_on_the_demo_config(tmp_path, sim_root, calib_dir):
    """Every function of the demo's config (ragged droplets and photons, cube, sums) through to_xarray."""
    import xarray as xr

    from smalldata.config.yamlfile import load_yaml

    cfg = load_yaml(Path(__file__).resolve().parents[1] / "configs" / "producer.yaml")
    cfg.update(data_root=str(sim_root), calib_dir=str(calib_dir), output_dir=str(tmp_path))
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_producer(ProducerConfig.from_file(path), DATA_RUN, max_trains=6)
    ana = SmallDataAna.from_run(DATA_RUN, path)
    ds = ana.to_xarray()
    with h5py.File(ana.path) as f:
        per_event = [k for k in ana.keys() if f[k].shape[:1] == (len(ana),) and "ragged_values_of" not in f[k].attrs]
        assert {"dssc/azav_mean", "dssc/speckle_sum", "dssc/speckle_phot_pk", "dssc/droplet_photons",
                "digitizer/mcp", "xgm/sa3_intensity"} <= set(per_event)
        for key in per_event:
            name = key if key in ("trainId", "pulseId", "cellId") else key.replace("/", "_")
            assert name in ds, key
            assert ds[name].attrs.get("units", "") == f[key].attrs.get("units", ""), key
    assert ds["dssc_azav_mean"].dims == ("event", "dssc_azav_phi", "dssc_azav_q")
    tree = xr.open_datatree(ana.path, engine="h5netcdf", phony_dims="sort")
    assert tree["dssc"].to_dataset()["speckle_sum"].dims == ("trainId",)


def test_geometry_of_the_config_iterated_and_written(session, tmp_path):
    from smalldata.constants import DSSC_DEFAULT_QUAD_POSITIONS

    on_file = SmallDataAna(session.path)  # no -c: the geometry recorded in the file
    np.testing.assert_allclose(on_file.geometry("dssc").quadrant_positions, DSSC_DEFAULT_QUAD_POSITIONS)
    moved = np.array(DSSC_DEFAULT_QUAD_POSITIONS) + [[2e-3, 0], [0, 0], [0, 0], [0, 0]]  # quadrant 1, 2 mm in x
    cfg = yaml.safe_load(session.config_path.read_text())
    cfg["detectors"]["dssc"]["quadrant_positions"] = moved.tolist()
    config = tmp_path / "moved.yaml"
    config.write_text(yaml.safe_dump(cfg))
    ana = SmallDataAna(session.path, config_path=config)  # -c: the config's geometry
    np.testing.assert_allclose(ana.geometry("dssc").quadrant_positions, moved)
    before = np.array(ana.geometry("dssc").module_to_pixel(0, 10, 10))
    ana.set_geometry("dssc", quadrant_positions=DSSC_DEFAULT_QUAD_POSITIONS)  # iterate: back by 2 mm
    after = np.array(ana.geometry("dssc").module_to_pixel(0, 10, 10))
    assert abs((before - after)[1] - 2e-3 / 236e-6) <= 1 and abs((before - after)[0]) <= 1
    written = ana.write_config(tmp_path / "back.yaml")
    np.testing.assert_allclose(ProducerConfig.from_file(written).detectors["dssc"]["quadrant_positions"],
                               DSSC_DEFAULT_QUAD_POSITIONS)
    # a polygon drawn around the first tile of module 3 masks exactly that tile's pixels
    img = DetImage(np.ones((2, 128, 512)), (2, 3), ana.geometry("dssc"))
    rows, cols = img.geometry.module_to_pixel(3, [0, 127], [0, 255])  # corner pixels, drawn as a rectangle
    r0, r1, c0, c1 = rows.min() - 0.5, rows.max() + 0.5, cols.min() - 0.5, cols.max() + 0.5
    mask = ana.MakeMask(img, polygons=[[(r0, c0), (r0, c1), (r1, c1), (r1, c0)]])
    assert not mask.mask[1, :, :256].any() and mask.mask[1, :, 256:].all() and mask.mask[0].all()


def test_mouse_selection_without_a_window_names_the_arguments(session):
    img = DetImage(np.ones((2, 128, 512)), (2, 3), session.geometry("dssc"))
    for call, hint in ((session.SelectRegion, "roi="), (session.MakeMask, "polygons="), (session.FitCircle, "points=")):
        with pytest.raises(SmallDataError, match=f"needs mouse clicks.*{hint}"):
            call(img)


def test_headless_when_no_window_can_open(monkeypatch):
    import argparse

    from smalldata.cli.runSmallDataAna import headless_dir

    args = argparse.Namespace(run=614, save_dir=None)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assert str(headless_dir(args)) == "r0614_plots"
    monkeypatch.setenv("MPLBACKEND", "QtAgg")
    assert headless_dir(args) is None
    assert headless_dir(argparse.Namespace(run=614, save_dir=Path("png"))) == Path("png")
