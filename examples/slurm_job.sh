#!/bin/bash
# Process one run on a cluster with 64 MPI ranks (4 nodes x 16).
# Usage: sbatch examples/slurm_job.sh 614 producer.yaml
# For a range of runs (one array task each, the dark first, done runs skipped) use smd_submit:
#   smd_submit -r 610-615,620 -c producer.yaml --ranks 64 --reservation upex_002937 (docs/beamtime.md)
#SBATCH --job-name=smalldata
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=16
#SBATCH --time=02:00:00
#SBATCH --output=smalldata-%j.log
set -euo pipefail
RUN=${1:?run number}
CONFIG=${2:-producer.yaml}
source "${SMALLDATA_VENV:-$HOME/smalldata/.venv}/bin/activate"
# the output file appears only when complete; a failed job leaves none behind
mpirun -n "${SLURM_NTASKS}" smd_producer -r "${RUN}" -c "${CONFIG}"
