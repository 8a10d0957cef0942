"""Names and paths of the config that reach the file system: validated before anything is written."""
import subprocess

import pytest
import yaml
from faults import fault_config
from helpers import DARK_RUN, PROPOSAL, tool

from smalldata.config.names import check_name, expand_variables, name_problem
from smalldata.config.producer import ProducerConfig
from smalldata.config.yamlfile import load_yaml
from smalldata.errors import ConfigError


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "", "x\\y", "1st", "dssc-2"])
def test_names_that_are_not_one_path_component_are_refused(name):
    assert name_problem(name)
    with pytest.raises(ConfigError, match="detectors.x"):
        check_name(name, "detectors.x")


@pytest.mark.parametrize("name", ["dssc", "dssc_2", "_x"])
def test_plain_names_pass(name):
    assert name_problem(name) is None and check_name(name, "x") == name


def test_smd_dark_detector_outside_calib_dir_refused(tmp_path, sim_root):
    calib = tmp_path / "a" / "b" / "calib"
    res = subprocess.run([tool("smd_dark"), "-p", str(PROPOSAL), "-r", str(DARK_RUN), "--data-root", str(sim_root),
                          "--calib-dir", str(calib), "--detector", "../../../x"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--detector" in lines[0] and "'../../../x'" in lines[0], res.stderr
    assert not list(tmp_path.rglob("*.h5")), list(tmp_path.rglob("*"))


def test_smd_dark_detector_name_in_config_checked(tmp_path):
    from smalldata.cli.smd_dark import dark_settings_from_config

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"proposal": PROPOSAL, "detectors": {"a/b": {"dark_run": DARK_RUN}}}))
    with pytest.raises(ConfigError, match=r"detectors.a/b: 'a/b' would reach another folder"):
        dark_settings_from_config(path)


def test_undefined_variable_in_output_dir_refused(tmp_path, sim_root, calib_dir, monkeypatch):
    monkeypatch.delenv("SMD_TEST_UNSET", raising=False)
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=lambda c: c.update(output_dir="$SMD_TEST_UNSET/out"))
    with pytest.raises(ConfigError) as info:
        ProducerConfig.from_file(cfg)
    message = str(info.value)
    assert message.startswith("config output_dir:") and "$SMD_TEST_UNSET" in message and "\n" not in message
    # braces too, and in smd_dark's reading of calib_dir
    with pytest.raises(ConfigError, match=r"\$SMD_TEST_UNSET"):
        expand_variables("${SMD_TEST_UNSET}/x", "calib_dir")
    # a defined variable expands
    monkeypatch.setenv("SMD_TEST_SET", str(tmp_path / "from_env"))
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=lambda c: c.update(output_dir="$SMD_TEST_SET/out"))
    assert ProducerConfig.from_file(cfg).settings["output_dir"] == str(tmp_path / "from_env" / "out")


def test_smd_dark_refuses_undefined_variable(tmp_path, monkeypatch):
    from smalldata.cli.smd_dark import dark_settings_from_config

    monkeypatch.delenv("SMD_TEST_UNSET", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"proposal": PROPOSAL, "calib_dir": "$SMD_TEST_UNSET/calib",
                                    "detectors": {"dssc": {"dark_run": DARK_RUN}}}))
    with pytest.raises(ConfigError, match=r"calib_dir: .*\$SMD_TEST_UNSET, which is not set"):
        dark_settings_from_config(path)


def test_config_path_that_is_a_directory(tmp_path, sim_root, calib_dir):
    with pytest.raises(ConfigError, match=f"{tmp_path} is a directory, not a config file"):
        load_yaml(tmp_path)
    res = subprocess.run([tool("smd_producer"), "-r", "614", "-c", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "is a directory" in res.stderr and "does not exist" not in res.stderr, res.stderr
    (tmp_path / "geo").mkdir()
    cfg = fault_config(tmp_path, sim_root, calib_dir,
                       extra=lambda c: c["detectors"]["dssc"].update(geometry_file=str(tmp_path / "geo")))
    with pytest.raises(ConfigError, match="detectors.dssc.geometry_file: .* is a directory"):
        ProducerConfig.from_file(cfg)


def test_digitizer_name_is_a_name(tmp_path, sim_root, calib_dir):
    cfg = fault_config(tmp_path, sim_root, calib_dir,
                       extra=lambda c: c.update(pulses={}, digitizer={"name": "../mcp"}))
    with pytest.raises(ConfigError, match="digitizer.name: '../mcp' would reach another folder"):
        ProducerConfig.from_file(cfg)
