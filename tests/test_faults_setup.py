"""Nonsense refused at set-up, from the data, with one line naming the config path and the fix."""
import shutil
import subprocess

import h5py
import numpy as np
import pytest
import yaml
from faults import XGM, fault_config
from helpers import DARK_RUN, DATA_RUN, PROPOSAL, tool

from smalldata.config.producer import ProducerConfig
from smalldata.errors import SmallDataError
from smalldata.pipeline.eventloop import run_producer

DELAY = {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value", "units": "mm"}


def refused(tmp_path, sim_root, calib_dir, extra=None, functions=None, match=""):
    """Run the producer on a config changed by ``extra``: it must stop with one line matching ``match``."""
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=extra, functions=functions)
    with pytest.raises(SmallDataError) as info:
        run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
    message = str(info.value)
    assert "\n" not in message and match in message, message
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    return message


@pytest.mark.parametrize("change,match", [
    (lambda c: c["point_data"]["scan"]["delay"].update(per="pulse"), "point_data.scan.delay.per: 'pulse', but"),
    (lambda c: c.update(rejection={"xgm": "scan/delay", "xgm_min": 1.0}), "rejection.xgm: 'scan/delay' is"),
    (lambda c: c["detectors"]["dssc"].update(cube={"scan": "scan/delay", "edges": [0, 1, 2], "xgm": "scan/delay"}),
     "detectors.dssc.cube.xgm"),
    (lambda c: c["detectors"]["dssc"].update(cube={"scan": "scan/delay", "edges": [1000.0, 1001.0, 1002.0]}),
     "detectors.dssc.cube.edges: 1000..1002 holds none of the values of scan/delay"),
    (lambda c: c["detectors"]["dssc"].update(modules=[]), "detectors.dssc.modules: an empty list"),
    (lambda c: c.update(batch_megabytes=float("inf")), "batch_megabytes: must be a finite number > 0"),
    (lambda c: c["detectors"]["dssc"].update(geometry_file=c["calib_dir"] + f"/dark_p{PROPOSAL:06d}_r{DARK_RUN:04d}"
                                                                              "_dssc.h5"),
     "detectors.dssc.geometry_file: "),
    (lambda c: c["detectors"]["dssc"].update(modules=[2]), "function 'm3' reads module(s) [3], but detectors.dssc"),
])
def test_config_contradicting_the_data_is_refused(tmp_path, sim_root, calib_dir, change, match):
    refused(tmp_path, sim_root, calib_dir, extra=change, match=match)


def test_function_on_a_module_the_run_lacks(tmp_path, sim_root, calib_dir):
    refused(tmp_path, sim_root, calib_dir, functions=[{"type": "roi", "name": "m5", "module": 5, "roi": [0, 8, 0, 8]},
                                                      {"type": "roi", "name": "m2", "module": 2, "roi": [0, 8, 0, 8]}],
            extra=lambda c: c["detectors"]["dssc"].update(modules=[2, 3]),
            match="detectors.dssc.functions[0]: function 'm5' reads module(s) [5], but run")


def test_huge_bin_count_refused_with_an_estimate(tmp_path, sim_root, calib_dir):
    message = refused(tmp_path, sim_root, calib_dir,
                      functions=[{"type": "azimuthal", "name": "az", "q_bins": 1000000000}], match="q_bins")
    assert "1000000000 bins would need about 7.5 GiB per frame" in message


def test_duplicate_key_and_non_utf8_config(tmp_path, sim_root, calib_dir):
    path = fault_config(tmp_path, sim_root, calib_dir)
    text = path.read_text()
    path.write_text(text + "batch_size: 16\n")  # batch_size is already set
    with pytest.raises(SmallDataError, match="key 'batch_size' given twice"):
        ProducerConfig.from_file(path)
    path.write_bytes(text.encode() + "# d\xe9lai\n".encode("latin-1"))
    with pytest.raises(SmallDataError, match="is not UTF-8 text"):
        ProducerConfig.from_file(path)


def test_proposal_zero_is_refused(tmp_path, sim_root, calib_dir):
    cfg = fault_config(tmp_path, sim_root, calib_dir)
    for command in ("smd_producer", "smd_dark"):
        result = subprocess.run([tool(command), "-r", str(DATA_RUN), "-c", str(cfg), "-p", "0"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "-p/--proposal must be a positive proposal number, got 0" in result.stderr


def damaged_dark(tmp_path, calib_dir, change, run=DARK_RUN):
    """A copy of the session's dark file (filed as ``run``) changed by ``change(h5py.File)``."""
    folder = tmp_path / "calib"
    folder.mkdir(parents=True)
    name = f"dark_p{PROPOSAL:06d}_r{{:04d}}_dssc.h5"
    shutil.copy(calib_dir / name.format(DARK_RUN), folder / name.format(run))
    with h5py.File(folder / name.format(run), "r+") as f:
        change(f)
    return folder


def test_dark_that_does_not_fit_is_refused(tmp_path, sim_root, calib_dir):
    # filed as run 616 but made from run 615
    folder = damaged_dark(tmp_path / "a", calib_dir, lambda f: None, run=616)
    refused(tmp_path / "a", sim_root, folder, extra=lambda c: c["detectors"]["dssc"].update(dark_run=616),
            match="say run 615, but are filed as run 616")
    # another detector's pedestals (the same pixels shifted by a few columns)
    folder = damaged_dark(tmp_path / "b", calib_dir, lambda f: f["pedestal"].write_direct(
        np.roll(f["pedestal"][()], 37, axis=-1)))
    refused(tmp_path / "b", sim_root, folder, match="dark run 615 does not fit module 2")

    # an inconsistent file: fewer cells listed than the pedestal holds
    def drop_cell(f):
        cells = f["cell_ids"][()]
        del f["cell_ids"]
        f["cell_ids"] = cells[:-1]
    folder = damaged_dark(tmp_path / "c", calib_dir, drop_cell)
    refused(tmp_path / "c", sim_root, folder, match="are inconsistent: pedestal has shape")
    # every pixel bad
    folder = damaged_dark(tmp_path / "d", calib_dir, lambda f: f["status_mask"].write_direct(
        np.ones(f["status_mask"].shape, np.uint8)))
    refused(tmp_path / "d", sim_root, folder, match="every pixel is masked")


def test_nan_pedestal_is_masked(tmp_path, sim_root, calib_dir):
    def plant_nan(f):
        ped = f["pedestal"][()]
        ped[0, 1, 10:20, 30:40] = np.nan  # module 2, cell 1, 100 pixels
        f["pedestal"][...] = ped
        assert f["status_mask"][0, 10:20, 30:40].max() == 0
    folder = damaged_dark(tmp_path, calib_dir, plant_nan)
    cfg = fault_config(tmp_path, sim_root, folder)
    output = run_producer(ProducerConfig.from_file(cfg), DATA_RUN).output
    with h5py.File(output) as f:
        assert np.all(np.isfinite(f["dssc/m2_sum"][()]))
        assert np.all(f["UserDataCfg/dssc/status_mask"][0, 10:20, 30:40] & 8)
        assert not f["UserDataCfg/dssc/mask"][0, 10:20, 30:40].any()


def test_unusable_or_suspect_dark(caplog):
    from smalldata.calib.badpixels import DarkThresholds, classify_bad_pixels
    from smalldata.calib.dark import ModuleDark, check_dark_quality

    zeros = np.zeros((4, 128, 512), np.float32)  # all-zero data: zero pedestal and noise
    status = classify_bad_pixels(zeros, zeros, DarkThresholds())
    with pytest.raises(SmallDataError, match="every pixel of module 2 is bad"):
        check_dark_quality(ModuleDark(0, 2, zeros, zeros, status, np.full(4, 100)), "dark run 9")
    status = np.zeros((128, 512), np.uint8)
    status[:, :40] = 2  # 7.8% hot, as a run with X-rays gives
    check_dark_quality(ModuleDark(0, 2, zeros, zeros, status, np.full(4, 100)), "run 614")
    assert "7.8% of the pixels of module 2 are bad" in caplog.text and "X-rays" in caplog.text


def test_small_preset_dark_passes_the_default_min_frames():
    from smalldata.calib.badpixels import DarkThresholds
    from smalldata.simulate import SimulationConfig

    config = SimulationConfig.small()
    assert config.dark_trains * (config.dark_frames_per_train or 1) >= DarkThresholds().min_frames


def test_analysis_session_on_a_bad_file(tmp_path):
    from smalldata.ana.session import SmallDataAna

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(SmallDataError, match="is not a smalldata output"):
        SmallDataAna(other)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(other.read_bytes()[:1000])
    with pytest.raises(SmallDataError, match="truncated or not a smalldata output"):
        SmallDataAna(truncated)


BAD_FUNC = '''
import numpy as np
from smalldata.plugin.detfunc import DetObjectFunc
class Bad(DetObjectFunc):
    def __init__(self, name: str = "bad", mode: str = "none"):
        super().__init__(name)
        self.mode = mode
    def process(self, frames):
        if self.mode == "none":
            return None
        return {"n": np.ones(len(frames) + 1)}
'''


@pytest.mark.parametrize("mode,match", [("none", "process() returned NoneType, not a dict"),
                                        ("long", "output 'n' has 3 rows for a batch of 2 frames")])
def test_user_function_with_wrong_output_is_named(tmp_path, sim_root, calib_dir, monkeypatch, mode, match):
    (tmp_path / "badmod.py").write_text(BAD_FUNC)
    monkeypatch.syspath_prepend(str(tmp_path))
    message = refused(tmp_path, sim_root, calib_dir, functions=[{"type": "badmod:Bad", "mode": mode}], match=match)
    assert message.startswith("function detectors.dssc.functions[0] (badmod:Bad)")
