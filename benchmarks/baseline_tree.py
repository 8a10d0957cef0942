"""The project as it was at an earlier commit, importable side by side with today's.

``git archive`` exports the commit into the benchmark cache and lays its packages out as
an installation does (``ana_funcs`` as ``smalldata.funcs``, ``producers`` as
``smalldata.cli``); with that folder first on ``PYTHONPATH`` a subprocess runs the old
code with this environment's dependencies. Used to measure "today's rate" of a workload
against the commit before a change.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, Optional

import yaml

from common import bench_dir

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The last commit before the fused hot path (the rate the full-detector issue was filed against).
PRE_FUSED_COMMIT = "7da59d1193714a3f0c8ee01095d91d8ac3f18a64"
LAYOUT = {"smalldata": "smalldata", "ana_funcs": "smalldata/funcs", "producers": "smalldata/cli"}


def baseline_tree(commit: str = PRE_FUSED_COMMIT) -> Optional[Path]:
    """A folder to put first on ``PYTHONPATH`` to import the project of ``commit`` (None without git)."""
    folder = bench_dir() / f"baseline_{commit[:12]}"
    pkg = folder / "pkg"
    if (pkg / "smalldata" / "cli" / "smd_producer.py").is_file():
        return pkg
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        log.warning("no git checkout: the baseline commit %s is not measured", commit[:12])
        return None
    with tempfile.TemporaryDirectory(dir=bench_dir()) as tmp:
        archive = Path(tmp) / "tree.tar"
        try:
            subprocess.run(["git", "-C", str(REPO_ROOT), "archive", "-o", str(archive), commit], check=True,
                           capture_output=True)
        except subprocess.CalledProcessError as exc:
            log.warning("git archive %s failed (%s): the baseline is not measured", commit[:12],
                        exc.stderr.decode(errors="replace").strip())
            return None
        src = Path(tmp) / "src"
        with tarfile.open(archive) as tar:
            tar.extractall(src, filter="data")
        staging = Path(tmp) / "pkg"
        for source, target in LAYOUT.items():
            shutil.copytree(src / source, staging / target)
        (folder / "configs").mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "configs" / "producer.yaml", folder / "configs" / "producer.yaml")
        if pkg.exists():
            shutil.rmtree(pkg)
        shutil.move(str(staging), pkg)
    return pkg


def baseline_env(pkg: Path) -> Dict[str, str]:
    """Environment of a subprocess that imports the baseline's ``smalldata``.

    ``PYTHONSAFEPATH``: ``python -c`` would otherwise look in the working directory first,
    where a checkout of today's ``smalldata`` may be.
    """
    return {"PYTHONPATH": str(pkg), "PYTHONSAFEPATH": "1"}


def baseline_demo_config(pkg: Path, settings: Dict[str, object], dark_run: int) -> Dict:
    """The baseline commit's own ``configs/producer.yaml`` with this benchmark's folders and dark."""
    cfg = yaml.safe_load((pkg.parent / "configs" / "producer.yaml").read_text())
    cfg.update(settings)
    cfg["detectors"]["dssc"]["dark_run"] = dark_run
    return cfg
