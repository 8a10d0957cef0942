"""The plug-in contract, checked when a run is set up, before any data are read.

Every analysis function of a detector is checked once per run by :func:`check_function`:

- each constructor parameter is stored under its own name and ``params()`` works (the
  parameters are written to ``UserDataCfg`` at the end of the run);
- a dry run on small synthetic batches shaped like the detector's frames (the modules and
  calibrated region the run will read) raises the function's configuration errors, any
  in-place write to its input (functions get read-only frames), and learns the output
  layout: keys, dtypes and trailing shapes, which must not depend on the batch size and
  must match what the function declares in ``output_layout()``, if it declares anything.

While the run goes on, :func:`check_layout` compares each batch's outputs with that layout,
so a key, dtype or shape that changes fails at that batch, naming the function.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from smalldata.errors import ConfigError, FunctionError, SmallDataError
from smalldata.plugin.detfunc import DetObjectFunc, function_label
from smalldata.plugin.frames import Frames, read_only
from smalldata.plugin.ragged import Ragged

#: ``prefixed key -> (function owning the key, layout)``; a layout is ``(dtype, trailing shape)``
#: for arrays and ``("ragged", ((field, dtype, trailing shape), ...))`` for ragged outputs.
Layout = Dict[str, Tuple[DetObjectFunc, tuple]]

#: Frames of the two synthetic batches of the dry run.
DRY_RUN_FRAMES = (2, 1)

FIX_IN_PLACE = ("work on a copy (values = frames.data.copy(), or np.where(frames.valid, frames.data, 0)); "
                "frames are shared with the other functions and the run sums")


def _fail(func: Optional[DetObjectFunc], message: str) -> FunctionError:
    """A contract violation of ``func``, as one line naming it."""
    return FunctionError(f"function {function_label(func) if func is not None else '?'}: {message}")


def value_layout(value) -> tuple:
    """The layout of one output value: ``(dtype, trailing shape)`` or the ragged fields'."""
    if isinstance(value, Ragged):
        return ("ragged", tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(value.values.items())))
    value = np.asarray(value)
    return (value.dtype.str, value.shape[1:])


def describe_layout(layout: tuple) -> str:
    """A short text for a layout, e.g. ``float32 (10, 20)``."""
    if layout[0] == "ragged":
        return "ragged {" + ", ".join(f"{k}: {np.dtype(d).name} {s}" for k, d, s in layout[1]) + "}"
    return f"{np.dtype(layout[0]).name} {layout[1]}"


def check_parameters(func: DetObjectFunc) -> None:
    """Every constructor parameter is an attribute of the same name and ``params()`` works."""
    for name in func.parameter_names():
        if not hasattr(func, name):
            raise _fail(func, f"constructor parameter {name!r} is not stored under its "
                                f"own name; in __init__ write self.{name} = {name} (UserDataCfg records it)")
    try:
        func.params()
    except Exception as exc:  # noqa: BLE001 - whatever a user's params() raises is reported in one line
        raise _fail(func, f"params() fails ({type(exc).__name__}: {exc}); it must return "
                            "the constructor parameters by name") from exc
    for child in func.children:
        check_parameters(child)


def synthetic_frames(det, modules: tuple, region: Optional[tuple], n: int, seed: int = 0) -> Frames:
    """A read-only batch of ``n`` frames shaped like the run's calibrated frames.

    Sparse Poisson photons (in the detector's units) on the detector's good pixels, over
    ``modules`` and the calibrated ``region`` ``(y0, y1, x0, x1)`` (None: whole modules).
    """
    mask = np.asarray(det.mask, dtype=bool)
    origin = (0, 0)
    if region is not None:
        y0, y1, x0, x1 = region
        mask = mask[:, y0:y1, x0:x1]
        origin = (y0, x0)
    rng = np.random.default_rng(seed)
    shape = (n,) + mask.shape
    scale = 1.0 if getattr(det, "units", "ADU") == "photon" else float(np.nanmedian(np.atleast_1d(
        getattr(det, "gain", None) if getattr(det, "gain", None) is not None else 10.0)))
    data = (rng.poisson(0.05, shape) * scale + rng.normal(0.0, 0.05 * scale, shape)).astype(np.float32)
    valid = np.broadcast_to(mask, shape).copy()
    cells = np.asarray(getattr(det, "cell_ids", None) if getattr(det, "cell_ids", None) is not None else [0])
    frames = Frames(data=data, valid=valid, units=getattr(det, "units", "ADU"),
                    train_ids=np.arange(1, n + 1, dtype=np.uint64), pulse_ids=np.arange(n, dtype=np.uint64),
                    cell_ids=np.resize(cells, n).astype(np.uint16), modules=tuple(modules), origin=origin)
    return read_only(frames)


def _process_node(func: DetObjectFunc, frames: Frames):
    """One function's own outputs and the frames for its children, errors naming the function."""
    try:
        if func.children:
            return func.process_and_hand_on(frames)
        return func.process(frames), None
    except SmallDataError as exc:
        raise name_error(func, exc) from None
    except ValueError as exc:
        if "read-only" in str(exc):
            raise _fail(func, f"writes into its input frames ({exc}); "
                                f"{FIX_IN_PLACE}") from exc
        raise _fail(func, f"fails on a synthetic batch of {len(frames)} frames "
                            f"({type(exc).__name__}: {exc})") from exc
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a user's function may raise anything; name it
        raise _fail(func, f"fails on a synthetic batch of {len(frames)} frames "
                            f"({type(exc).__name__}: {exc})") from exc


def name_error(func: DetObjectFunc, exc: SmallDataError) -> SmallDataError:
    """``exc`` with the function named: config errors get its config path, others its label."""
    if isinstance(exc, FunctionError):
        return exc
    if isinstance(exc, ConfigError):
        base = getattr(func, "config_path", "") or func.name
        if exc.path.startswith(base):
            return exc
        path = f"{base}.{exc.path}" if exc.path and exc.path != func.name else base
        return ConfigError(path, f"{exc.message} ({type(func).__module__}:{type(func).__qualname__})")
    return _fail(func, str(exc))


def dry_run(func: DetObjectFunc, frames: Frames, prefix: str = "") -> Layout:
    """Run a function tree on ``frames`` and return the layout of every output it writes."""
    outputs, sub = _process_node(func, frames)
    layout: Layout = {}
    own = f"{prefix}{func.name}_"
    if not isinstance(outputs, Mapping):
        raise _fail(func, f"process() returned {type(outputs).__name__}, not a dict of per-frame arrays; "
                          "return {key: array with one row per frame}")
    for key, value in outputs.items():
        n = len(value) if isinstance(value, Ragged) else (np.shape(value)[0] if np.ndim(value) else None)
        if n != len(frames):
            raise _fail(func, f"output {key!r} has {n} rows for a batch of {len(frames)} "
                                "frames; return one row per frame (leading dimension N)")
        layout[own + key] = (func, value_layout(value))
    declared = func.output_layout()
    if declared is not None:
        check_declared(func, declared, {k[len(own):]: v for k, (_, v) in layout.items()})
    if func.children:
        if sub is None:
            raise _fail(func, "hands no frames on to its children; remove its children "
                                "or implement child_frames()")
        sub = read_only(sub)
        for child in func.children:
            layout.update(dry_run(child, sub, own))
    return layout


def check_declared(func: DetObjectFunc, declared: Mapping[str, tuple], found: Mapping[str, tuple]) -> None:
    """The outputs of a dry run match ``func.output_layout()`` (keys, dtypes, trailing shapes)."""
    if set(declared) != set(found):
        missing, extra = sorted(set(declared) - set(found)), sorted(set(found) - set(declared))
        raise _fail(func, f"returns keys {sorted(found)} but output_layout() declares "
                            f"{sorted(declared)} (missing {missing}, undeclared {extra}); make them agree")
    for key, (dtype, shape) in declared.items():
        if found[key][0] == "ragged":
            continue
        want = (np.dtype(dtype).str, tuple(shape))
        if found[key] != want:
            raise _fail(func, f"output {key!r} is {describe_layout(found[key])}, "
                                f"output_layout() declares {describe_layout(want)}; make them agree")


def dry_run_batches(det, modules: tuple, region: Optional[tuple]) -> Tuple[Frames, ...]:
    """The synthetic batches of :data:`DRY_RUN_FRAMES` frames that :func:`check_function` runs a
    detector's functions on (read-only: made once, shared by all of them)."""
    return tuple(synthetic_frames(det, modules, region, n, seed=n) for n in DRY_RUN_FRAMES)


def check_function(func: DetObjectFunc, batches: Sequence[Frames]) -> Layout:
    """Check a set-up function tree against the contract on ``batches`` (at set-up the synthetic
    :func:`dry_run_batches`; :func:`smalldata.testing.check_function` passes a user's batch and its
    pieces); returns its output layout.

    The parameters are checked, every batch is dry-run (:func:`dry_run`), and every batch must
    give the same keys, dtypes and trailing shapes as the first.

    Raises :class:`~smalldata.errors.FunctionError` or :class:`~smalldata.errors.ConfigError`
    naming the function and the fix.
    """
    check_parameters(func)
    layouts = [dry_run(func, frames) for frames in batches]
    first, n_first = layouts[0], len(batches[0])
    for other, frames in zip(layouts[1:], batches[1:]):
        n_other = len(frames)
        for key in sorted(set(first) | set(other)):
            if key not in first or key not in other:
                owner = (first.get(key) or other.get(key))[0]
                raise _fail(owner, f"output {key!r} is returned for a batch of {n_first if key in first else n_other} "
                                   f"frames but not for one of {n_other if key in first else n_first}; return the "
                                   "same keys for every batch")
            if first[key][1] != other[key][1]:
                raise _fail(first[key][0], f"output {key!r} is {describe_layout(first[key][1])} for {n_first} "
                                           f"frames but {describe_layout(other[key][1])} for {n_other}; dtype and "
                                           "trailing shape must not depend on the batch")
    return first


def check_layout(expected: Layout, outputs: Mapping[str, object], where: str = "") -> None:
    """A batch's outputs (``<func>_<key>``) have the keys, dtypes and trailing shapes of ``expected``."""
    for key, value in outputs.items():
        if key not in expected:
            owner = _owner(expected, key)
            raise _fail(owner, f"returns the new output {key!r}{where}; return the same keys for every batch")
        func, layout = expected[key]
        found = value_layout(value)
        if found != layout:
            raise _fail(func, f"output {key!r} is {describe_layout(found)}{where}, was "
                                f"{describe_layout(layout)} at set-up; keep dtype and trailing shape fixed "
                                "(e.g. cast with .astype())")
    missing = sorted(set(expected) - set(outputs))
    if missing:
        func = expected[missing[0]][0]
        raise _fail(func, f"does not return {missing}{where}; return the same keys "
                            "for every batch")


def _owner(expected: Layout, key: str) -> Optional[DetObjectFunc]:
    """The function owning the known key that shares the longest start with ``key``."""
    best, best_len = None, -1
    for known, (func, _) in expected.items():
        common = len(os.path.commonprefix([known, key]))
        if common > best_len:
            best, best_len = func, common
    return best


def with_config_path(func: DetObjectFunc, path: str) -> None:
    """Record where in the config a function tree comes from (used by error messages)."""
    func.config_path = path
    for i, child in enumerate(func.children):
        with_config_path(child, f"{path}.children[{i}]")

