"""Writing fitted constants into one function entry of the producer YAML, keeping the rest of the file.

The file is edited as the session's ``write_config`` does (``smalldata/ana/configwrite.py``):
ruamel.yaml's round trip keeps comments, key order, quoting and the indentation of lists; the new values are written as flow
sequences (``curvature: [0.02, 0.00015]``). The file is replaced atomically (a temporary file in the
same folder, renamed), keeps its permissions, and is read back with the project's own YAML reader:
what the producer will read must equal what was fitted.
"""
from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

from smalldata.config.yamlfile import load_yaml
from smalldata.errors import ConfigError, SmallDataError

from .camerasetup import find_function

log = logging.getLogger(__name__)


def _flow(values: Sequence[float]):
    from ruamel.yaml.comments import CommentedSeq

    seq = CommentedSeq([float(v) for v in values])
    seq.fa.set_flow_style()
    return seq


def write_function_values(config_path: os.PathLike, detector: str, ftype: str, name: Optional[str],
                          values: Mapping[str, Sequence[float]]) -> str:
    """Set keys of a function entry of the config file to lists of numbers, in place.

    Parameters
    ----------
    config_path : path
    detector : str
    ftype : str
        Function type of the entry (``hrixs``, ``viking``).
    name : str, optional
        The function's name (default: the only function of the type).
    values : mapping key -> sequence of float

    Returns
    -------
    str
        Config path of the entry that was changed.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    path = Path(config_path).resolve()
    text = path.read_text(encoding="utf-8")
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 120
    _, indent, block_seq_indent = load_yaml_guess_indent(text)  # the file's own indentation of lists
    yaml.indent(mapping=block_seq_indent or 2, sequence=indent or 2, offset=block_seq_indent or 0)
    data = yaml.load(text)
    detectors = data.get("detectors") if isinstance(data, dict) else None
    if not isinstance(detectors, dict) or not isinstance(detectors.get(detector), dict):
        raise ConfigError("detectors", f"no detector {detector!r} in {path}; choose one with --detector")
    where, entry = find_function(detectors[detector], detector, ftype, name)
    for key, vals in values.items():
        entry[key] = _flow(vals)
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.dump(data, fh)
        back = find_function(load_yaml(tmp)["detectors"][detector], detector, ftype, name)[1]
        for key, vals in values.items():
            if [float(v) for v in back.get(key) or []] != [float(v) for v in vals]:
                raise SmallDataError(f"{path}: {where}.{key} would read back as {back.get(key)!r}, not "
                                     f"{[float(v) for v in vals]}; the file is left unchanged")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("wrote %s into %s of %s", ", ".join(values), where, path)
    return where
