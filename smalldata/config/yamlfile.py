"""Reading YAML config files: numbers as people write them, duplicate keys refused, one-line errors."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict

import yaml

from smalldata.config.names import expand_variables
from smalldata.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e8`` and ``6.0e7`` as numbers (YAML 1.1 wants ``6.0e+7``)
    and refuses a key given twice in one mapping (YAML would keep the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); "
                    "keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def resolve_path(base: Path, value: str, where: str = "") -> Path:
    """``value`` with ``~`` and ``$VARS`` expanded; relative paths taken from ``base`` (the config's folder).

    An undefined ``$VAR`` is a :class:`ConfigError` at config path ``where`` naming the variable.
    """
    path = Path(expand_variables(str(value), where))
    return path if path.is_absolute() else (base / path).resolve()


def load_yaml(path: os.PathLike) -> Dict[str, Any]:
    """Read a YAML file into a dict, with one-line errors."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError("", f"{path} is a directory, not a config file; pass -c with a YAML file "
                              "(configs/producer.yaml is an example)")
    if not path.is_file():
        raise ConfigError("", f"{path} does not exist; pass -c with a YAML file "
                              "(configs/producer.yaml is an example)")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.load(fh, Loader=_Loader)
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError("", f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} on line {line}); "
                              "save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError("", f"{path} must contain a mapping of keys at the top level")
    return raw
