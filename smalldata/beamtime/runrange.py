"""Run ranges as users write them: ``610-615,620`` -> [610, 611, 612, 613, 614, 615, 620]."""
from __future__ import annotations

import re
from typing import List

from smalldata.errors import SmallDataError

#: Most runs one range may name (a typo such as 610-6150 should not submit thousands of jobs).
MAX_RUNS = 10000

_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_run_range(text: str, option: str = "-r/--runs") -> List[int]:
    """The sorted, distinct run numbers of a range such as ``"610-615,620"``.

    Parameters
    ----------
    text : str
        Comma-separated run numbers and inclusive ranges ``first-last``.
    option : str
        How the value was given (named in the error message).

    Raises
    ------
    SmallDataError
        When an item is not a number or a range of positive numbers with first <= last.
    """
    text = str(text)
    runs = set()
    items = text.split(",")
    for item in items:
        match = _ITEM.match(item)
        if not match:
            raise SmallDataError(f"{option} {text!r}: {item.strip()!r} is not a run number or a range; "
                                 "give e.g. 610-615,620")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if first < 1:
            raise SmallDataError(f"{option} {text!r}: run numbers start at 1, got {first}")
        if last < first:
            raise SmallDataError(f"{option} {text!r}: {item.strip()!r} runs backwards; write it as {last}-{first}")
        if last - first + 1 + len(runs) > MAX_RUNS:
            raise SmallDataError(f"{option} {text!r}: more than {MAX_RUNS} runs; is there a typo in the range?")
        runs.update(range(first, last + 1))
    return sorted(runs)


def format_run_range(runs) -> str:
    """The shortest range text of ``runs``: [610, 611, 612, 620] -> ``"610-612,620"``."""
    runs = sorted(set(int(r) for r in runs))
    parts = []
    i = 0
    while i < len(runs):
        j = i
        while j + 1 < len(runs) and runs[j + 1] == runs[j] + 1:
            j += 1
        parts.append(str(runs[i]) if i == j else f"{runs[i]}-{runs[j]}")
        i = j + 1
    return ",".join(parts)
