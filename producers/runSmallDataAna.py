"""runSmallDataAna: an interactive IPython session on a run's small-data file.

IPython starts with matplotlib enabled (``%matplotlib``: the user's backend, plots appear at
once and the prompt stays free) and ``ana``, ``plt`` and ``np`` ready. Headless (``--save-dir``
or a non-interactive backend such as ``MPLBACKEND=Agg``) every plot is also written as a PNG
and its path printed.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from ._cli import add_common_arguments, add_run_arguments, run_main


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``runSmallDataAna``."""
    parser = argparse.ArgumentParser(
        prog="runSmallDataAna",
        description="Open the small-data file of a run in an IPython session with 'ana' (a SmallDataAna), "
                    "'plt' and 'np' ready and matplotlib enabled: select events, bin and plot against scan "
                    "variables, average detector images from the raw data, tune ROIs, the beam centre, masks and "
                    "frame cuts, and write them into the producer config.")
    add_run_arguments(parser, run_help="run number (required unless --live)", run_required=False,
                      config_help="producer config; its geometry is used for images",
                      config_default=Path("producer.yaml"))
    parser.add_argument("--output", type=Path, help="small-data file (default: the config's output_dir/r<run>.h5)")
    parser.add_argument("--save-dir", type=Path,
                        help="also write every plot as a PNG into this folder and print its path (headless use; "
                             "with MPLBACKEND=Agg the default is ./r<run>_plots)")
    parser.add_argument("--no-shell", action="store_true", help="print the summary and exit (for scripts)")
    parser.add_argument("--live", type=Path, metavar="FILE",
                        help="follow the output FILE of a live run (smd_producer --bridge) as it grows: "
                             "'live' refreshes its plots every --interval seconds (docs/live.md)")
    parser.add_argument("--interval", type=float, default=3.0, metavar="S",
                        help="seconds between refreshes of --live (default 3)")
    add_common_arguments(parser)
    return parser


def banner(ana) -> str:
    """The session's greeting, with examples that use datasets of this file."""
    keys = ana.event_keys()
    det_keys = [k for k in keys if len(ana.info[k]["shape"]) == 1 and k.count("/") == 1
                and k.split("/")[0] in (ana.config.get("detectors") or {})]
    points = [k for k in keys if k.split("/")[0] in (ana.config.get("point_data") or {})]
    scans = [k for k in points if k.startswith("scan/")]
    det = next(iter(ana.config.get("detectors") or {"dssc": None}))
    cam_keys = [k for k in ana.train_keys() if len(ana.info[k]["shape"]) == 1 and not k.endswith("/trainId")]
    value = det_keys[0] if det_keys else cam_keys[0] if cam_keys else (keys[0] if keys else "trainId")
    cut_on = next((k for k in points if k.startswith("xgm/")), points[0] if points else value)
    lines = [f"smalldata interactive session, run {ana.run}: {ana}",
             "  ana.keys()                                  datasets; 'plt' and 'np' are imported",
             f'  ana["{value}"]{" " * max(1, 35 - len(value))}one of them as an array',
             f'  sel = ana.cut("{cut_on}", low, high)        event selection; ana.addCut(...) for named cuts',
             f'  ana.plotVar("{cut_on}")                     histogram (two names: 2-D)']
    if scans:
        lines.append(f'  ana.plotScan("{value}", by="{scans[0]}")   pumped / unpumped / difference')
    for cam in sorted(ana.train_groups):  # per-train cameras: their own rows, joined by train id
        cam_key = next((k for k in cam_keys if k.startswith(f"{cam}/")), f"{cam}/trainId")
        per_event = next(iter(points + det_keys), None)
        joined = f'ana.on_events("{cam_key}")' + (f'; ana.per_train("{per_event}", cam="{cam}")' if per_event else "")
        lines.append(f"  {joined}   camera rows and events joined by trainId")
    lines += [f'  img = ana.AvImage("{det}", selection=sel)    average calibrated image from the raw data',
              "  ana.plotAvImage(img); ana.FitCircle(img, threshold=...); ana.AzInt(img, refine=True)",
              "  ana.SelectRegion(img, ...); ana.MakeMask(img, ...); ana.pixelHistogram()",
              "  ana.write_config('tuned.yaml'); ds = ana.to_xarray()"]
    return "\n".join(lines) + "\n"


def headless_dir(args: argparse.Namespace) -> Optional[Path]:
    """Where plots are written: --save-dir, or ./r<run>_plots without windows.

    Without windows: a non-interactive MPLBACKEND (Agg, ...), or none set on Linux without a display.
    """
    if args.save_dir is not None:
        return args.save_dir
    from smalldata.ana.plotting import NON_INTERACTIVE_BACKENDS

    backend = os.environ.get("MPLBACKEND", "").lower()
    no_display = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                           or os.environ.get("WAYLAND_DISPLAY"))
    if backend in NON_INTERACTIVE_BACKENDS or (not backend and no_display):
        return Path(f"r{args.run:04d}_plots" if args.run is not None else f"{args.live.stem}_plots")
    return None


def _announce_plots() -> None:
    """Print the paths of written PNGs on the terminal, as they are, without the log prefix."""
    plots_log = logging.getLogger("smalldata.ana.plots")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    plots_log.addHandler(handler)
    plots_log.setLevel(logging.INFO)
    plots_log.propagate = False


def ipython_config():
    """IPython configuration: matplotlib enabled with the user's backend (Agg when headless)."""
    from traitlets.config import Config

    config = Config()
    config.InteractiveShellApp.matplotlib = "auto"
    config.TerminalInteractiveShell.confirm_exit = False
    config.TerminalIPythonApp.display_banner = False
    return config


def _live_body(args: argparse.Namespace) -> int:
    """``--live FILE``: a session whose ``live`` view follows a live run's output."""
    import numpy as np

    from smalldata.ana.follow import LiveView
    from smalldata.ana.plotting import pyplot
    from smalldata.errors import SmallDataError

    if args.interval <= 0:
        raise SmallDataError(f"--interval must be > 0 seconds, got {args.interval}")
    save_dir = headless_dir(args)
    if save_dir is not None and "MPLBACKEND" not in os.environ:
        os.environ["MPLBACKEND"] = "agg"
    backend = os.environ.get("MPLBACKEND", "")
    if backend and not backend.startswith("module://"):  # IPython knows the built-in backends in lower case
        os.environ["MPLBACKEND"] = backend.lower()
    view = LiveView(args.live, interval=args.interval, plot_dir=save_dir)
    text = (f"smalldata live view of {args.live}: 'live' refreshes every {args.interval:g} s "
            "(live.refresh() now, live.stop() to end, live.state for the running sums)\n")
    if save_dir is not None:
        text += f"  headless: the figure is written to {save_dir}/live.png at every refresh\n"
    print(text)
    if args.no_shell:
        view.refresh()
        return 0
    from IPython import start_ipython

    view.start()
    start_ipython(argv=[], user_ns={"live": view, "np": np, "plt": pyplot()}, config=ipython_config())
    view.stop()
    return 0


def _body(args: argparse.Namespace) -> int:
    from smalldata.ana.session import SmallDataAna

    if args.live is not None:
        return _live_body(args)
    if args.run is None:
        from smalldata.errors import SmallDataError

        raise SmallDataError("-r/--run is required (or --live FILE to follow a live run)")

    save_dir = headless_dir(args)
    ana = SmallDataAna.from_run(args.run, args.config, args.output, plot_dir=save_dir)
    if args.proposal is not None and args.proposal != ana.proposal:
        from smalldata.errors import SmallDataError

        raise SmallDataError(f"{ana.path} is of proposal {ana.proposal}, not {args.proposal}")
    text = banner(ana)
    if save_dir is not None:
        text += f"  headless: every plot is also written to {save_dir}/\n"
    if args.no_shell:
        print(text)
        return 0
    _announce_plots()
    import numpy as np

    from smalldata.ana.plotting import pyplot

    if save_dir is not None and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) \
            and "MPLBACKEND" not in os.environ:
        os.environ["MPLBACKEND"] = "agg"
    backend = os.environ.get("MPLBACKEND", "")
    if backend and not backend.startswith("module://"):
        # IPython's %matplotlib knows the built-in backends by lower-case name only ("Agg" fails)
        os.environ["MPLBACKEND"] = backend.lower()
    namespace = {"ana": ana, "np": np, "plt": pyplot()}
    from IPython import start_ipython

    print(text)
    argv: List[str] = []
    start_ipython(argv=argv, user_ns=namespace, config=ipython_config())
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``runSmallDataAna``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
