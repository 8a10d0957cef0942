"""Config validation: every error is one line naming the config path and the fix."""
from pathlib import Path

import pytest
import yaml

from smalldata.config.keys import config_markdown
from smalldata.config.producer import ProducerConfig
from smalldata.errors import ConfigError

BASE = {
    "proposal": 2937,
    "data_root": "data",
    "detectors": {"dssc": {"dark_run": 615, "functions": [
        {"type": "roi", "name": "roi1", "module": 3, "roi": [0, 64, 0, 128],
         "children": [{"type": "projection", "name": "proj", "axis": 0}]}]}},
    "point_data": {"scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY",
                                      "key": "actualPosition.value", "units": "mm"}}},
}


def load(tmp_path, mutate=None):
    cfg = yaml.safe_load(yaml.safe_dump(BASE))
    if mutate:
        mutate(cfg)
    path = tmp_path / "producer.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ProducerConfig.from_file(path)


def error_of(tmp_path, mutate) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, mutate)
    message = str(info.value)
    assert "\n" not in message
    return info.value


def test_valid_config_fills_defaults_and_resolves_paths(tmp_path):
    cfg = load(tmp_path)
    assert cfg.settings["batch_size"] is None and cfg.settings["batch_megabytes"] == 64.0
    assert cfg.settings["data_root"] == str((tmp_path / "data").resolve())
    assert cfg.settings["calib_dir"] == str((tmp_path / "calib").resolve())
    funcs = cfg.functions("dssc")
    assert [f.name for f in funcs] == ["roi1"]
    assert funcs[0].children[0].name == "proj"
    assert funcs[0].required_modules() == (3,)
    assert cfg.point_data[("scan", "delay")]["per"] == "train"


def test_unknown_top_level_key_suggests(tmp_path):
    err = error_of(tmp_path, lambda c: c.update(batchsize=10))
    assert err.path == "batchsize" and "did you mean 'batch_size'" in str(err)


def test_unknown_function_key_suggests(tmp_path):
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"]["functions"][0].update(thresold=3))
    assert err.path == "detectors.dssc.functions[0].thresold"
    assert "did you mean 'threshold'" in str(err)


def test_wrong_type(tmp_path):
    err = error_of(tmp_path, lambda c: c.update(batch_size="many"))
    assert err.path == "batch_size" and "expected int" in str(err)


def test_roi_outside_module(tmp_path):
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"]["functions"][0].update(roi=[0, 200, 0, 10]))
    assert err.path == "detectors.dssc.functions[0].roi" and "outside" in str(err)


def test_module_out_of_range(tmp_path):
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"]["functions"][0].update(module=16))
    assert err.path == "detectors.dssc.functions[0].module" and "0..15" in str(err)
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"].update(modules=[3, 17]))
    assert err.path == "detectors.dssc.modules"


def test_unknown_function_type(tmp_path):
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"]["functions"][0].update(type="roii"))
    assert err.path == "detectors.dssc.functions[0].type" and "did you mean 'roi'" in str(err)


def test_bad_child_parameter_names_child_path(tmp_path):
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"]["functions"][0]["children"][0].update(axis=2))
    assert err.path == "detectors.dssc.functions[0].children[0].axis"


def test_missing_dark_run(tmp_path):
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"].pop("dark_run"))
    assert err.path == "detectors.dssc.dark_run" and "required" in str(err)


def test_bad_choice_value(tmp_path):
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"].update(common_mode="median"))
    assert err.path == "detectors.dssc.common_mode" and "asic_row_median" in str(err)


def test_thresholds_in_wrong_order(tmp_path):
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"]["functions"][0].update(threshold=5, threshold_max=2))
    assert err.path == "detectors.dssc.functions[0].threshold_max"


def test_duplicate_function_names(tmp_path):
    def dup(c):
        funcs = c["detectors"]["dssc"]["functions"]
        funcs.append(dict(funcs[0]))
    err = error_of(tmp_path, dup)
    assert "two functions are named 'roi1'" in str(err)


def test_point_data_per_choice(tmp_path):
    err = error_of(tmp_path, lambda c: c["point_data"]["scan"]["delay"].update(per="pulses"))
    assert err.path == "point_data.scan.delay.per" and "did you mean 'pulse'" in str(err)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ProducerConfig.from_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("proposal: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        ProducerConfig.from_file(bad)


def test_user_function_by_dotted_path(tmp_path, monkeypatch):
    pkg = tmp_path / "userfuncs.py"
    pkg.write_text(
        "import numpy as np\n"
        "from smalldata.plugin.detfunc import DetObjectFunc\n"
        "class Total(DetObjectFunc):\n"
        "    def __init__(self, name: str = 'total', scale: float = 1.0):\n"
        "        super().__init__(name)\n"
        "        self.scale = scale\n"
        "    def process(self, frames):\n"
        "        return {'sum': self.scale * np.where(frames.valid, frames.data, 0).reshape(len(frames), -1).sum(1)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load(tmp_path, lambda c: c["detectors"]["dssc"]["functions"].append(
        {"type": "userfuncs:Total", "scale": 2}))
    func = cfg.functions("dssc")[1]
    assert func.name == "total" and func.scale == 2
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"]["functions"].append(
        {"type": "userfuncs:Total", "scale": "x"}))
    assert err.path == "detectors.dssc.functions[1].scale"


def test_docs_config_lists_every_key():
    text = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    assert config_markdown() in text, "docs/config.md is out of date: regenerate with python -m smalldata.config.producer"


def test_scientific_notation_reads_as_numbers(tmp_path):
    cfg = load(tmp_path, lambda c: c["detectors"]["dssc"].update(gain=1.5e1))
    path = tmp_path / "sci.yaml"
    path.write_text(path.parent.joinpath("producer.yaml").read_text().replace("gain: 15.0", "gain: 1.5e1"))
    assert "1.5e1" in path.read_text()
    assert ProducerConfig.from_file(path).detectors["dssc"]["gain"] == 15.0
    assert cfg.detectors["dssc"]["gain"] == 15.0


def test_dark_threshold_keys_checked(tmp_path):
    err = error_of(tmp_path, lambda c: c["detectors"]["dssc"].update(dark={"min_frame": 50}))
    assert err.path == "detectors.dssc.dark.min_frame" and "did you mean 'min_frames'" in str(err)
