"""The dark of a per-train camera from its dark run: read the images, characterise them, write the file.

The camera branch of ``smd_dark`` (docs/dark.md, "Cameras"): the images through extra-data's
selection (:func:`~smalldata.cameras.reading.read_frames`), the camera settings
(:func:`~smalldata.cameras.reading.read_settings`), the dark model
(:func:`~smalldata.cameras.dark.characterise_dark`), and :meth:`CameraDark.save` under a temporary
name in the calib folder, renamed when complete, so that a reader never sees a partial file.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import h5py
import numpy as np

from smalldata import __version__
from smalldata.errors import DataError
from smalldata.output.files import clean_stale_temporaries, temp_owner

from .dark import DEAD, DEAD_NOISE, HOT, HOT_SIGMA, NOISY, NOISY_SIGMA, CameraDark, characterise_dark
from .presets import CameraPreset
from .reading import read_frames, read_settings

log = logging.getLogger(__name__)

#: What the status bits of a camera dark mean (attribute ``bits`` of ``status``).
CAMERA_STATUS_BITS_DOC = f"{DEAD} dead, {HOT} hot, {NOISY} noisy; 0 = good"


@dataclass(frozen=True)
class CameraDarkThresholds:
    """Bad-pixel thresholds of a camera dark (config ``detectors.<name>.dark`` of a camera).

    Parameters
    ----------
    hot_sigma : float
        Robust widths beyond which a pixel's mean is hot.
    noisy_sigma : float
        Robust widths above the median noise beyond which a pixel is noisy.
    dead_noise : float
        Noise (ADU) below which a pixel is dead.
    """

    hot_sigma: float = HOT_SIGMA
    noisy_sigma: float = NOISY_SIGMA
    dead_noise: float = DEAD_NOISE


def characterise_camera_run(run, preset: CameraPreset, thresholds: CameraDarkThresholds = CameraDarkThresholds(),
                            what: str = "dark run", train_ids: Optional[Sequence[int]] = None) -> CameraDark:
    """The dark constants of a camera from the images of its dark run (nothing is written).

    Parameters
    ----------
    run : extra_data.DataCollection
    preset : CameraPreset
        The camera (source, key, shape, settings to keep).
    thresholds : CameraDarkThresholds
    what : str
        How the run is named in error messages.
    train_ids : sequence of int, optional
        Recorded train ids of the images to use (default all).

    Raises
    ------
    DataError
        One line: the camera's source or settings missing from the run, or fewer than 2 images.
    """
    settings = read_settings(run, preset, what)
    _, frames = read_frames(run, preset, train_ids, what=what)
    if len(frames) < 2:
        raise DataError(f"{what}: {len(frames)} image(s) of {preset.source}; a camera dark needs at least 2, "
                        "record a longer dark run")
    log.info("%s: %d images of %s (%d x %d)", what, len(frames), preset.source, *preset.shape)
    return characterise_dark(frames, preset.name, settings, thresholds.hot_sigma, thresholds.noisy_sigma,
                             thresholds.dead_noise)


def check_writable(path: os.PathLike, overwrite: bool = False) -> Path:
    """The dark file's path once its folder exists and is writable, and it does not exist (unless ``overwrite``)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"dark constants {path} exist already; pass --overwrite to replace them")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the calib folder {path.parent}: {exc.strerror}; "
                        "choose another with --calib-dir") from None
    if not os.access(path.parent, os.W_OK):
        raise DataError(f"calib folder {path.parent} is not writable; choose another with --calib-dir "
                        "(or calib_dir in the config)")
    return path


def write_camera_dark(dark: CameraDark, path: os.PathLike, proposal: int, run: int, detector: str,
                      preset: CameraPreset, thresholds: CameraDarkThresholds, overwrite: bool = False,
                      created: Optional[str] = None) -> Path:
    """Write ``dark`` atomically (:meth:`CameraDark.save`, plus where it came from as attributes).

    Attributes added: ``proposal``, ``run``, ``detector``, ``source``, ``shape``, the thresholds,
    ``version`` and ``created`` (ISO 8601 UTC); ``status`` gets ``bits``.
    """
    import time

    path = check_writable(path, overwrite)
    clean_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{temp_owner()}.partial")
    try:
        dark.save(tmp)
        with h5py.File(tmp, "a") as f:
            f["status"].attrs["bits"] = CAMERA_STATUS_BITS_DOC
            f.attrs.update(proposal=int(proposal), run=int(run), detector=detector, source=preset.source,
                           shape=np.array(preset.shape, np.int64), version=__version__,
                           created=created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            for key, value in asdict(thresholds).items():
                f.attrs[key] = float(value)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def dark_summary(dark: CameraDark, path: os.PathLike) -> str:
    """One line: the file, frames, mean level, median noise and bad pixels by reason."""
    status = dark.status
    n_bad = int(np.count_nonzero(status))
    reasons = ", ".join(f"{int(np.count_nonzero(status & bit))} {name}"
                        for bit, name in ((DEAD, "dead"), (HOT, "hot"), (NOISY, "noisy")))
    return (f"wrote {path}: camera {dark.camera} {dark.shape[0]}x{dark.shape[1]}, {dark.n_frames} frames, "
            f"mean {float(np.mean(dark.mean)):.1f} ADU, median noise {float(np.median(dark.noise)):.2f} ADU, "
            f"{n_bad} bad pixels ({100.0 * n_bad / status.size:.3f}%: {reasons})")
