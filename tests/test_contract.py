"""The plug-in contract is checked at set-up, before the first batch is read.

Each broken function below is run through the producer with a counter on
``RunAccess.read_raw`` (the only reader of detector batches): the run must stop with one
line naming the function (config path and class) and the fix, with zero batches read.
"""
import subprocess

import numpy as np
import pytest
from helpers import DATA_RUN, tool
from test_producer import FUNCS, producer_yaml

from smalldata.config.producer import ProducerConfig
from smalldata.errors import ConfigError, SmallDataError
from smalldata.io.runaccess import RunAccess
from smalldata.pipeline.eventloop import run_producer

BROKEN = '''
import numpy as np
from smalldata import DetObjectFunc
from smalldata.errors import ConfigError


class NotStored(DetObjectFunc):
    def __init__(self, name: str = "notstored", level: float = 1.0):
        super().__init__(name)
        self._level = level

    def process(self, frames):
        return {"n": np.ones(len(frames), np.int32)}


class KeyBySize(DetObjectFunc):
    def process(self, frames):
        return {"many" if len(frames) > 1 else "one": np.ones(len(frames))}


class DtypeBySize(DetObjectFunc):
    def process(self, frames):
        return {"s": np.ones(len(frames), np.float64 if len(frames) > 1 else np.float32)}


class InPlace(DetObjectFunc):
    def process(self, frames):
        frames.data[frames.data < 0] = 0
        return {"s": frames.data.reshape(len(frames), -1).sum(axis=1)}


class CheckedLate(DetObjectFunc):
    def __init__(self, name: str = "late", mode: str = "sum"):
        super().__init__(name)
        self.mode = mode

    def process(self, frames):
        if self.mode not in ("sum", "mean"):
            raise ConfigError("mode", f"{self.mode!r} is not a mode; use 'sum' or 'mean'")
        return {"s": np.zeros(len(frames))}


class KeyFromTrain(DetObjectFunc):
    def __init__(self, name: str = "keytrain", from_train: int = 0):
        super().__init__(name)
        self.from_train = from_train

    def process(self, frames):
        late = self.from_train and frames.train_ids.max() >= self.from_train
        return {"late" if late else "early": np.zeros(len(frames))}


class NoiseUndeclared(DetObjectFunc):
    def setFromDet(self, det):
        super().setFromDet(det)
        self._typical = float(np.median(det.noise_in_units))

    def process(self, frames):
        return {"typical": np.full(len(frames), self._typical, np.float32)}


class Declared(DetObjectFunc):
    def output_layout(self):
        return {"s": (np.float32, ())}

    def process(self, frames):
        return {"s": np.zeros(len(frames))}
'''


@pytest.fixture
def counted_reads(monkeypatch):
    """How many detector batches the producer read (``RunAccess.read_raw`` calls)."""
    calls = []
    original = RunAccess.read_raw

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RunAccess, "read_raw", counting)
    return calls


def broken_config(tmp_path, sim_root, calib_dir, monkeypatch, spec):
    (tmp_path / "brokenfuncs.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return producer_yaml(tmp_path, sim_root, calib_dir, [FUNCS[0], spec])


@pytest.mark.parametrize("spec, expected", [
    ({"type": "brokenfuncs:NotStored", "level": 2.0},
     ["parameter 'level' is not stored", "self.level = level"]),
    ({"type": "brokenfuncs:KeyBySize"}, ["return the same keys for every batch"]),
    ({"type": "brokenfuncs:DtypeBySize"}, ["float64", "float32", "must not depend on the batch"]),
    ({"type": "brokenfuncs:InPlace"}, ["writes into its input frames", "frames.data.copy()"]),
    ({"type": "brokenfuncs:CheckedLate", "mode": "median"}, ["'median' is not a mode"]),
    ({"type": "brokenfuncs:Declared"}, ["float64", "output_layout() declares float32"]),
    ({"type": "brokenfuncs:NoiseUndeclared"}, ["noise was not loaded", "needs_noise() returning True"]),
])
def test_violation_fails_before_first_batch(tmp_path, sim_root, calib_dir, monkeypatch, counted_reads, spec,
                                             expected):
    cfg = broken_config(tmp_path, sim_root, calib_dir, monkeypatch, spec)
    with pytest.raises(SmallDataError) as err:
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
    message = str(err.value)
    assert counted_reads == []
    assert "\n" not in message
    assert "detectors.dssc.functions[1]" in message and f"brokenfuncs:{spec['type'].split(':')[1]}" in message
    for part in expected:
        assert part in message, message
    assert not list((tmp_path / "out").glob("*.h5"))


def test_command_line_reports_violation_before_reading(tmp_path, sim_root, calib_dir, monkeypatch, counted_reads,
                                                       capsys):
    from smalldata.cli.smd_producer import main

    cfg = broken_config(tmp_path, sim_root, calib_dir, monkeypatch, {"type": "brokenfuncs:NotStored"})
    assert main(["-r", str(DATA_RUN), "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("INFO ")]
    assert counted_reads == []
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("smd_producer: error: function detectors.dssc.functions[1] (brokenfuncs:NotStored)")
    assert "self.level = level" in lines[0]


def test_command_line_in_place_write(tmp_path, sim_root, calib_dir, monkeypatch):
    cfg = broken_config(tmp_path, sim_root, calib_dir, monkeypatch, {"type": "brokenfuncs:InPlace"})
    result = subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg), "--quiet"],
                            capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "functions[1] (brokenfuncs:InPlace): writes into its input frames" in lines[0]
    assert not (tmp_path / "out").exists()  # the refused run removes the output folder it made


def test_key_changing_later_fails_at_that_batch(tmp_path, sim_root, calib_dir, monkeypatch, counted_reads):
    from smalldata.simulate import read_truth

    from_train = int(read_truth(sim_root, 2937, DATA_RUN)["train_ids"][9])
    cfg = broken_config(tmp_path, sim_root, calib_dir, monkeypatch,
                        {"type": "brokenfuncs:KeyFromTrain", "from_train": from_train})
    with pytest.raises(SmallDataError) as err:
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN, batch_size=8)  # 2 trains of 4 frames per batch
    message = str(err.value)
    assert "functions[1] (brokenfuncs:KeyFromTrain)" in message and "\n" not in message
    assert f"new output 'keytrain_late' for the batch of trains {from_train - 1}..{from_train}" in message
    # trains 8 and 9 are the fifth batch: nothing is read after it
    assert counted_reads[-1][1].tolist() == [from_train - 1, from_train]


def test_builtin_config_errors_at_setup(tmp_path, sim_root, calib_dir, counted_reads):
    # a projection on the whole detector without a module; an autocorrelation too large for its ROI
    for funcs, where, text in [
        ([{"type": "projection", "name": "p", "axis": 0}], "detectors.dssc.functions[0]", "needs 'module'"),
        ([{"type": "roi", "name": "r", "module": 3, "roi": [0, 10, 0, 10],
           "children": [{"type": "autocorrelation", "name": "a", "crop_size": 6}]}],
         "detectors.dssc.functions[0].children[0].crop_size", "too small"),
    ]:
        cfg = producer_yaml(tmp_path, sim_root, calib_dir, funcs)
        with pytest.raises(ConfigError) as err:
            run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
        assert where in str(err.value) and text in str(err.value), str(err.value)
    assert counted_reads == []


def test_runtime_failure_names_the_function(tmp_path, sim_root, calib_dir, monkeypatch):
    (tmp_path / "boom.py").write_text(
        "import numpy as np\nfrom smalldata import DetObjectFunc\n"
        "class Boom(DetObjectFunc):\n"
        "    def process(self, frames):\n"
        "        if frames.train_ids.max() > 10**6:\n"
        "            raise KeyError('no such thing')\n"
        "        return {'s': np.zeros(len(frames))}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = producer_yaml(tmp_path, sim_root, calib_dir, [FUNCS[0], {"type": "boom:Boom"}])
    with pytest.raises(SmallDataError) as err:
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
    assert "KeyError: 'no such thing'" in str(err.value)
    assert "detectors.dssc.functions[1] (boom:Boom)" in str(err.value)


def test_functions_get_read_only_frames():
    from smalldata.funcs.roi import ROI
    from smalldata.testing import make_frames

    seen = []

    class Spy(ROI):
        def process(self, frames):
            seen.append((frames.data.flags.writeable, frames.valid.flags.writeable))
            return super().process(frames)

    roi = ROI(name="r", module=0, roi=[0, 8, 0, 8])
    roi.addFunc(Spy(name="s", module=0, roi=[0, 4, 0, 4]))
    frames = make_frames(np.ones((2, 1, 8, 8)), modules=(0,))
    assert not frames.data.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        frames.data[0] = 1
    roi.run(frames)
    # the child gets the ROI's crop (N, h, w), read-only as well
    assert seen == [(False, False)]


def test_import_error_inside_users_module_is_shown(tmp_path, sim_root, calib_dir, monkeypatch):
    from smalldata.plugin.registry import resolve_function_type

    (tmp_path / "usermod.py").write_text("import numpy as np\n\nimport not_installed_anywhere_xyz\n")
    (tmp_path / "typomod.py").write_text("x = 1\ny = undefined_name + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        resolve_function_type("usermod:Func", "detectors.dssc.functions[0].type")
    message = str(err.value)
    assert "check the dotted path" not in message and "\n" not in message
    assert f"{tmp_path / 'usermod.py'}:3" in message and "No module named 'not_installed_anywhere_xyz'" in message
    with pytest.raises(ConfigError, match=r"typomod.py:2: NameError: name 'undefined_name'"):
        resolve_function_type("typomod:Func")
    with pytest.raises(ConfigError, match="check the dotted path"):
        resolve_function_type("no_such_module_xyz:Func")
    cfg = producer_yaml(tmp_path, sim_root, calib_dir, [{"type": "usermod:Func"}])
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    quiet = subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg)], capture_output=True,
                           text=True, timeout=120, env=env)
    assert quiet.returncode == 2 and len(quiet.stderr.strip().splitlines()) == 1
    assert "usermod.py:3" in quiet.stderr and "Traceback" not in quiet.stderr
    debug = subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg), "--debug"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "not_installed_anywhere_xyz" in debug.stderr
