"""Detector calibration: the DetObject, dark characterisation and files, bad pixels, masks."""
