"""No DSSC shape, module count or ADC limit outside the DSSC's detector type: a source scan of the
library, and the functions that used them working for a camera-like type (one 64 x 96 module,
16-bit values), checked against numpy."""
import ast
from dataclasses import replace
from pathlib import Path
from typing import List

import numpy as np
import pytest

from smalldata.calib.cellsums import CellAccumulator
from smalldata.calib.commonmode import AsicRowMedian, check_common_mode
from smalldata.calib.darkfile import DarkConstants, read_dark_file, write_dark_file
from smalldata.calib.detobject import DetObject
from smalldata.calib.masks import asic_edge_mask, load_user_mask
from smalldata.cameras import get_preset
from smalldata.detectors.camera import camera_type
from smalldata.detectors.dssc import DSSC
from smalldata.errors import CalibrationError, ConfigError
from smalldata.fused.rawmean import RawMean
from smalldata.plugin.frames import RawBatch
from smalldata.sums.average import average_image, frame_keys
from smalldata.testing import make_detector

ROOT = Path(__file__).resolve().parents[1]
#: the DSSC's facts in smalldata.constants that only its detector type may use
DSSC_NAMES = {"DSSC_N_MODULES", "DSSC_MODULE_SHAPE", "DSSC_ADC_MAX", "DSSC_ASIC_SHAPE", "dssc_source",
              "dssc_aggregator"}
#: where they belong: the constants, the DSSC's type, its simulator, BOZ (a DSSC method: its function and
#: command) and extra-geom's DSSC geometry
ALLOWED = ("smalldata/constants.py", "smalldata/detectors/dssc.py", "smalldata/simulate/", "smalldata/boz/",
           "ana_funcs/boz.py", "producers/smd_boz.py", "smalldata/geometry/positions.py")
#: places excepted from the scan (none: the DSSC dark's thresholds read the DSSC type's ADC range)
ELSEWHERE = ()

SHAPE = (64, 96)
CAMERA = camera_type(get_preset("newton").with_shape(SHAPE))  # one module, saturation 65535


# ---------------------------------------------------------------------------- the source scan
def dssc_uses(source: str) -> List[str]:
    """What in ``source`` (code, not docstrings) is a DSSC fact: a name of :data:`DSSC_NAMES`, a literal
    ``128, 512`` module shape (either order) or the 9-bit ADC limit 511; one entry per use with its line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "smalldata.constants":
            found += [f"{node.lineno}: imports {a.name}" for a in node.names if a.name in DSSC_NAMES]
        elif isinstance(node, ast.Name) and node.id in DSSC_NAMES:
            found.append(f"{node.lineno}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in DSSC_NAMES:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, (ast.Tuple, ast.List)):
            values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            if any(pair in ((128, 512), (512, 128)) for pair in zip(values, values[1:])):
                found.append(f"{node.lineno}: literal 128, 512")
        elif isinstance(node, ast.Constant) and type(node.value) is int and node.value == 511:
            found.append(f"{node.lineno}: literal 511")
    return found


def library_files() -> List[Path]:
    return sorted(p for top in ("smalldata", "ana_funcs", "producers") for p in (ROOT / top).rglob("*.py"))


def test_scan_finds_each_kind_of_use():
    """The scan is able to fail: each kind of DSSC fact in a made-up module is found, a type's are not."""
    source = ("from smalldata.constants import DSSC_ADC_MAX, INSTRUMENT\n"
              "import smalldata.constants as c\n"
              "shape = (16, 128, 512)\n"
              "n = c.DSSC_N_MODULES\n"
              "ok = raw < 511\n"
              "src = dssc_source(3)\n"
              "fine = (det.type.module_shape, det.type.saturation, 128, 0, 512, INSTRUMENT)\n")
    assert sorted(dssc_uses(source)) == ["1: imports DSSC_ADC_MAX", "3: literal 128, 512", "4: .DSSC_N_MODULES",
                                         "5: literal 511", "6: dssc_source"]


def test_no_dssc_constants_outside_the_dssc_type():
    """Library code takes the DSSC's shape, module count, ADC limit and sources from a detector type."""
    found = []
    for path in library_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(ALLOWED) or rel in ELSEWHERE:
            continue
        found += [f"{rel}:{use}" for use in dssc_uses(path.read_text())]
    assert found == []


def test_allowed_list_names_existing_places():
    """Each allowed or excepted place exists (a stale entry would hide nothing, but mislead)."""
    for entry in ALLOWED + ELSEWHERE:
        assert (ROOT / entry).exists(), entry


# ---------------------------------------------------------------------------- masks
def test_user_mask_of_a_camera_shape():
    """A camera's mask as (ny, nx), (1, ny, nx) or a file; a DSSC-shaped one is refused naming the shape."""
    rng = np.random.default_rng(1)
    mask = rng.random(SHAPE) > 0.1
    shapes = {"module_shape": CAMERA.module_shape, "n_modules": CAMERA.n_modules}
    np.testing.assert_array_equal(load_user_mask(mask, [0], **shapes), mask[None])
    np.testing.assert_array_equal(load_user_mask(mask[None], [0], **shapes), mask[None])
    assert load_user_mask(None, [0], **shapes).shape == (1,) + SHAPE
    with pytest.raises(ConfigError, match=r"\(1, 64, 96\)"):
        load_user_mask(np.ones((16,) + DSSC.module_shape, bool), [0], **shapes)


def test_asic_edge_mask_of_another_tiling():
    """Edges of 32 x 48 ASICs on 64 x 96 modules: False exactly on each tile's outer ring."""
    tiled = replace(CAMERA, n_modules=2, asic_shape=(32, 48))
    got = asic_edge_mask(2, width=2, detector_type=tiled)
    expected = np.ones(SHAPE, bool)
    for r0 in (0, 32):
        for c0 in (0, 48):
            tile = np.zeros((32, 48), bool)
            tile[2:-2, 2:-2] = True
            expected[r0:r0 + 32, c0:c0 + 48] = tile
    assert got.shape == (2,) + SHAPE
    np.testing.assert_array_equal(got, np.broadcast_to(expected, got.shape))
    np.testing.assert_array_equal(asic_edge_mask(1), asic_edge_mask(1, detector_type=DSSC))  # the default
    with pytest.raises(ConfigError, match="no ASIC"):
        asic_edge_mask(1, detector_type=CAMERA)


def test_common_mode_segments_of_another_width():
    """The median of each 48-pixel row segment's good, unlit pixels is subtracted (numpy's median)."""
    rng = np.random.default_rng(2)
    frames = rng.normal(0, 1, (3, 1) + SHAPE).astype(np.float32)
    frames += rng.normal(0, 5, (3, 1, SHAPE[0], 2, 1)).repeat(48, axis=-1).reshape(frames.shape)
    frames[0, 0, 5, :10] += 100.0  # lit: left out of the median
    good = rng.random((1,) + SHAPE) > 0.05
    threshold = np.full((1,) + SHAPE, 20.0, np.float32)
    out = frames.copy()
    AsicRowMedian(threshold, good, 4, segment=48).subtract(out, np.ones(out.shape, bool))
    expected = frames.copy()
    for f in range(3):
        for r in range(SHAPE[0]):
            for s in range(2):
                seg = frames[f, 0, r, 48 * s:48 * (s + 1)]
                use = good[0, r, 48 * s:48 * (s + 1)] & (seg <= 20.0)
                expected[f, 0, r, 48 * s:48 * (s + 1)] -= np.float32(np.median(seg[use]))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    with pytest.raises(ConfigError, match="1..48"):
        check_common_mode("asic_row_median", None, 49, segment=48)
    with pytest.raises(CalibrationError, match="do not tile"):
        AsicRowMedian(threshold, good, 4, segment=64)


# ---------------------------------------------------------------------------- dark sums and files
@pytest.mark.parametrize("high", [400, 60000])
def test_cell_sums_of_a_camera_module(high):
    """Pedestal and noise per cell of 64 x 96 frames: numpy's mean and std (ddof 1), 9-bit or 16-bit values."""
    rng = np.random.default_rng(3)
    n = 40
    cells = np.tile([0, 1], n // 2)  # regular: the uint32 path for small values
    data = rng.integers(0, high, (n,) + SHAPE).astype(np.uint16)
    acc = CellAccumulator([0, 1], SHAPE)
    acc.add(data, cells)
    ped, noise = acc.mean_std()
    assert ped.shape == noise.shape == (2,) + SHAPE
    for c in (0, 1):
        values = data[cells == c].astype(np.float64)
        np.testing.assert_allclose(ped[c], values.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(noise[c], values.std(axis=0, ddof=1), rtol=1e-5)


def test_dark_file_of_a_camera_shape(tmp_path):
    """Constants of one 64 x 96 module written and read back unchanged."""
    rng = np.random.default_rng(4)
    ped = rng.normal(1000, 5, (1, 2) + SHAPE).astype(np.float32)
    noise = rng.uniform(1, 3, (1, 2) + SHAPE).astype(np.float32)
    status = (rng.random((1,) + SHAPE) < 0.01).astype(np.uint8)
    dark = DarkConstants(pedestal=ped, noise=noise, status_mask=status, modules=np.array([0]),
                         cell_ids=np.array([0, 1], np.uint16), n_frames=np.array([[50, 50]]), detector="cam")
    path = write_dark_file(dark, tmp_path / "dark.h5")
    back = read_dark_file(path)
    np.testing.assert_array_equal(back.pedestal, ped)
    np.testing.assert_array_equal(back.noise, noise)
    np.testing.assert_array_equal(back.status_mask, status)


# ---------------------------------------------------------------------------- mean images
def test_raw_mean_with_a_camera_saturation():
    """Values above the DSSC's 511 count; those at the camera's saturation do not (numpy's masked mean)."""
    rng = np.random.default_rng(5)
    n, saturation = 30, 4000
    raw = rng.integers(300, 3000, (n,) + SHAPE).astype(np.uint16)
    raw[rng.random(raw.shape) < 0.02] = saturation
    ped = rng.normal(100, 2, (2, 1) + SHAPE).astype(np.float32)
    cells = rng.integers(0, 2, n)
    keep = rng.random(n) < 0.8
    acc = RawMean(2, SHAPE, saturation)
    acc.frames_per_sum = 7  # several uint32 batch sums per call: the result must not depend on it
    acc.add(raw, cells, keep, ped)
    got = acc.mean(ped, None, np.ones((1,) + SHAPE, bool))
    valid = (raw < saturation) & keep[:, None, None]
    cal = raw.astype(np.float64) - ped[cells, 0]
    expected = np.where(valid, cal, 0).sum(axis=0) / valid.sum(axis=0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


class CameraAccess:
    """The part of RunAccess that :func:`average_image` reads, for one module of frames held in memory."""

    def __init__(self, raw: np.ndarray, cells: np.ndarray, detector_type):
        self.detector_type = detector_type
        self.raw, self.cells = raw, cells  # (T, F, ny, nx), (T, F)
        self.train_ids = np.arange(1, len(raw) + 1, dtype=np.uint64)

    def frame_counts(self, modules):
        return np.full((len(self.train_ids), len(modules)), self.raw.shape[1], np.int64)

    def read_raw(self, modules, train_ids) -> RawBatch:
        pos = np.searchsorted(self.train_ids, train_ids)
        per = self.raw.shape[1]
        n = len(pos) * per
        return RawBatch(train_ids=np.repeat(np.asarray(train_ids, np.uint64), per),
                        pulse_ids=np.tile(np.arange(per, dtype=np.uint64), len(pos)),
                        cell_ids=self.cells[pos].reshape(-1).astype(np.uint16),
                        frame_index=np.tile(np.arange(per), len(pos)), modules=tuple(modules),
                        data=self.raw[pos].reshape((n, 1) + self.raw.shape[2:]), present=np.ones((n, 1), bool))

    def release(self, raw) -> None:
        pass


@pytest.mark.parametrize("statistic", ["mean", "max"])
def test_average_image_of_a_camera(statistic):
    """The mean (raw sums) and maximum (fused pass) of a camera's chosen frames: numpy's, with values
    far above the DSSC's ADC range valid and those at the camera's saturation not."""
    rng = np.random.default_rng(6)
    n_trains, per = 6, 2
    raw = rng.integers(500, 20000, (n_trains, per) + SHAPE).astype(np.uint16)
    raw[0, 0, 3, 4] = CAMERA.saturation
    cells = np.tile([0, 1], (n_trains, 1))
    ped = rng.normal(100, 2, (1, 2) + SHAPE).astype(np.float32)
    status = np.zeros((1,) + SHAPE, np.uint8)
    status[0, 10, 11] = 1
    det = DetObject("viking", [0], ped, np.ones_like(ped), np.array([0, 1]), status, detector_type=CAMERA)
    access = CameraAccess(raw, cells, CAMERA)
    tids = np.repeat(access.train_ids, per)
    pids = np.tile(np.arange(per, dtype=np.uint64), n_trains)
    chosen = rng.random(n_trains * per) < 0.7
    chosen[0] = True
    got = average_image(access, lambda mods: det, (0,), access.train_ids, frame_keys(tids[chosen], pids[chosen]),
                        statistic, batch_bytes=3 * raw[0, 0].nbytes)  # batches of one train
    cal = (raw.reshape((-1,) + SHAPE).astype(np.float32) - ped[0, cells.reshape(-1)])[chosen]
    valid = (raw.reshape((-1,) + SHAPE) < CAMERA.saturation)[chosen]
    if statistic == "mean":
        expected = np.where(valid, cal, 0).astype(np.float64).sum(axis=0) / valid.sum(axis=0)
    else:
        expected = np.where(valid, cal, -np.inf).max(axis=0)
    expected[10, 11] = np.nan
    assert got.shape == (1,) + SHAPE
    np.testing.assert_allclose(got[0], expected, rtol=0, atol=1e-3, equal_nan=True)


# ---------------------------------------------------------------------------- stand-ins and BOZ
def test_stand_in_detector_of_a_type():
    det = make_detector(detector_type=CAMERA, noise=0.5)
    assert det.type is CAMERA and det.mask.shape == (1,) + SHAPE
    np.testing.assert_array_equal(det.noise_in_units, np.full((1,) + SHAPE, 0.5, np.float32))
    assert make_detector(modules=(2, 3)).mask.shape == (2,) + DSSC.module_shape


def test_boz_refuses_a_camera_in_one_line():
    from smalldata.funcs.boz import BOZ

    det = make_detector(detector_type=CAMERA)
    det.name = "viking"
    with pytest.raises(ConfigError) as err:
        BOZ(corrections="boz.json").setFromDet(det)
    assert "DSSC only" in str(err.value) and "viking" in str(err.value) and "\n" not in str(err.value)


def test_run_access_of_a_type(sim_root):
    """RunAccess finds the modules of its type's sources (the shared data run has modules 2 and 3); a
    per-train camera is refused in one line."""
    from helpers import DATA_RUN, PROPOSAL

    from smalldata.errors import DataError
    from smalldata.io.runaccess import RunAccess
    from smalldata.simulate import run_path

    path = run_path(sim_root, PROPOSAL, DATA_RUN)
    access = RunAccess.from_directory(path)
    assert access.detector_type is DSSC and access.available_modules() == (2, 3)
    three = replace(DSSC, n_modules=3)  # a per-pulse type of modules 0..2 only
    narrow = RunAccess.from_directory(path, three)
    assert narrow.available_modules() == (2,)
    raw = narrow.read_raw((2,), narrow.train_ids[:2])
    assert raw.data.shape[1:] == (1,) + DSSC.module_shape and raw.data.dtype == np.uint16
    with pytest.raises(DataError, match="per-train camera") as err:
        RunAccess.from_directory(path, CAMERA)
    assert "\n" not in str(err.value)


def test_session_masks_of_a_camera_shape(tmp_path):
    """A session's mask of a two-module 64 x 96 detector: the whole detector's array, and combined with
    the config's user-mask file of the same shape (numpy's AND)."""
    from smalldata.ana.configwrite import ConfigWriteMixin
    from smalldata.ana.regions import PixelMask

    rng = np.random.default_rng(7)
    drawn = rng.random((1,) + SHAPE) > 0.2
    full = PixelMask("cam", (1,), drawn, n_modules=2).full()
    assert full.shape == (2,) + SHAPE and full[0].all()
    np.testing.assert_array_equal(full[1], drawn[0])
    existing = rng.random((2,) + SHAPE) > 0.3
    np.save(tmp_path / "mask.npy", existing)
    combined = ConfigWriteMixin._combined_mask({"user_mask": "mask.npy"}, tmp_path, full)
    np.testing.assert_array_equal(combined, full & existing)
