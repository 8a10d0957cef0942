"""The run report: a self-contained HTML page, opened in headless Chromium (every figure must load)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from smalldata.ana.session import SmallDataAna
from smalldata.cli.smd_report import main as smd_report
from smalldata.report.figures import FIGURES
from timing_runs import RUN, timing_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    root = timing_run(tmp_path_factory)
    folder = tmp_path_factory.mktemp("report")
    path = folder / f"r{RUN:04d}.h5"
    shutil.copy(root / "out" / path.name, path)
    return path


#: the figures a DSSC run without cameras gives (the camera figure says why it is not shown)
DSSC_FIGURES = [f for f in FIGURES if f[0] != "Camera spectra"]


def chromium(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium (as root it needs --no-sandbox), bounded in time."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_report_is_self_contained_with_every_figure(output, tmp_path):
    page = SmallDataAna(output).report(tmp_path / "report.html")
    text = page.read_text()
    sources = re.findall(r"<img[^>]*src='([^']*)'", text)
    assert len(sources) == len(DSSC_FIGURES)  # every figure drawn but the cameras' (this run has none)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert text.count("not shown") == 1 and "<h2>Camera spectra</h2><p class='skip'>not shown" in text and "Run 801" in text
    # the command line writes the same figures
    assert smd_report(["--output", str(output), "--html", str(tmp_path / "cli.html"), "--quiet"]) == 0
    assert len(re.findall(r"<img ", (tmp_path / "cli.html").read_text())) == len(DSSC_FIGURES)


def test_report_a_bad_output_path_ends_in_one_line(tmp_path, capsys):
    assert smd_report(["--output", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err
    assert "missing.h5" in err and "smd_producer" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (tests/services/chromium.sh installs it)")
def test_report_opens_in_headless_chromium(output, tmp_path):
    page = SmallDataAna(output).report(tmp_path / "report.html")
    dom = chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:500]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(1))
    total = re.search(r'data-images-total="(\d+)"', body.group(1))
    assert loaded and total, body.group(0)
    assert int(total.group(1)) == len(DSSC_FIGURES) and int(loaded.group(1)) == len(DSSC_FIGURES)
    shot = tmp_path / "report.png"
    result = chromium(f"--screenshot={shot}", "--window-size=1000,3000", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    # a page with a broken image is caught by the same check
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    dom = chromium("--dump-dom", broken.as_uri())
    assert f'data-images-loaded="{len(DSSC_FIGURES) - 1}"' in dom.stdout
