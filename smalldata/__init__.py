"""smalldata: turn European XFEL raw run data into compact per-frame small data.

The public API for users' analysis functions and for analysing an output::

    from smalldata import DetObjectFunc, Frames, Ragged, ConfigError, SmallDataAna

Stages, one subpackage each: ``io`` (reading runs), ``calib`` (DetObject, dark), ``geometry``,
``pulses`` (bunch pattern, frame patterns, rejection), ``plugin`` (the function contract),
``pipeline`` (event loop, MPI), ``sums`` (cubes, run sums), ``output`` (the file), ``ana``
(the interactive session), ``config``, ``simulate``; ``smalldata.testing`` checks a user's
function (contract, batch independence); the built-in analysis functions are
``smalldata.funcs`` (folder ``ana_funcs/``) and the command lines ``smalldata.cli``
(folder ``producers/``).
"""
__version__ = "0.2.0"

from smalldata.errors import CalibrationError, ConfigError, DataError, FunctionError, SmallDataError
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames, RawBatch
from smalldata.plugin.ragged import Ragged

__all__ = [
    "CalibrationError", "ConfigError", "DataError", "DetObjectFunc", "Frames", "FunctionError", "Ragged", "RawBatch",
    "SmallDataAna", "SmallDataError", "__version__",
]


def __getattr__(name: str):
    # the session pulls in plotting and analysis helpers: import it only when asked for
    if name == "SmallDataAna":
        from smalldata.ana.session import SmallDataAna

        return SmallDataAna
    raise AttributeError(f"module 'smalldata' has no attribute {name!r}")
