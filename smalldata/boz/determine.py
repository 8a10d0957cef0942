"""The BOZ correction determination behind ``smd_boz``: ROIs, flat field, non-linearity.

Steps (all ranks take part; the results are the same on every rank):

1. the dark-corrected mean image of all frames (:func:`~.accumulate.mean_image_pass`)
   and the three ROIs found above a threshold (or given);
2. per frame the ROI histograms and saturation, per pixel the histograms of the
   unsaturated frames (:func:`~.accumulate.roi_pass`);
3. a first flat field on the uncorrected mean of unsaturated frames;
4. the non-linearity fit on the per-frame histograms;
5. the flat field again, on the mean corrected by the fitted table;
6. honest errors: the table moves every pixel of a ROI together, so the planes' errors from
   the pixel scatter (:func:`~.flatfield.fit_flat_field`) miss the table's own uncertainty.
   A delete-one-group jackknife over independent groups of trains refits the table without
   each group and the planes with it; the planes' errors are the pixel errors and the
   jackknife errors added in quadrature, and the table's errors are its jackknife errors.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from smalldata.boz import ORDERS
from smalldata.boz.accumulate import RoiData, mean_image_pass, roi_pass
from smalldata.boz.corrections import BozCorrections
from smalldata.boz.flatfield import fit_flat_field
from smalldata.boz.nonlinearity import (NonLinearity, check_low, corrected_mean_image, fit_nonlinearity,
                                        roi_sums, basis)
from smalldata.boz.rois import check_rois, crop, find_rois
from smalldata.constants import DSSC_ADC_MAX
from smalldata.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class BozSettings:
    """Parameters of a correction determination (all recorded in the corrections file).

    Attributes
    ----------
    module : int
        DSSC module with the three beams.
    photons_per_adu : float
        DSSC gain, photons per ADU bin (``-g``).
    rois_threshold : float
        ADU; mean-image pixels above it are beam pixels (``-t``).
    rois : dict or None
        Given ROIs (from the config) instead of finding them.
    sat_level : int
        Raw value from which a pixel is saturated (``-s``); frames with one in the ROIs are excluded.
    ff_symmetric : bool
        Mirror-symmetric flat-field planes for n and p.
    ff_prod_th : (low, high)
        Flat-field domain: product of the orders as a fraction of its 99.9th percentile.
    ff_ratio_th : (low, high)
        Flat-field domain: ratio of the orders.
    nl_points : int
        Control points of the lookup table.
    nl_low, nl_high : float
        Raw-value range corrected by the table.
    nl_alpha : float
        Weight of the linearity penalty.
    nl_classes : int
        Classes of pixel positions (by brightness in the mean image) whose ratios are fitted separately.
    nl_bins : int
        Intensity bins (quantiles of the frames' summed raw values) whose frames are summed for the fit.
    error_groups : int
        Groups of trains (train id modulo ``error_groups``) of the jackknife errors; 1: none.
    min_frames : int
        Fewest unsaturated frames for a determination.
    max_trains : int or None
        Use only the first trains of the run.
    batch_frames : int
        Frames read at once per rank.
    """

    module: int = 15
    photons_per_adu: float = 1.0
    rois_threshold: float = 1.0
    rois: Optional[Dict[str, List[int]]] = None
    sat_level: int = 500
    ff_symmetric: bool = False
    ff_prod_th: Tuple[float, float] = (0.05, float("inf"))
    ff_ratio_th: Tuple[float, float] = (0.2, 5.0)
    nl_points: int = 12
    nl_low: float = 100.0
    nl_high: float = float(DSSC_ADC_MAX)
    nl_alpha: float = 1e-11
    nl_classes: int = 3
    nl_bins: int = 64
    error_groups: int = 8
    min_frames: int = 100
    max_trains: Optional[int] = None
    batch_frames: int = 512

    def __post_init__(self):
        if not 0 <= self.module <= 15:
            raise ConfigError("module", f"{self.module} is not a DSSC module 0..15 (-m)")
        if self.nl_classes < 1:
            raise ConfigError("nl_classes", f"need at least 1 pixel class (--nl-classes), got {self.nl_classes}")
        if self.error_groups < 1:
            raise ConfigError("error_groups", f"need at least 1 group of trains (--error-groups), got "
                                              f"{self.error_groups}")
        if self.nl_bins < 2:
            raise ConfigError("nl_bins", f"need at least 2 intensity bins (--nl-bins), got {self.nl_bins}")
        if not self.photons_per_adu > 0:
            raise ConfigError("gain", f"-g must be > 0 photons per ADU, got {self.photons_per_adu}")
        if not 0 < self.sat_level <= DSSC_ADC_MAX:
            raise ConfigError("sat_level", f"-s must be within 1..{DSSC_ADC_MAX}, got {self.sat_level}")
        if self.rois is not None:
            self.rois = check_rois(self.rois, "rois")


@dataclass
class Determination:
    """Result of :func:`determine_corrections`: the corrections and the diagnostics for the figures."""

    corrections: BozCorrections
    mean_image: np.ndarray
    mean_unsaturated: Dict[str, np.ndarray] = field(default_factory=dict)
    common_mask: Optional[np.ndarray] = None
    deciles: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    roi_data: Optional[RoiData] = None
    timings: Dict[str, float] = field(default_factory=dict)


def common_good_mask(mask: np.ndarray, rois) -> np.ndarray:
    """(h, w) bool: pixels good in all three ROIs at the same place (so the ratios compare like with like)."""
    return np.logical_and.reduce([crop(mask, rois, o) for o in ORDERS])


def roi_mean_images(data: RoiData, common: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """(3, P) mean of ``lut[raw] - pedestal`` over the unsaturated frames, per good ROI pixel."""
    return corrected_mean_image(data.pixel_hist, data.n_unsaturated, lut) - data.pixel_ped


def _module_image(values: np.ndarray, rois, common: np.ndarray) -> np.ndarray:
    img = np.full((128, 512), np.nan)
    for k, o in enumerate(ORDERS):
        y0, y1, x0, x1 = rois[o]
        box = np.full(common.shape, np.nan)
        box[common] = values[k]
        img[y0:y1, x0:x1] = box
    return img


def determine_corrections(access, det, settings: BozSettings, proposal: int, run: int, dark_run: int,
                          detector: str = "dssc", comm=None, context: Optional[dict] = None) -> Determination:
    """Determine the BOZ corrections of ``run`` (see the module doc).

    Parameters
    ----------
    access : RunAccess
        The empty-membrane run.
    det : DetObject
        The detector with the dark of ``dark_run`` (its pedestal, cells and mask of ``settings.module``).
    settings : BozSettings
    proposal, run, dark_run : int
    detector : str
    comm : MPI communicator, optional
    context : dict, optional
        Recorded in the file's settings (command line, config path and text).

    Returns
    -------
    Determination
    """
    timings = {}
    t0 = time.monotonic()
    j = det.module_index(settings.module)
    pedestal = det.pedestal[j]  # (C, 128, 512)
    mask = det.mask[j]

    mean, n_frames, intensity, local = mean_image_pass(access, settings.module, pedestal, det.cell_index, comm,
                                                settings.max_trains, settings.batch_frames)
    if n_frames == 0:
        raise DataError(f"run {run} has no frames of module {settings.module}; check -m and the run")
    timings["mean_image_s"] = time.monotonic() - t0
    if settings.rois is not None:
        rois, source = settings.rois, "config"
    else:
        rois, source = find_rois(mean, settings.rois_threshold), "found"
    log.info("ROIs (%s): %s", source, rois)
    common = common_good_mask(mask, rois)
    ped_max = max(float(crop(pedestal, rois, o)[:, common].max()) for o in ORDERS)
    check_low(ped_max, settings.nl_low)

    zero = crop(mean, rois, "0")[common]
    edges = np.quantile(zero, np.linspace(0, 1, settings.nl_classes + 1)[1:-1])
    classes = np.searchsorted(edges, zero, side="right")
    edges = np.quantile(intensity, np.linspace(0, 1, settings.nl_bins + 1))
    t1 = time.monotonic()
    data = roi_pass(access, settings.module, rois, common, pedestal, det.cell_index, settings.sat_level, edges,
                    comm, settings.max_trains, settings.batch_frames, classes, settings.error_groups, local)
    timings["roi_pass_s"] = time.monotonic() - t1
    n_unsat = data.n_unsaturated
    if n_unsat < settings.min_frames:
        raise DataError(f"only {n_unsat} of {data.n_frames} frames of run {run} are unsaturated (no ROI "
                        f"pixel >= sat_level {settings.sat_level}); need at least {settings.min_frames}: raise -s, "
                        "use a run with weaker pulses, or lower --min-frames")

    t2 = time.monotonic()
    identity = np.arange(512, dtype=np.float64)
    mean_lin = _module_image(roi_mean_images(data, common, identity), rois, common)
    ff_kw = dict(symmetric=settings.ff_symmetric, prod_th=settings.ff_prod_th, ratio_th=settings.ff_ratio_th)
    ff_linear = fit_flat_field(mean_lin, rois, None, **ff_kw)
    nl = fit_nonlinearity(data.hist, data.ped_sums, settings.nl_points, settings.nl_low, settings.nl_high,
                          settings.nl_alpha, counts=data.counts)
    mean_nl = _module_image(roi_mean_images(data, common, nl.lut), rois, common)
    ff = fit_flat_field(mean_nl, rois, None, **ff_kw)
    timings["fits_s"] = time.monotonic() - t2
    t3 = time.monotonic()
    error_parts = {"pixels": {"n": ff.n_err.tolist(), "p": ff.p_err.tolist()}}
    jack = jackknife(data, common, rois, settings, ff_kw)
    if jack is not None:
        nl.errors = jack["nl"]
        error_parts["table"] = {"n": jack["n"].tolist(), "p": jack["p"].tolist()}
        ff.n_err, ff.p_err = np.hypot(ff.n_err, jack["n"]), np.hypot(ff.p_err, jack["p"])
    timings["errors_s"] = time.monotonic() - t3
    timings["total_s"] = time.monotonic() - t0
    log.info("non-linearity: %d frames, control values %s ADU", nl.n_frames, np.round(nl.values, 2).tolist())
    log.info("flat field: n %s, p %s", np.round(ff.n, 6).tolist(), np.round(ff.p, 6).tolist())

    deciles = ratio_deciles(data, nl)
    summary = {"n_frames": n_frames, "n_unsaturated": n_unsat, "n_saturated": data.n_saturated,
               "rois_source": source, "common_pixels": int(common.sum()), "timings_s": timings,
               "pedestal_max_adu": ped_max, "flat_field_error_parts": error_parts,
               "ratio_deciles_after": {k: v["after"]["ratio"].tolist() for k, v in deciles.items()},
               "ratio_deciles_before": {k: v["before"]["ratio"].tolist() for k, v in deciles.items()}}
    recorded = asdict(settings)
    recorded["rois"] = settings.rois
    recorded.update(context or {})
    corr = BozCorrections(proposal, run, dark_run, settings.module, detector, settings.photons_per_adu,
                          settings.sat_level, rois, ff, nl, ff_linear, recorded, summary)
    return Determination(corr, mean, {"linear": mean_lin, "corrected": mean_nl}, common, deciles, data, timings)


def jackknife(data: RoiData, common: np.ndarray, rois, settings: BozSettings, ff_kw: dict) -> Optional[dict]:
    """Delete-one-group jackknife errors of the table and of the planes it makes.

    For each group of trains the table is refitted on the other groups and the planes on
    the mean image (of all frames) corrected by that table. Returns ``{"nl": (N,), "n": (3,),
    "p": (3,)}`` standard errors, or None with fewer than 2 groups holding frames.
    """
    groups = [g for g in range(data.n_groups) if data.group_counts[g].sum() > 0]
    if len(groups) < 2:
        return None
    samples = []
    pixel_hist = data.pixel_hist.astype(np.float64)  # once for all the tables
    for g in groups:
        keep = np.arange(data.n_groups) != g
        nl = fit_nonlinearity(data.group_hist[keep].sum(axis=0), data.group_ped_sums[keep].sum(axis=0),
                              settings.nl_points, settings.nl_low, settings.nl_high, settings.nl_alpha,
                              counts=data.group_counts[keep].sum(axis=0))
        mean = corrected_mean_image(pixel_hist, data.n_unsaturated, nl.lut) - data.pixel_ped
        ff = fit_flat_field(_module_image(mean, rois, common), rois, None, **ff_kw)
        samples.append(np.concatenate([nl.values, ff.n, ff.p]))
    samples = np.array(samples)
    k = len(groups)
    err = np.sqrt((k - 1) / k * ((samples - samples.mean(axis=0)) ** 2).sum(axis=0))
    n_pts = settings.nl_points
    return {"nl": err[:n_pts], "n": err[n_pts:n_pts + 3], "p": err[n_pts + 3:]}


def ratio_deciles(data: RoiData, nl: NonLinearity, n_groups: int = 10) -> Dict[str, dict]:
    """ROI-sum ratios n/0 and p/0 (relative to their overall value) in ``n_groups`` groups of the intensity
    bins (deciles for equal bins), without and with the table; the flat field only rescales them."""
    bas = basis(len(nl.values), nl.low, nl.high)
    used = data.counts > 0
    lin, h = roi_sums(data.hist[used].sum(axis=2), data.ped_sums[used].sum(axis=2), bas)
    counts = data.counts[used]
    group = (np.cumsum(counts) - 0.5 * counts) * n_groups // counts.sum()
    group = np.minimum(group.astype(np.int64), n_groups - 1)
    out = {}
    for k, order in ((0, "n"), (2, "p")):
        res = {}
        for label, d in (("before", np.zeros(len(nl.values))), ("after", nl.values)):
            s = lin + h @ d
            sums = np.stack([np.bincount(group, s[:, r], minlength=n_groups) for r in range(3)], axis=1)
            n = np.bincount(group, counts, minlength=n_groups)
            ratio = sums[:, k] / sums[:, 1]
            res[label] = {"intensity": sums[:, 1] / np.maximum(n, 1), "ratio": ratio / (s[:, k].sum() / s[:, 1].sum()),
                          "counts": n}
        out[order] = res
    return out
