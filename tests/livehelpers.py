"""Helpers of the live tests: extra-data's own karabo-bridge server on 127.0.0.1, a live config."""
import contextlib
import socket
import subprocess
import time

import yaml
from helpers import DARK_RUN, PROPOSAL, tool


def free_port() -> int:
    """A TCP port free on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(command):
    """A server subprocess, stopped when the block ends, whatever happened in it."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.contextmanager
def serve(run_dir, *options, sock: str = "REP"):
    """``karabo-bridge-serve-files RUN tcp://127.0.0.1:PORT`` in a subprocess; yields (endpoint, process).

    The server is stopped when the block ends, whatever happened in it.
    """
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with _server([tool("karabo-bridge-serve-files"), str(run_dir), endpoint, "-z", sock, *options]) as proc:
        yield endpoint, proc


def live_yaml(tmp_path, sim_root, calib_dir, name="live.yaml", functions=None, **sections) -> str:
    """A config using pulses, pattern, rejection, an ROI with a child, droplets, a cube and run sums."""
    functions = functions or [
        {"type": "roi", "name": "roi_a", "module": 3, "roi": [10, 60, 100, 300], "write_image": True,
         "children": [{"type": "projection", "name": "proj", "axis": 0}]},
        {"type": "roi", "name": "roi_full", "module": 2, "roi": [0, 128, 0, 512]},
        {"type": "droplet", "name": "droplet", "threshold": 20.0, "threshold_low": 10.0},
    ]
    cfg = {
        "proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": str(calib_dir),
        "output_dir": str(tmp_path / "out"), "batch_size": 8,
        "point_data": {
            "xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD",
                                      "per": "pulse", "units": "uJ", "filler": 1.0}},
            "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value",
                               "units": "mm"}},
        },
        "pulses": {"laser_pulse_offset": 0},
        "pattern": {"labels": ["pumped", "unpumped"]},
        "rejection": {"xgm": "xgm/sa3_intensity", "xgm_min": 300.0},
        "detectors": {"dssc": {"dark_run": DARK_RUN, "mask_asic_edges": False, "functions": functions,
                               "cube": {"scan": "scan/delay", "edges": [-1.0, 0.5, 2.0, 4.0],
                                        "xgm": "xgm/sa3_intensity"},
                               "sums": {"threshold": 20.0}}},
    }
    cfg.update(sections)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def wait_for(predicate, limit: float = 60.0, step: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true (True) or ``limit`` seconds passed (False)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


ONLINE_SERVER = '''
import sys
import numpy as np
from extra_data import RunDirectory
from karabo_bridge.server import Sender

run, endpoint, bad_from = sys.argv[1], sys.argv[2], int(sys.argv[3])
sender = Sender(endpoint, sock="REP")
for i, (tid, data) in enumerate(RunDirectory(run).trains()):
    modules = {int(s.split("/")[2].split("CH")[0]): data.pop(s) for s in list(data) if s.startswith("SCS_DET_DSSC")}
    with_frames = {m: v for m, v in modules.items() if "image.data" in v}
    first = next(iter(with_frames.values()))
    n = first["image.data"].shape[0]
    stack = np.zeros((16, 512, 128, n), np.uint16)  # (modules, x, y, cells), as the online pipeline sends
    for m, v in with_frames.items():
        stack[m] = np.transpose(v["image.data"][:, 0], (2, 1, 0))
    meta = dict(first["metadata"], source="SCS_CDIDET_DSSC/CAL/APPEND_RAW")
    if 0 <= bad_from <= i:  # a message of another shape (e.g. the pipeline reconfigured)
        stack = stack[:, :, :64]
    data["SCS_CDIDET_DSSC/CAL/APPEND_RAW"] = {"metadata": meta, "image.data": stack,
                                              "image.cellId": first["image.cellId"][:, 0],
                                              "image.pulseId": first["image.pulseId"][:, 0]}
    sender.send(data)
sender.server_socket.close(linger=-1)
'''


@contextlib.contextmanager
def serve_online(run_dir, bad_from: int = -1):
    """A REP server on 127.0.0.1 sending ``run_dir`` in the online pipeline's stacked raw layout
    (from train index ``bad_from`` on, if >= 0, frames of a wrong shape)."""
    import sys

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with _server([sys.executable, "-c", ONLINE_SERVER, str(run_dir), endpoint, str(bad_from)]) as proc:
        yield endpoint, proc
