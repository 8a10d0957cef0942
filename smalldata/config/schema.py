"""A small declarative schema for the YAML config: fields, type checks, "did you mean".

Each :class:`Field` knows its type, default, unit and documentation, so the same
table validates configs and generates ``docs/config.md``.
"""
from __future__ import annotations

import difflib
import inspect
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from smalldata.errors import ConfigError

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One config key.

    Parameters
    ----------
    kind : type or typing annotation
        Expected type (``int``, ``float``, ``Optional[list]``, ...).
    default : any
        Default value, or :data:`REQUIRED`.
    doc : str
        One-line description for the docs.
    unit : str
        Unit of the value ("" if none).
    check : callable, optional
        ``check(value) -> str or None``: an error message for a bad value.
    """

    kind: Any
    default: Any
    doc: str
    unit: str = ""
    check: Optional[Callable[[Any], Optional[str]]] = None


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_unknown_keys(mapping: Mapping, allowed, path: str) -> None:
    """Raise :class:`ConfigError` for the first key of ``mapping`` not in ``allowed``."""
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}" if path else str(key),
                              f"unknown key{did_you_mean(str(key), allowed)}; allowed keys: {', '.join(sorted(allowed))}")


def type_name(kind) -> str:
    """Readable name of a type annotation."""
    if kind is Any:
        return "any"
    origin = typing.get_origin(kind)
    if origin is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        inner = " or ".join(type_name(a) for a in args)
        return f"{inner} or null" if len(args) < len(typing.get_args(kind)) else inner
    if origin in (list, tuple, typing.Sequence) or kind in (list, tuple):
        args = typing.get_args(kind)
        return f"list of {type_name(args[0])}" if args and args[0] is not Ellipsis else "list"
    if origin is dict or kind is dict:
        return "mapping"
    return getattr(kind, "__name__", str(kind))


def conforms(value, kind) -> bool:
    """Whether a YAML value conforms to a type annotation (ints are accepted as floats)."""
    if kind is Any or kind is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(kind)
    if origin is typing.Union:
        return any(conforms(value, a) for a in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is bool:
        return isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or kind in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        return all(conforms(v, args[0]) for v in value) if args else True
    if origin is dict or kind is dict:
        return isinstance(value, dict)
    if isinstance(kind, type):
        return isinstance(value, kind)
    return True


def apply_schema(mapping: Optional[Mapping], schema: Dict[str, Field], path: str,
                 keys: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Validate ``mapping`` against ``schema``: unknown keys, required keys, types, checks.

    Parameters
    ----------
    mapping : mapping or None
    schema : dict of Field
    path : str
        Where ``mapping`` is in the config (for messages).
    keys : sequence of str, optional
        Validate only these keys of ``schema`` and ignore the others, also unknown ones;
        a missing required key is then None (for a tool that reads a few keys of a
        config made for the producer, e.g. ``smd_dark``).

    Returns
    -------
    dict
        A new dict with defaults filled in.
    """
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, Mapping):
        raise ConfigError(path, f"expected a mapping of keys, got {type(mapping).__name__}")
    if keys is None:
        check_unknown_keys(mapping, schema, path)
    result = {}
    for key, field in schema.items():
        if keys is not None and key not in keys:
            continue
        where = f"{path}.{key}" if path else key
        if key not in mapping:
            if field.default is REQUIRED and keys is None:
                raise ConfigError(where, f"is required ({field.doc})")
            result[key] = None if field.default is REQUIRED else field.default
            continue
        value = mapping[key]
        if not conforms(value, field.kind):
            raise ConfigError(where, f"expected {type_name(field.kind)}, got {value!r}")
        if field.check is not None and value is not None:
            problem = field.check(value)
            if problem:
                raise ConfigError(where, problem)
        result[key] = value
    return result


def schema_markdown(schema: Dict[str, Field], prefix: str = "") -> str:
    """Markdown table rows (key, type, unit, default, meaning) for a schema."""
    rows = []
    for key, field in schema.items():
        default = "required" if field.default is REQUIRED else f"`{field.default!r}`"
        rows.append(f"| `{prefix}{key}` | {type_name(field.kind)} | {field.unit or '-'} | {default} | {field.doc} |")
    return "\n".join(rows)


def positive(value) -> Optional[str]:
    """Check: value > 0 and finite."""
    return None if value > 0 and math.isfinite(value) else f"must be a finite number > 0, got {value}"


def non_negative(value) -> Optional[str]:
    """Check: value >= 0."""
    return None if value >= 0 else f"must be >= 0, got {value}"


def one_of(*choices) -> Callable[[Any], Optional[str]]:
    """Check: value is one of ``choices``."""
    def check(value):
        if value in choices:
            return None
        return f"{value!r} is not one of {', '.join(map(repr, choices))}{did_you_mean(str(value), map(str, choices))}"
    return check
