"""The versioned BOZ corrections file (JSON): ROIs, flat field, non-linearity and how they were made.

One file per correction determination, ``<calib_dir>/boz_p{proposal:06d}_r{run:04d}_m{module:02d}_{det}.json``,
written atomically. It records every parameter used so the determination can be
reproduced (``settings``, ``command``, ``config``) and checked (``summary``).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np

from smalldata.boz.flatfield import FlatField
from smalldata.boz.nonlinearity import NonLinearity
from smalldata.boz.rois import check_rois
from smalldata.errors import CalibrationError, DataError

FORMAT = "smalldata-boz-corrections"
#: Version of the file layout; readers accept this version only (2: the table's control values are
#: those of a natural cubic spline).
FORMAT_VERSION = 2
FILE_PATTERN = "boz_p{proposal:06d}_r{run:04d}_m{module:02d}_{det}.json"


def corrections_path(calib_dir: os.PathLike, proposal: int, run: int, module: int, det: str = "dssc") -> Path:
    """Default place of the corrections of ``run``: ``<calib_dir>/boz_p..._r..._m.._<det>.json``."""
    return Path(calib_dir) / FILE_PATTERN.format(proposal=int(proposal), run=int(run), module=int(module), det=det)


@dataclass
class BozCorrections:
    """The corrections of one BOZ determination.

    Attributes
    ----------
    proposal, run, dark_run, module : int
    detector : str
    photons_per_adu : float
        DSSC gain in photons per ADU bin (``smd_boz -g``).
    sat_level : int
        Raw value from which a pixel counts as saturated.
    rois : dict
        ``{"n": [y0, y1, x0, x1], "0": ..., "p": ...}``.
    flat_field : FlatField
        Fitted on the non-linearity-corrected mean image.
    nonlinearity : NonLinearity
    flat_field_linear : FlatField or None
        Fitted on the uncorrected mean image (for a correction without the table).
    settings : dict
        Every parameter of the determination.
    summary : dict
        Frames used, timings, checks.
    created, version : str
    """

    proposal: int
    run: int
    dark_run: int
    module: int
    detector: str
    photons_per_adu: float
    sat_level: int
    rois: Dict[str, list]
    flat_field: FlatField
    nonlinearity: NonLinearity
    flat_field_linear: Optional[FlatField] = None
    settings: Dict[str, Any] = field(default_factory=dict)
    summary: Dict[str, Any] = field(default_factory=dict)
    created: str = ""
    version: str = ""

    def to_dict(self) -> dict:
        """The file content."""
        from smalldata import __version__

        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "smalldata_version": self.version or __version__,
            "created": self.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "proposal": int(self.proposal), "run": int(self.run),
            "dark_run": int(self.dark_run), "module": int(self.module), "detector": self.detector,
            "photons_per_adu": float(self.photons_per_adu), "sat_level": int(self.sat_level),
            "rois": {k: [int(v) for v in b] for k, b in self.rois.items()},
            "flat_field": _plain(self.flat_field.to_dict()), "nonlinearity": _plain(self.nonlinearity.to_dict()),
            "flat_field_linear": None if self.flat_field_linear is None else _plain(self.flat_field_linear.to_dict()),
            "settings": _plain(self.settings), "summary": _plain(self.summary),
        }

    def save(self, path: os.PathLike, overwrite: bool = False) -> Path:
        """Write the file atomically (an existing file only with ``overwrite``)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise DataError(f"BOZ corrections {path} exist already; pass --overwrite to replace them")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "corrections") -> "BozCorrections":
        """Parse the file content; :class:`CalibrationError` on a foreign or newer file."""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise CalibrationError(f"{source} is not a BOZ corrections file (no format {FORMAT!r}); "
                                   "make one with smd_boz")
        if d.get("format_version") != FORMAT_VERSION:
            raise CalibrationError(f"{source} has format version {d.get('format_version')}, this smalldata reads "
                                   f"version {FORMAT_VERSION}; rerun smd_boz")
        try:
            ffl = d.get("flat_field_linear")
            return cls(int(d["proposal"]), int(d["run"]), int(d["dark_run"]), int(d["module"]), str(d["detector"]),
                       float(d["photons_per_adu"]), int(d["sat_level"]), check_rois(d["rois"], f"{source}: rois"),
                       FlatField.from_dict(d["flat_field"]), NonLinearity.from_dict(d["nonlinearity"]),
                       None if ffl is None else FlatField.from_dict(ffl), dict(d.get("settings", {})),
                       dict(d.get("summary", {})), str(d.get("created", "")), str(d.get("smalldata_version", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"{source} is incomplete or damaged ({type(exc).__name__}: {exc}); "
                                   "rerun smd_boz") from None

    @classmethod
    def load(cls, path: os.PathLike) -> "BozCorrections":
        """Read a corrections file."""
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"BOZ corrections file {path} does not exist; make it with "
                                   "'smd_boz -p PROPOSAL -d DARK_RUN -r RUN -g GAIN -c CONFIG'")
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"cannot read BOZ corrections {path}: {exc}") from None
        return cls.from_dict(d, str(path))

    def check_for(self, module: int, detector: str, source: str = "BOZ corrections") -> None:
        """:class:`CalibrationError` unless these corrections were made for ``module`` of ``detector``."""
        if int(module) != self.module or str(detector) != self.detector:
            raise CalibrationError(f"{source} were determined for module {self.module} of detector "
                                   f"{self.detector!r} (run {self.run}), not module {module} of {detector!r}; "
                                   "use the corrections of this module or rerun smd_boz with -m")


def _plain(value):
    """JSON-ready copy (numpy scalars and arrays to Python, tuples to lists, inf kept as float)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        # strict JSON has no inf or nan: unbounded thresholds as "inf"/"-inf" (float() reads them), nan as null
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value
