"""A camera detector of the producer config, as the spectrometer commands need it: its preset, its
dark and its runs' frames.

The config is validated as the producer validates it (:class:`~smalldata.config.producer.ProducerConfig`);
the commands use the top-level ``proposal``, ``data_root``, ``calib_dir`` and one entry
``detectors.<name>`` of ``type: camera`` (its preset with ``shape``, ``source`` and
``train_id_offset`` from :func:`~smalldata.detectors.camera.preset_of`, ``dark_run``, ``dark``
thresholds, ``functions``).

The dark: the camera dark file ``smd_dark`` writes (``<calib_dir>/dark_p<proposal>_r<run>_<det>.h5``,
:class:`~smalldata.cameras.dark.CameraDark`) when it exists, otherwise the dark run's frames
characterised on the spot (:func:`~smalldata.cameras.dark.characterise_dark`, nothing written).
Either way it must match the data's shape, camera and mode (:func:`~smalldata.cameras.dark.check_dark`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from smalldata.calib.darkfile import dark_file_path
from smalldata.cameras.dark import CameraDark, check_dark
from smalldata.cameras.darkrun import CameraDarkThresholds, characterise_camera_run
from smalldata.cameras.presets import CameraPreset
from smalldata.cameras.reading import read_frames, read_settings
from smalldata.config.producer import ProducerConfig
from smalldata.config.yamlfile import load_yaml
from smalldata.detectors.camera import preset_of
from smalldata.errors import CalibrationError, ConfigError, DataError

log = logging.getLogger(__name__)

#: Raw bytes of camera frames read at once (frames are read in blocks of trains of this size).
BLOCK_BYTES = 256 * 2 ** 20
#: Bytes of dark frames (as float64) characterised in a command when no dark file exists.
DARK_BUDGET_BYTES = 2 ** 30


@dataclass
class CameraSetup:
    """One camera detector of a producer config.

    Attributes
    ----------
    config_path : Path
    detector : str
        Name of the detector entry.
    proposal : int
    data_root : Path or None
        Root of the raw data tree (None: ``$EXTRA_DATA_DATA_ROOT``).
    calib_dir : Path
    preset : CameraPreset
        The camera with the entry's shape, source and train-id offset.
    dark_run : int
    entry : dict
        The detector entry as written.
    dark_thresholds : dict
        ``hot_sigma``, ``noisy_sigma``, ``dead_noise`` of the entry's ``dark`` mapping.
    """

    config_path: Path
    detector: str
    proposal: int
    data_root: Optional[Path]
    calib_dir: Path
    preset: CameraPreset
    dark_run: int
    entry: Dict[str, Any]
    dark_thresholds: Dict[str, float] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """Config path of the detector entry."""
        return f"detectors.{self.detector}"


def load_camera_setup(config_path: os.PathLike, detector: str, proposal: Optional[int] = None,
                      dark_run: Optional[int] = None) -> CameraSetup:
    """The camera detector ``detector`` of a producer config (validated as the producer does).

    Parameters
    ----------
    config_path : path
    detector : str
        Name of the entry under ``detectors``.
    proposal : int, optional
        Overrides the config's ``proposal``.
    dark_run : int, optional
        Overrides the entry's ``dark_run``.
    """
    path = Path(config_path).resolve()
    config = ProducerConfig.from_file(path)
    if detector not in config.detectors:
        raise ConfigError("detectors", f"no detector {detector!r} in {path} (detectors: "
                                       f"{', '.join(config.detectors)}); choose one with --detector or add its entry")
    where = f"detectors.{detector}"
    validated = config.detectors[detector]
    if validated["type"] != "camera":
        raise ConfigError(f"{where}.type", f"{validated['type']!r} is not a camera; the spectrometer commands "
                                           "work on detectors of 'type: camera'")
    entry = load_yaml(path)["detectors"][detector]  # as written: the commands edit its function entries
    data_root = config.settings["data_root"]
    return CameraSetup(path, detector, int(proposal or config.proposal),
                       Path(data_root) if data_root is not None else None, Path(config.settings["calib_dir"]),
                       preset_of(validated, where), int(dark_run or validated["dark_run"]), dict(entry),
                       {k: float(v) for k, v in validated["dark"].items()})


def _functions(entries: Any, where: str) -> Iterator[Tuple[str, dict]]:
    """``(config path, entry)`` of every function, children included."""
    for i, spec in enumerate(entries or []):
        if isinstance(spec, dict):
            path = f"{where}[{i}]"
            yield path, spec
            yield from _functions(spec.get("children"), f"{path}.children")


def find_function(entry: Mapping[str, Any], detector: str, ftype: str, name: Optional[str] = None) -> Tuple[str, dict]:
    """The function of type ``ftype`` (and name ``name``) of a detector entry.

    Parameters
    ----------
    entry : mapping
        The detector's config entry (a plain or a round-trip YAML mapping).
    detector : str
    ftype : str
        Function type (``hrixs``, ``viking``).
    name : str, optional
        The function's ``name`` (default its type); without it the detector must have exactly one
        function of the type.

    Returns
    -------
    (config path, function entry)
    """
    where = f"detectors.{detector}.functions"
    found = [(p, f) for p, f in _functions(entry.get("functions"), where) if f.get("type") == ftype]
    if name is not None:
        named = [(p, f) for p, f in found if f.get("name", f.get("type")) == name]
        if not named:
            have = ", ".join(str(f.get("name", ftype)) for _, f in found) or "none"
            raise ConfigError(where, f"no function of type {ftype!r} named {name!r} (those of type {ftype}: {have}); "
                                     "check --function or add the function")
        return named[0]
    if not found:
        raise ConfigError(where, f"detector {detector!r} has no function of type {ftype!r}; add one "
                                 f"(- type: {ftype}) or choose another --detector")
    if len(found) > 1:
        names = ", ".join(str(f.get("name", ftype)) for _, f in found)
        raise ConfigError(where, f"{len(found)} functions of type {ftype!r} ({names}); choose one with --function")
    return found[0]


def open_run(setup: CameraSetup, run: int):
    """The extra-data DataCollection of run ``run`` of the setup's proposal."""
    from extra_data import RunDirectory

    from smalldata.io.runaccess import find_run_directory

    return RunDirectory(str(find_run_directory(setup.proposal, int(run), setup.data_root)))


def recorded_train_ids(run, preset: CameraPreset, what: str) -> np.ndarray:
    """Recorded train ids of the camera's images in a run (one-line error without the source)."""
    if preset.source not in run.instrument_sources or preset.key not in run[preset.source].keys():
        read_frames(run, preset, [], what=what)  # raises the one-line error naming the run's cameras
    ids = np.asarray(run[preset.source, preset.key].train_id_coordinates(), dtype=np.int64)
    if ids.size == 0:
        raise DataError(f"{what}: {preset.source} recorded no image; choose a run with camera images")
    return ids


def iter_frames(run, preset: CameraPreset, what: str, max_trains: Optional[int] = None,
                block_bytes: int = BLOCK_BYTES) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """The camera's images of a run in blocks of trains: ``(train_ids, frames)`` per block.

    Memory is bounded by ``block_bytes`` of raw frames, whatever the run's length.
    """
    ids = recorded_train_ids(run, preset, what)
    if max_trains is not None:
        if max_trains < 1:
            raise ConfigError("--max-trains", f"{max_trains} is not a positive number of trains")
        ids = ids[:max_trains]
    per_frame = int(np.prod(preset.shape)) * np.dtype(preset.dtype).itemsize
    step = max(1, int(block_bytes // max(per_frame, 1)))
    for start in range(0, len(ids), step):
        yield read_frames(run, preset, ids[start:start + step], what=what)


def load_dark(setup: CameraSetup) -> Tuple[CameraDark, str]:
    """The camera's dark and how it is named in messages: its file, or its run characterised here."""
    path = dark_file_path(setup.calib_dir, setup.proposal, setup.dark_run, setup.detector)
    if path.is_file():
        try:
            dark = CameraDark.load(path)
        except (KeyError, OSError) as exc:
            raise CalibrationError(f"{path} is not a camera dark file ({exc}); make it with "
                                   f"'smd_dark -p {setup.proposal} -r {setup.dark_run} -c {setup.config_path}'") from None
        return dark, f"dark file {path}"
    run = open_run(setup, setup.dark_run)
    what = f"dark run {setup.dark_run}"
    per_frame = 8 * int(np.prod(setup.preset.shape))
    limit = max(2, DARK_BUDGET_BYTES // per_frame)
    ids = recorded_train_ids(run, setup.preset, what)
    if len(ids) > limit:
        log.warning("%s: characterised from its first %d frames only (memory); smd_dark uses them all", what, limit)
    dark = characterise_camera_run(run, setup.preset, CameraDarkThresholds(**setup.dark_thresholds), what, ids[:limit])
    log.info("no camera dark file %s: %s characterised here (%d frames; smd_dark writes the file)", path, what,
             dark.n_frames)
    return dark, what


def checked_settings(setup: CameraSetup, run, dark: CameraDark, dark_name: str, what: str) -> Dict[str, float]:
    """The run's camera settings, after refusing a run without the camera's images and a dark of another
    shape, camera or mode."""
    recorded_train_ids(run, setup.preset, what)
    settings = read_settings(run, setup.preset, what)
    check_dark(dark, setup.preset.shape, settings, setup.preset.name, what=f"{what} with {dark_name}")
    return settings
