"""Benchmark: Horovod (Gloo, CPU) training throughput with 1 and 2 workers in the TFX runtime.

    .venv/bin/python bench/bench_horovod.py [--width 1024] [--batch 256] [--steps 60] [--write docs/benchmarks.md]

A compute-bound MLP (3 hidden layers of --width units), one fixed batch per worker; each
worker does the same per-step work, so 2 workers process twice the samples per step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    from airflow_mlops.hooks.runtime import RuntimeHook
    from airflow_mlops.runtimes.local import runtime_command

    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--write")
    args = parser.parse_args()
    install = RuntimeHook(mlops_conn_id=None).get_runtime()
    worker = str(REPO / "bench" / "horovod_throughput_worker.py")
    results = []
    for n in (1, 2):
        argv = ["python", "-m", "horovod.runner.launch", "-np", str(n), "--gloo", "-H", f"localhost:{n}",
                "python", worker, str(args.width), str(args.batch), str(args.steps)]
        command, env = runtime_command(install, argv, env={"TF_CPP_MIN_LOG_LEVEL": "2"}, binds=[str(REPO / "bench")])
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        match = re.search(r"RESULT (\{.*\})", out.stdout + out.stderr)
        if out.returncode != 0 or not match:
            raise SystemExit(f"{n} worker(s) failed:\n{(out.stdout + out.stderr)[-3000:]}")
        results.append(json.loads(match.group(1)))
        print(results[-1], flush=True)
    speedup = results[1]["samples_per_s"] / results[0]["samples_per_s"]
    print(f"2 workers / 1 worker: {speedup:.2f}x")
    if args.write:
        with open(args.write, "a") as handle:
            handle.write(
                f"\n## Horovod throughput, CPU, Gloo ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)\n\n"
                f"`bench/bench_horovod.py`: MLP 3×{args.width} units, batch {args.batch} per worker, "
                f"{args.steps} timed steps.\n\n| workers | samples/s | ms per step |\n| ---: | ---: | ---: |\n"
                + "".join(f"| {r['workers']} | {r['samples_per_s']} | {r['step_ms']} |\n" for r in results)
                + f"\n2 workers give {speedup:.2f}× the samples/s of 1 on this machine's 2 shared cores: "
                "each worker's TensorFlow already uses both cores, so the second worker mostly competes "
                "for them, and gradient averaging over Gloo adds its own time per step.\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
