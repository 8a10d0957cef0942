"""Output name collisions are refused at set-up with one line naming both entries."""
import pytest
from faults import XGM, fault_config
from helpers import DATA_RUN

from smalldata.config.producer import ProducerConfig
from smalldata.errors import ConfigError
from smalldata.output.names import check_output_names
from smalldata.pipeline.eventloop import run_producer

SUM = {"source": XGM, "key": "data.intensitySa3TD", "per": "pulse", "units": "uJ"}


def refused_at_setup(tmp_path, sim_root, calib_dir, extra) -> str:
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=extra)
    with pytest.raises(ConfigError) as info:
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
    message = str(info.value)
    assert "\n" not in message, message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    return message


def test_point_data_named_like_a_function_output(tmp_path, sim_root, calib_dir):
    message = refused_at_setup(tmp_path, sim_root, calib_dir,
                               lambda c: c["point_data"].update(dssc={"m2_sum": SUM}))
    assert message.startswith("config point_data.dssc.m2_sum: /dssc/m2_sum would be written by both"), message
    assert "detectors.dssc.functions[0]" in message and "'m2_sum'" in message


def test_point_data_named_like_a_ragged_output(tmp_path, sim_root, calib_dir):
    functions = [{"type": "droplet", "name": "drop", "threshold": 20.0, "threshold_low": 10.0,
                  "save_droplets": True}]
    cfg = fault_config(tmp_path, sim_root, calib_dir, functions=functions,
                       extra=lambda c: c["point_data"].update(dssc={"drop_list": SUM}))
    with pytest.raises(ConfigError, match="drop_list would be written by both") as info:
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN, max_trains=2)
    assert "point_data.dssc.drop_list" in str(info.value) and "functions[0]" in str(info.value)


@pytest.mark.parametrize("extra,match", [
    (lambda c: c.update(pulses={}) or c["point_data"].update(pulses={"slot": SUM}),
     "config point_data.pulses.slot: /pulses/slot is written by pulses (the producer's pulses/slot) too"),
    (lambda c: c["point_data"].update(rejection={"reasons": SUM}),
     "config point_data.rejection.reasons: /rejection/reasons is written by rejection"),
    (lambda c: c["point_data"].update(xgm={"trainId": SUM}),
     "config point_data.xgm.trainId: /xgm/trainId is the coordinate every group of the output carries"),
    (lambda c: c.update(pulses={}, digitizer={"name": "pulseId"}),
     "config digitizer.name: /digitizer/pulseId is the coordinate every group of the output carries"),
    (lambda c: c["point_data"].update(meta={"x": SUM}), "config point_data.meta: a group named 'meta' would collide"),
    (lambda c: c["point_data"].update(UserDataCfg={"x": SUM}),
     "config point_data.UserDataCfg: a group named 'UserDataCfg' would collide"),
    (lambda c: c["detectors"].update(meta=c["detectors"].pop("dssc")),
     "config detectors.meta: a detector named 'meta' would collide: /meta is part of every output file"),
    (lambda c: c["detectors"].update(UserDataCfg=c["detectors"].pop("dssc")),
     "config detectors.UserDataCfg: a detector named 'UserDataCfg' would collide"),
    (lambda c: c["detectors"].update(point_data=c["detectors"].pop("dssc")),
     "config detectors.point_data: a detector named 'point_data' would collide: /UserDataCfg/point_data"),
])
def test_names_refused_by_the_config(tmp_path, sim_root, calib_dir, extra, match):
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=extra)
    with pytest.raises(ConfigError) as info:
        ProducerConfig.from_file(cfg)
    assert str(info.value).startswith(match) and "\n" not in str(info.value), str(info.value)


def test_check_output_names_direct():
    settings = {"pulses": None, "digitizer": {"name": "mcp"}}
    check_output_names([("xgm", "sa3")], settings, {"dssc": {"a_sum": "detectors.dssc.functions[0]"}})
    with pytest.raises(ConfigError, match=r"point_data.digitizer.mcp: /digitizer/mcp would be written by both "
                                          r"digitizer.name \(the producer's digitizer/mcp\)"):
        check_output_names([("digitizer", "mcp")], settings, {})
    with pytest.raises(ConfigError, match=r"/pulses/a_sum would be written by both"):
        check_output_names([("pulses", "a_sum")], settings, {"pulses": {"a_sum": "detectors.pulses.functions[0]"}})
