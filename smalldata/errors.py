"""User-facing errors: one line that names the culprit and the fix."""


class SmallDataError(Exception):
    """An error caused by the user's input, shown as one line without a traceback.

    The message names what is wrong (file, config path, value) and what would be right.
    """


class ConfigError(SmallDataError):
    """A configuration value, key or type is wrong.

    Parameters
    ----------
    path : str
        Dotted config path of the culprit, e.g. ``detectors.dssc.functions[0].roi``.
    message : str
        What is wrong and what would be right.
    """

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"config {path}: {message}" if path else f"config: {message}")


class DataError(SmallDataError):
    """Input data are missing, truncated or inconsistent."""


class CalibrationError(SmallDataError):
    """Calibration constants are missing or do not fit the data."""


class FunctionError(SmallDataError):
    """An analysis function breaks the plug-in contract or fails on a batch.

    The message names the function by its config path and class, e.g.
    ``function detectors.dssc.functions[1] (mypkg.funcs:Bright): ...``, and the fix.
    """
