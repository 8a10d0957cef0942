"""The timing test runs: one simulated pump-probe run of the timing preset, its dark and output.

Run 801 (module 2, 47 trains of 8 X-ray frames, the pump laser on every second pulse):
a stepped delay scan with backlash, trigger, BAM with jitter and planted errors, a
reflectivity with a time-zero step and a drift, and a knife edge (``smalldata.simulate.delays``).
Shared by the ``test_timing_*`` and ``test_report*`` files through :func:`timing_run`,
which writes everything once per test session (under pytest's base temporary folder).
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import yaml

from smalldata.config.producer import ProducerConfig
from smalldata.simulate import simulate_dark_run
from smalldata.simulate.delays import (BAM_DEVICE, BAM_SOURCE, PD_SOURCE, STAGE_SOURCE, TRIGGER_SOURCE,
                                       KNIFE_SOURCE, TimingSimConfig, simulate_timing_run, timing_simulation_config)

PROPOSAL, RUN, DARK = 2937, 801, 800
TIMING = TimingSimConfig()
#: two photon energies, equal blocks of trains
ENERGIES = (858.0, 862.0)
#: delay bins of the two-variable cube, ps
CUBE_DELAY_EDGES = [-1.5, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0]

DELAY = {"stage_source": STAGE_SOURCE, "stage_key": "actualPosition.value", "target_key": "targetPosition.value",
         "time_zero": TIMING.time_zero_mm, "passes": 2, "sign": 1,
         "trigger_source": TRIGGER_SOURCE, "trigger_reference": TIMING.trigger_ps,
         "bam_source": BAM_SOURCE, "bam_units": "fs", "bam_reference": TIMING.bam_offset_fs * 1e-3,
         "bam_error_source": BAM_DEVICE, "bam_error_key": "bamError.value"}


def config_dict(root: Path, **changes) -> dict:
    """The producer config of the timing run as a mapping (``changes`` replace top-level keys)."""
    cfg = {"proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(root / "calib"),
           "output_dir": str(root / "out"), "batch_size": 40,
           "point_data": {
               "xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD",
                                         "per": "pulse", "units": "uJ", "filler": 1.0}},
               "pd": {"reflectivity": {"source": PD_SOURCE, "key": "data.reflectivity", "per": "pulse"},
                      "knife": {"source": PD_SOURCE, "key": "data.knife", "per": "pulse"}},
               "scan": {"knife_x": {"source": KNIFE_SOURCE, "key": "actualPosition.value", "units": "mm"},
                        "photon_energy": {"source": "SA3_XTD10_MONO/MDL/PHOTON_ENERGY",
                                          "key": "actualEnergy.value", "units": "eV"}}},
           "pulses": {"laser_pulse_offset": 0},
           "pattern": {"from_pulses": True},
           "delay": copy.deepcopy(DELAY),
           "detectors": {"dssc": {"dark_run": DARK, "gain": 15.0, "mask_asic_edges": False, "functions": [
               {"type": "roi", "name": "roi", "module": 2, "roi": [0, 16, 0, 32]},
               {"type": "azimuthal", "name": "azav", "center": [0.0004, -0.0003], "distance": 5.0,
                "photon_energy": 860.0, "q_bins": 20, "q_range": [6.0e7, 1.4e8]}],
               "sums": {},
               "cube": {"scan": "delay/total", "edges": CUBE_DELAY_EDGES, "xgm": "xgm/sa3_intensity",
                        "second": {"scan": "scan/photon_energy", "unique": True}}}}}
    cfg.update(changes)
    return cfg


def write_config(root: Path, name: str, cfg: dict) -> ProducerConfig:
    """Write ``cfg`` as ``root/name.yaml`` and load it."""
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ProducerConfig.from_file(path)


def timing_run(tmp_path_factory) -> Path:
    """The data root with runs 800 (dark), 801 and its producer output ``out/r0801.h5`` (made once)."""
    from smalldata.calib.badpixels import DarkThresholds
    from smalldata.calib.dark import characterise_dark, dark_file_path, write_dark_file
    from smalldata.pipeline.eventloop import run_producer
    from smalldata.simulate import run_path

    root = tmp_path_factory.getbasetemp() / "timing_shared"
    output = root / "out" / f"r{RUN:04d}.h5"
    if output.is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)  # what an interrupted first try left
    root.mkdir(parents=True)
    cfg = timing_simulation_config(TIMING, photon_energy_steps=ENERGIES)
    simulate_dark_run(root, PROPOSAL, DARK, cfg, overwrite=True)
    simulate_timing_run(root, PROPOSAL, RUN, TIMING, cfg, overwrite=True)
    constants = characterise_dark(run_path(root, PROPOSAL, DARK), thresholds=DarkThresholds(min_frames=20),
                                  proposal=PROPOSAL, run_number=DARK, progress=False)
    write_dark_file(constants, dark_file_path(root / "calib", PROPOSAL, DARK, "dssc"))
    config = write_config(root, "timing", config_dict(root))
    run_producer(config, RUN, output=output)
    return root
