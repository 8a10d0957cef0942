"""Regenerate the figures of docs/functions/hrixs.md and viking.md (docs/img/func_hrixs_spectrum.png,
docs/img/func_viking_spectrum.png).

    python docs/make_function_figures.py [--work DIR]

Simulates a small hRIXS camera and a small Viking (a dark and a data run each), hands their
dark-subtracted frames to the event-loop functions ``hrixs`` and ``viking`` as the producer does
(frames (N, 1, ny, nx), valid = good pixel and not saturated) and plots the spectra summed over the
trains against the planted truth. A few seconds; the work folder (default: a temporary one) is
removed unless given.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

IMG = Path(__file__).resolve().parent / "img"
PROPOSAL = 2937
log = logging.getLogger("make_function_figures")


def camera_inputs(work: Path, sim, data_run: int, dark_run: int):
    """(frames, det, truth-free raw) of a simulated camera run: what the producer hands a function."""
    import extra_data

    from smalldata.cameras import characterise_dark
    from smalldata.cameras.reading import read_frames, read_settings
    from smalldata.plugin.frames import Frames
    from smalldata.simulate import run_path

    runs = {r: extra_data.RunDirectory(run_path(work, PROPOSAL, r)) for r in (data_run, dark_run)}
    dark = characterise_dark(read_frames(runs[dark_run], sim.preset)[1], sim.camera,
                             read_settings(runs[dark_run], sim.preset))
    ids, raw = read_frames(runs[data_run], sim.preset)
    n = len(raw)
    frames = Frames(data=(raw.astype(np.float32) - dark.mean)[:, None],
                    valid=(dark.mask[None] & (raw < sim.preset.saturation))[:, None], units="ADU",
                    train_ids=ids.astype(np.uint64), pulse_ids=np.zeros(n, np.uint64),
                    cell_ids=np.zeros(n, np.uint16), modules=(0,))
    settings = read_settings(runs[data_run], sim.preset)
    det = SimpleNamespace(name=sim.camera, modules=(0,), mask=dark.mask[None], noise=dark.noise[None, None],
                          units="ADU", params=lambda: {"camera": sim.camera, "settings": settings})
    return frames, det


def hrixs_figure(work: Path) -> Path:
    """The ``hrixs`` function's centroided spectrum against np.histogram of the planted photons."""
    from smalldata.funcs.hrixs import HRIXSSpectrum
    from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run

    sim = CameraSim(camera="hrixs", shape=(200, 400), n_trains=30)
    truth = simulate_hrixs_run(work, PROPOSAL, 820, sim, "data", line_energies=(927.0, 928.5, 930.0),
                               photons_per_train=60)
    simulate_hrixs_run(work, PROPOSAL, 821, sim, "dark")
    frames, det = camera_inputs(work, sim, 820, 821)
    adu = float(truth["adu_per_photon"])
    func = HRIXSSpectrum(threshold_sigma=8.0, double_threshold_adu=1.5 * adu,
                         curvature=[float(v) for v in truth["curvature"]], energy_slope=float(truth["energy_slope"]),
                         energy_intercept=float(truth["energy_intercept"]), energy_bins=(926.0, 931.0, 0.02))
    func.setup(det)
    out = func.run(frames)
    energy = func.config_arrays()["energy"]
    # the planted photons' energies: their planted positions through the planted curvature and calibration
    c1, c2 = truth["curvature"]
    rows = truth["hit_y"] - (c1 + c2 * truth["hit_x"]) * truth["hit_x"]
    planted = np.histogram(float(truth["energy_intercept"]) + float(truth["energy_slope"]) * rows, func.edges,
                           weights=truth["hit_photons"])[0]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.step(energy, planted, where="mid", color="0.6", lw=2.5, label="planted photons (np.histogram)")
    ax.step(energy, out["hrixs_spectrum"].sum(axis=0), where="mid", color="C0", lw=1,
            label=f"hrixs_spectrum, {len(frames)} trains")
    for line in truth["line_energies"]:
        ax.axvline(line, color="C3", lw=0.6, ls=":")
    found, want = int(out["hrixs_n_photons"].sum()), int(truth["hit_photons"].sum())
    ax.set(xlabel="energy (eV)", ylabel="photons per 0.02 eV bin",
           title=f"hrixs (centroid, 8 sigma): {found} photons found of {want} planted")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = IMG / "func_hrixs_spectrum.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def viking_figure(work: Path) -> Path:
    """The ``viking`` function's spectrum, baseline and baseline-free spectrum against the planted beam."""
    from smalldata.funcs.viking import VikingSpectrum
    from smalldata.simulate.cameras import CameraSim, simulate_viking_run

    sim = CameraSim(camera="newton", shape=(64, 512), n_trains=20, settings={"preampGain": 1, "HighCapacity": 0})
    truth = simulate_viking_run(work, PROPOSAL, 830, sim, "reference")
    simulate_viking_run(work, PROPOSAL, 831, sim, "dark")
    frames, det = camera_inputs(work, sim, 830, 831)
    cal = [float(v) for v in truth["calibration"]]
    energy = np.asarray(truth["energy"])
    lo, hi = (float(v) for v in truth["signal_range_px"])
    mid, half = 0.5 * (lo + hi), 0.35 * (hi - lo)  # the beam's centre -+ 3.5 sigma
    e_lo, e_hi = np.polynomial.polynomial.polyval([mid - half, mid + half], cal)
    func = VikingSpectrum(signal_range=[float(e_lo), float(e_hi)], baseline_degree=2, calibration=cal,
                          rows=[int(v) for v in truth["band_rows"]])
    func.setup(det)
    out = func.run(frames)
    axis = func.config_arrays()["energy"]
    mean = {k: out[f"viking_{k}"].mean(axis=0) for k in ("spectrum", "spectrum_nobl")}
    beam = truth["train_factor"].mean() * truth["beam_pe"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.axvspan(e_lo, e_hi, color="C2", alpha=0.08, label="signal_range (eV)")
    ax.plot(axis, mean["spectrum"], color="C0", lw=1, label="viking_spectrum")
    ax.plot(axis, mean["spectrum"] - mean["spectrum_nobl"], color="C1", lw=1, ls="--", label="baseline")
    ax.plot(energy, beam, color="0.6", lw=2.5, label="planted beam")
    ax.plot(axis, mean["spectrum_nobl"], color="C3", lw=1, label="viking_spectrum_nobl")
    ax.set(xlabel="energy (eV)", ylabel="photoelectrons per column",
           title=f"viking: mean of {len(frames)} trains, total {out['viking_total'].mean():.4g} "
                 f"(planted {beam.sum():.4g})")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = IMG / "func_viking_spectrum.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    """Make both figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for the simulated runs (kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="smd_funcfig_"))
    IMG.mkdir(exist_ok=True)
    try:
        for make in (hrixs_figure, viking_figure):
            log.info("wrote %s", make(work))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
