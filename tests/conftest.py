"""Shared fixtures: one simulated dark run and one data run for the whole test session.

``sim_root`` holds, from :func:`small_test_config`:

- dark run ``DARK_RUN`` (615): modules 2 and 3, 200 trains x 4 frames (cells 0..3), no X-rays;
- data run ``DATA_RUN`` (614): 24 trains, sequence files of 10 trains, 4 frames per train
  (3 from train index 16 on), pattern pumped/unpumped, module 3 missing train indices 5 and 6.

Open them with ``extra_data.RunDirectory(run_path(sim_root, PROPOSAL, run))`` or, with the
``sim_env`` fixture (sets ``EXTRA_DATA_DATA_ROOT``), ``extra_data.open_run(PROPOSAL, run)``.
The planted truth: ``read_truth(sim_root, PROPOSAL, run)`` (see docs/simulator.md).
"""
from __future__ import annotations

import pytest

from smalldata.simulate import SimulationConfig, simulate_dark_run, simulate_data_run

PROPOSAL = 2937
DATA_RUN = 614
DARK_RUN = 615


def small_test_config() -> SimulationConfig:
    """The configuration of the session's simulated runs."""
    return SimulationConfig.small(
        modules=(2, 3), n_trains=24, frames_per_train=4, sequence_trains=10,
        module_missing_trains={3: (5, 6)}, frames_per_train_change=(16, 3),
        pattern=("pumped", "unpumped"), dark_trains=200, speckle_module=3,
    )


@pytest.fixture(scope="session")
def sim_config() -> SimulationConfig:
    """The :class:`SimulationConfig` used for ``sim_root``."""
    return small_test_config()


@pytest.fixture(scope="session")
def proposal() -> int:
    """Proposal number of the simulated runs (2937)."""
    return PROPOSAL


@pytest.fixture(scope="session")
def data_run() -> int:
    """Run number of the simulated data run (614)."""
    return DATA_RUN


@pytest.fixture(scope="session")
def dark_run() -> int:
    """Run number of the simulated dark run (615)."""
    return DARK_RUN


@pytest.fixture(scope="session")
def sim_root(tmp_path_factory, sim_config):
    """A data root with the simulated dark run 615 and data run 614 (written once per session)."""
    root = tmp_path_factory.mktemp("sim_root")
    simulate_dark_run(root, PROPOSAL, DARK_RUN, sim_config)
    simulate_data_run(root, PROPOSAL, DATA_RUN, sim_config)
    return root


@pytest.fixture(scope="session")
def dark_constants(sim_root, sim_config):
    """Dark constants of the simulated dark run, characterised once per session (do not modify)."""
    from smalldata.calib.badpixels import DarkThresholds
    from smalldata.calib.dark import characterise_dark
    from smalldata.simulate import run_path

    return characterise_dark(run_path(sim_root, PROPOSAL, DARK_RUN),
                             thresholds=DarkThresholds(min_frames=min(100, sim_config.dark_trains)),
                             proposal=PROPOSAL, run_number=DARK_RUN, progress=False)


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory, dark_constants):
    """A calib folder holding the file of :func:`dark_constants`, written once per session."""
    from smalldata.calib.dark import dark_file_path, write_dark_file

    folder = tmp_path_factory.mktemp("calib")
    write_dark_file(dark_constants, dark_file_path(folder, PROPOSAL, DARK_RUN, "dssc"))
    return folder


@pytest.fixture
def sim_env(sim_root, monkeypatch):
    """``sim_root`` with ``EXTRA_DATA_DATA_ROOT`` pointing at it (for ``extra_data.open_run``)."""
    monkeypatch.setenv("EXTRA_DATA_DATA_ROOT", str(sim_root))
    return sim_root
