"""The fingerprint of how an output is made: its config and its dark constants.

Two outputs of a run with the same fingerprint were made from the same config (compared as the
data YAML reads to, so comments and layout do not count) and the same dark constants files
(compared by their SHA-256). ``smd_submit`` skips a run whose output is complete and carries the
fingerprint the current config and darks would give; the producer records everything needed in
the output itself (``/meta`` config text, ``/UserDataCfg/<det>/dark`` checksum), so the
fingerprint of an output is read back from the output alone.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Mapping, Optional

import h5py
import yaml

from smalldata.errors import ConfigError

#: Hex digits kept: 64 bits tell configs apart well beyond a beamtime's few hundred runs.
FINGERPRINT_DIGITS = 16


def fingerprint(config_text: str, dark_sha256: Mapping[str, str]) -> str:
    """The fingerprint of a config's text and the SHA-256 of each detector's dark constants file.

    Parameters
    ----------
    config_text : str
        The producer config as YAML text.
    dark_sha256 : mapping
        Detector name -> SHA-256 (hex) of its dark constants file.
    """
    try:
        data = yaml.safe_load(config_text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"the config text is not YAML ({str(exc).splitlines()[0]})") from None
    canonical = json.dumps({"config": data, "darks": dict(sorted(dark_sha256.items()))}, sort_keys=True,
                           default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_DIGITS]


def dark_checksums(config, proposal: int) -> Optional[Dict[str, str]]:
    """SHA-256 of each detector's dark constants file, or None when one of the files is not made yet."""
    from smalldata.calib.dark import dark_file_path
    from smalldata.calib.darkref import file_sha256

    sums = {}
    for name, det in config.detectors.items():
        path = dark_file_path(config.settings["calib_dir"], proposal, det["dark_run"], name)
        if not path.is_file():
            return None
        sums[name] = file_sha256(path)
    return sums


def config_fingerprint(config, proposal: int) -> Optional[str]:
    """The fingerprint an output of ``config`` would carry now (None while a dark file is missing).

    Parameters
    ----------
    config : ProducerConfig
    proposal : int
    """
    sums = dark_checksums(config, proposal)
    return None if sums is None else fingerprint(config.text, sums)


def output_fingerprint(path: os.PathLike) -> Optional[str]:
    """The fingerprint of a finished output, from its ``/meta`` and ``/UserDataCfg`` (None if it lacks them)."""
    with h5py.File(Path(path), "r") as f:
        if "meta" not in f or "config" not in f["meta"].attrs:
            return None
        text = f["meta"].attrs["config"]
        sums = {}
        for name, group in f.get("UserDataCfg", {}).items():
            if isinstance(group, h5py.Group) and "dark" in group and "sha256" in group["dark"].attrs:
                sums[name] = str(group["dark"].attrs["sha256"])
    return fingerprint(text.decode() if isinstance(text, bytes) else str(text), sums)
