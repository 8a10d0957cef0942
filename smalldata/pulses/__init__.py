"""Per-frame facts: bunch pattern, frame patterns, digitizer integrals, rejection."""
