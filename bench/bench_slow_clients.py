"""Benchmark: a local deployment's p99 and throughput with 0 and with 50 slow connections open.

    .venv/bin/python bench/bench_slow_clients.py [--requests 500] [--slow 50] [--model-uri SAVEDMODEL]
        [--write docs/benchmarks.md]

Trains and deploys a taxi model with the template DAG (200 steps; or serves ``--model-uri``), then, side by side in one run:
1-row ``jsonData`` predictions over one kept-alive connection (p50, p99) and from 4 concurrent
clients (requests/s), first with no other client, then while ``--slow`` connections stay open,
each having sent a request line and then one header a second (never finishing; they stop by
themselves). For contrast the same model is served by gunicorn without the asyncio front
(``--no-front``), where 4 such clients are enough: its pings are timed out after 5 s. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import airflow_run, append_table, migrate  # noqa: E402
from bench.bench_front_memory import serve  # noqa: E402
from bench.bench_serving import concurrent_rps, percentile, timed_requests, typed_records  # noqa: E402
from tests.serving.slow_clients import SlowClients  # noqa: E402 - the test's own slow clients

NAME = "bench-slow"


def measure(port: int, body: bytes, n: int) -> dict:
    timed_requests("127.0.0.1", port, body, 20, True)  # warm-up
    kept = timed_requests("127.0.0.1", port, body, n, True)
    return {"p50_ms": round(percentile(kept, 50), 2), "p99_ms": round(percentile(kept, 99), 2),
            "rps_4_clients": round(concurrent_rps("127.0.0.1", port, body, n, 4), 1)}


def pings(port: int, count: int = 5) -> int:
    ok = 0
    for _ in range(count):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ping", timeout=5).read()
            ok += 1
        except OSError:
            pass
    return ok


def main() -> int:
    import logging

    logging.getLogger("airflow.task.hooks").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--model-uri", help="serve this pushed SavedModel instead of training one")
    parser.add_argument("--compare-code", help="also serve the model with the provider's code from this checkout "
                        "(e.g. a git worktree of an earlier commit) and time both, alternately")
    parser.add_argument("--write", help="append the results to this markdown file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    home, state = work / "airflow", work / "state"
    from airflow_mlops.hooks.runtime import RuntimeHook
    from airflow_mlops.hooks.seldon import SeldonHook

    seldon = SeldonHook(mlops_conn_id=None, state_dir=str(state))
    served = None
    if args.model_uri:
        python = str(RuntimeHook(runtime="serving", mlops_conn_id=None, state_dir=str(state)).get_runtime().python)
        served, port = serve(python, args.model_uri)
        model_path = args.model_uri
    else:
        migrate(home)
        airflow_run(home, state, "mlops_train_deploy", {"train_steps": 200, "deployment_name": NAME})
        dep = seldon.get_deployment(NAME)
        port, model_path = dep.port, dep.model_path
    served_port, compared = port, []
    bare = None
    try:
        records = typed_records(RuntimeHook(mlops_conn_id=None, state_dir=str(state)), model_path, 1, work)
        body = json.dumps({"jsonData": {"instances": records[:1]}}).encode()
        quiet = measure(port, body, args.requests)
        with SlowClients("127.0.0.1", port, args.slow, seconds=600):
            busy = measure(port, body, args.requests)
            busy_pings = pings(port)
        # the same model without the front: gunicorn accepts the clients itself
        serving = RuntimeHook(runtime="serving", mlops_conn_id=None, state_dir=str(state)).get_runtime()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        bare = subprocess.Popen([str(serving.python), "-m", "airflow_mlops.runtime_side.model_server.server", "--model-uri",
                                 model_path, "--port", str(port), "--no-front"],
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while pings(port, 1) == 0 and time.monotonic() < deadline:
            time.sleep(1)
        with SlowClients("127.0.0.1", port, 4, seconds=60):
            bare_pings = pings(port)
        if args.compare_code and args.model_uri:
            other, other_port = serve(str(serving.python), args.model_uri, code=args.compare_code)
            try:
                for _ in range(2):  # alternately, twice: the machine's drift shows
                    compared.append((measure(served_port, body, args.requests),
                                     measure(other_port, body, args.requests)))
            finally:
                other.terminate()
                other.wait(30)
    finally:
        if bare is not None:
            bare.terminate()
            bare.wait(30)
        if served is not None:
            served.terminate()
            served.wait(30)
        else:
            seldon.deployments.undeploy(NAME)
        shutil.rmtree(work, ignore_errors=True)
    result = {"quiet": quiet, "slow": busy, "pings_with_slow": busy_pings, "bare_pings_with_4_slow": bare_pings,
              "compared": compared}
    print(json.dumps(result, indent=2))
    if args.write:
        lines = [
            f"\n### Model server with slow clients ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
            f"{platform.machine()}, taxi model, 1-row `jsonData`, {args.requests} requests each)\n",
            "| connections besides the benchmark's | p50 (ms) | p99 (ms) | requests/s, 4 clients | pings answered |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| none | {quiet['p50_ms']} | {quiet['p99_ms']} | {quiet['rps_4_clients']} | |",
            f"| {args.slow} slow (a header a second, never finishing) | {busy['p50_ms']} | {busy['p99_ms']} | "
            f"{busy['rps_4_clients']} | {busy_pings} of 5 |",
            f"| **p99 ratio, slow / none** | | **{busy['p99_ms'] / quiet['p99_ms']:.2f}×** | "
            f"**{busy['rps_4_clients'] / quiet['rps_4_clients']:.2f}×** | |",
            f"| 4 slow, gunicorn without the front (`--no-front`) | | | | {bare_pings} of 5 (5 s timeout) |",
            "",
        ]
        if compared:
            lines[-1:] = [f"\nThe same model and requests, this code beside `{args.compare_code}`'s, alternately:\n",
                          "| round | p50 this / that | p99 this / that | requests/s, 4 clients, this / that |",
                          "| ---: | ---: | ---: | ---: |"]
            for n, (mine, theirs) in enumerate(compared, 1):
                lines.append(f"| {n} | {mine['p50_ms']} / {theirs['p50_ms']} ({mine['p50_ms'] / theirs['p50_ms']:.2f}×) | "
                             f"{mine['p99_ms']} / {theirs['p99_ms']} ({mine['p99_ms'] / theirs['p99_ms']:.2f}×) | "
                             f"{mine['rps_4_clients']} / {theirs['rps_4_clients']} "
                             f"({mine['rps_4_clients'] / theirs['rps_4_clients']:.2f}×) |")
            lines.append("")
        append_table(args.write, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
