"""Benchmark: latency and throughput of a local deployment vs the same SavedModel called in-process.

    .venv/bin/python bench/bench_serving.py [--requests 1000] [--write docs/benchmarks.md]

Trains and deploys a taxi model with the template DAG (``mlops_train_deploy``, 200 steps) in
a throw-away state directory, then sends 1-row and 100-row requests (``jsonData``) to the
deployment: sequentially over one kept-alive connection, sequentially with a new connection
per request, and from 4 concurrent clients. The reference is ``serving.direct_predict``: the
same SavedModel and the same request-to-tf.Example code, called in one process of the
serving runtime. The deployment is stopped at the end.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import airflow_run, append_table, migrate  # noqa: E402

NAME = "bench-serving"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def typed_records(hook, model_path: str, count: int, work: Path) -> list[dict]:
    from airflow_mlops.shared import typed_record

    spec = json.loads((Path(model_path) / "assets.extra" / "feature_spec.json").read_text())
    sample = work / "sample.csv"
    hook.run_step("tfx.sample_data", {"dest": str(sample), "rows": count}, binds=[str(work)])
    with open(sample, newline="") as handle:
        return [typed_record(row, spec) for row in csv.DictReader(handle)]


def timed_requests(host: str, port: int, body: bytes, n: int, keep_alive: bool) -> list[float]:
    timings = []
    conn = http.client.HTTPConnection(host, port, timeout=60)
    for _ in range(n):
        if not keep_alive:
            conn = http.client.HTTPConnection(host, port, timeout=60)
        started = time.perf_counter()
        conn.request("POST", "/api/v1.0/predictions", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        timings.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise SystemExit(f"request failed: {response.status}")
        if not keep_alive:
            conn.close()
    conn.close()
    return timings


def concurrent_rps(host: str, port: int, body: bytes, n: int, clients: int) -> float:
    started = time.perf_counter()
    threads = [threading.Thread(target=timed_requests, args=(host, port, body, n // clients, True))
               for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (n // clients) * clients / (time.perf_counter() - started)


def main() -> int:
    import logging

    logging.getLogger("airflow.task.hooks").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--write", help="append the results to this markdown file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    home, state = work / "airflow", work / "state"
    migrate(home)
    airflow_run(home, state, "mlops_train_deploy", {"train_steps": 200, "deployment_name": NAME})
    os.environ["AIRFLOW__MLOPS__STATE_DIR"] = str(state)
    from airflow_mlops.hooks.runtime import RuntimeHook
    from airflow_mlops.hooks.seldon import SeldonHook

    seldon = SeldonHook(mlops_conn_id=None, state_dir=str(state))
    dep = seldon.get_deployment(NAME)
    serving = RuntimeHook(runtime="serving", mlops_conn_id=None, state_dir=str(state))
    records = typed_records(RuntimeHook(mlops_conn_id=None, state_dir=str(state)), dep.model_path, 100, work)
    result: dict[str, dict] = {}
    try:
        for batch, n in ((1, args.requests), (100, max(50, args.requests // 5))):
            body = json.dumps({"jsonData": {"instances": records[:batch]}}).encode()
            timed_requests(dep.host, dep.port, body, 20, True)  # warm-up
            kept = timed_requests(dep.host, dep.port, body, n, True)
            fresh = timed_requests(dep.host, dep.port, body, n, False)
            rps4 = concurrent_rps(dep.host, dep.port, body, n, 4)
            direct = serving.run_step("serving.direct_predict", {"model_path": dep.model_path, "records": records,
                                                                 "repeat": n, "batch": batch})["timings_ms"]
            result[f"{batch}_rows"] = {
                "kept_alive_p50_ms": round(percentile(kept, 50), 2), "kept_alive_p99_ms": round(percentile(kept, 99), 2),
                "kept_alive_rps": round(1000 * n / sum(kept), 1),
                "new_connection_p50_ms": round(percentile(fresh, 50), 2),
                "new_connection_p99_ms": round(percentile(fresh, 99), 2),
                "four_clients_rps": round(rps4, 1),
                "direct_p50_ms": round(percentile(direct, 50), 2), "direct_p99_ms": round(percentile(direct, 99), 2),
                "requests": n,
            }
    finally:
        seldon.deployments.undeploy(NAME)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.write:
        lines = [f"\n### Local deployment latency ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
                 f"{platform.machine()}, taxi model, `jsonData` requests)\n",
                 "| request | path | p50 (ms) | p99 (ms) | requests/s |", "| --- | --- | ---: | ---: | ---: |"]
        for key, r in result.items():
            label = key.replace("_rows", " row" if key.startswith("1_") else " rows")
            lines += [
                f"| {label} | HTTP, one kept-alive connection ({r['requests']} requests) | {r['kept_alive_p50_ms']} | "
                f"{r['kept_alive_p99_ms']} | {r['kept_alive_rps']} |",
                f"| {label} | HTTP, a new connection per request | {r['new_connection_p50_ms']} | "
                f"{r['new_connection_p99_ms']} | |",
                f"| {label} | HTTP, 4 concurrent clients | | | {r['four_clients_rps']} |",
                f"| {label} | in-process call of the same SavedModel (no HTTP) | {r['direct_p50_ms']} | "
                f"{r['direct_p99_ms']} | |",
            ]
        append_table(args.write, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
