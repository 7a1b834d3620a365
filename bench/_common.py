"""Shared by the benchmarks: run a DAG under ``airflow dags test`` and time it and its tasks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def airflow_env(home: Path, state: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")},
            "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__MLOPS__STATE_DIR": str(state)}


def append_table(path: str, lines: list[str]) -> None:
    """Append a benchmark's markdown lines to ``path`` (``docs/benchmarks.md``)."""
    with open(path, "a") as handle:
        handle.write("\n".join(lines) + "\n")


def migrate(home: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)


def airflow_run(home: Path, state: Path, dag_id: str, conf: dict | None = None) -> tuple[float, dict[str, float]]:
    """Wall seconds of ``airflow dags test dag_id`` and seconds per task (from its start/end lines)."""
    command = [str(BIN / "airflow"), "dags", "test", dag_id]
    if conf:
        command += ["-c", json.dumps(conf)]
    started = time.monotonic()
    out = subprocess.run(command, env=airflow_env(home, state), capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"airflow dags test {dag_id} failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    stamps: dict[str, list[float]] = {}
    for line in out.stdout.splitlines():
        m = re.match(r"(\S+Z) .*\[DAG TEST\] (starting|end task) task_id=(\S+)", line)
        if m:
            t = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + m.group(1)[20:-1])
            stamps.setdefault(m.group(3), []).append(t)
    return wall, {task: round(ts[-1] - ts[0], 1) for task, ts in stamps.items() if len(ts) >= 2}
