"""The ``delay:`` section of the producer config: its keys and their checks."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from smalldata.config.schema import REQUIRED, Field, apply_schema, one_of, positive
from smalldata.errors import ConfigError

DELAY_SCHEMA: Dict[str, Field] = {
    "stage_source": Field(str, "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "delay-stage source (one value per train)"),
    "stage_key": Field(str, "actualPosition.value", "delay-stage position key", "mm"),
    "target_key": Field(Optional[str], None, "the stage's target-position key on the same source (scan steps from "
                                             "the targets); default: steps by clustering the actual position", "mm"),
    "passes": Field(int, 2, "times the light travels the stage's displacement (2: double pass)", check=positive),
    "sign": Field(int, 1, "+1: a larger stage position is a longer delay (laser later), -1: shorter",
                  check=one_of(1, -1)),
    "time_zero": Field(float, REQUIRED, "stage position of temporal overlap (zero delay); fit it with "
                                        "SmallDataAna.fit_time_zero", "mm"),
    "trigger_source": Field(Optional[str], None, "electronic trigger delay source (per train); subtracted"),
    "trigger_key": Field(str, "actualPosition.value", "trigger delay key", "ps"),
    "trigger_reference": Field(float, 0.0, "trigger delay at time zero", "ps"),
    "bam_source": Field(Optional[str], None, "bunch arrival monitor, per pulse (e.g. "
                                             "SCS_ILH_LAS/DOOCS/BAM_414_B2:output); needs a pulses section"),
    "bam_key": Field(str, "data.absoluteTD", "BAM arrival-time key"),
    "bam_units": Field(str, "fs", "unit of the BAM values", check=one_of("fs", "ps")),
    "bam_reference": Field(float, 0.0, "BAM value at time zero (subtracted)", "ps"),
    "bam_entries_per_slot": Field(int, 2, "BAM entries per bunch-pattern slot: the pulse of slot s is entry "
                                          "bam_entries_per_slot * s", check=positive),
    "bam_error_source": Field(Optional[str], None, "control source with the BAM's error flag per train "
                                                   "(e.g. SCS_ILH_LAS/DOOCS/BAM_414_B2)"),
    "bam_error_key": Field(str, "bamError.value", "error flag key: non-zero marks the train's BAM invalid"),
    "bam_max_abs": Field(float, 5.0, "a BAM value further than this from bam_reference is invalid", "ps",
                         check=positive),
    "step_tolerance": Field(float, 0.002, "positions within this of a step's target belong to it", "mm",
                            check=positive),
    "step_min_trains": Field(int, 2, "a scan step lasts at least this many trains (shorter: a move)",
                             check=positive),
    "bam_sign": Field(int, 1, "+1: add the BAM reading to the delay (EXtra's convention), -1: subtract",
                      check=one_of(1, -1)),
}


def validate_delay(section: Optional[Mapping[str, Any]], pulses: Optional[Mapping[str, Any]]) -> Optional[Dict]:
    """The validated ``delay`` section (defaults filled in), or None when absent.

    Raises
    ------
    ConfigError
        A key is wrong, ``time_zero`` is missing, or a BAM is configured without ``pulses``.
    """
    if section is None:
        return None
    if "time_zero" not in (section or {}):
        raise ConfigError("delay.time_zero", "is required: the stage position (mm) of temporal overlap; set your "
                                             "best guess and refine it with SmallDataAna.fit_time_zero")
    settings = apply_schema(section, DELAY_SCHEMA, "delay")
    if settings["bam_source"] is not None and pulses is None:
        raise ConfigError("delay.bam_source", "BAM values are aligned to pulses through the bunch pattern: add a "
                                              "'pulses' section (or remove bam_source)")
    return settings


#: Per-event outputs of the delay section (path -> unit).
DELAY_OUTPUTS = {
    "delay/stage_position": "mm", "delay/stage": "ps", "delay/trigger": "ps", "delay/bam": "ps",
    "delay/bam_valid": "", "delay/total": "ps", "delay/valid": "", "delay/step": "", "delay/step_delay": "ps",
}


def delay_paths(settings: Optional[Mapping[str, Any]]) -> set:
    """The per-event scalars a validated delay section writes (usable as cube scan variables)."""
    if settings is None:
        return set()
    paths = {"delay/stage_position", "delay/stage", "delay/total", "delay/step_delay"}
    if settings.get("trigger_source") is not None:
        paths.add("delay/trigger")
    if settings.get("bam_source") is not None:
        paths.add("delay/bam")
    return paths
