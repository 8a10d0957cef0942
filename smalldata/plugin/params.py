"""A function's config values checked against its constructor's annotations, before it is built.

The constructor's signature is the function's config schema: every value given in the
config must fit the annotation of its parameter (``int``, ``float``, ``bool``, ``str``,
``Optional[...]``, ``Union[...]``, ``Sequence[int]``, ``List[float]``, fixed-length
``Tuple[float, float]``, ``Dict[str, List[int]]``, ``Literal[...]``, ``np.ndarray``,
path-like, a class). Numbers must be finite unless the annotation allows otherwise with
:data:`AllowNonFinite` (``Annotated[float, AllowNonFinite]``, or :data:`FloatOrNaN`).
Values built from YAML aliases that expand to far more than was written (an alias bomb)
or that contain themselves are refused before anything walks them.
"""
from __future__ import annotations

import collections.abc
import inspect
import logging
import math
import os
import typing
from typing import Annotated, Any, Dict, Literal, Mapping, Optional, Union

import numpy as np

from smalldata.errors import ConfigError

log = logging.getLogger(__name__)


class AllowNonFinite:
    """Marker in ``Annotated[float, AllowNonFinite]``: NaN and +-inf are accepted for this parameter."""


#: A float parameter that accepts NaN and +-inf (e.g. NaN meaning "not set").
FloatOrNaN = Annotated[float, AllowNonFinite]

#: Values (list entries, mapping keys and values) one parameter may expand to through YAML aliases ...
MAX_EXPANDED = 1_000_000
#: ... when that is more than this many times the values actually written.
MAX_REPEAT = 10

_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence, collections.abc.Iterable,
              collections.abc.Collection, set, frozenset, collections.abc.Set)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def constructor_annotations(cls) -> Dict[str, Any]:
    """The evaluated annotations of ``cls.__init__``'s parameters (those that cannot be evaluated are left out)."""
    try:
        return typing.get_type_hints(cls.__init__, include_extras=True)
    except (NameError, TypeError, AttributeError):
        pass
    hints: Dict[str, Any] = {}
    namespace = getattr(inspect.getmodule(cls), "__dict__", {})
    for name, param in inspect.signature(cls.__init__).parameters.items():
        kind = param.annotation
        if isinstance(kind, str):
            try:
                kind = eval(kind, dict(namespace))  # noqa: S307 - the user's own annotation text
            except Exception as exc:  # noqa: BLE001 - an annotation that cannot be evaluated is not checked
                log.debug("%s.__init__: annotation of %r not evaluated (%s); not checked", cls.__qualname__, name, exc)
                continue
        if kind is not inspect.Parameter.empty:
            hints[name] = kind
    return hints


def check_config_values(cls, values: Mapping[str, Any], path: str) -> None:
    """Raise :class:`ConfigError` for the first config value that does not fit its parameter's annotation.

    Parameters
    ----------
    cls : type
        The function's class.
    values : mapping
        Config key -> value (the constructor's keyword arguments).
    path : str
        Where the function is in the config, e.g. ``detectors.dssc.functions[0]``.
    """
    label = f"{cls.__module__}:{cls.__qualname__}"
    for key, value in values.items():
        check_expansion(value, f"{path}.{key}")
    hints = constructor_annotations(cls)
    for key, value in values.items():
        if key in hints and not conforms(value, hints[key]):
            raise ConfigError(f"{path}.{key}", f"{_short(value)} is not {describe(hints[key])} (parameter {key!r} "
                                               f"of {label}); give {describe(hints[key])}")


def check_expansion(value: Any, path: str) -> None:
    """Refuse a value that contains itself, or that YAML aliases blow up (:data:`MAX_EXPANDED`, :data:`MAX_REPEAT`)."""
    expanded: Dict[int, int] = {}
    active: set = set()

    def size(obj) -> int:
        if not isinstance(obj, (list, tuple, dict)):
            return 1
        key = id(obj)
        if key in active:
            raise ConfigError(path, "the value contains itself (a YAML alias inside its own anchor); write it out")
        if key not in expanded:
            active.add(key)
            items = list(obj.keys()) + list(obj.values()) if isinstance(obj, dict) else obj
            expanded[key] = 1 + sum(size(item) for item in items)
            active.discard(key)
        return expanded[key]

    try:
        total = size(value)
    except RecursionError:
        raise ConfigError(path, "the value is nested too deeply; write it flat") from None
    written = len(expanded) + sum(len(o) for o in _containers(value))
    if total > MAX_EXPANDED and total > MAX_REPEAT * written:
        raise ConfigError(path, f"YAML aliases expand this value to {total} entries from the {written} written "
                                "(an alias bomb?); write the values out, without aliases")


def _containers(value):
    """Each distinct list, tuple or dict inside ``value`` once (``value`` has no cycles)."""
    seen, stack = set(), [value]
    while stack:
        obj = stack.pop()
        if isinstance(obj, (list, tuple, dict)) and id(obj) not in seen:
            seen.add(id(obj))
            yield obj
            stack.extend(obj.values() if isinstance(obj, dict) else obj)


def conforms(value: Any, kind: Any, allow_non_finite: bool = False) -> bool:
    """Whether a config value fits an annotation (ints are accepted as floats; numbers must be finite
    unless ``allow_non_finite`` or an :class:`AllowNonFinite` marker says otherwise)."""
    if kind is Any or kind is inspect.Parameter.empty or kind is object:
        return True
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        return conforms(value, args[0], allow_non_finite or any(a is AllowNonFinite for a in args[1:]))
    if origin is Union or type(kind).__name__ == "UnionType":
        return any(conforms(value, a, allow_non_finite) for a in args)
    if kind is None or kind is type(None):
        return value is None
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if kind is bool:
        return isinstance(value, (bool, np.bool_))
    if kind is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if kind is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            return False
        return allow_non_finite or isinstance(value, (int, np.integer)) or math.isfinite(value)
    if kind is str:
        return isinstance(value, str)
    if kind is np.ndarray:
        return isinstance(value, (list, tuple, np.ndarray))
    if kind is os.PathLike or (isinstance(kind, type) and issubclass(kind, os.PathLike)):
        return isinstance(value, (str, os.PathLike))
    if origin in _MAPPINGS or kind in _MAPPINGS:
        if not isinstance(value, dict):
            return False
        return not args or all(conforms(k, args[0], allow_non_finite) and conforms(v, args[1], allow_non_finite)
                               for k, v in value.items())
    if origin in _SEQUENCES or kind in _SEQUENCES:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if not isinstance(value, (list, tuple)):
            return False
        if (origin is tuple or kind is tuple) and args and args[-1] is not Ellipsis:  # Tuple[float, float]
            return len(value) == len(args) and all(conforms(v, a, allow_non_finite) for v, a in zip(value, args))
        return not args or all(conforms(v, args[0], allow_non_finite) for v in value)
    if isinstance(kind, type):
        return isinstance(value, kind)
    return True  # an annotation this check does not know (a TypeVar, a Protocol, ...)


def describe(kind: Any, allow_non_finite: bool = False) -> str:
    """A short readable name of an annotation, e.g. ``list of int``, ``finite float or null``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any or kind is inspect.Parameter.empty or kind is object:
        return "any value"
    if origin is Annotated:
        return describe(args[0], allow_non_finite or any(a is AllowNonFinite for a in args[1:]))
    if origin is Union or type(kind).__name__ == "UnionType":
        named = [describe(a, allow_non_finite) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if kind is None or kind is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if kind is float:
        return "float" if allow_non_finite else "finite float"
    if kind is np.ndarray:
        return "list (array)"
    if kind is os.PathLike or (isinstance(kind, type) and issubclass(kind, os.PathLike)):
        return "path"
    if origin in _MAPPINGS or kind in _MAPPINGS:
        return f"mapping of {describe(args[0], allow_non_finite)} to {describe(args[1], allow_non_finite)}" \
            if args else "mapping"
    if origin in _SEQUENCES or kind in _SEQUENCES:
        if (origin is tuple or kind is tuple) and args and args[-1] is not Ellipsis:
            return f"list of {len(args)} ({', '.join(describe(a, allow_non_finite) for a in args)})"
        return f"list of {describe(args[0], allow_non_finite)}" if args else "list"
    return getattr(kind, "__name__", str(kind))


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def default_name(cls, builtin_name: Optional[str]) -> Optional[str]:
    """The ``name`` a function gets when the config gives none.

    A built-in function is named by its ``type``; a user's function keeps the default of
    its constructor's ``name`` parameter, or else gets its class name in lower case.
    None: the constructor's own default applies (nothing to pass).
    """
    if builtin_name is not None:
        return builtin_name
    param = inspect.signature(cls.__init__).parameters.get("name")
    if param is not None and param.default is not inspect.Parameter.empty:
        return None
    return cls.__name__.lower()
