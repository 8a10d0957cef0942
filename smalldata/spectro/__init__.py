"""Spectrometers of the SCS instrument on per-train cameras.

hRIXS: :mod:`.centroid` (photon hits, compiled kernel in :mod:`.centroid_kernel`),
:mod:`.curvature` (parabolic line curvature, its fit to an elastic line), :mod:`.calibration`
(pixel to energy, monotonic polynomials), :mod:`.spectra` (spectra by centroiding and by
integration with pixel-overlap binning). Viking: :mod:`.viking` (spectrum in photoelectrons,
baseline, calibration from monochromator runs) and :mod:`.xas` (absorption from sample and
reference runs); :mod:`.pipelines` the per-batch analyses (raw frames in, per-frame spectra out).
Every function takes batches of frames ``(N, ny, nx)`` and returns arrays. Behind the commands
``smd_hrixs`` and ``smd_viking`` (raw runs in, constants and results out): :mod:`.camerasetup`,
:mod:`.elastic`, :mod:`.vikingruns`, :mod:`.xasruns`, :mod:`.configedit`, :mod:`.figures`.
See ``docs/detectors/``.
"""
