"""Regenerate the figures of docs/detectors/ (docs/img/hrixs_spectrum.png, docs/img/viking_xas.png).

    python docs/make_detector_figures.py [--work DIR]

Simulates a small hRIXS camera (dark, data, elastic line) and a small Viking (dark, reference,
sample, five monochromator runs), runs the algorithms of smalldata.spectro on them exactly as
docs/detectors/hrixs.md and viking.md describe, and plots the results against the planted truth.
A few seconds; the work folder (default: a temporary one) is removed unless given.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

IMG = Path(__file__).resolve().parent / "img"
PROPOSAL = 2937
log = logging.getLogger("make_detector_figures")


def hrixs_figure(work: Path) -> Path:
    """Spectrum by centroiding and by integration of a simulated hRIXS run, and its curvature fit."""
    import extra_data

    from smalldata.cameras import characterise_dark
    from smalldata.cameras.reading import read_frames
    from smalldata.simulate import run_path
    from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run
    from smalldata.spectro.calibration import EnergyCalibration
    from smalldata.spectro.centroid import centroid, resolve_threshold
    from smalldata.spectro.curvature import fit_curvature
    from smalldata.spectro.spectra import OverlapBinning, spectrum_from_hits

    sim = CameraSim(camera="hrixs", shape=(200, 400), n_trains=30)
    lines = dict(line_energies=(927.0, 928.5, 930.0), elastic_energy=928.5)
    truth = simulate_hrixs_run(work, PROPOSAL, 800, sim, "data", photons_per_train=60, **lines)
    simulate_hrixs_run(work, PROPOSAL, 801, sim, "dark")
    simulate_hrixs_run(work, PROPOSAL, 802, sim, "elastic", elastic_adu_per_row=400.0, **lines)

    def frames(run):
        return read_frames(extra_data.RunDirectory(run_path(work, PROPOSAL, run)), sim.preset)[1].astype(np.float32)
    dark = characterise_dark(frames(801), "hrixs")
    curvature, _ = fit_curvature((frames(802) - dark.mean).sum(axis=0))
    cal = EnergyCalibration.linear(float(truth["energy_slope"]), float(truth["energy_intercept"]), (0, 199))
    data = frames(800) - dark.mean
    hits = centroid(data, resolve_threshold(None, 8.0, dark.noise, dark.mask), 1.5 * float(truth["adu_per_photon"]),
                    dark.mask)
    edges = np.arange(926.0, 931.0, 0.02)
    centres = 0.5 * (edges[1:] + edges[:-1])
    by_hits = spectrum_from_hits(hits, curvature, cal, edges).sum(axis=0)
    by_integration = OverlapBinning(sim.preset.shape, curvature, cal, edges)(data).sum(axis=0)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    ax0.imshow(data.sum(axis=0), origin="lower", aspect="auto", cmap="gray_r", vmax=600)
    x = np.arange(sim.preset.shape[1])
    for e in truth["line_energies"]:
        ax0.plot(x, cal.pixel(e) + curvature.shift(x), "r-", lw=0.6)
    ax0.set(title="30 trains of a simulated hRIXS camera; fitted curvature (red)", xlabel="column (px)",
            ylabel="row (px, dispersive)")
    ax1.step(centres, by_hits, where="mid", label="centroiding (photons)")
    ax1.step(centres, by_integration / float(truth["adu_per_photon"]), where="mid",
             label="integration (ADU / ADU per photon)")
    for e in truth["line_energies"]:
        ax1.axvline(e, color="k", ls=":", lw=0.8)
    ax1.set(title="spectrum of the run; planted line energies dotted", xlabel="energy (eV)", ylabel="photons per bin")
    ax1.legend()
    fig.tight_layout()
    out = IMG / "hrixs_spectrum.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def viking_figure(work: Path) -> Path:
    """Reference and sample spectra of a simulated Viking, their baseline and the XAS with its edge."""
    import extra_data

    from smalldata.cameras import characterise_dark, get_preset
    from smalldata.cameras.reading import read_frames, read_settings
    from smalldata.simulate import run_path
    from smalldata.simulate.cameras import CameraSim, simulate_viking_run
    from smalldata.spectro.viking import calibrate_from_mono, photoelectrons_per_count, remove_baseline, spectrum
    from smalldata.spectro.xas import edge_position, xas

    shape = (32, 512)
    mono = {830: 865.0, 831: 872.0, 832: 880.0, 833: 888.0, 834: 896.0}
    kw = dict(camera="newton", shape=shape, n_trains=40, settings={"preampGain": 2, "HighCapacity": 1})
    truths = {run: simulate_viking_run(work, PROPOSAL, run, CameraSim(**kw), kind)
              for run, kind in ((820, "dark"), (821, "reference"), (822, "sample"))}
    for run, energy in mono.items():
        truths[run] = simulate_viking_run(work, PROPOSAL, run, CameraSim(**kw), "mono", mono_energy=energy)
    preset = get_preset("newton").with_shape(shape)

    def spectra(run):
        r = extra_data.RunDirectory(run_path(work, PROPOSAL, run))
        s = read_settings(r, preset)
        return read_frames(r, preset)[1], photoelectrons_per_count(s["preampGain"], s["HighCapacity"])
    dark = characterise_dark(spectra(820)[0], "newton")
    x = np.arange(shape[1])
    signal = tuple(truths[821]["signal_range_px"])
    spec = {run: spectrum(*(lambda f, pe: (f, dark.mean, pe))(*spectra(run))) for run in (821, 822, *mono)}
    means = [remove_baseline(x, spec[run].mean(axis=0), tuple(truths[run]["signal_range_px"]), 2)[0] for run in mono]
    cal, _ = calibrate_from_mono(means, list(mono.values()))
    energy = cal(x)
    ref, base = remove_baseline(x, spec[821], signal, 2)
    sam = remove_baseline(x, spec[822], signal, 2)[0]
    res = xas(sam, ref)
    core = np.abs(x - truths[821]["peak_px"]) < 2 * shape[1] / 12
    edge = edge_position(energy[core], res.absorption[core])
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    ax0.plot(energy, spec[821].mean(axis=0), label="reference I0")
    ax0.plot(energy, spec[822].mean(axis=0), label="sample It")
    ax0.plot(energy, base.mean(axis=0), "k--", label="baseline (fitted outside the signal)")
    ax0.set(title="Viking spectra, mean of 40 trains", xlabel="energy (eV, from 5 mono runs)",
            ylabel="photoelectrons per column")
    ax0.legend()
    ax1.fill_between(energy[core], (res.absorption - res.std)[core], (res.absorption + res.std)[core], alpha=0.25,
                     label="standard deviation")
    ax1.errorbar(energy[core], res.absorption[core], res.stderr[core], fmt=".", ms=2, label="-log(It/I0) +- std. error")
    ax1.plot(energy[core], truths[822]["absorbance"][core], "k-", lw=0.8, label="planted")
    ax1.axvline(edge, color="r", ls=":", label=f"edge found at {edge:.2f} eV")
    ax1.set(title="XAS of the simulated sample", xlabel="energy (eV)", ylabel="absorbance")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    out = IMG / "viking_xas.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep the simulated runs in this folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="smd_detfig_"))
    try:
        for make in (hrixs_figure, viking_figure):
            log.info("wrote %s", make(work))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
