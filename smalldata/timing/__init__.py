"""Pump-probe timing: delays from the stage, trigger and BAM per frame, and scan steps.

:mod:`.settings` the ``delay:`` config section, :mod:`.delays` delays per frame (the
producer's hook :func:`.hook.point_reader`), :mod:`.steps` steps of a stepped scan.
See ``docs/timing.md``.
"""
from .steps import ScanSteps, find_steps

__all__ = ["ScanSteps", "find_steps"]
