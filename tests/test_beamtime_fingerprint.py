"""The fingerprint of a config and its darks: layout and comments do not count, values and darks do;
an output's fingerprint read back from the output equals the one of its config and dark file."""
from __future__ import annotations

import hashlib

from beamtime_helpers import PROPOSAL, RUNS, shared_range

from smalldata.beamtime.fingerprint import (FINGERPRINT_DIGITS, config_fingerprint, dark_checksums, fingerprint,
                                            output_fingerprint)

TEXT = "proposal: 2937\nrejection: {xgm: xgm/sa3_intensity, xgm_min: 300.0}\n"


def test_layout_and_comments_do_not_count():
    relaid = "# a comment\nrejection:\n  xgm_min: 300.0   # uJ\n  xgm: xgm/sa3_intensity\nproposal: 2937\n"
    darks = {"dssc": "ab" * 32}
    assert fingerprint(TEXT, darks) == fingerprint(relaid, darks)
    assert len(fingerprint(TEXT, darks)) == FINGERPRINT_DIGITS


def test_values_and_darks_count():
    darks = {"dssc": "ab" * 32}
    base = fingerprint(TEXT, darks)
    assert fingerprint(TEXT.replace("300.0", "301.0"), darks) != base
    assert fingerprint(TEXT, {"dssc": "cd" * 32}) != base
    assert fingerprint(TEXT, {}) != base


def test_output_fingerprint_equals_its_config_and_dark(tmp_path_factory):
    produced = shared_range(tmp_path_factory)
    sums = dark_checksums(produced["config"], PROPOSAL)
    dark = next((produced["tmp"] / "calib").glob("dark_*.h5"))
    assert sums == {"dssc": hashlib.sha256(dark.read_bytes()).hexdigest()}
    expected = config_fingerprint(produced["config"], PROPOSAL)
    assert expected == fingerprint(produced["config_path"].read_text(), sums)
    for run in RUNS:
        assert output_fingerprint(produced["out"] / f"r{run:04d}.h5") == expected
