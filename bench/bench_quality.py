"""Benchmark: the quality check's join of 1,000,000 predictions with 1,000,000 labels, against the bare metric.

    .venv/bin/python bench/bench_quality.py [--rows 1000000] [--write docs/benchmarks.md]

Writes a prediction log of ``--rows`` binary predictions (20 per request, the model server's own
line format, with request ids) and an outcome CSV with the label of every row (shuffled: labels
arrive in another order than predictions). Then, side by side in one run, each in a fresh Python
process (wall time and peak resident memory from the child's rusage):

* **join + metric**: ``model_quality`` — read the log and the outcome file, join by request id and
  row, compute AUC per model version, write nothing;
* **bare metric**: ``auc`` on the same (score, label) arrays, already joined in memory (read from
  a pickle, whose loading is timed apart and subtracted).
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import append_table  # noqa: E402

JOIN = """
import sys, time
from airflow_mlops.serving.quality import QualityGate, model_quality
started = time.perf_counter()
report = model_quality(sys.argv[1], QualityGate(min_labels=1), blessed={}, feedback_root=sys.argv[2], points=1)
print(time.perf_counter() - started, report["versions"]["1"]["value"], report["join"]["labelled_rows"])
"""
BARE = """
import pickle, sys, time
started = time.perf_counter()
scores, labels = pickle.load(open(sys.argv[1], "rb"))
loaded = time.perf_counter()
from airflow_mlops.serving.quality import auc
value = auc(scores, labels)
print(time.perf_counter() - loaded, value, len(scores), loaded - started)
"""


def write_inputs(work: Path, rows: int) -> tuple[Path, Path, Path]:
    rng = random.Random(11)
    log, truth = work / "log", work / "truth"
    log.mkdir()
    truth.mkdir()
    start = datetime(2026, 12, 5, tzinfo=timezone.utc)
    scores, labels, keys = [], [], []
    with open(log / "2026-12-05.jsonl", "w") as out:
        for request in range(rows // 20):
            batch = [rng.random() for _ in range(20)]
            rid = f"{request:012x}"
            out.write(json.dumps({"ts": (start + timedelta(milliseconds=request)).isoformat(), "deployment": "b",
                                  "model_version": 1, "request_id": rid, "instances": [{"fare": 1.0}] * 20,
                                  "names": ["probabilities"], "predictions": [[s] for s in batch], "ms": 1.0}) + "\n")
            for row, score in enumerate(batch):
                label = int(rng.random() < score)
                scores.append(score)
                labels.append(label)
                keys.append((rid, row, label))
    rng.shuffle(keys)
    with open(truth / "labels.csv", "w") as out:
        out.write("request_id,row,label\n")
        out.writelines(f"{rid},{row},{label}\n" for rid, row, label in keys)
    joined = work / "joined.pkl"
    with open(joined, "wb") as handle:
        pickle.dump((scores, labels), handle)
    return log, truth, joined


def child(code: str, *args: str) -> tuple[list[str], float, float]:
    """Output, wall seconds and peak RSS (MiB) of ``code`` in a fresh Python."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    wall = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise SystemExit("the child's peak memory is not above an earlier child's: run each measurement alone")
    return out.stdout.split(), wall, peak / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--write", help="append the table to this markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log, truth, joined = write_inputs(work, args.rows)
        sizes = (sum(f.stat().st_size for f in log.iterdir()) / 2**20, (truth / "labels.csv").stat().st_size / 2**20)
        # the bare metric first: the children's peak RSS only grows, so the larger run must come second
        bare_out, _, bare_rss = child(BARE, str(joined))
        join_out, _, join_rss = child(JOIN, str(log), str(truth))
    bare_s, bare_value = float(bare_out[0]), float(bare_out[1])
    join_s, join_value, labelled = float(join_out[0]), float(join_out[1]), int(join_out[2])
    if abs(bare_value - join_value) > 1e-9 or labelled != args.rows:
        raise SystemExit(f"the join found another AUC ({join_value} vs {bare_value}) or rows ({labelled})")
    lines = [
        "",
        f"### Quality check: joining {args.rows:,} predictions with {args.rows:,} labels "
        f"({datetime.now():%Y-%m-%d}, {platform.machine()}, one run)",
        "",
        f"Prediction log {sizes[0]:.0f} MiB (20 rows a request), outcome CSV {sizes[1]:.0f} MiB (shuffled). "
        f"`bench/bench_quality.py`; both give AUC {join_value:.6f}. Each in a fresh Python; the join side also "
        "computes the metric-over-time series of the plot (one more pass over the rows). Where the time goes "
        "(cProfile, 200,000 rows): reading the outcome CSV about a third, the metric passes a third, the log's JSON "
        "and the join the rest; memory is the joined rows as Python objects.",
        "",
        "| | seconds | peak RSS (MiB) |",
        "| --- | --- | --- |",
        f"| join + metric (`model_quality`: read the log and the labels, join, AUC) | {join_s:.1f} | {join_rss:.0f} |",
        f"| bare metric (`auc` on the joined arrays in memory) | {bare_s:.1f} | {bare_rss:.0f} |",
        f"| **ratio** | **{join_s / bare_s:.1f}×** | **{join_rss / bare_rss:.1f}×** |",
        "",
    ]
    print("\n".join(lines))
    if args.write:
        append_table(args.write, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
