"""DAMNIT context file: a proposal's table of runs filled from smalldata's outputs.

Copy it to the proposal's DAMNIT folder as ``context.py``. Every variable reads the run's
small-data file ``<SMALLDATA_OUTPUT_DIR>/r<run>.h5`` with plain h5py (no smalldata needed in
DAMNIT's Python); a run without an output yet is skipped until smd_submit (or
``damnit_producer.py``) has made it. The numbers are those of ``smd_runs``'s table.

Set ``SMALLDATA_OUTPUT_DIR`` (the ``output_dir`` of your producer.yaml) in DAMNIT's environment,
or edit ``OUTPUT_DIR`` below; ``SIGNAL`` is the per-frame scalar averaged per frame label.
"""
import os
from pathlib import Path

import h5py
import numpy as np
from damnit_ctx import Skip, Variable

OUTPUT_DIR = Path(os.environ.get("SMALLDATA_OUTPUT_DIR", "/gpfs/exfel/exp/SCS/202601/p002937/scratch/smalldata"))
SIGNAL = os.environ.get("SMALLDATA_SIGNAL", "dssc/speckle_sum")


def _output(run_number):
    path = OUTPUT_DIR / f"r{run_number:04d}.h5"
    if not path.is_file():
        raise Skip(f"no small-data output {path} yet; process the run with smd_submit")
    return path


def _kept(f):
    """Frames the producer kept (rejection reason 0)."""
    return f["rejection/reasons"][()] == 0


@Variable(title="Frames", description="frames (rows) in the small-data output")
def smd_frames(run, run_number: "meta#run_number"):
    with h5py.File(_output(run_number), "r") as f:
        return int(f["trainId"].shape[0])


@Variable(title="Frames kept", description="frames with no rejection reason")
def smd_frames_kept(run, run_number: "meta#run_number"):
    with h5py.File(_output(run_number), "r") as f:
        return int(_kept(f).sum())


@Variable(title="Frames rejected (XGM low)", description="frames below the XGM cut or without an XGM value")
def smd_rejected_xgm_low(run, run_number: "meta#run_number"):
    with h5py.File(_output(run_number), "r") as f:
        bits = dict(f["UserDataCfg/frames/rejection/reason_bits"].attrs)
        return int(np.count_nonzero(f["rejection/reasons"][()] & int(bits["XGM_LOW"])))


@Variable(title="Mean XGM", units="uJ", description="mean SASE3 XGM pulse energy over the frames with a value")
def smd_xgm_mean(run, run_number: "meta#run_number"):
    with h5py.File(_output(run_number), "r") as f:
        xgm = f["xgm/sa3_intensity"][()].astype(np.float64)
    return float(xgm[np.isfinite(xgm)].mean())


@Variable(title="Scan steps", description="distinct positions of the delay stage")
def smd_scan_steps(run, run_number: "meta#run_number"):
    with h5py.File(_output(run_number), "r") as f:
        delay = f["scan/delay"][()]
    return int(len(np.unique(delay[np.isfinite(delay)])))


def _label_mean(run_number, label):
    with h5py.File(_output(run_number), "r") as f:
        labels = [str(x) for x in f["UserDataCfg/frames/pattern"].attrs["labels"]]
        chosen = _kept(f) & (f["pattern/label_id"][()] == labels.index(label))
        values = f[SIGNAL][()].astype(np.float64)
    chosen &= np.isfinite(values)
    return float(values[chosen].mean())


@Variable(title="Signal pumped", description="mean of SIGNAL over the kept pumped frames")
def smd_signal_pumped(run, run_number: "meta#run_number"):
    return _label_mean(run_number, "pumped")


@Variable(title="Signal unpumped", description="mean of SIGNAL over the kept unpumped frames")
def smd_signal_unpumped(run, run_number: "meta#run_number"):
    return _label_mean(run_number, "unpumped")


@Variable(title="Pump-probe ratio", description="pumped over unpumped mean of SIGNAL")
def smd_pump_ratio(run, pumped: "var#smd_signal_pumped", unpumped: "var#smd_signal_unpumped"):
    return pumped / unpumped
