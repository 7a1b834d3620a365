"""Benchmark: the main job (`make demo`, the whole loop) — wall time and peak memory of all its processes.

    .venv/bin/python bench/bench_demo.py [--write docs/benchmarks.md]

Runs ``scripts/demo.py`` in a fresh ``MLOPS_DEMO_HOME`` (runtimes already built: "from warm
runtimes" in the goal means built, not running) and samples every 0.5 s: (a) the summed RSS of
every process started after the benchmark began (the demo, Airflow, runtime steps, warm
runtime servers, Horovod workers, the model server) and (b) the machine's used memory
(MemTotal − MemAvailable) above what it was at the start. Goals: under 15 minutes, under 8 GB.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench._common import append_table  # noqa: E402
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime"):
            return float(line.split()[1])
    return 0.0


def processes_since(since: float, boot: float) -> int:
    """Summed RSS (bytes) of the processes started at or after ``since`` (Unix time)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            started = boot + int(fields[19]) / TICKS
            if started >= since - 1:
                total += int(Path(f"/proc/{entry}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def used() -> int:
    info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()}
    return info["MemTotal"] - info["MemAvailable"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    # warm runtimes started earlier would escape the count: stop them, the demo starts its own
    subprocess.run([str(Path(sys.executable).parent / "airflow-mlops"), "runtime", "stop"], capture_output=True)
    boot, started_at, base_used = boot_time(), time.time(), used()
    peaks = {"rss": 0, "used": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peaks["rss"] = max(peaks["rss"], processes_since(started_at, boot))
            peaks["used"] = max(peaks["used"], used() - base_used)
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py")], capture_output=True, text=True,
                         env={**os.environ, "MLOPS_DEMO_HOME": str(home)})
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    # stop the demo's deployment (it keeps serving by design) before removing its home
    subprocess.run([sys.executable, "-c", "from airflow_mlops.hooks.seldon import SeldonHook; "
                    "h = SeldonHook(mlops_conn_id=None); [h.deployments.undeploy(n) for n in h.registry.names()]"],
                   env={**os.environ, "AIRFLOW_HOME": str(home)}, capture_output=True)
    (Path(tempfile.gettempdir()) / "bench-demo-output.txt").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        print(out.stdout[-5000:], out.stderr[-3000:])
        raise SystemExit("the demo failed")
    shutil.rmtree(home, ignore_errors=True)
    gib = 1024 ** 3
    result = {"wall_s": round(wall), "peak_rss_gib": round(peaks["rss"] / gib, 2),
              "peak_used_gib": round(peaks["used"] / gib, 2)}
    print(result)
    if args.write:
        lines = [
            f"\n### The main job, `make demo` (the whole loop) ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
            f"{platform.machine()}, runtimes built)\n",
            "| what | measured | goal |", "| --- | ---: | ---: |",
            f"| wall time | {result['wall_s'] // 60} min {result['wall_s'] % 60} s | < 15 min |",
            f"| peak memory, summed RSS of every process it started | {result['peak_rss_gib']} GiB | < 8 GB |",
            f"| peak memory, machine's used memory above the start | {result['peak_used_gib']} GiB | < 8 GB |", "",
        ]
        append_table(args.write, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
