"""Regenerate the figures of docs/interactive.md (docs/img/*.png) from a simulated run.

    python docs/make_images.py [--work DIR]

Simulates a small run of all 16 DSSC modules (16 trains x 4 frames, a 25-train dark),
characterises the dark, runs the producer and then every feature of the interactive session
headless, each writing its PNG into docs/img/. About a minute on two cores; the work folder
(default: a temporary one) is removed unless given.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

IMG = Path(__file__).resolve().parent / "img"
PROPOSAL, RUN, DARK = 2937, 614, 615


def simulate(work: Path) -> Path:
    """The simulated runs, their dark constants and a producer config; returns the config path."""
    from smalldata.calib.badpixels import DarkThresholds
    from smalldata.calib.dark import characterise_dark, dark_file_path, write_dark_file
    from smalldata.simulate import SimulationConfig, run_path, simulate_dark_run, simulate_data_run

    sim = SimulationConfig.small(modules=tuple(range(16)), n_trains=16, frames_per_train=4, dark_trains=25,
                                 ring_peak_photons=0.2)
    simulate_dark_run(work, PROPOSAL, DARK, sim)
    simulate_data_run(work, PROPOSAL, RUN, sim)
    thresholds = DarkThresholds(min_frames=20)
    constants = characterise_dark(run_path(work, PROPOSAL, DARK), thresholds=thresholds, proposal=PROPOSAL,
                                  run_number=DARK, progress=False)
    write_dark_file(constants, dark_file_path(work / "calib", PROPOSAL, DARK, "dssc"))
    config = {
        "proposal": PROPOSAL, "data_root": ".", "calib_dir": "calib", "output_dir": "out",
        "point_data": {"xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output",
                                                 "key": "data.intensitySa3TD", "per": "pulse", "units": "uJ"}},
                       "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY",
                                          "key": "actualPosition.value", "units": "mm"}}},
        "pattern": {"labels": ["pumped", "unpumped"]},
        "detectors": {"dssc": {"dark_run": DARK, "gain": 15.0, "dark": {"min_frames": 20}, "functions": [
            {"type": "roi", "name": "ring", "module": 2, "roi": [0, 128, 0, 512]},
            {"type": "azimuthal", "name": "azav", "center": [0.0, 0.0], "distance": 5.0, "photon_energy": 860.0,
             "q_bins": 40, "q_range": [8.0e7, 1.2e8]}]}},
    }
    (work / "out").mkdir(exist_ok=True)
    path = work / "producer.yaml"
    path.write_text("# the docs' simulated run\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def figures(config_path: Path) -> None:
    """Run each feature once, writing docs/img/<feature>.png."""
    from smalldata.ana.session import SmallDataAna
    from smalldata.config.producer import ProducerConfig
    from smalldata.pipeline.eventloop import run_producer

    run_producer(ProducerConfig.from_file(config_path), RUN)
    work = config_path.parent
    ana = SmallDataAna.from_run(RUN, config_path, plot_dir=work / "png")
    ana.plots.dpi = 60  # small PNGs for the repository
    written = {}

    def keep(name: str) -> None:
        written[name] = ana.plots.last_path

    img = ana.AvImage("dssc", max_trains=16)
    ana.plotAvImage(img)
    keep("AvImage")
    ana.FitCircle(img, threshold=0.12)
    keep("FitCircle")
    ana.AzInt(img, refine=True, q_range=(9e7, 1.1e8))
    keep("AzInt")
    ana.SelectRegion(img, module=3, roi=[64, 128, 384, 512], name="speckle")
    keep("SelectRegion")
    ana.MakeMask(img, threshold_high=1.0, rois=[(0, [0, 64, 0, 64])])
    keep("MakeMask")
    ana.plotScan("dssc/ring_sum", by="scan/delay", normalise_by="xgm/sa3_intensity")
    keep("plotScan")
    ana.plotVar("xgm/sa3_intensity", bins=30)
    keep("plotVar")
    ana.plotVar("xgm/sa3_intensity", "dssc/ring_sum", bins=20)
    keep("plotVar2d")
    ana.pixelHistogram("dssc", max_trains=4, roi=(3, [64, 128, 384, 512]))
    keep("pixelHistogram")
    IMG.mkdir(exist_ok=True)
    for name, path in written.items():
        shutil.copy(path, IMG / f"{name}.png")
        logging.info("docs/img/%s.png", name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="work folder (kept); default a temporary one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    np.seterr(all="ignore")
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        figures(simulate(args.work))
    else:
        with tempfile.TemporaryDirectory() as work:
            figures(simulate(Path(work)))


if __name__ == "__main__":
    main()
