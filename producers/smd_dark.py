"""smd_dark: characterise a dark run (pedestal, noise, bad pixels) and write its constants file.

A DSSC (``type: dssc``) is characterised per memory cell on all MPI ranks
(:mod:`smalldata.calib.dark`); a per-train camera (``type: camera``) on rank 0
(:mod:`smalldata.cameras.darkrun`). A config with several detectors gets the dark of each one whose
``dark_run`` is the run (docs/dark.md).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from smalldata.calib.badpixels import DarkThresholds
from smalldata.cameras.darkrun import CameraDarkThresholds
from smalldata.cameras.presets import CameraPreset

from ._cli import add_common_arguments, add_run_arguments, run_main

log = logging.getLogger("smalldata.smd_dark")


@dataclass
class DarkSettings:
    """What ``smd_dark`` takes from the producer config.

    Attributes
    ----------
    proposal : int or None
    data_root : Path or None
        Root of the raw data tree (None: ``$EXTRA_DATA_DATA_ROOT``, then extra-data's default).
    calib_dir : Path
        Folder of the dark constants files.
    detector : str or None
        Name of the DSSC detector (in the file name); None: no DSSC to characterise.
    modules : tuple of int or None
        Modules to characterise (None: all in the run).
    thresholds : DarkThresholds
    cameras : tuple of CameraEntry
        The camera detectors to characterise.
    """

    proposal: Optional[int]
    data_root: Optional[Path]
    calib_dir: Path
    detector: Optional[str]
    modules: Optional[Tuple[int, ...]]
    thresholds: DarkThresholds
    cameras: Tuple["CameraEntry", ...] = ()


@dataclass(frozen=True)
class CameraEntry:
    """A camera detector of the config whose dark ``smd_dark`` makes.

    Attributes
    ----------
    name : str
        Detector name (in the file name).
    preset : CameraPreset
        The camera with the config's shape, source and train-id offset.
    thresholds : CameraDarkThresholds
    """

    name: str
    preset: CameraPreset
    thresholds: CameraDarkThresholds


def dark_settings_from_config(path: Optional[os.PathLike], detector: Optional[str] = None,
                              run: Optional[int] = None) -> DarkSettings:
    """Read the keys ``smd_dark`` needs from a producer config (all of them optional without a file).

    Reads ``proposal``, ``data_root`` and ``calib_dir`` (relative to the config file) and, per
    detector, ``modules`` and ``dark`` (thresholds) of a DSSC, ``camera``, ``shape``, ``source``,
    ``train_id_offset`` and ``dark`` of a camera. ``detector`` picks one detector. Without it: the
    only detector configured; else, in a config without cameras, ``dssc``; in a config with
    cameras, every detector whose ``dark_run`` is ``run``.
    """
    from smalldata.config.keys import TOP_SCHEMA
    from smalldata.config.names import check_name, name_problem
    from smalldata.config.schema import apply_schema
    from smalldata.config.yamlfile import load_yaml, resolve_path
    from smalldata.detectors.registry import type_kind
    from smalldata.errors import ConfigError, SmallDataError

    if detector is not None and name_problem(detector):  # the name is part of the constants' file name
        raise SmallDataError(f"--detector: {name_problem(detector)}; give the detector's name in the config "
                             "(e.g. dssc)")
    if path is None:
        return DarkSettings(None, None, Path("calib").resolve(), detector or "dssc", None, DarkThresholds())
    path = Path(path).resolve()
    raw = load_yaml(path)
    try:  # the producer's own key tables, for the keys smd_dark reads (the config is made for the producer)
        top = apply_schema(raw, TOP_SCHEMA, "", keys=("proposal", "data_root", "calib_dir", "detectors"))
        detectors = top["detectors"]
        if not detectors:
            raise ConfigError("detectors", "is required: a mapping with one entry per detector, "
                                           "e.g. 'dssc: {dark_run: 615}'")
        kinds = {name: type_kind(det.get("type") if isinstance(det, dict) else None, f"detectors.{name}")
                 for name, det in detectors.items()}
        chosen = _chosen_detectors(detectors, kinds, detector, run)
        for name in chosen:
            check_name(name, f"detectors.{name}")
        dssc = [name for name in chosen if kinds[name] == "dssc"]
        cameras = tuple(_camera_entry(name, detectors[name]) for name in chosen if kinds[name] == "camera")
        modules, thresholds = None, DarkThresholds()
        if dssc:
            det = _dssc_entry(dssc[0], detectors[dssc[0]])
            modules = tuple(sorted(det["modules"])) if det["modules"] is not None else None
            thresholds = DarkThresholds.from_mapping(det["dark"], f"detectors.{dssc[0]}.dark")
        data_root = resolve_path(path.parent, top["data_root"], "data_root") if top["data_root"] else None
        calib_dir = resolve_path(path.parent, top["calib_dir"], "calib_dir")
    except ConfigError as exc:
        raise ConfigError(exc.path, f"{exc.message} (in {path})") from None
    return DarkSettings(top["proposal"], data_root, calib_dir, str(dssc[0]) if dssc else None, modules,
                        thresholds, cameras)


def _chosen_detectors(detectors: Dict, kinds: Dict[str, str], detector: Optional[str],
                      run: Optional[int]) -> Tuple[str, ...]:
    """The names of the detectors whose dark this run gives (see :func:`dark_settings_from_config`)."""
    from smalldata.config.keys import CAMERA_SCHEMA
    from smalldata.config.schema import apply_schema
    from smalldata.errors import ConfigError

    if detector is None and len(detectors) == 1:
        detector = next(iter(detectors))
    if detector is None and "camera" not in kinds.values():
        detector = "dssc"
    if detector is not None:
        if detector not in detectors:
            raise ConfigError("detectors", f"no detector {detector!r} (detectors: {', '.join(map(str, detectors))}); "
                                           "choose one with --detector")
        return (detector,)
    dark_runs = {name: apply_schema(det, CAMERA_SCHEMA, f"detectors.{name}", keys=("dark_run",))["dark_run"]
                 for name, det in detectors.items()}
    chosen = tuple(name for name, r in dark_runs.items() if run is not None and r == run)
    listed = ", ".join(f"{name}: {r}" for name, r in dark_runs.items())
    if not chosen:
        raise ConfigError("detectors", f"no detector has dark_run {run} (dark_run of {listed}); choose one with "
                                       "--detector")
    several = [name for name in chosen if kinds[name] == "dssc"]
    if len(several) > 1:
        raise ConfigError("detectors", f"DSSC detectors {', '.join(several)} all have dark_run {run}; choose one "
                                       "with --detector")
    return chosen


def _dssc_entry(name: str, raw) -> Dict:
    """The keys ``smd_dark`` reads of a DSSC entry, checked by the producer's table."""
    from smalldata.config.keys import DETECTOR_SCHEMA
    from smalldata.config.schema import apply_schema

    return apply_schema(raw, DETECTOR_SCHEMA, f"detectors.{name}", keys=("modules", "dark"))


def _camera_entry(name: str, raw) -> CameraEntry:
    """A camera entry: its preset with the config's overrides and its dark thresholds."""
    from smalldata.config.keys import CAMERA_DARK_SCHEMA, CAMERA_SCHEMA
    from smalldata.config.schema import apply_schema
    from smalldata.detectors.camera import preset_of
    from smalldata.errors import ConfigError

    where = f"detectors.{name}"
    det = apply_schema(raw, CAMERA_SCHEMA, where, keys=("camera", "shape", "source", "train_id_offset", "dark"))
    if det["camera"] is None:
        raise ConfigError(f"{where}.camera", f"is required ({CAMERA_SCHEMA['camera'].doc})")
    thresholds = apply_schema(det["dark"], CAMERA_DARK_SCHEMA, f"{where}.dark")
    return CameraEntry(name, preset_of(det, where), CameraDarkThresholds(
        thresholds["hot_sigma"], thresholds["noisy_sigma"], thresholds["dead_noise"]))


def parse_modules(text: str) -> Tuple[int, ...]:
    """``"0,3,15"`` or ``"0-3,15"`` -> (0, 3, 15) / (0, 1, 2, 3, 15)."""
    from smalldata.errors import SmallDataError
    from smalldata.simulate.config import parse_int_list

    values = set(parse_int_list(text, "--modules"))
    if min(values) < 0 or max(values) > 15:
        raise SmallDataError(f"--modules {text!r}: give module numbers 0..15")
    return tuple(sorted(values))


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``smd_dark``."""
    parser = argparse.ArgumentParser(
        prog="smd_dark",
        description="Characterise a dark run: for a DSSC, pedestal and noise per module, memory cell and pixel, "
                    "and bad pixels (dead, hot, noisy, pedestal out of range); for a per-train camera "
                    "(type: camera), mean, noise and bad pixels (dead, hot, noisy) of its images, with its "
                    "settings. Writes <calib_dir>/dark_p<proposal>_r<run>_<det>.h5 per detector, which "
                    "smd_producer uses for the detector's dark_run. A config with several detectors: those whose "
                    "dark_run is this run. Run under 'mpirun -n N smd_dark ...' to use N ranks; the file does not "
                    "depend on N.",
        epilog="example: mpirun -n 4 smd_dark -p 2937 -r 615 -c configs/producer.yaml")
    add_run_arguments(parser, run_help="run number of the dark run",
                      config_help="producer YAML config: proposal, data_root, calib_dir, detectors.<det>.modules "
                                  "and detectors.<det>.dark thresholds (a camera's camera, shape, source, "
                                  "train_id_offset, dark)")
    parser.add_argument("--data-root", type=Path,
                        help="root of the raw data tree (default: the config's data_root, else $EXTRA_DATA_DATA_ROOT)")
    parser.add_argument("--calib-dir", type=Path, help="folder for the constants (default: the config's calib_dir, "
                                                      "else ./calib)")
    parser.add_argument("--modules", help="modules to characterise, e.g. 0,3,15 or 0-15 (default: the config's, "
                                          "else all in the run)")
    parser.add_argument("--detector", help="detector name in the config and the file name (default: the only "
                                           "configured detector; else dssc, or with cameras in the config every "
                                           "detector whose dark_run is this run)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing constants file")
    parser.add_argument("--chunk-frames", type=int, default=1024, metavar="N",
                        help="frames read at once per module (128 kB each; default 1024)")
    add_common_arguments(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    from smalldata.calib.dark import dark_file_path
    from smalldata.errors import ConfigError, SmallDataError
    from smalldata.parallel import mpi, shutdown

    shutdown.install()  # a signal stops the dark between chunks; the temporary file is removed
    comm = mpi.get_comm()
    settings = dark_settings_from_config(args.config, args.detector, args.run)
    proposal = args.proposal if args.proposal is not None else settings.proposal
    if proposal is None:
        where = f"in {args.config}" if args.config else "without a config (-c)"
        raise ConfigError("proposal", f"no proposal number {where}; pass -p or set 'proposal:' in the config")
    if args.proposal is not None and args.proposal < 1:
        raise SmallDataError(f"-p/--proposal must be a positive proposal number, got {args.proposal}")
    if args.chunk_frames < 1:
        raise SmallDataError(f"--chunk-frames must be >= 1, got {args.chunk_frames}")
    if args.modules and settings.detector is None:
        raise SmallDataError(f"--modules applies to a DSSC detector; {', '.join(c.name for c in settings.cameras)} "
                             "is a camera (one image per train): leave --modules out")
    data_root = args.data_root or settings.data_root
    calib_dir = args.calib_dir.resolve() if args.calib_dir else settings.calib_dir
    cameras = []
    if settings.cameras:  # read and characterised first, so that bad camera input leaves no file at all
        cameras = mpi.agree(lambda: _camera_darks(settings, proposal, args, data_root, calib_dir)
                            if comm.Get_rank() == 0 else [], comm)
    if settings.detector is not None:
        _dssc_dark(args, settings, proposal, data_root, dark_file_path(calib_dir, proposal, args.run,
                                                                        settings.detector), comm)
    if settings.cameras:
        mpi.agree(lambda: _write_camera_darks(cameras, proposal, args), comm)
    return 0


def _dssc_dark(args: argparse.Namespace, settings: DarkSettings, proposal: int, data_root, out: Path, comm) -> None:
    """The DSSC's dark constants on all ranks (smalldata.calib.dark), and its summary line."""
    import numpy as np

    from smalldata.calib.dark import characterise_dark_to_file
    from smalldata.errors import DataError
    from smalldata.io.runaccess import RunAccess
    from smalldata.parallel import mpi

    modules = parse_modules(args.modules) if args.modules else settings.modules

    def check_output():
        if comm.Get_rank() == 0 and out.exists() and not args.overwrite:
            raise DataError(f"dark constants {out} exist already; pass --overwrite to replace them")

    mpi.agree(check_output, comm)
    access = mpi.agree(lambda: RunAccess.open(proposal, args.run, data_root), comm)
    if comm.Get_rank() == 0:
        log.info("dark run %d of proposal %d: %d trains on %d rank(s) -> %s", args.run, proposal,
                 len(access.train_ids), comm.Get_size(), out)
    summary = characterise_dark_to_file(access, out, modules, settings.thresholds, comm, proposal=proposal,
                                        run_number=args.run, detector=settings.detector,
                                        chunk_frames=args.chunk_frames, overwrite=args.overwrite,
                                        progress=not args.quiet)
    if comm.Get_rank() == 0 and not args.quiet:
        n_bad = int(np.count_nonzero(summary.status_mask))
        print(f"wrote {out}: modules {list(map(int, summary.modules))}, {len(summary.cell_ids)} cells, "
              f"{int(summary.n_frames.min())}..{int(summary.n_frames.max())} frames per cell, "
              f"{n_bad} bad pixels ({100.0 * n_bad / summary.status_mask.size:.3f}%)")


def _camera_darks(settings: DarkSettings, proposal: int, args: argparse.Namespace, data_root, calib_dir: Path):
    """Each camera's dark characterised from the run (nothing written yet): (entry, path, CameraDark)."""
    from smalldata.calib.dark import dark_file_path
    from smalldata.cameras.darkrun import characterise_camera_run, check_writable
    from smalldata.io.runaccess import RunAccess

    outs = [check_writable(dark_file_path(calib_dir, proposal, args.run, cam.name), args.overwrite)
            for cam in settings.cameras]
    run = RunAccess.open(proposal, args.run, data_root).data
    out = []
    for cam, path in zip(settings.cameras, outs):
        what = f"dark run {args.run} of proposal {proposal} (detectors.{cam.name})"
        out.append((cam, path, characterise_camera_run(run, cam.preset, cam.thresholds, what)))
    return out


def _write_camera_darks(cameras, proposal: int, args: argparse.Namespace) -> None:
    """Write each camera's dark file (rank 0) and print its summary line."""
    from smalldata.cameras.darkrun import dark_summary, write_camera_dark

    for cam, path, dark in cameras:
        write_camera_dark(dark, path, proposal, args.run, cam.name, cam.preset, cam.thresholds, args.overwrite)
        if not args.quiet:
            print(dark_summary(dark, path))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``smd_dark``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
