"""The fused hot path: one compiled pass over the raw pixels calibrates and feeds the built-ins."""
