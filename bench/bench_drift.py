"""Benchmark: a drift check (reading the reference and the window, encoding, Alibi Detect) vs the bare call.

    .venv/bin/python bench/bench_drift.py [--write docs/benchmarks.md]

100,000 reference records × 20 features (15 numeric, 5 categorical) against a window of
10,000 records read from a prediction log (jsonl), TabularDrift. (a) wall time of the whole
check as the operator does it: read the reference file and the window, send them to the drift
runtime (warm), encode, fit, predict; (b) the bare Alibi Detect calls (TabularDrift
construction + predict) on the same arrays, timed inside the step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NUMERIC = [f"n{i}" for i in range(15)]
CATEGORICAL = [f"c{i}" for i in range(5)]


def records(n: int, seed: int, shift: float = 0.0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        row = {name: rng.gauss(shift if i == 0 else 0.0, 1.0) for i, name in enumerate(NUMERIC)}
        row.update({name: rng.choice("abcde") for name in CATEGORICAL})
        out.append(row)
    return out


def main() -> int:
    import logging

    logging.getLogger("airflow.task.hooks").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write")
    args = parser.parse_args()
    from airflow_mlops.hooks.runtime import RuntimeHook
    from airflow_mlops.serving.prediction_log import read_window

    work = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    reference_file, log_dir = work / "reference.jsonl", work / "log"
    reference_file.write_text("".join(json.dumps(r) + "\n" for r in records(100_000, 1)))
    log_dir.mkdir()
    now = datetime.now(timezone.utc).isoformat()
    window_records = records(10_000, 2, shift=0.5)
    (log_dir / "today.jsonl").write_text("".join(
        json.dumps({"ts": now, "model_version": 1, "instances": window_records[i:i + 10]}) + "\n"
        for i in range(0, len(window_records), 10)))
    features = {**{n: "numeric" for n in NUMERIC}, **{c: "categorical" for c in CATEGORICAL}}
    hook = RuntimeHook(runtime="drift", mlops_conn_id=None, state_dir=str(work / "state"))
    hook.run_step("drift.detect", {"reference": records(200, 3), "window": records(100, 4), "features": features})
    walls, inner, alibi = [], [], []
    for _ in range(args.repeats):
        started = time.monotonic()
        reference = [json.loads(line) for line in reference_file.read_text().splitlines()]
        window = read_window(log_dir, last_n=10_000)["records"]
        result = hook.run_step("drift.detect", {"reference": reference, "window": window, "features": features},
                               binds=[str(work)])
        walls.append(time.monotonic() - started)
        inner.append(result["seconds"])
        alibi.append(result["alibi_seconds"])
        assert result["is_drift"] and result["drifted_features"] == ["n0"], result["drifted_features"]
    shutil.rmtree(work, ignore_errors=True)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    out = {"check_wall_s": round(med(walls), 2), "step_s": round(med(inner), 2), "alibi_s": round(med(alibi), 2),
           "ratio_check_vs_alibi": round(med(walls) / med(alibi), 2)}
    print(json.dumps(out, indent=2))
    if args.write:
        lines = [
            f"\n### Drift check, 100,000×20 reference vs 10,000×20 window ({time.strftime('%Y-%m-%d')}, "
            f"{os.cpu_count()} cores, {platform.machine()}, TabularDrift, median of {args.repeats})\n",
            "| what | wall (s) |", "| --- | ---: |",
            f"| the whole check: read reference and window files, to the warm drift runtime, encode, fit, predict | "
            f"{out['check_wall_s']} |",
            f"| &nbsp;&nbsp;of which inside the drift step (encoding + Alibi Detect) | {out['step_s']} |",
            f"| the bare Alibi Detect calls (TabularDrift construction + predict) on the same arrays | {out['alibi_s']} |",
            f"| **ratio whole check / bare call** | **{out['ratio_check_vs_alibi']}×** |", "",
        ]
        with open(args.write, "a") as handle:
            handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
