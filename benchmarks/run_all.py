"""Run every benchmark (``benchmarks/bench_*.py``) and summarise: ``make bench``.

Each benchmark's ``main([])`` runs in its own Python process, one after the other, so
that memory, MPI and imports of one cannot disturb the next, and a crash of one does
not stop the others. Each writes its own ``benchmarks/results/<name>.json``.

    python benchmarks/run_all.py [--only producer droplet] [--list]

Exit status: 0 if every benchmark met its goal, 1 if some goal was not met, 2 if a
benchmark failed (raised an error).
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS_DIR, format_table  # noqa: E402

log = logging.getLogger("run_all")

#: Exit status of the child when the benchmark raised (distinct from "goal not met" = 1).
CRASHED = 3
#: Loads one benchmark file and calls its ``main([])``; argv: the file.
_RUNNER = """
import importlib.util, sys, traceback
path = sys.argv[1]
sys.path.insert(0, str(__import__("pathlib").Path(path).parent))
name = __import__("pathlib").Path(path).stem
spec = importlib.util.spec_from_file_location(name, path)
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
try:
    spec.loader.exec_module(module)
    status = module.main([])
except SystemExit as exc:
    status = exc.code
except Exception:
    traceback.print_exc()
    status = {crashed}
sys.exit(0 if status is None else status)
""".format(crashed=CRASHED)


def discover() -> list:
    """The benchmark files, sorted by name."""
    return sorted(HERE.glob("bench_*.py"))


def run_one(path: Path) -> tuple:
    """Run one benchmark's ``main([])`` in a child process; returns (status, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(path)], cwd=HERE.parent)
    return proc.returncode, time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these benchmarks (e.g. producer for bench_producer.py)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    benches = discover()
    names = {p.stem[len("bench_"):]: p for p in benches}
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; available: {sorted(names)}")
        names = {n: names[n] for n in args.only}
    rows, worst = [], 0
    for name, path in names.items():
        log.info("running %s", path.name)
        status, seconds = run_one(path)
        verdict = {0: "goal met", 1: "goal NOT met"}.get(status, f"FAILED (status {status})")
        worst = max(worst, 0 if status == 0 else 1 if status == 1 else 2)
        result = RESULTS_DIR / f"{name}.json"
        rows.append([name, verdict, f"{seconds:.0f}",
                     str(result.relative_to(HERE.parent)) if result.is_file() else "-"])
    print()
    print(format_table(rows, ["benchmark", "result", "s", "results file"]))
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
