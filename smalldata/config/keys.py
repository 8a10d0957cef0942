"""The keys of the producer config: one schema table per section, and the docs they generate.

Every key is declared here (type, default, unit, meaning, check); the same tables
validate configs (:class:`~smalldata.config.producer.ProducerConfig`, ``smd_dark``)
and generate the key tables of ``docs/config.md`` (:func:`config_markdown`).
"""
from __future__ import annotations

from typing import Dict, List, Optional

from smalldata.cameras.dark import DEAD_NOISE, HOT_SIGMA, NOISY_SIGMA
from smalldata.config.dark import DARK_SCHEMA
from smalldata.config.schema import REQUIRED, Field, non_negative, one_of, positive, schema_markdown
from smalldata.config.delay import DELAY_SCHEMA


def _module_list(value) -> Optional[str]:
    if not value:
        return "an empty list reads no module; list module numbers 0..15 or remove the key (default: what the " \
               "functions need)"
    bad = [m for m in value if not 0 <= m <= 15]
    if bad:
        return f"module numbers must be 0..15, got {bad}"
    if len(set(value)) != len(value):
        return f"modules listed twice in {value}"
    return None


def _quadrants(value) -> Optional[str]:
    if len(value) != 4 or any(not isinstance(q, (list, tuple)) or len(q) != 2 for q in value):
        return "need 4 pairs [x, y] in metres, one per quadrant"
    if any(abs(c) > 1.0 for q in value for c in q):
        return "quadrant positions are in metres (e.g. -0.1241), values above 1 m look like mm"
    return None


TOP_SCHEMA: Dict[str, Field] = {
    "proposal": Field(int, REQUIRED, "proposal number (overridden by -p)", check=positive),
    "data_root": Field(Optional[str], None, "root of the raw data tree; default $EXTRA_DATA_DATA_ROOT"),
    "calib_dir": Field(str, "calib", "folder of dark constants written by smd_dark"),
    "output_dir": Field(str, "smalldata_output", "folder of the output files (r<run>.h5)"),
    "batch_size": Field(Optional[int], None, "frames per batch: short trains batched whole, a longer train in "
                                             "pieces (whole with pattern.subtract_dark); default: as many as fit "
                                             "batch_megabytes of raw data", "frames", positive),
    "batch_megabytes": Field(float, 64.0, "raw data per batch when batch_size is not set (per rank; calibrated "
                                          "data and temporaries take about 8 times more)", "MiB", positive),
    "progress_interval": Field(float, 10.0, "seconds between progress log lines", "s", positive),
    "stall_timeout": Field(float, 60.0, "a rank making no progress (no batch, no merge step) for this long is named "
                                        "on the console with its train and function (--stall-timeout overrides)",
                           "s", positive),
    "function_time_limit": Field(Optional[float], None, "longest a function may take on one batch; longer ends "
                                                        "the run naming the function, detector and train; default: "
                                                        "no limit", "s", positive),
    "detectors": Field(dict, REQUIRED, "one entry per detector; see below"),
    "point_data": Field(dict, {}, "per-event scalars: group -> name -> source spec; see below"),
    "pulses": Field(Optional[dict], None, "bunch pattern decoding and frame-to-pulse alignment; see below"),
    "digitizer": Field(Optional[dict], None, "digitizer (TIM/MCP) pulse integrals from raw traces; see below"),
    "pattern": Field(Optional[dict], None, "repeating frame labels per train (pumped/unpumped/dark); see below"),
    "rejection": Field(Optional[dict], None, "frame rejection: max frames, XGM/digitizer thresholds, mask file"),
    "delay": Field(Optional[dict], None, "pump-probe delay per frame from stage, trigger and BAM; see below and "
                                         "docs/timing.md"),
}


def _pair(value) -> Optional[str]:
    if len(value) != 2 or value[0] >= value[1]:
        return f"need [start, stop] with start < stop, got {value}"
    return None


def _labels(value) -> Optional[str]:
    if not value or any(not isinstance(v, str) or not v for v in value):
        return f"need a non-empty list of label names, got {value}"
    return None


PULSES_SCHEMA: Dict[str, Field] = {
    "source": Field(str, "SCS_RR_UTC/TSYS/TIMESERVER:outputBunchPattern", "bunch pattern source"),
    "key": Field(str, "data.bunchPatternTable", "bunch pattern key"),
    "sase": Field(int, 3, "SASE of the X-ray pulses", check=one_of(1, 2, 3)),
    "laser": Field(str, "LP_SCS", "pump-laser bit name of euxfel_bunch_pattern's PPL_BITS"),
    "first_slot": Field(Optional[int], None, "bunch-pattern slot of frame 0; default: the train's first "
                                             "SASE3 pulse", "slot", check=non_negative),
    "slot_spacing": Field(Optional[int], None, "slots between frames; default: the SASE3 pulse spacing",
                          "slot", check=positive),
    "laser_bunch_table_position": Field(Optional[int], None, "pump-laser anchor (one of three, needed when the "
                                        "bunch pattern has laser bits): slot of the first laser pulse", "slot",
                                        check=non_negative),
    "laser_bunch_table_offset": Field(Optional[int], None, "pump-laser anchor: slots from the train's first X-ray "
                                      "pulse to the first laser pulse", "slot"),
    "laser_pulse_offset": Field(Optional[float], None, "pump-laser anchor: X-ray pulse spacings from the train's "
                                "first X-ray pulse to the first laser pulse (0: on the first X-ray pulse)", "pulse"),
}

DIGITIZER_SCHEMA: Dict[str, Field] = {
    "name": Field(str, "mcp", "output name: /digitizer/<name>"),
    "source": Field(str, "SCS_UTC1_ADQ/ADC/1:network", "digitizer source"),
    "key": Field(str, "digitizers.channel_1_A.raw.samples", "raw trace key"),
    "first_slot": Field(int, 0, "bunch-pattern slot of the pulse at first_sample", "slot", check=non_negative),
    "first_sample": Field(int, 0, "sample of the pulse at first_slot", "sample", check=non_negative),
    "samples_per_slot": Field(float, 440.0, "trace samples per bunch-pattern slot", "sample", check=positive),
    "baseline_window": Field(List[int], [-20, -5], "baseline samples relative to the pulse [start, stop)",
                             "sample", check=_pair),
    "peak_window": Field(List[int], [-5, 15], "integrated samples relative to the pulse [start, stop)", "sample",
                         check=_pair),
    "units": Field(str, "ADU sample", "unit of the integrals"),
}

PATTERN_SCHEMA: Dict[str, Field] = {
    "labels": Field(List[str], ["image"], "labels of consecutive frames, repeated over the train; a label "
                                          "containing 'dark' marks frames without X-rays", check=_labels),
    "subtract_dark": Field(str, "none", "subtract intra-train darks from the other frames: the matching dark "
                                        "frame, the mean of the matching dark label, or the train's mean dark",
                           check=one_of("none", "matching", "matching_mean", "train_mean")),
    "match_by": Field(str, "next", "matching dark of a label: the next dark label in the pattern, or by name "
                                   "(pumped -> pumped_dark)", check=one_of("next", "name")),
    "from_pulses": Field(bool, False, "label frames by the bunch pattern instead: pumped (X-rays and laser), "
                                      "unpumped (X-rays only), dark (no X-rays); needs a pulses section"),
}

REJECTION_SCHEMA: Dict[str, Field] = {
    "max_frames": Field(Optional[int], None, "reject frames at or beyond this position in the train", "frames",
                        check=positive),
    "xgm": Field(Optional[str], None, "point_data path of the per-pulse XGM for the thresholds, "
                                      "e.g. xgm/sa3_intensity"),
    "xgm_min": Field(Optional[float], None, "reject X-ray frames below this pulse energy", "uJ"),
    "xgm_max": Field(Optional[float], None, "reject frames above this pulse energy", "uJ"),
    "digitizer_min": Field(Optional[float], None, "reject X-ray frames with a smaller digitizer integral"),
    "digitizer_max": Field(Optional[float], None, "reject frames with a larger digitizer integral"),
    "user_mask": Field(Optional[str], None, "frame mask file: .h5 with trainId (T,) and mask (T, frames), or "
                                            ".npy (T, frames) for the run's trains; True = keep"),
    "exclude_dark": Field(bool, False, "reject the pattern's dark frames (they still serve as darks)"),
}

VETO_SCHEMA: Dict[str, Field] = {
    "after": Field(Optional[str], None, "name of the top-level function whose output decides (required "
                                        "without detector)"),
    "detector": Field(Optional[str], None, "a per-train detector (camera) whose output decides instead: this "
                                           "detector's frames of trains where the condition holds, or without "
                                           "that camera's image, skip all its functions"),
    "key": Field(str, REQUIRED, "output key of that function as written, e.g. droplet_n_droplets"),
    "op": Field(str, REQUIRED, "comparison; the frame is vetoed where 'output op value' holds",
                check=one_of("<", "<=", ">", ">=", "==", "!=")),
    "value": Field(float, REQUIRED, "compared value"),
}

CUBE_SCHEMA: Dict[str, Field] = {
    "scan": Field(Optional[str], None, "point_data path of the scan variable, e.g. scan/delay; none: one bin"),
    "edges": Field(Optional[List[float]], None, "bin edges of the scan variable"),
    "width": Field(Optional[float], None, "bin width of the scan variable", check=positive),
    "origin": Field(float, 0.0, "a bin centre when binning by width"),
    "unique": Field(bool, False, "one bin per distinct scan value"),
    "xgm": Field(Optional[str], None, "point_data path of the XGM summed per bin, e.g. xgm/sa3_intensity"),
    "sum_squares": Field(bool, False, "also accumulate the sum of squares (for standard deviations)"),
    "second": Field(Optional[dict], None, "a second scan axis {scan, edges | width | unique, origin}: a cube over "
                                          "two variables, e.g. delay x photon energy (docs/cubes.md)"),
    "assembled": Field(bool, False, "also write the mean images assembled with the geometry (float32, rounded to "
                                    "the sums' fixed-point resolution)"),
}

SUMS_SCHEMA: Dict[str, Field] = {
    "threshold": Field(Optional[float], None, "count per pixel the frames above this value (data units)"),
}

DETECTOR_SCHEMA: Dict[str, Field] = {
    "type": Field(str, "dssc", "detector type: dssc (this table) or camera (the camera table below); DSSC1M "
                              "is the older name of dssc", check=one_of("dssc", "DSSC1M")),
    "dark_run": Field(int, REQUIRED, "run number of the dark run characterised by smd_dark", check=positive),
    "modules": Field(Optional[List[int]], None,
                     "modules to load; default: those the functions need (all 16 if any needs all)",
                     check=_module_list),
    "gain": Field(Optional[float], None, "gain; when set, calibrated data are in photons", "ADU/photon",
                  check=positive),
    "common_mode": Field(str, "none", "common-mode correction", check=one_of("none", "asic_row_median")),
    "common_mode_max": Field(Optional[float], None,
                             "pixels above this (ADU) are lit and excluded from the common-mode median; "
                             "default 5 x the pixel noise", "ADU", check=positive),
    "mask_asic_edges": Field(bool, True, "mask the outermost pixel rows/columns of every ASIC"),
    "embed_dark": Field(bool, False, "copy the dark pedestal and noise into /UserDataCfg/<det> (168 MB for 16 "
                                     "modules and 20 cells); by default only a reference is recorded: path, "
                                     "SHA-256, run, summary (smalldata.calib.darkref.read_output_dark reads it back)"),
    "user_mask": Field(Optional[str], None, "mask file (.npy or .h5 'mask', (M,128,512) or (16,128,512) bool, "
                                            "True = good)"),
    "geometry_file": Field(Optional[str], None, "extra-geom DSSC geometry file; default the one shipped with "
                                                "smalldata (DSSC 1M, June 2019, see docs/geometry.md)"),
    "quadrant_positions": Field(Optional[List[List[float]]], None,
                                "quadrant corner positions [[x, y] x 4]; default the SCS example", "m",
                                check=_quadrants),
    "dark": Field(dict, {}, "thresholds of the dark characterisation (smd_dark); see docs/dark.md"),
    "functions": Field(list, [], "analysis functions: list of {type, name, children, parameters...}"),
    "vetoes": Field(list, [], "conditions on a function's output that skip the later functions; see below"),
    "cube": Field(Optional[dict], None, "binned image cube over a scan variable and pattern labels; see below"),
    "sums": Field(Optional[dict], None, "run sums: mean, max and above-threshold counts per pixel; see below"),
}

def _image_shape(value) -> Optional[str]:
    if len(value) != 2 or any(int(v) < 1 for v in value):
        return "need [rows, columns] of the camera's image, both >= 1"
    return None


CAMERA_DARK_SCHEMA: Dict[str, Field] = {
    "hot_sigma": Field(float, HOT_SIGMA, "a pixel whose dark mean is further than this many robust widths from the "
                                   "median is hot", check=positive),
    "noisy_sigma": Field(float, NOISY_SIGMA, "a pixel whose noise is this many robust widths above the median is noisy",
                         check=positive),
    "dead_noise": Field(float, DEAD_NOISE, "a pixel with less noise is dead", "ADU", check=positive),
}

CAMERA_CUBE_SCHEMA: Dict[str, Field] = {
    "scan": Field(str, REQUIRED, "point_data path of the scan variable (its value per train), e.g. mono/energy"),
    "edges": Field(Optional[List[float]], None, "bin edges of the scan variable"),
    "width": Field(Optional[float], None, "bin width of the scan variable", check=positive),
    "origin": Field(float, 0.0, "a bin centre when binning by width"),
    "unique": Field(bool, False, "one bin per distinct scan value"),
    "keys": Field(Optional[List[str]], None, "per-train outputs to bin, e.g. [hrixs_spectrum]; default every "
                                             "numeric one"),
}

CAMERA_SCHEMA: Dict[str, Field] = {
    "type": Field(str, REQUIRED, "camera", check=one_of("camera")),
    "camera": Field(str, REQUIRED, "camera preset: newton (Viking), hrixs, maranax (hRIXS), fastccd; see "
                                   "docs/detectors/cameras.md"),
    "shape": Field(Optional[List[int]], None, "image [rows, columns] when not the preset's (a region of interest "
                                              "recorded)", "pixel", check=_image_shape),
    "source": Field(Optional[str], None, "the camera's Karabo device when not the preset's (images from "
                                         "<source>:daqOutput)"),
    "train_id_offset": Field(Optional[int], None, "added to the recorded train ids when not the preset's "
                                                  "(the Newton's is -1)"),
    "pixel_size": Field(Optional[float], None, "pixel pitch when not the preset's", "m", check=positive),
    "dark_run": Field(int, REQUIRED, "run number of the dark run characterised by smd_dark", check=positive),
    "gain": Field(Optional[float], None, "gain; when set, calibrated data are in photons", "ADU/photon",
                  check=positive),
    "embed_dark": Field(bool, False, "copy the dark mean and noise into /UserDataCfg/<det>"),
    "user_mask": Field(Optional[str], None, "mask file (.npy or .h5 'mask', (rows, columns) or (1, rows, columns) "
                                            "bool, True = good)"),
    "dark": Field(dict, {}, "thresholds of the camera dark characterisation (smd_dark); see below"),
    "functions": Field(list, [], "analysis functions: list of {type, name, children, parameters...}"),
    "vetoes": Field(list, [], "conditions on a function's output that skip the later functions"),
    "cube": Field(Optional[dict], None, "per-train outputs (e.g. spectra) summed in bins of a scan variable; see "
                                        "below"),
    "sums": Field(Optional[dict], None, "run sums: mean, max and above-threshold counts per pixel"),
}

POINT_SCHEMA: Dict[str, Field] = {
    "source": Field(str, REQUIRED, "Karabo source, e.g. SCS_BLU_XGM/XGM/DOOCS:output"),
    "key": Field(str, REQUIRED, "key, e.g. data.intensitySa3TD or actualPosition.value"),
    "per": Field(str, "train", "'train': one value per train; 'pulse': the train's array, "
                               "entry k for its k-th X-ray frame", check=one_of("train", "pulse")),
    "units": Field(str, "", "unit written to the dataset's units attribute"),
    "filler": Field(Optional[float], None, "per-pulse entries equal to this value are not pulses (NaN): 1.0 "
                                           "for the XGM, which writes it beyond the train's pulses"),
}


def config_markdown() -> str:
    """The key tables of docs/config.md."""
    header = "| key | type | unit | default | meaning |\n| --- | --- | --- | --- | --- |\n"
    return (
        "## Top level\n\n" + header + schema_markdown(TOP_SCHEMA) + "\n\n"
        "## `detectors.<name>`\n\n" + header + schema_markdown(DETECTOR_SCHEMA) + "\n\n"
        "## `detectors.<name>` of `type: camera`\n\n" + header + schema_markdown(CAMERA_SCHEMA) + "\n\n"
        "## `detectors.<name>.cube` of a camera\n\n" + header + schema_markdown(CAMERA_CUBE_SCHEMA) + "\n\n"
        "## `detectors.<name>.dark` of a camera (read by smd_dark)\n\n" + header +
        schema_markdown(CAMERA_DARK_SCHEMA) + "\n\n"
        "## `point_data.<group>.<name>`\n\n" + header + schema_markdown(POINT_SCHEMA) + "\n\n"
        "## `pulses`\n\n" + header + schema_markdown(PULSES_SCHEMA) + "\n\n"
        "## `digitizer`\n\n" + header + schema_markdown(DIGITIZER_SCHEMA) + "\n\n"
        "## `pattern`\n\n" + header + schema_markdown(PATTERN_SCHEMA) + "\n\n"
        "## `rejection`\n\n" + header + schema_markdown(REJECTION_SCHEMA) + "\n\n"
        "## `delay`\n\n" + header + schema_markdown(DELAY_SCHEMA) + "\n\n"
        "## `detectors.<name>.vetoes[i]`\n\n" + header + schema_markdown(VETO_SCHEMA) + "\n\n"
        "## `detectors.<name>.cube`\n\n" + header + schema_markdown(CUBE_SCHEMA) + "\n\n"
        "## `detectors.<name>.sums`\n\n" + header + schema_markdown(SUMS_SCHEMA) + "\n\n"
        "## `detectors.<name>.dark` (read by smd_dark)\n\n" + header + schema_markdown(DARK_SCHEMA) + "\n"
    )
