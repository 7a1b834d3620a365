"""Benchmark: the ingest DAG as Airflow tasks vs TFX's own LocalDagRunner, same data, same machine.

    .venv/bin/python bench/bench_ingest.py [--repeats N] [--write docs/benchmarks.md]

(a) ``airflow dags test mlops_ingest`` on the Chicago taxi sample (15,002 rows), twice on the
    same state: the first run starts the warm runtime (TFX imported once), the second finds it
    up (as a scheduled DAG does when runs are closer than the idle timeout);
(b) one runtime process running the same four components with ``LocalDagRunner``.
Both start from an empty state directory, so SchemaGen infers the schema in both. Wall
times include process start-up and imports; (a) also includes Airflow's own start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import airflow_run, append_table, migrate  # noqa: E402


def local_dag_runner_run(state: Path) -> tuple[float, float]:
    from airflow_mlops.hooks.runtime import RuntimeHook
    from airflow_mlops.operators.tfx import SAMPLE_TAXI

    hook = RuntimeHook(mlops_conn_id=None, state_dir=str(state))
    stats_in = {"examples": {"node": "CsvExampleGen", "output": "examples"}}
    spec = {
        "pipeline_name": "bench_local", "pipeline_root": str(state / "pipelines" / "bench_local"),
        "metadata": hook.metadata,
        "nodes": [
            {"id": "CsvExampleGen", "component": "CsvExampleGen", "inputs": {},
             "args": {"input_base": SAMPLE_TAXI, "input_pattern": "auto"}},
            {"id": "StatisticsGen", "component": "StatisticsGen", "inputs": stats_in, "args": {}},
            {"id": "SchemaGen", "component": "SchemaGen",
             "inputs": {"statistics": {"node": "StatisticsGen", "output": "statistics"}}, "args": {}},
            {"id": "ExampleValidator", "component": "ExampleValidator",
             "inputs": {"statistics": {"node": "StatisticsGen", "output": "statistics"},
                        "schema": {"node": "SchemaGen", "output": "schema"}}, "args": {}},
        ],
    }
    started = time.monotonic()
    out = hook.run_step("tfx.run_pipeline", {"pipeline": spec})
    return time.monotonic() - started, out["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", help="append the results to this markdown file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    home = work / "airflow"
    migrate(home)
    airflow_walls, warm_walls, local_walls, local_inner, tasks, warm_tasks = [], [], [], [], [], []
    for i in range(args.repeats):
        wall, per_task = airflow_run(home, work / f"state-a{i}", "mlops_ingest")
        airflow_walls.append(wall)
        tasks.append(per_task)
        # a second run on the same state: the warm runtime started by the first run is still up
        wall, per_task = airflow_run(home, work / f"state-a{i}", "mlops_ingest")
        warm_walls.append(wall)
        warm_tasks.append(per_task)
        wall, inner = local_dag_runner_run(work / f"state-l{i}")
        local_walls.append(wall)
        local_inner.append(inner)
        print(f"repeat {i + 1}: airflow {airflow_walls[-1]:.1f} s {tasks[-1]}, again {warm_walls[-1]:.1f} s {per_task}; "
              f"LocalDagRunner process {wall:.1f} s (pipeline {inner:.1f} s)", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    a, l = statistics.median(airflow_walls), statistics.median(local_walls)
    w = statistics.median(warm_walls)
    task_median = {t: statistics.median(d[t] for d in tasks) for t in tasks[0]}
    warm_task_median = {t: statistics.median(d[t] for d in warm_tasks) for t in warm_tasks[0]}
    result = {
        "airflow_dags_test_s": round(a, 1), "local_dag_runner_process_s": round(l, 1),
        "local_dag_runner_pipeline_s": round(statistics.median(local_inner), 1),
        "ratio": round(a / l, 2), "per_task_s": task_median, "repeats": args.repeats,
        "airflow_second_run_s": round(w, 1), "ratio_second_run": round(w / l, 2), "per_task_second_run_s": warm_task_median,
    }
    print(json.dumps(result, indent=2))
    if args.write:
        lines = [
            f"\n### Ingest slice: Airflow tasks vs LocalDagRunner ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
            f"{platform.machine()}, median of {args.repeats})\n",
            "| what | wall (s) |", "| --- | ---: |",
            f"| `airflow dags test mlops_ingest`, first run (starts the warm runtime) | {a:.1f} |",
            *[f"| &nbsp;&nbsp;task {t} | {s:.1f} |" for t, s in task_median.items()],
            f"| `airflow dags test mlops_ingest`, next run (warm runtime already up) | {w:.1f} |",
            *[f"| &nbsp;&nbsp;task {t} | {s:.1f} |" for t, s in warm_task_median.items()],
            f"| one runtime process, `LocalDagRunner`, same 4 components | {l:.1f} |",
            f"| &nbsp;&nbsp;of which the pipeline itself (after imports) | {statistics.median(local_inner):.1f} |",
            f"| **ratio Airflow / LocalDagRunner, first run** | **{a / l:.2f}×** |",
            f"| **ratio Airflow / LocalDagRunner, next run** | **{w / l:.2f}×** |", "",
        ]
        append_table(args.write, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
