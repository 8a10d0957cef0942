"""A function's config values against its constructor: annotations, finite numbers, names, alias bombs, set-up."""
import os
import subprocess
import time

import pytest
from faults import fault_config
from helpers import DATA_RUN, tool

from smalldata.config.producer import ProducerConfig
from smalldata.errors import ConfigError, FunctionError, SmallDataError
from smalldata.pipeline.eventloop import run_producer

USER_FUNC = '''
from typing import Dict, List, Optional, Sequence, Tuple
import numpy as np
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.params import FloatOrNaN

class Spot(DetObjectFunc):
    def __init__(self, name: str = "bright_spot", roi: Sequence[int] = (0, 8, 0, 8),
                 centre: Tuple[float, float] = (0.0, 0.0), level: Optional[float] = None,
                 fill: FloatOrNaN = float("nan"), weights: Dict[str, List[float]] = None, fail: str = ""):
        super().__init__(name)
        y0, y1, x0, x1 = roi
        self.roi, self.centre, self.level, self.fill, self.weights, self.fail = roi, centre, level, fill, weights, fail

    def setFromDet(self, det):
        super().setFromDet(det)
        if self.fail:
            raise KeyError(self.fail)

    def process(self, frames):
        return {"n": np.zeros(len(frames))}

class NoDefault(DetObjectFunc):
    def __init__(self, name: str, level: float = 1.0):
        super().__init__(name)
        self.level = level

    def process(self, frames):
        return {"n": np.zeros(len(frames))}
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch, request):
    """A module with user functions under a name of this test's own; returns the name."""
    name = "userfuncs_" + request.node.name.split("[")[0][5:] + str(abs(hash(request.node.name)) % 10000)
    (tmp_path / f"{name}.py").write_text(USER_FUNC)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def load(tmp_path, sim_root, calib_dir, functions):
    return ProducerConfig.from_file(fault_config(tmp_path, sim_root, calib_dir, functions=functions))


def refused(tmp_path, sim_root, calib_dir, functions, *expected):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, sim_root, calib_dir, functions)
    message = str(info.value)
    assert "\n" not in message and all(e in message for e in expected), message
    return message


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), float("-inf")])
def test_roi_threshold_not_finite_is_refused(tmp_path, sim_root, calib_dir, threshold):
    refused(tmp_path, sim_root, calib_dir, [{"type": "roi", "module": 2, "roi": [0, 8, 0, 8], "threshold": threshold}],
            "detectors.dssc.functions[0].threshold:", repr(threshold), "finite float or null",
            "smalldata.funcs.roi:ROI")


@pytest.mark.parametrize("key,value,expected", [
    ("roi", "abc", "list of int"),
    ("roi", [0, 8, 0, 8.5], "list of int"),
    ("centre", [1.0, 2.0, 3.0], "list of 2 (finite float, finite float)"),
    ("centre", [1.0, float("nan")], "list of 2 (finite float, finite float)"),
    ("weights", {"a": ["x"]}, "mapping of str to list of finite float"),
    ("level", True, "finite float or null"),
])
def test_user_annotations_are_checked(tmp_path, sim_root, calib_dir, user_module, key, value, expected):
    refused(tmp_path, sim_root, calib_dir, [{"type": f"{user_module}:Spot", key: value}],
            f"detectors.dssc.functions[0].{key}:", repr(value)[:20], expected, f"{user_module}:Spot")


def test_fitting_values_pass_and_nan_where_the_parameter_allows_it(tmp_path, sim_root, calib_dir, user_module):
    config = load(tmp_path, sim_root, calib_dir, [{"type": f"{user_module}:Spot", "roi": [0, 4, 0, 4],
                                                   "centre": [1, 2.5], "fill": float("nan"), "level": 3,
                                                   "weights": {"a": [1.0, 2]}}])
    func = config.functions("dssc")[0]
    assert func.roi == [0, 4, 0, 4] and func.fill != func.fill and func.level == 3


def test_user_default_name_is_kept(tmp_path, sim_root, calib_dir, user_module):
    config = load(tmp_path, sim_root, calib_dir, [{"type": f"{user_module}:Spot"},
                                                  {"type": f"{user_module}:NoDefault"},
                                                  {"type": "projection", "module": 2}])
    # the constructor's default; the class name only without one; a built-in by its type
    assert [f.name for f in config.functions("dssc")] == ["bright_spot", "nodefault", "projection"]


def bomb(levels: int = 9, width: int = 10) -> str:
    """A YAML flow list whose last entry expands to width**levels numbers through aliases."""
    parts = [f"&a0 [{', '.join(['1'] * width)}]"]
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def test_yaml_alias_bomb_is_refused(tmp_path, sim_root, calib_dir, user_module):
    path = fault_config(tmp_path, sim_root, calib_dir, functions=[{"type": f"{user_module}:Spot", "roi": "BOMB"}])
    path.write_text(path.read_text().replace("roi: BOMB", f"roi: {bomb()}"))
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        ProducerConfig.from_file(path)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "detectors.dssc.functions[0].roi:" in message and "alias" in message and "\n" not in message
    # a value that contains itself
    path.write_text(path.read_text().replace(f"roi: {bomb()}", "roi: &me [1, *me]"))
    with pytest.raises(ConfigError, match="contains itself"):
        ProducerConfig.from_file(path)


def test_a_long_list_without_aliases_is_no_bomb():
    from smalldata.plugin.params import check_expansion

    check_expansion(list(range(2_000_000)), "x")  # nothing repeated: accepted whatever its length
    shared = [1] * 1000
    with pytest.raises(ConfigError, match="alias bomb"):
        check_expansion([shared] * 2000, "x")


def test_set_up_error_of_a_user_function_is_one_line(tmp_path, sim_root, calib_dir, user_module):
    cfg = fault_config(tmp_path, sim_root, calib_dir,
                       functions=[{"type": f"{user_module}:Spot", "fail": "no such table 'pedestal_x'"}])
    with pytest.raises(FunctionError) as info:
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"function detectors.dssc.functions[0] ({user_module}:Spot)")
    assert "detector 'dssc'" in message and "KeyError" in message and "no such table 'pedestal_x'" in message
    result = subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(("INFO ", "WARNING "))]
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert "setFromDet() fails for detector 'dssc'" in lines[0]
    assert isinstance(info.value, SmallDataError)
