"""Does the suite still catch a broken line? Break one line in each of three places, run the tests that cover it,
expect failures, restore the line.

    .venv/bin/python scripts/broken_line_check.py [--workers 3]

The three places: an operator (the Pusher skips blessed models instead of unblessed ones), a runtime step
(drift detection flags the features that did *not* drift), the model server (every answer claims model
version 1). Each is a one-line change, made in the working tree and restored afterwards (also on Ctrl-C);
the files must have no uncommitted changes. Exit status 0 when every broken line failed its tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Break:
    where: str
    path: str
    line: str
    broken: str
    tests: tuple[str, ...]


BREAKS = (
    Break("operator", "airflow_mlops/operators/tfx.py",
          'if verdict and not verdict.get("blessed"):', 'if verdict and verdict.get("blessed"):',
          ("tests/operators/test_tfx.py", "tests/integration/test_evaluate_push.py")),
    Break("runtime step", "airflow_mlops/runtime_side/steps/drift.py",
          'entry["drift"] = bool(float(p_vals[j]) < threshold)', 'entry["drift"] = bool(float(p_vals[j]) >= threshold)',
          ("tests/integration/test_drift.py",)),
    Break("model server", "airflow_mlops/runtime_side/model_server/model.py",
          'tags: dict[str, Any] = {"model_version": active.version,', 'tags: dict[str, Any] = {"model_version": 1,',
          ("tests/runtime_side/model_server", "tests/integration/test_serving.py")),
)


def run(one: Break, workers: int) -> tuple[int, str]:
    path = REPO / one.path
    original = path.read_text()
    assert original.count(one.line) == 1, f"{one.path}: the line to break is not there once: {one.line}"
    path.write_text(original.replace(one.line, one.broken))
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-n", str(workers), "--dist", "loadfile",
                              "-p", "no:cacheprovider", *one.tests], cwd=REPO, capture_output=True, text=True)
    finally:
        path.write_text(original)
    summary = [line for line in out.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return out.returncode, "\n".join(summary[-6:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *(b.path for b in BREAKS)], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.strip()
    if dirty:
        print(f"uncommitted changes in the files this breaks; commit or stash them first:\n{dirty}")
        return 2
    caught = 0
    for one in BREAKS:
        code, summary = run(one, args.workers)
        failed = code != 0 and "\nFAILED " in f"\n{summary}"  # -x under xdist exits 2 (interrupted) after a failure
        verdict = "caught" if failed else f"NOT CAUGHT (pytest exit {code})"
        caught += failed
        print(f"{one.where}: {one.path}: {one.line!r} -> {one.broken!r}: {verdict}\n{summary}\n")
    print(f"{caught} of {len(BREAKS)} broken lines failed the suite")
    return 0 if caught == len(BREAKS) else 1


if __name__ == "__main__":
    sys.exit(main())
