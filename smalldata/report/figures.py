"""The figures of the run report, each drawn from an open session into a matplotlib figure.

Every function takes a :class:`~smalldata.ana.session.SmallDataAna` and returns
``(figure, caption)``, or raises :class:`ReportSkip` with the reason the run lacks it.
"""
from __future__ import annotations

import logging
import warnings
from typing import Optional, Tuple

import h5py
import numpy as np

from smalldata.errors import SmallDataError

log = logging.getLogger(__name__)


class ReportSkip(Exception):
    """A figure the run's output cannot give (the message says why); the report notes it."""


def _figure(figsize=(6.4, 4.0)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=90, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def xgm_per_train(ana) -> Tuple[object, str]:
    """Mean XGM pulse energy per train."""
    name = next((k for k in ana.event_keys() if k.startswith("xgm/")), None)
    if name is None:
        raise ReportSkip("no xgm/* dataset in the output (add point_data.xgm)")
    tids = np.asarray(ana["trainId"], dtype=np.int64)
    xgm = np.asarray(ana[name], dtype=np.float64)
    trains, row = np.unique(tids, return_inverse=True)
    ok = np.isfinite(xgm)
    sums = np.bincount(row[ok], weights=xgm[ok], minlength=len(trains))
    counts = np.bincount(row[ok], minlength=len(trains))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
    fig, ax = _figure()
    ax.plot(trains - trains[0], mean, ".-", ms=3)
    ax.set_xlabel(f"train (id - {trains[0]})")
    ax.set_ylabel(f"{name} mean per train ({ana.units(name) or '-'})")
    ax.set_title("XGM against train")
    return fig, f"Mean of {name} over each train's X-ray frames ({int(counts.sum())} frames)."


def losses_by_reason(ana) -> Tuple[object, str]:
    """Rejected frames per reason, skipped trains, frames without a valid delay."""
    from smalldata.pulses.rejection import reason_table

    names, counts = [], []
    if "rejection/reasons" in ana:
        reasons = np.asarray(ana["rejection/reasons"], dtype=np.int64)
        for reason, bit in reason_table().items():
            names.append(reason.lower())
            counts.append(int(np.count_nonzero(reasons & bit)))
    with h5py.File(ana.path, "r") as f:
        if "meta/skipped_reason" in f:
            for reason in f["meta/skipped_reason"].asstr()[()]:
                key = f"train skipped: {reason}"
                if key in names:
                    counts[names.index(key)] += 1
                else:
                    names.append(key)
                    counts.append(1)
    if "delay/valid" in ana:
        names.append("no valid delay")
        counts.append(int(np.count_nonzero(~np.asarray(ana["delay/valid"], bool))))
    if not names:
        raise ReportSkip("the output has no rejection reasons")
    fig, ax = _figure((6.4, max(2.5, 0.35 * len(names) + 1)))
    y = np.arange(len(names))
    ax.barh(y, counts, color="tab:red")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("frames (trains for skipped trains)")
    ax.set_title(f"losses by reason ({len(ana)} frames written)")
    return fig, "Frames per rejection reason (a frame can have several), trains skipped, frames without a delay."


def _first_roi(ana) -> Optional[str]:
    sums = [k for k in ana.event_keys() if k.endswith("_sum") and "/" in k and len(ana.info[k]["shape"]) == 1
            and not k.startswith(("xgm/", "delay/", "scan/", "pd/"))]
    return sums[0] if sums else None


def roi_against_scan(ana) -> Tuple[object, str]:
    """The first ROI sum binned against the scanned variable, pumped and unpumped."""
    roi = _first_roi(ana)
    if roi is None:
        raise ReportSkip("no ROI sum (<det>/<roi>_sum) in the output")
    scan = ana.scan_name
    if not scan:
        raise ReportSkip("no scanned variable found (scan/* or delay/step_delay)")
    try:
        label_id, names = ana.labels()
    except SmallDataError as exc:
        raise ReportSkip(str(exc)) from None
    fig, ax = _figure()
    x = np.asarray(ana[scan], dtype=np.float64)
    from smalldata.ana.scans import scan_edges

    edges = scan_edges(x, None)
    for k, name in enumerate(names):
        if "dark" in name:
            continue
        res = ana.binned(roi, scan, edges, selection=(label_id == k))
        ax.errorbar(res["centres"], res["mean"], yerr=res["err"], marker="o", ms=3, capsize=2, label=name)
    ax.set_xlabel(f"{scan} ({ana.units(scan) or '-'})")
    ax.set_ylabel(f"{roi} ({ana.units(roi) or '-'})")
    ax.legend(fontsize=8)
    ax.set_title("ROI against the scan variable")
    return fig, f"Mean of {roi} per value of {scan}, per frame label, with standard errors."


def average_image(ana, det: str = "dssc") -> Tuple[object, str]:
    """The run's mean image (run sums), modules stacked top to bottom."""
    with h5py.File(ana.path, "r") as f:
        if f"Sums/{det}_mean" in f:
            mean, what = f[f"Sums/{det}_mean"][()], "run sums"
        elif f"Sums/{det}_cube/sum" in f:
            s, c = f[f"Sums/{det}_cube/sum"][()], f[f"Sums/{det}_cube/pixel_count"][()]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = s.sum(axis=(0, 1)) / c.sum(axis=(0, 1))
            what = "the cube over all bins"
        else:
            raise ReportSkip(f"no run sums of {det!r} (add 'sums: {{}}' or a cube to the detector)")
    image = np.concatenate(list(np.asarray(mean, dtype=np.float64)), axis=0)
    fig, ax = _figure((6.4, min(9.0, 1.2 + 1.6 * mean.shape[0])))
    finite = image[np.isfinite(image)]
    vmax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    im = ax.imshow(image, vmin=0, vmax=vmax, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="mean per frame")
    ax.set_title(f"{det}: average image ({mean.shape[0]} module(s))")
    return fig, f"Mean per frame of every pixel, from {what}."


def azimuthal_difference(ana) -> Tuple[object, str]:
    """Azimuthal profile, pumped minus unpumped."""
    name = next((k for k in ana.event_keys() if k.endswith("_mean") and len(ana.info[k]["shape"]) == 3
                 and ana.info[k]["shape"][1] == 1), None)
    if name is None:
        raise ReportSkip("no azimuthal profile (<det>/<azav>_mean of an azimuthal function) in the output")
    try:
        label_id, names = ana.labels()
    except SmallDataError as exc:
        raise ReportSkip(str(exc)) from None
    if "pumped" not in names or "unpumped" not in names:
        raise ReportSkip(f"labels {list(names)} have no pumped and unpumped")
    profile = np.asarray(ana[name], dtype=np.float64)[:, 0, :]
    det, func = name.split("/", 1)
    func = func[: -len("_mean")]
    with h5py.File(ana.path, "r") as f:
        key = f"UserDataCfg/{det}/{func}/q_centers"
        q = f[key][()] if key in f else np.arange(profile.shape[1])
        qlabel = "q (1/m)" if key in f else "bin"
    means = {}
    for lab in ("pumped", "unpumped"):
        sel = label_id == names.index(lab)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a q bin without pixels stays NaN
            means[lab] = np.nanmean(profile[sel], axis=0) if sel.any() else np.full(profile.shape[1], np.nan)
    fig, ax = _figure()
    ax.plot(q, means["pumped"] - means["unpumped"], "k-")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(qlabel)
    ax.set_ylabel(f"pumped - unpumped ({ana.units(name) or '-'})")
    ax.set_title("azimuthal profile: pumped minus unpumped")
    return fig, f"Mean of {name} over pumped frames minus over unpumped frames."


#: The report's figures in page order: (title, function).
def camera_spectra(ana) -> Tuple[object, str]:
    """Each per-train detector's mean 1-D outputs (spectra, profiles) over its trains, against their axis."""
    curves = []
    with h5py.File(ana.path, "r") as f:
        for cam in sorted(ana.train_groups):
            for key in ana.train_keys(cam):
                shape = ana.info[key]["shape"]
                if len(shape) != 2 or shape[1] < 2 or ana.units(key) == "pixel":  # pixel counts: not a spectrum
                    continue
                values = np.asarray(ana[key], dtype=np.float64)
                func = key.split("/", 1)[1].split("_", 1)[0]
                cfg = f.get(f"UserDataCfg/{cam}/{func}")
                axis, label = np.arange(shape[1]), "pixel"
                for name, unit in (("energy", "eV"), ("pixel", "pixel")):
                    if cfg is not None and name in cfg and cfg[name].shape == (shape[1],):
                        axis, label = cfg[name][()], f"{name} ({unit})"
                        break
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # trains without a value
                    curves.append((key, axis, label, np.nanmean(values, axis=0), len(values)))
    if not curves:
        raise ReportSkip("no per-train detector (camera) with a spectrum or profile in the output")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.6 * len(curves)), dpi=90, layout="constrained")
    axes = fig.subplots(len(curves), 1, squeeze=False)[:, 0]
    for ax, (key, axis, label, mean, n) in zip(axes, curves):
        ax.plot(axis, mean, "-", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel(f"{key} ({ana.units(key) or '-'})")
        ax.set_title(f"{key}: mean of {n} trains")
    return fig, "Mean over the trains of each camera's spectra and profiles: " + \
        ", ".join(f"{key} ({n} trains)" for key, _, _, _, n in curves) + "."


FIGURES = (("XGM against train", xgm_per_train), ("Losses by reason", losses_by_reason),
           ("ROI against scan variable", roi_against_scan), ("Average image", average_image),
           ("Azimuthal profile, pumped minus unpumped", azimuthal_difference),
           ("Camera spectra", camera_spectra))
