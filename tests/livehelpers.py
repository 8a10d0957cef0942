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
def serve(run_dir, *options, sock: str = "REP"):
    """``karabo-bridge-serve-files RUN tcp://127.0.0.1:PORT`` in a subprocess; yields (endpoint, process).

    The server is stopped when the block ends, whatever happened in it.
    """
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([tool("karabo-bridge-serve-files"), str(run_dir),
                             endpoint, "-z", sock, *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield endpoint, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


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
