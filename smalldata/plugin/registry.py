"""Short ``type:`` names of the built-in analysis functions, and dotted-path lookup."""
from __future__ import annotations

import difflib
import importlib
import traceback

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
    "hrixs": "smalldata.funcs.hrixs:HRIXSSpectrum",
    "viking": "smalldata.funcs.viking:VikingSpectrum",
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
    except ModuleNotFoundError as exc:
        if not _names_the_path(exc, module_name):
            raise ConfigError(config_path, _failure_in_module(exc, module_name)) from exc
        raise ConfigError(config_path, f"cannot import module {module_name!r} for type {type_name!r} ({exc}); "
                          "check the dotted path and that the module is on PYTHONPATH") from None
    except Exception as exc:  # noqa: BLE001 - any error inside a user's module is reported in one line
        raise ConfigError(config_path, _failure_in_module(exc, module_name)) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(config_path, f"module {module_name!r} has no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, DetObjectFunc)):
        raise ConfigError(config_path, f"{type_name!r} is not a DetObjectFunc subclass")
    return cls


def _names_the_path(exc: ModuleNotFoundError, module_name: str) -> bool:
    """Whether the missing module is ``module_name`` or one of its parent packages."""
    parts = module_name.split(".")
    return exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _failure_in_module(exc: BaseException, module_name: str) -> str:
    """One line for an error raised while importing a user's module: what, and where in the file."""
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" at {exc.filename}:{exc.lineno}"
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        own = [f for f in frames if "importlib" not in f.filename and not f.filename.endswith("registry.py")]
        if own:
            where = f" at {own[-1].filename}:{own[-1].lineno}"
    return (f"importing module {module_name!r} fails{where}: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)")
