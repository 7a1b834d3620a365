"""The test suite's time, before and after: a table from two runs' timing files (tests/timing.py).

    PYTEST_TIMING_JSON=before.json bash .ci/run     # on the old commit
    PYTEST_TIMING_JSON=after.json bash .ci/run      # on the new one, same machine
    .venv/bin/python -m bench.bench_suite before.json after.json

Prints markdown for docs/benchmarks.md: the whole run (wall time, tests, test time summed), each folder of
tests/ and the slowest tests of the first run beside the second. Test time summed counts each test's setup,
call and teardown; under pytest-xdist the workers' times add up to more than the wall time.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def folder(nodeid: str) -> str:
    parts = nodeid.split("::")[0].split("/")[1:]  # below tests/
    return parts[0] if len(parts) > 1 else parts[-1]


def table(before: dict, after: dict, top: int = 15) -> str:
    def by_folder(run: dict) -> dict[str, float]:
        sums: dict[str, float] = defaultdict(float)
        for nodeid, test in run["tests"].items():
            sums[folder(nodeid)] += test["total"]
        return sums

    def summed(run: dict) -> float:
        return sum(t["total"] for t in run["tests"].values())

    rows = ["| | before | after | after / before |", "| --- | ---: | ---: | ---: |"]
    rows.append(f"| wall time of the suite (s) | {before['wall_seconds']:.0f} | {after['wall_seconds']:.0f} | "
                f"{after['wall_seconds'] / before['wall_seconds']:.2f} |")
    rows.append(f"| pytest processes | {before['workers'] or 1} | {after['workers'] or 1} | |")
    rows.append(f"| tests | {len(before['tests'])} | {len(after['tests'])} | |")
    rows.append(f"| test time summed (s) | {summed(before):.0f} | {summed(after):.0f} | "
                f"{summed(after) / summed(before):.2f} |")
    old, new = by_folder(before), by_folder(after)
    for name in sorted(old, key=lambda k: -old[k]):
        if old[name] >= 5 or new.get(name, 0) >= 5:
            rows.append(f"| `tests/{name}` (s, summed) | {old[name]:.0f} | {new.get(name, 0):.0f} | |")
    rows += ["", f"The {top} slowest tests of the first run (setup + call + teardown, s; a renamed or moved test "
             "is matched by its name):", "", "| test | before | after |", "| --- | ---: | ---: |"]
    after_by_name = {nodeid.split("::", 1)[-1]: t["total"] for nodeid, t in after["tests"].items()}
    for nodeid, test in sorted(before["tests"].items(), key=lambda kv: -kv[1]["total"])[:top]:
        name = nodeid.split("::", 1)[-1]
        later = after_by_name.get(name)
        rows.append(f"| `{name[:90]}` | {test['total']:.0f} | {'' if later is None else f'{later:.0f}'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    first, second = (json.loads(Path(p).read_text()) for p in sys.argv[1:3])
    print(table(first, second))
