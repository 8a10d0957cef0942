"""The run report: one self-contained HTML page of a run's output (``smd_report``, ``SmallDataAna.report``).

:mod:`.figures` draws each figure from a session, :mod:`.html` writes the page with the
figures embedded as PNG data (no other file needed: it can be mailed or posted to a logbook).
"""
from .html import write_report

__all__ = ["write_report"]
