"""The report side of the benchmarks: the machine and its load, results files, plain-text tables.

Imported through :mod:`common`, which every benchmark uses.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gb() -> Optional[float]:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def cpu_pressure() -> Optional[float]:
    """Share (%) of the last 60 s in which runnable tasks waited for a CPU (Linux PSI), or None.

    Other work on the machine shows up here; figures taken under pressure are noisy.
    """
    try:
        with open("/proc/pressure/cpu") as fh:
            for line in fh:
                if line.startswith("some"):
                    return float(dict(kv.split("=") for kv in line.split()[1:])["avg60"])
    except (OSError, KeyError, ValueError):
        pass
    return None


def machine_info() -> Dict[str, object]:
    """The machine and the versions that matter for the figures."""
    import h5py
    import numpy

    info = {"nproc": os.cpu_count(), "cpu_model": _cpu_model(), "mem_total_gb": _mem_total_gb(),
            "python": platform.python_version(), "numpy": numpy.__version__, "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version, "platform": platform.platform()}
    try:
        import extra_data

        info["extra_data"] = extra_data.__version__
    except ImportError:
        pass
    try:
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def write_results(report: Mapping, path: Path) -> Path:
    """Write ``report`` as JSON to ``path`` (e.g. ``RESULTS_DIR / "producer.json"``) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def format_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """A plain-text table (left-aligned first column, right-aligned others)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])
