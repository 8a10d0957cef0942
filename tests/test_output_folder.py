"""A run refused at set-up leaves nothing behind; a user mask of bad pixels only is blamed, not the dark."""
import numpy as np
import pytest
from faults import fault_config
from helpers import DATA_RUN

from smalldata.config.producer import ProducerConfig
from smalldata.errors import ConfigError, SmallDataError
from smalldata.pipeline.eventloop import run_producer


def test_refused_run_leaves_no_output_folder(tmp_path, sim_root, calib_dir):
    out = tmp_path / "new" / "deeper"
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=lambda c: c.update(
        output_dir=str(out), rejection={"xgm": "scan/delay", "xgm_min": 1.0}))  # refused: delay is no XGM
    with pytest.raises(SmallDataError, match="rejection.xgm"):
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
    assert not (tmp_path / "new").exists(), list((tmp_path / "new").rglob("*"))


def test_refused_run_keeps_an_existing_folder_and_its_files(tmp_path, sim_root, calib_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=lambda c: c.update(
        rejection={"xgm": "scan/delay", "xgm_min": 1.0}))
    with pytest.raises(SmallDataError):
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    out.joinpath("keep.txt").unlink()
    with pytest.raises(SmallDataError):  # an existing empty folder stays: it was not made by the run
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
    assert out.is_dir()


def test_published_output_keeps_the_folder_it_made(tmp_path, sim_root, calib_dir):
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=lambda c: c.update(output_dir=str(tmp_path / "n" / "o")))
    output = run_producer(ProducerConfig.from_file(cfg), DATA_RUN, max_trains=2).output
    assert output.is_file() and [p.name for p in output.parent.iterdir()] == [output.name]


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_user_mask_of_bad_pixels_only_is_blamed(tmp_path, sim_root, calib_dir, suffix):
    import h5py

    path = tmp_path / f"mask{suffix}"
    nothing_good = np.zeros((16, 128, 512), bool)
    if suffix == ".npy":
        np.save(path, nothing_good)
    else:
        with h5py.File(path, "w") as f:
            f["pixels"] = nothing_good
    cfg = fault_config(tmp_path, sim_root, calib_dir,
                       extra=lambda c: c["detectors"]["dssc"].update(user_mask=str(path)))
    with pytest.raises(ConfigError) as info:
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
    message = str(info.value)
    assert message.startswith("config detectors.dssc.user_mask:") and str(path) in message, message
    assert "masks every pixel" in message and "dark" not in message and "\n" not in message
    if suffix == ".h5":
        assert "'pixels'" in message
    assert not (tmp_path / "out").exists()
