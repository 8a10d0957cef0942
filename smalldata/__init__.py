"""smalldata: turn European XFEL raw run data into compact per-frame small data.

The framework lives here (run access, calibration, the event loop, the writer);
the analysis functions live in :mod:`ana_funcs`.
"""
__version__ = "0.1.0"
