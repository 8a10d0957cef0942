"""Detector types: what each kind of detector is, for the rest of the code.

A :class:`~smalldata.detectors.types.DetectorType` declares a detector's sources and keys, image
shape, rate (frames per pulse or per train), raw data type and saturation, and geometry. The event
loop, the calibration and the output work from it: :data:`~smalldata.detectors.dssc.DSSC` for the
DSSC 1M, :func:`~smalldata.detectors.camera.camera_type` for the SCS per-train cameras.
"""
