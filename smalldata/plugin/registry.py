"""Short ``type:`` names of the built-in analysis functions, and dotted-path lookup."""
from __future__ import annotations

import difflib
import importlib

from smalldata.errors import ConfigError

#: type name -> "module:Class"
BUILTIN_FUNCTIONS = {
    "roi": "smalldata.funcs.roi:ROI",
    "projection": "smalldata.funcs.projection:Projection",
    "azimuthal": "smalldata.funcs.azimuthal:AzimuthalBinning",
    "droplet": "smalldata.funcs.droplet:Droplet",
    "photons": "smalldata.funcs.photons:Photons",
    "autocorrelation": "smalldata.funcs.autocorrelation:Autocorrelation",
    "boz": "smalldata.funcs.boz:BOZ",
}


def resolve_function_type(type_name: str, config_path: str = "type"):
    """The DetObjectFunc subclass for a built-in ``type`` name or ``package.module:Class``."""
    from smalldata.plugin.detfunc import DetObjectFunc

    if type_name in BUILTIN_FUNCTIONS:
        target = BUILTIN_FUNCTIONS[type_name]
    elif ":" in type_name:
        target = type_name
    else:
        close = difflib.get_close_matches(type_name, BUILTIN_FUNCTIONS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(config_path, f"unknown function type {type_name!r}; {hint}"
                          f"use one of {sorted(BUILTIN_FUNCTIONS)} or 'package.module:Class'")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(config_path, f"cannot import module {module_name!r} for type {type_name!r} ({exc}); "
                          "check the dotted path and that the module is on PYTHONPATH") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(config_path, f"module {module_name!r} has no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, DetObjectFunc)):
        raise ConfigError(config_path, f"{type_name!r} is not a DetObjectFunc subclass")
    return cls
