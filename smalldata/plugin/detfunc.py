"""The plug-in API: :class:`DetObjectFunc`, the base of every analysis function.

A function is configured by its constructor (the signature *is* the config schema
and the ``UserDataCfg`` entry), takes what it needs from its detector in
:meth:`DetObjectFunc.setFromDet`, and turns a batch of calibrated frames into a
dict of per-frame arrays in :meth:`DetObjectFunc.process`. Functions chain with
:meth:`DetObjectFunc.addFunc`: a child receives the frames its parent hands on
(:meth:`DetObjectFunc.child_frames`), e.g. an ROI's pixels go to a projection.

Writing one::

    class TotalIntensity(DetObjectFunc):
        def __init__(self, name: str = "total", threshold: float = 0.0):
            super().__init__(name)
            self.threshold = threshold

        def process(self, frames):
            data = np.where(frames.valid & (frames.data > self.threshold), frames.data, 0)
            return {"sum": data.reshape(len(frames), -1).sum(axis=1)}

Output keys are prefixed by the function's name (``total_sum``); a child's keys by
both names (``roi_proj_sum``).
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from smalldata.errors import ConfigError, FunctionError, SmallDataError
from smalldata.plugin.frames import Frames, read_only


def function_label(func) -> str:
    """``<config path> (<module>:<class>)``: how errors name a function."""
    path = getattr(func, "config_path", "") or getattr(func, "name", "?")
    return f"{path} ({type(func).__module__}:{type(func).__qualname__})"


class DetObjectFunc:
    """Base class of analysis functions.

    Subclasses define ``__init__`` with explicit, annotated, defaulted parameters
    (stored as attributes of the same name), and implement :meth:`process`.

    Parameters
    ----------
    name : str
        Prefix of the function's output keys; unique among its siblings.
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError("name", f"{name!r} is not a valid function name; use letters, digits and _")
        self.name = name
        self.children: List["DetObjectFunc"] = []
        self.det = None
        #: Where the function is in the config (e.g. ``detectors.dssc.functions[0]``), for error messages.
        self.config_path = name

    # ------------------------------------------------------------------ chaining
    def addFunc(self, child: "DetObjectFunc") -> "DetObjectFunc":
        """Attach ``child``; it receives :meth:`child_frames` of every batch. Returns ``child``."""
        if any(c.name == child.name for c in self.children):
            raise ConfigError("children", f"two children of {self.name!r} are named {child.name!r}; rename one")
        self.children.append(child)
        return child

    # ------------------------------------------------------------------ set-up
    def setFromDet(self, det) -> None:
        """Take calibration, geometry and masks from the detector object ``det``.

        Override to precompute (and call ``super().setFromDet(det)``); called once
        per run before the first batch. Children are set up by :meth:`setup`.
        """
        self.det = det

    def needs_noise(self) -> bool:
        """Whether :meth:`setFromDet` reads the dark noise (``det.noise``, ``det.noise_in_units``).

        The producer loads the noise (as large as the pedestal) only for functions that say so
        here, and for common mode; without it ``det.noise`` raises. Override to return True.
        """
        return False

    def setup(self, det) -> None:
        """Set up this function and, recursively, its children.

        An error of ``setFromDet`` that is not a :class:`SmallDataError` becomes a
        :class:`FunctionError` naming the function and the detector, with its message.
        """
        try:
            self.setFromDet(det)
        except SmallDataError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user's set-up may raise anything; name it in one line
            message = " ".join(str(exc).split())
            raise FunctionError(f"function {function_label(self)}: setFromDet() fails for detector "
                                f"{getattr(det, 'name', '?')!r}: {type(exc).__name__}: {message} (run with --debug "
                                "for the traceback)") from exc
        for child in self.children:
            child.setup(det)

    # ------------------------------------------------------------------ processing
    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        """Compute per-frame outputs: a dict of arrays with leading dimension ``len(frames)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement process()")

    def child_frames(self, frames: Frames, outputs: Dict[str, np.ndarray]) -> Optional[Frames]:
        """Frames handed to the children (None: this function cannot have children)."""
        return None

    def process_and_hand_on(self, frames: Frames) -> Tuple[Dict[str, np.ndarray], Optional[Frames]]:
        """Outputs of a batch and the frames handed to the children, in one pass.

        The default is :meth:`process` then :meth:`child_frames`. Override it when the
        children need what processing computed (an ROI's crop, the droplets found): return
        ``frames.derived(...)`` or ``frames.with_payload({...})`` built from it, so nothing
        of the batch is kept on the function between calls.
        """
        outputs = self.process(frames)
        return outputs, self.child_frames(frames, outputs)

    def run(self, frames: Frames) -> Dict[str, np.ndarray]:
        """Process a batch and run the children; keys are prefixed ``<name>_``.

        Children get read-only frames. An exception raised by this function's own
        processing carries it as ``exc.smalldata_function``, so the caller can name it.
        """
        try:
            if self.children:
                outputs, sub = self.process_and_hand_on(frames)
            else:
                outputs, sub = self.process(frames), None
        except Exception as exc:
            if getattr(exc, "smalldata_function", None) is None:
                exc.smalldata_function = self
            raise
        if not isinstance(outputs, Mapping):
            raise TypeError(f"process() returned {type(outputs).__name__}, not a dict of per-frame arrays; "
                            "return {key: array with one row per frame}")
        result = {f"{self.name}_{key}": value for key, value in outputs.items()}
        if self.children:
            if sub is None:
                raise ConfigError(self.name, f"{type(self).__name__} hands no frames on; remove its children")
            sub = read_only(sub)
            for child in self.children:
                for key, value in child.run(sub).items():
                    result[f"{self.name}_{key}"] = value
        return result

    # ------------------------------------------------------------------ description
    @classmethod
    def parameter_names(cls) -> List[str]:
        """Constructor parameter names: the function's config keys."""
        sig = inspect.signature(cls.__init__)
        return [p for p in list(sig.parameters)[1:]
                if sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                  inspect.Parameter.VAR_KEYWORD)]

    def params(self) -> Dict[str, Any]:
        """The function's parameters as configured (for ``UserDataCfg``)."""
        return {p: getattr(self, p) for p in self.parameter_names()}

    def config_arrays(self) -> Dict[str, np.ndarray]:
        """Arrays describing how outputs were made (e.g. bin centres), for ``UserDataCfg``."""
        return {}

    def config_units(self) -> Dict[str, str]:
        """Unit of each :meth:`config_arrays` entry; entries missing here have no unit."""
        return {}

    def output_units(self) -> Dict[str, str]:
        """Unit of each output key (without prefix); keys missing here have no unit."""
        return {}

    def output_layout(self) -> Optional[Dict[str, Tuple[Any, tuple]]]:
        """Declared outputs ``{key: (dtype, trailing shape)}`` (without prefix), or None.

        None (the default) lets the producer learn the layout from a dry run on a small
        synthetic batch at set-up. Either way every batch must return the same keys,
        dtypes and trailing shapes; ragged outputs are declared with ``(Ragged, ())``.
        """
        return None

    def all_output_units(self) -> Dict[str, str]:
        """Units of every output key of this function and its children, prefixed as in :meth:`run`."""
        units = {f"{self.name}_{key}": unit for key, unit in self.output_units().items()}
        for child in self.children:
            units.update({f"{self.name}_{key}": unit for key, unit in child.all_output_units().items()})
        return units

    def required_modules(self) -> Optional[tuple]:
        """Detector modules this function reads; None means all of the detector's modules.

        Children receive their parent's frames, so only top-level functions are asked.
        """
        return None

    def required_region(self) -> Optional[tuple]:
        """Box ``(y0, y1, x0, x1)`` of module pixels this function reads; None means whole modules.

        When every top-level function of a detector names a box, only the union box of
        each module is calibrated and ``frames.origin`` gives its corner.
        """
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
