"""The whole beamtime: run ranges, fingerprints of how an output was made, SLURM submission and
the state of each run, waiting for a run's files, and the table of runs (docs/beamtime.md)."""
