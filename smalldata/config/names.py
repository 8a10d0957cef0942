"""Names that become parts of file or HDF5 paths: checked before anything is written.

A detector name is part of the dark constants' file name (``dark_p..._r..._<det>.h5``) and
of the output's group names; a point-data or digitizer name is an output dataset name. Such a
name must stay one path component: no separators, not ``.`` or ``..``, nothing but letters,
digits and ``_`` (a Python identifier), so that a name can never reach outside its folder or
group.
"""
from __future__ import annotations

import os
import re
from typing import Optional

from smalldata.errors import ConfigError

_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


def name_problem(value) -> Optional[str]:
    """Why ``value`` cannot be a name in a file or dataset path, or None when it can."""
    if not isinstance(value, str) or not value:
        return f"a name must be a non-empty string, got {value!r}"
    if "/" in value or "\\" in value or os.sep in value or value in (".", ".."):
        return f"{value!r} would reach another folder or group (path separators or '..')"
    if not value.isidentifier():
        return f"{value!r} is not a valid name; use letters, digits and _ (not starting with a digit)"
    return None


def check_name(value, where: str) -> str:
    """``value`` if it is a valid name (see :func:`name_problem`), else :class:`ConfigError` at ``where``."""
    problem = name_problem(value)
    if problem:
        raise ConfigError(where, problem)
    return value


def expand_variables(value: str, where: str) -> str:
    """``value`` with ``~`` and environment variables expanded; an undefined variable is refused.

    ``$NAME`` and ``${NAME}`` are replaced by the variable's value; an undefined one would
    otherwise stay as literal text and become a folder named ``$NAME``.
    """
    expanded = os.path.expanduser(value)
    for match in _VARIABLE.finditer(expanded):
        name = match.group(1).strip("{}")
        if name not in os.environ:
            raise ConfigError(where, f"{value!r} uses the environment variable ${name}, which is not set; "
                                     f"set it (export {name}=...) or write the path without it")
    return os.path.expandvars(expanded)
