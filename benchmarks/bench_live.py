"""Live throughput: trains per second from a local karabo bridge against the offline producer.

On the simulated full-detector run of ``bench_fulldet`` (all 16 DSSC modules, 20 frames per
train) and its *standard config* (azimuthal over the detector, three ROIs with projections, XGM
per pulse, delay per train), warm page cache, rounds alternating:

1. offline: ``smd_producer -r`` on 1 rank, its loop rate (frames per second after set-up) in
   trains per second;
2. live: extra-data's ``karabo-bridge-serve-files`` (REP) serving the same run on 127.0.0.1 and
   ``smd_producer --bridge`` with REQ clients on 1 and 2 ranks; the sustained rate is the trains
   used over ``/meta`` ``loop_s`` (end of set-up to the last round with trains);
3. a sender that outpaces the producer: a PUB sender (:data:`PUB_SENDER`, in a subprocess) that
   sends the run's trains at ``--rate`` Hz (the facility's 10 by default) without waiting for its
   subscriber (a train that does not fit the socket's queue is dropped, as a bridge does), and
   the producer with ``--sock SUB`` on 1 rank with the demo config (``configs/producer.yaml``:
   droplets on the whole detector, cube, run sums; slower than that): the fraction of the trains
   between the first and the last received that never arrived (``/meta/losses`` ``stream_gap``
   over ``stream_span``), and the trains per second used. (``karabo-bridge-serve-files -z PUB``
   is no such sender: it waits until its subscriber can take the next train.)

Writes ``benchmarks/results/live.json``.

    python benchmarks/bench_live.py [--trains 40] [--repeat 2] [--rate 10]
"""
from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import h5py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fulldet import DARK_RUN, DATA_RUN, demo_config, prepare_run, standard_config  # noqa: E402
from bench_producer import producer_run  # noqa: E402
from common import (  # noqa: E402
    RESULTS_DIR,
    cpu_pressure,
    format_table,
    machine_info,
    run_command,
    run_files,
    stats,
    tool,
    warm_files,
    write_config,
    write_results,
)
from smalldata.simulate import run_path  # noqa: E402

log = logging.getLogger("bench_live")
FRAMES_PER_TRAIN = 20
#: A PUB sender that never waits for its subscriber: argv run, endpoint, rate (Hz), passes over the run
#: (each under new train ids), start delay (s).
PUB_SENDER = """
import sys, time
import zmq
from extra_data import RunDirectory
from karabo_bridge.serializer import serialize
run, endpoint, rate, passes, delay = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
context = zmq.Context()
socket = context.socket(zmq.PUB)
socket.set_hwm(1)
socket.bind(endpoint)
time.sleep(delay)  # the subscriber connects meanwhile
sent = dropped = 0
tick = time.monotonic()
data = RunDirectory(run)
n_trains = len(data.train_ids)
for p in range(passes):  # every pass under new train ids: a longer stream
    for tid, train in data.trains():
        for values in train.values():
            values["metadata"]["timestamp.tid"] = int(tid) + p * n_trains
            for key in [k for k, v in values.items() if getattr(v, "dtype", None) == object]:
                del values[key]  # strings do not serialise, as karabo-bridge-serve-files drops them
        try:
            socket.send_multipart(serialize(train), copy=False, flags=zmq.NOBLOCK)
            sent += 1
        except zmq.Again:
            dropped += 1
        tick += 1.0 / rate
        time.sleep(max(0.0, tick - time.monotonic()))
print(sent, dropped)
socket.close(linger=2000)
context.term()
"""


def free_port() -> int:
    """A TCP port free on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_run(config: Path, run_dir: Path, output: Path, n_ranks: int, server_sock: str = "REP",
             client_sock: str = "REQ") -> Dict[str, float]:
    """Serve ``run_dir`` on 127.0.0.1 and run the live producer on it; its rates and losses."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = subprocess.Popen([tool("karabo-bridge-serve-files"), str(run_dir), endpoint, "-z", server_sock],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cmd = [tool("smd_producer"), "--bridge", endpoint, "--sock", client_sock, "-c", str(config), "--output",
               str(output), "--overwrite", "--timeout", "3"]
        if n_ranks > 1:
            cmd = [tool("mpiexec"), "-n", str(n_ranks)] + cmd
        result = run_command(cmd).check("smd_producer --bridge")
    finally:
        server.terminate()
        server.wait(30)
    with h5py.File(output, "r") as f:
        losses = f["meta/losses"].attrs
        used, span, gap = int(losses["stream_trains_used"]), int(losses["stream_span"]), int(losses["stream_gap"])
        loop_s = float(f["meta"].attrs["loop_s"])
    return {"trains": used, "span": span, "gap": gap, "lost_fraction": gap / max(span, 1), "loop_s": loop_s,
            "trains_per_s": used / loop_s if loop_s > 0 else 0.0, "wall_s": result.wall_s}


def pub_run(config: Path, run_dir: Path, output: Path, rate: float) -> Dict[str, float]:
    """The :data:`PUB_SENDER` at ``rate`` Hz and the live producer as its subscriber (1 rank)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sender = subprocess.Popen([sys.executable, "-c", PUB_SENDER, str(run_dir), endpoint, str(rate), "3", "8"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        cmd = [tool("smd_producer"), "--bridge", endpoint, "--sock", "SUB", "-c", str(config), "--output",
               str(output), "--overwrite", "--timeout", "5", "--first-timeout", "60"]
        run_command(cmd).check("smd_producer --bridge --sock SUB")
        sent, dropped = (int(v) for v in sender.communicate(timeout=300)[0].split())
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait(30)
    with h5py.File(output, "r") as f:
        losses = f["meta/losses"].attrs
        used, span, gap = int(losses["stream_trains_used"]), int(losses["stream_span"]), int(losses["stream_gap"])
        loop_s = float(f["meta"].attrs["loop_s"])
    rate_used = used / loop_s if loop_s > 0 else 0.0
    return {"trains": used, "span": span, "gap": gap, "lost_fraction": gap / max(span, 1), "loop_s": loop_s,
            "trains_per_s": rate_used, "sender_sent": sent, "sender_dropped": dropped,
            "expected_lost_fraction": max(0.0, 1.0 - rate_used / rate)}


def parse_args(argv: List[str]) -> argparse.Namespace:
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trains", type=int, default=40, help="trains of the simulated run (20 frames each)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of every measurement")
    parser.add_argument("--rate", type=float, default=10.0, help="trains per second of the PUB sender")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Measure and write ``results/live.json``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from smalldata.simulate import SimulationConfig

    sim = SimulationConfig.demo(n_trains=args.trains, dark_trains=30, sequence_trains=25)
    prep = prepare_run(sim, DATA_RUN, DARK_RUN, "fulldet")
    root, work = prep["root"], prep["work"]
    std = write_config(work / "standard.yaml", standard_config(root, work))
    demo = write_config(work / "demo.yaml", demo_config(root, work))
    warm_files(run_files(root, DATA_RUN, "*DSSC*"))
    run_dir = run_path(root, 2937, DATA_RUN)
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    report: Dict[str, object] = {"machine": machine_info(), "cpu_pressure_start": cpu_pressure(),
                                 "trains": args.trains, "frames_per_train": FRAMES_PER_TRAIN,
                                 "pub_rate_hz": args.rate}
    rounds: Dict[str, List[float]] = {"offline_1rank": [], "live_1rank": [], "live_2ranks": [],
                                      "pub_sub_lost_fraction": [], "pub_sub_trains_per_s": []}
    for r in range(args.repeat):
        offline = producer_run(std, DATA_RUN, out / "offline.h5", None, n_ranks=1)
        rounds["offline_1rank"].append(offline["loop_fps"] / FRAMES_PER_TRAIN)
        for key, ranks in (("live_1rank", 1), ("live_2ranks", 2)):
            res = live_run(std, run_dir, out / f"{key}.h5", ranks)
            if res["trains"] != args.trains or res["gap"]:
                raise SystemExit(f"{key}: {res['trains']} of {args.trains} trains, {res['gap']} lost with REQ/REP")
            rounds[key].append(res["trains_per_s"])
        res = pub_run(demo, run_dir, out / "pubsub.h5", args.rate)
        rounds["pub_sub_lost_fraction"].append(res["lost_fraction"])
        rounds["pub_sub_trains_per_s"].append(res["trains_per_s"])
        report.setdefault("pub_sub_runs", []).append(res)
        log.info("round %d: %s", r + 1, {k: round(v[-1], 3) for k, v in rounds.items()})
    report["results"] = {k: stats(v) for k, v in rounds.items()}
    med = {k: report["results"][k]["median"] for k in rounds}
    report["ratios"] = {"live_1rank_vs_offline": med["live_1rank"] / med["offline_1rank"],
                        "live_2ranks_vs_live_1rank": med["live_2ranks"] / med["live_1rank"]}
    report["cpu_pressure_end"] = cpu_pressure()
    print(format_table([(k, f"{med[k]:.3g}") for k in rounds] +
                       [(k, f"{v:.2f}") for k, v in report["ratios"].items()], ["measure", "median"]))
    write_results(report, RESULTS_DIR / "live.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
