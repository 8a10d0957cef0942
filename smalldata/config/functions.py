"""Analysis-function trees built from their config mappings (``detectors.<name>.functions``).

Each mapping names a function ``type`` (built-in or ``package.module:Class``), its
constructor parameters and its ``children``; parameters are checked against the
constructor's type hints and config errors of every function are raised here, before
any data are read.
"""
from __future__ import annotations

from typing import Any, Dict, List

from smalldata.config.schema import check_unknown_keys
from smalldata.errors import ConfigError
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.params import check_config_values, default_name
from smalldata.plugin.registry import BUILTIN_FUNCTIONS, resolve_function_type


def build_functions(specs: list, path: str, detector_type=None) -> List[DetObjectFunc]:
    """Build a list of function trees, checking names are unique.

    ``detector_type`` (a :class:`~smalldata.detectors.types.DetectorType`): functions that place
    themselves on the detector (module, region) are checked against it
    (:func:`check_detector_type`).
    """
    funcs = [build_function(spec, f"{path}[{i}]") for i, spec in enumerate(specs)]
    names = [f.name for f in funcs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(path, f"two functions are named {name!r}; give each a unique 'name'")
    if detector_type is not None:
        for func in funcs:
            check_detector_type(func, detector_type)
    return funcs


def check_detector_type(func: DetObjectFunc, detector_type) -> None:
    """Call ``func.check_detector_type(detector_type)`` where a function (or child) has one; a
    :class:`ConfigError` names the function's config path."""
    check = getattr(func, "check_detector_type", None)
    if check is not None:
        try:
            check(detector_type)
        except ConfigError as exc:
            raise ConfigError(f"{func.config_path}.{exc.path}" if exc.path else func.config_path,
                              exc.message) from None
    for child in func.children:
        check_detector_type(child, detector_type)


def build_function(spec: Dict[str, Any], path: str) -> DetObjectFunc:
    """Build one function (and its children) from its config mapping."""
    if not isinstance(spec, dict):
        raise ConfigError(path, f"expected a mapping with a 'type', got {spec!r}")
    if "type" not in spec:
        raise ConfigError(path, f"needs a 'type': one of {sorted(BUILTIN_FUNCTIONS)} or 'package.module:Class'")
    cls = resolve_function_type(str(spec["type"]), f"{path}.type")
    params = cls.parameter_names()
    check_unknown_keys(spec, set(params) | {"type", "children"}, path)
    kwargs = {k: v for k, v in spec.items() if k not in ("type", "children")}
    check_config_values(cls, kwargs, path)
    if "name" not in kwargs and "name" in params:
        name = default_name(cls, str(spec["type"]) if spec["type"] in BUILTIN_FUNCTIONS else None)
        if name is not None:
            kwargs["name"] = name
    try:
        func = cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{path}.{exc.path}" if exc.path else path, exc.message) from None
    except TypeError as exc:
        raise ConfigError(path, f"{exc}") from None
    except Exception as exc:  # noqa: BLE001 - a user's constructor may raise anything; name it in one line
        raise ConfigError(path, f"{cls.__module__}:{cls.__qualname__} cannot be built from these parameters: "
                                f"{type(exc).__name__}: {exc}") from exc
    func.config_path = path
    children = spec.get("children", []) or []
    if not isinstance(children, list):
        raise ConfigError(f"{path}.children", "expected a list of functions")
    for i, child_spec in enumerate(children):
        try:
            func.addFunc(build_function(child_spec, f"{path}.children[{i}]"))
        except ConfigError as exc:
            if exc.path == "children":
                raise ConfigError(f"{path}.children", exc.message) from None
            raise
    return func
