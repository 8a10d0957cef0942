"""DAMNIT context file that also makes the small-data output of each run.

The variable ``smd_output`` runs ``smd_producer`` for DAMNIT's run (in a SLURM job of DAMNIT's:
``cluster=True``), waiting for the run's files to be complete first (``--wait``); the variables
after it read the output with plain h5py. Copy it to the proposal's DAMNIT folder as
``context.py`` and set, in DAMNIT's environment (or below):

- ``SMALLDATA_CONFIG``: the producer.yaml (its ``output_dir`` is where the output goes),
- ``SMALLDATA_BIN``: the ``bin`` folder of the Python environment with smalldata,
- ``SMALLDATA_RANKS``: MPI ranks of the producer (default 1).
"""
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
from damnit_ctx import Skip, Variable

CONFIG = Path(os.environ.get("SMALLDATA_CONFIG", "/gpfs/exfel/exp/SCS/202601/p002937/usr/Shared/producer.yaml"))
BIN = Path(os.environ.get("SMALLDATA_BIN", "/gpfs/exfel/exp/SCS/202601/p002937/usr/Shared/smalldata/.venv/bin"))
RANKS = int(os.environ.get("SMALLDATA_RANKS", "1"))


@Variable(title="Small-data file", cluster=True, description="the run's output, made by smd_producer")
def smd_output(run, run_number: "meta#run_number", proposal: "meta#proposal"):
    command = [str(BIN / "mpiexec"), "-n", str(RANKS), str(BIN / "smd_producer"), "-p", str(proposal),
               "-r", str(run_number), "-c", str(CONFIG), "--overwrite", "--wait", "3600", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        raise Skip(lines[-1] if lines else f"smd_producer failed with status {result.returncode}")
    output = subprocess.run([str(BIN / "python"), "-c",
                             "import sys; from smalldata.config.producer import ProducerConfig; "
                             "from smalldata.pipeline.eventloop import default_output; "
                             "print(default_output(ProducerConfig.from_file(sys.argv[1]), int(sys.argv[2])))",
                             str(CONFIG), str(run_number)], capture_output=True, text=True, check=True)
    return output.stdout.strip()


@Variable(title="Frames", cluster=True, description="frames (rows) in the small-data output")
def smd_frames(run, path: "var#smd_output"):
    with h5py.File(path, "r") as f:
        return int(f["trainId"].shape[0])


@Variable(title="Mean XGM", units="uJ", cluster=True, description="mean SASE3 XGM pulse energy")
def smd_xgm_mean(run, path: "var#smd_output"):
    with h5py.File(path, "r") as f:
        xgm = f["xgm/sa3_intensity"][()].astype(np.float64)
    return float(xgm[np.isfinite(xgm)].mean())
