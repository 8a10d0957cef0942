"""The live producer on extra-data's own karabo-bridge server (127.0.0.1): equal to offline, losses, faults."""
import os
import signal
import subprocess

import h5py
import numpy as np
import pytest
from helpers import DATA_RUN, PROPOSAL, mpiexec, read_all, tool
from livehelpers import live_yaml, serve, serve_online, wait_for

from smalldata.config.producer import ProducerConfig
from smalldata.live.livefile import growing_path
from smalldata.pipeline.eventloop import run_producer
from smalldata.simulate import read_truth, run_path

SLOW_FUNC = '''
import time
import numpy as np
from smalldata.plugin.detfunc import DetObjectFunc
class Slow(DetObjectFunc):
    def __init__(self, name: str = "slow", sleep: float = 0.0):
        super().__init__(name)
        self.sleep = sleep
    def process(self, frames):
        time.sleep(self.sleep)
        return {"n": np.ones(len(frames), np.int32)}
'''


def assert_same(reference: dict, live: dict, rows=None):
    """Every dataset of ``reference`` (its first ``rows`` rows of per-event data, if given) is in ``live``."""
    assert set(reference) == set(live)
    for key, ref in reference.items():
        got = live[key]
        if rows is not None and not key.startswith("Sums") and key in ("trainId", "pulseId", "cellId") \
                or rows is not None and not key.startswith("Sums") and ref.shape[:1] == reference["trainId"].shape:
            ref = ref[:rows]
        assert got.shape == ref.shape, key
        assert np.array_equal(got, ref, equal_nan=ref.dtype.kind == "f"), key


@pytest.fixture(scope="module")
def offline(tmp_path_factory, sim_root, calib_dir):
    """The offline output of the data run with the live config."""
    tmp = tmp_path_factory.mktemp("live_offline")
    cfg = live_yaml(tmp, sim_root, calib_dir)
    out = tmp / "offline.h5"
    run_producer(ProducerConfig.from_file(cfg), DATA_RUN, output=out)
    return cfg, read_all(out)


def live_cli(cfg, endpoint, output, *options, ranks=1, env=None, timeout=120):
    cmd = ([] if ranks == 1 else mpiexec(ranks)) + [tool("smd_producer"), "--bridge", endpoint, "-c", str(cfg),
                                                    "--output", str(output), "--timeout", "2", *options]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("layout", ["modules", "stacked"])
def test_live_equals_offline_one_rank(tmp_path, sim_root, offline, layout):
    from smalldata.live.producer import run_live

    cfg, reference = offline
    options = ("--append-detector-modules",) if layout == "stacked" else ()
    out = tmp_path / "live.h5"
    with serve(run_path(sim_root, PROPOSAL, DATA_RUN), *options) as (endpoint, _):
        summary = run_live(ProducerConfig.from_file(cfg), endpoint, out, timeout=2.0)
    assert_same(reference, read_all(out))
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    assert summary.trains == len(truth["train_ids"]) and summary.signum is None
    with h5py.File(out, "r") as f:
        assert f["meta"].attrs["source"] == "karabo-bridge"
        # module 3 misses two trains in the simulated run: kept (invalid there), counted by source
        assert f["meta/losses"].attrs["stream_missing_source SCS_DET_DSSC1M-1/DET/3CH0:xtdf"] == 2
        assert f["meta/losses"].attrs["stream_gap"] == 0 and f["meta/losses"].attrs["stream_duplicate"] == 0
    assert not growing_path(out).exists()


def test_live_online_layout_equals_offline(tmp_path, sim_root, offline):
    """The online pipeline's raw layout (modules, x, y, cells) gives the offline numbers too."""
    from smalldata.live.producer import run_live

    cfg, reference = offline
    out = tmp_path / "online.h5"
    with serve_online(run_path(sim_root, PROPOSAL, DATA_RUN)) as (endpoint, _):
        run_live(ProducerConfig.from_file(cfg), endpoint, out, timeout=2.0)
    assert_same(reference, read_all(out))


@pytest.mark.mpi
@pytest.mark.parametrize("layout", ["modules", "stacked"])
def test_live_equals_offline_two_ranks(tmp_path, sim_root, offline, layout):
    cfg, reference = offline
    options = ("--append-detector-modules",) if layout == "stacked" else ()
    out = tmp_path / "live2.h5"
    with serve(run_path(sim_root, PROPOSAL, DATA_RUN), *options) as (endpoint, _):
        result = live_cli(cfg, endpoint, out, ranks=2)
    assert result.returncode == 0, result.stderr
    assert_same(reference, read_all(out))
    with h5py.File(out, "r") as f:
        per_rank = f["meta/losses"].attrs["stream_trains_per_rank"]
        assert f["meta"].attrs["n_ranks"] == 2 and len(per_rank) == 2 and min(per_rank) > 0, per_rank
        assert f["meta/losses"].attrs["stream_duplicate"] == 0


@pytest.mark.parametrize("stop", ["server killed", "SIGINT"])
def test_stopped_mid_run(tmp_path, sim_root, calib_dir, offline, stop):
    """Server killed, or the producer interrupted: the file holds exactly the trains processed, equal to
    offline; the end and the losses are reported; the exit status says how the run ended (SIGTERM takes
    the same path as SIGINT)."""
    _, reference = offline
    (tmp_path / "slowmod.py").write_text(SLOW_FUNC)
    cfg = live_yaml(tmp_path, sim_root, calib_dir, batch_size=4)
    text = cfg.read_text().replace("functions:\n", "functions:\n    - {type: 'slowmod:Slow', sleep: 0.25}\n", 1)
    cfg.write_text(text)
    out = tmp_path / "killed.h5"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    with serve(run_path(sim_root, PROPOSAL, DATA_RUN)) as (endpoint, server):
        proc = subprocess.Popen([tool("smd_producer"), "--bridge", endpoint, "-c", str(cfg), "--output", str(out),
                                 "--timeout", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        rows = lambda: _growing_rows(growing_path(out))  # noqa: E731
        if not wait_for(lambda: rows() >= 40, 150):
            proc.kill()
            pytest.fail(f"the live file never grew: {proc.communicate()[1][-2000:]}")
        if stop == "server killed":
            server.send_signal(signal.SIGKILL)
            server.wait(10)
        else:
            proc.send_signal(getattr(signal, stop))
        stdout, stderr = proc.communicate(timeout=60)
    signum = None if stop == "server killed" else getattr(signal, stop)
    assert proc.returncode == (0 if signum is None else 128 + signum), stderr
    live = read_all(out)
    n = len(live["trainId"])
    n_trains = len(np.unique(live["trainId"]))
    assert 40 <= n < len(reference["trainId"])
    ref = {k: v for k, v in reference.items() if not k.startswith("Sums")}
    assert_same(ref, {k: v for k, v in live.items() if not k.startswith("Sums") and not k.startswith("dssc/slow")},
                rows=n)
    with h5py.File(out, "r") as f:
        ended_by = "stream ended (timeout)" if signum is None else f"stopped by {stop}"
        assert f["meta"].attrs["ended_by"] == ended_by
        assert f["meta/losses"].attrs["stream_trains_used"] == n_trains
        assert f["meta/losses"].attrs["stream_missing_source SCS_DET_DSSC1M-1/DET/3CH0:xtdf"] == 2
    assert ended_by in stdout and "lost: trains without source SCS_DET_DSSC1M-1/DET/3CH0" in stdout


def _growing_rows(path) -> int:
    if not path.exists():
        return 0
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            return f["trainId"].shape[0] if "trainId" in f else 0
    except OSError:
        return 0


def test_wrong_endpoint_and_missing_sources_are_one_line(tmp_path, sim_root, calib_dir):
    from livehelpers import free_port

    from smalldata.errors import DataError
    from smalldata.live.producer import run_live

    cfg = live_yaml(tmp_path, sim_root, calib_dir)
    result = live_cli(cfg, f"tcp://127.0.0.1:{free_port()}", tmp_path / "a.h5", "--first-timeout", "1")
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("INFO ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert "no train from tcp://127.0.0.1" in result.stderr and "--bridge" in result.stderr
    result = live_cli(cfg, "127.0.0.1:4545", tmp_path / "b.h5")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "not an endpoint" in result.stderr
    # the same errors in the process (the command turns them into the line above)
    run = run_path(sim_root, PROPOSAL, DATA_RUN)
    config = ProducerConfig.from_file(cfg)
    with serve(run, "--source", "SCS_BLU_XGM*") as (endpoint, _):
        with pytest.raises(DataError, match="carries no DSSC source") as err:
            run_live(config, endpoint, tmp_path / "c.h5", timeout=2.0)
    assert "\n" not in str(err.value) and "SCS_DET_DSSC1M-1/DET/<m>CH0:xtdf" in str(err.value)
    with serve(run, "--source", "SCS_[BDR]*") as (endpoint, _):  # no delay stage: a configured point source
        with pytest.raises(DataError, match="point_data.scan.delay") as err:
            run_live(config, endpoint, tmp_path / "d.h5", timeout=2.0)
    assert "\n" not in str(err.value) and "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY" in str(err.value)
    for name in "abcd":
        assert not (tmp_path / f"{name}.h5").exists() and not growing_path(tmp_path / f"{name}.h5").exists()


def test_publish_reduced_rows(tmp_path, sim_root, offline):
    """--publish: a subscriber on 127.0.0.1 receives each train's rows as they are in the output;
    --max-trains: the first trains only."""
    import threading

    from karabo_bridge import Client
    from livehelpers import free_port

    from smalldata.live.producer import run_live
    from smalldata.live.publish import SOURCE

    cfg, _ = offline
    port = free_port()
    received, done = {}, threading.Event()

    def listen():
        client = Client(f"tcp://127.0.0.1:{port}", sock="SUB", timeout=1)
        try:
            while not done.is_set():
                try:
                    data, meta = client.next()
                except TimeoutError:
                    continue
                received[meta[SOURCE]["timestamp.tid"]] = data[SOURCE]
        finally:
            client._context.destroy(linger=0)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    out = tmp_path / "published.h5"
    try:
        with serve(run_path(sim_root, PROPOSAL, DATA_RUN)) as (endpoint, _):
            summary = run_live(ProducerConfig.from_file(cfg), endpoint, out, timeout=2.0, max_trains=10,
                               publish=f"tcp://127.0.0.1:{port}")
    finally:
        done.set()
        listener.join(10)
    rows = read_all(out)
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    assert np.array_equal(np.unique(rows["trainId"]), truth["train_ids"][:10]) and summary.trains == 10
    assert summary.ended_by == "--max-trains 10 reached"
    assert received, "no train was published"
    for tid, data in received.items():
        sel = rows["trainId"] == tid
        assert np.array_equal(data["trainId"], rows["trainId"][sel])
        for key in ("dssc/roi_a_sum", "xgm/sa3_intensity", "dssc/roi_a_image", "pattern/label_id"):
            assert np.array_equal(data[key.replace("/", ".")], rows[key][sel], equal_nan=True), key


FAILING_FUNC = '''
import numpy as np
from smalldata.plugin.detfunc import DetObjectFunc
class Fails(DetObjectFunc):
    def __init__(self, name: str = "fails", from_train: int = 0):
        super().__init__(name)
        self.from_train = from_train
    def process(self, frames):
        if frames.train_ids.max() >= self.from_train:
            raise RuntimeError("planted failure")
        return {"n": np.ones(len(frames), np.int32)}
'''


@pytest.mark.mpi
def test_failing_rank_stops_every_rank(tmp_path, sim_root, calib_dir):
    """A function failing on one rank mid-stream: one line, exit 2, no output and no growing file left."""
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    (tmp_path / "failmod.py").write_text(FAILING_FUNC)
    cfg = live_yaml(tmp_path, sim_root, calib_dir, functions=[
        {"type": "roi", "name": "roi_full", "module": 2, "roi": [0, 128, 0, 512]},
        {"type": "failmod:Fails", "from_train": int(truth["train_ids"][10])}])
    out = tmp_path / "failed.h5"
    with serve(run_path(sim_root, PROPOSAL, DATA_RUN)) as (endpoint, _):
        result = live_cli(cfg, endpoint, out, ranks=2, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(("INFO", "WARNING"))]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and "planted failure" in lines[0] and "no output written" in lines[0], lines
    assert not out.exists() and not growing_path(out).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".failed")] == []


def test_sub_socket_refused_on_several_ranks(tmp_path, sim_root, calib_dir):
    """Every SUB client gets every train: several ranks would duplicate the work."""
    from smalldata.errors import SmallDataError
    from smalldata.live.producer import run_live

    class TwoRanks:
        def Get_rank(self):
            return 0

        def Get_size(self):
            return 2

    cfg = ProducerConfig.from_file(live_yaml(tmp_path, sim_root, calib_dir))
    with pytest.raises(SmallDataError, match="--sock SUB on 2 ranks"):
        run_live(cfg, "tcp://127.0.0.1:1", tmp_path / "x.h5", sock="SUB", comm=TwoRanks())


def test_signal_before_the_first_train(tmp_path, sim_root, calib_dir):
    """SIGINT while waiting for the first train: one line, exit 130, nothing written."""
    from livehelpers import free_port

    cfg = live_yaml(tmp_path, sim_root, calib_dir)
    out = tmp_path / "never.h5"
    proc = subprocess.Popen([tool("smd_producer"), "--bridge", f"tcp://127.0.0.1:{free_port()}", "-c", str(cfg),
                             "--output", str(out), "--first-timeout", "60"], stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # the producer says when it waits (the signal handler is in place then)
        seen.append(line)
        if "waiting up to 60 s for the first train" in line:
            break
    proc.send_signal(signal.SIGINT)
    stderr = "".join(seen) + proc.communicate(timeout=60)[1]
    lines = [line for line in stderr.strip().splitlines() if not line.startswith(("INFO", "WARNING"))]
    assert proc.returncode == 130 and len(lines) == 1 and "SIGINT before the first train" in lines[0], stderr
    assert not out.exists() and not growing_path(out).exists()


@pytest.mark.mpi
def test_undecodable_message_mid_stream_stops_every_rank(tmp_path, sim_root, calib_dir):
    """A message of another shape after 10 good trains: one line naming it, exit 2, nothing published."""
    cfg = live_yaml(tmp_path, sim_root, calib_dir)
    out = tmp_path / "bad.h5"
    with serve_online(run_path(sim_root, PROPOSAL, DATA_RUN), bad_from=10) as (endpoint, _):
        result = live_cli(cfg, endpoint, out, ranks=2)
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(("INFO", "WARNING"))]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and "SCS_CDIDET_DSSC/CAL/APPEND_RAW: image.data of shape (16, 512, 64" in lines[0], lines
    assert not out.exists() and not growing_path(out).exists()
