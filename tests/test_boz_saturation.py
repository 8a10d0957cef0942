"""The boz function sums saturated pixels with their value (511) and flags the frame.

A small BOZ run with bright pulses (many frames reach the ADC maximum) and a linear
response, so that the identity table and the planted flat-field planes are the exact
corrections. The sums are checked against an independent numpy sum of the raw values
read with extra-data, and against the planted photons.
"""
import h5py
import numpy as np
import pytest
import yaml
from extra_data import RunDirectory

from smalldata.boz.corrections import BozCorrections
from smalldata.boz.flatfield import FlatField, evaluate_plane
from smalldata.boz.nonlinearity import NonLinearity
from smalldata.calib.badpixels import DarkThresholds
from smalldata.calib.dark import characterise_dark, dark_file_path, write_dark_file
from smalldata.calib.detobject import DetObject
from smalldata.config.producer import ProducerConfig
from smalldata.constants import DSSC_ADC_MAX
from smalldata.pipeline.eventloop import run_producer
from smalldata.simulate import read_truth, run_path
from smalldata.simulate.boz import BozSimConfig, simulate_boz_runs

PROPOSAL, RUN, DARK, MODULE = 2937, 614, 615, 15
ORDERS = ("n", "0", "p")
SIM = BozSimConfig(n_trains=8, frames_per_train=20, dark_trains=20, peak_photons=900.0, nl_amplitude=0.0,
                   xgm_log_sigma=0.4)


@pytest.fixture(scope="module")
def boz_run(tmp_path_factory):
    """The simulated runs, their dark constants and planted corrections, and the producer's output."""
    root = tmp_path_factory.mktemp("boz_sat")
    simulate_boz_runs(root, PROPOSAL, RUN, DARK, SIM)
    dark = characterise_dark(run_path(root, PROPOSAL, DARK), proposal=PROPOSAL, run_number=DARK,
                             thresholds=DarkThresholds(min_frames=10))
    dark_path = dark_file_path(root / "calib", PROPOSAL, DARK, "dssc")
    write_dark_file(dark, dark_path)
    boxes = SIM.beam_boxes()
    no_error = np.zeros(3)
    corr = BozCorrections(PROPOSAL, RUN, DARK, MODULE, "dssc", SIM.photons_per_adu, DSSC_ADC_MAX,
                          {o: [int(v) for v in boxes[k]] for k, o in enumerate(ORDERS)},
                          FlatField(np.array(SIM.ff_n), np.array(SIM.ff_p), no_error, no_error),
                          NonLinearity.identity())
    corr.save(root / "calib" / "planted.json")
    cfg = {"proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(root / "calib"),
           "output_dir": str(root / "out"), "batch_size": 32,
           "detectors": {"dssc": {"dark_run": DARK, "modules": [MODULE], "dark": {"min_frames": 10},
                                  "functions": [{"type": "boz", "name": "boz", "module": MODULE,
                                                 "corrections": "planted.json"}]}}}
    (root / "boz.yaml").write_text(yaml.safe_dump(cfg))
    out = run_producer(ProducerConfig.from_file(root / "boz.yaml"), RUN).output
    return root, dark_path, corr, out


def numpy_sums(root, dark_path, corr):
    """Per-frame ROI sums (photons) and saturation from the raw files, in plain numpy."""
    det = DetObject.from_dark_file("dssc", dark_path)
    run = RunDirectory(run_path(root, PROPOSAL, RUN))
    src = f"SCS_DET_DSSC1M-1/DET/{MODULE}CH0:xtdf"
    raw = run.get_array(src, "image.data").values[:, 0].astype(np.int64)  # (N, 128, 512)
    cells = run.get_array(src, "image.cellId").values.ravel()
    ped = det.pedestal[det.module_index(MODULE)][det.cell_index(cells)].astype(np.float64)  # (N, 128, 512)
    lut = corr.nonlinearity.lut
    rois = corr.rois
    h, w = rois["0"][1] - rois["0"][0], rois["0"][3] - rois["0"][2]
    mask = det.mask[det.module_index(MODULE)]
    common = np.logical_and.reduce([mask[r[0]:r[1], r[2]:r[3]] for r in rois.values()])
    weights = {"n": 1 / evaluate_plane(corr.flat_field.n, (h, w)), "0": np.ones((h, w)),
               "p": 1 / evaluate_plane(corr.flat_field.p, (h, w))}
    sums, saturated = {}, np.zeros(len(raw), bool)
    for o in ORDERS:
        y0, y1, x0, x1 = rois[o]
        r = raw[:, y0:y1, x0:x1]
        corrected = (lut[r] - ped[:, y0:y1, x0:x1]) * weights[o]
        sums[o] = np.where(common, corrected, 0).sum(axis=(1, 2)) * corr.photons_per_adu
        saturated |= ((r >= corr.sat_level) & common).any(axis=(1, 2))
    return sums, saturated


def test_saturated_pixels_summed_and_frames_flagged(boz_run):
    root, dark_path, corr, out = boz_run
    expected, saturated = numpy_sums(root, dark_path, corr)
    truth = read_truth(root, PROPOSAL, RUN)
    with h5py.File(out, "r") as f:
        got = {o: f[f"dssc/boz_sum_{o}"][()] for o in ORDERS}
        flagged = f["dssc/boz_saturated"][()]
    for o in ORDERS:  # every frame, flagged ones included, equals the independent sum
        np.testing.assert_allclose(got[o], expected[o], rtol=1e-6, atol=1e-2, err_msg=o)
    assert 0.05 < flagged.mean() < 0.9, flagged.mean()  # the run has both kinds of frames
    np.testing.assert_array_equal(flagged, saturated)
    # the planted saturation covers every pixel of the beam rows, the function the pixels it sums
    assert np.all(truth["boz_saturated"][flagged])
    # planted photons (all of a beam's pixels, before the flat field): the sums follow them with one
    # factor per order on unflagged frames; on flagged frames what lies above the ADC range is lost, so
    # they can only fall short of that factor
    for o in ORDERS:
        ratio = got[o] / truth[f"boz_photons_{o}"]
        ratio /= np.median(ratio[~flagged])
        assert np.abs(ratio[~flagged] - 1).max() < 0.01, (o, ratio[~flagged])
        assert ratio[flagged].max() < 1.01, (o, np.sort(ratio[flagged]))
