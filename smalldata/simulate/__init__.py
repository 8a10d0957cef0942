"""The simulator: European XFEL raw runs of the SCS DSSC 1M with planted truth.

::

    from smalldata.simulate import SimulationConfig, simulate_dark_run, simulate_data_run, read_truth
    cfg = SimulationConfig.small()
    simulate_dark_run(root, 2937, 615, cfg)
    simulate_data_run(root, 2937, 614, cfg)
    truth = read_truth(root, 2937, 614)

Modules: :mod:`.config` (parameters and presets), :mod:`.xfel_files` (the raw-file
writer), :mod:`.detector` (pedestal, noise, bad pixels), :mod:`.physics` (ring,
speckle, pump effect, XGM, digitizer), :mod:`.timing` (frames and bunch pattern),
:mod:`.runs` (whole runs; presets subclass :class:`RunSimulation`), :mod:`.truth` (paths
and the truth file), :mod:`.boz` (the BOZ preset), :mod:`.cameras` (per-train camera runs),
:mod:`.mixed` (a per-train camera inside a DSSC run).
See ``docs/simulator.md``.
"""
from .config import CYCLE, SimulationConfig
from .runs import RunSimulation, TrainPlan, simulate_dark_run, simulate_data_run, simulate_run
from .truth import read_truth, run_path, truth_path

__all__ = ["CYCLE", "SimulationConfig", "simulate_dark_run", "simulate_data_run", "simulate_run", "RunSimulation",
           "TrainPlan", "run_path", "truth_path", "read_truth"]
