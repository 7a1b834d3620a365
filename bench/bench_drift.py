"""Benchmark: a drift check (reading the reference and the window, encoding, Alibi Detect) vs the bare call.

    .venv/bin/python bench/bench_drift.py [--write docs/benchmarks.md]

100,000 reference records × 20 features (15 numeric, 5 categorical) against a window of
10,000 records in a prediction log (jsonl), TabularDrift, as DriftDetectionOperator calls the
warm drift runtime (file paths in, a small JSON result out): (a) the first check of a model
version, which reads the reference file and fits the detector, and (b) a later check, which
loads the saved detector; each against the bare Alibi Detect calls on the same arrays (timed
inside the step: construction or load_detector, plus predict). I/O (reading the window, and
the reference when fitting) is reported on its own line.
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
from bench._common import append_table  # noqa: E402

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
    params = {"reference_file": str(reference_file), "prediction_log": str(log_dir), "window_size": 10_000,
              "model_version": 1, "features": features}
    runs: dict[str, list[dict]] = {"first": [], "reused": []}
    for n in range(args.repeats):
        for label in ("first", "reused"):  # fit (reads the reference) / the detector saved by "first"
            started = time.monotonic()
            result = hook.run_step("drift.detect", {**params, "detector_dir": str(work / f"detector-{n}")},
                                   binds=[str(work)])
            runs[label].append({"wall": time.monotonic() - started, **result})
            assert result["is_drift"] and result["drifted_features"] == ["n0"], result["drifted_features"]
            assert result["detector_reused"] is (label == "reused")
    shutil.rmtree(work, ignore_errors=True)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    out = {}
    for label, results in runs.items():
        wall, read = med([r["wall"] for r in results]), med([r["read_seconds"] for r in results])
        alibi = med([r["alibi_seconds"] for r in results])
        out[label] = {"check_wall_s": round(wall, 3), "read_s": round(read, 3), "alibi_s": round(alibi, 3),
                      "ratio_check_vs_alibi": round(wall / alibi, 2),
                      "ratio_without_io": round((wall - read) / alibi, 2)}
    print(json.dumps(out, indent=2))
    if args.write:
        first, reused = out["first"], out["reused"]
        lines = [
            f"\n### Drift check, 100,000×20 reference vs 10,000×20 window ({time.strftime('%Y-%m-%d')}, "
            f"{os.cpu_count()} cores, {platform.machine()}, TabularDrift, median of {args.repeats})\n",
            "| what (seconds) | first check of a model version (fit) | later checks (saved detector) |",
            "| --- | ---: | ---: |",
            f"| the whole check, as the operator calls it (warm drift runtime) | {first['check_wall_s']} | "
            f"{reused['check_wall_s']} |",
            f"| &nbsp;&nbsp;of which I/O: reading the window from the prediction log (and the reference file) | "
            f"{first['read_s']} | {reused['read_s']} |",
            f"| the bare Alibi Detect calls on the same arrays (construction + predict / load + predict) | "
            f"{first['alibi_s']} | {reused['alibi_s']} |",
            f"| **whole check / bare call** | **{first['ratio_check_vs_alibi']}×** | **{reused['ratio_check_vs_alibi']}×** |",
            f"| **(whole check − I/O) / bare call** | **{first['ratio_without_io']}×** | "
            f"**{reused['ratio_without_io']}×** |", "",
        ]
        append_table(args.write, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
