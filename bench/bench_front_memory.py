"""Benchmark: the model server's peak memory under concurrent large bodies, with and without the front's bound.

    .venv/bin/python bench/bench_front_memory.py [--model-uri SAVEDMODEL] [--write docs/benchmarks.md]

Side by side in one run, the same model served twice by the project's server (serving runtime):
with the front's defaults (bodies up to 32 MiB, 64 MiB of requests held at once across
connections: a request that does not fit waits, then gets a 503 with ``Retry-After``), and with
the bound lifted (``--max-body-bytes 1 GiB --max-buffered-bytes 8 GiB``: every body read and
passed on as it comes, as before). Each gets six concurrent bodies of 40 MB (the hardening
issue's load: over the default body limit) and then six of 30 MB (under it): a ``data.ndarray``
far over the row limit, so each is parsed and refused (413) by the app. Measured: the resident
memory of the server's processes (the gunicorn master holding the front, and its worker) before,
at its peak (sampled every 20 ms) and 3 s after, and what the clients were answered. Loopback only.
Without ``--model-uri`` a taxi model is trained first with the template DAG (200 steps).
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
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import airflow_run, append_table, migrate  # noqa: E402

MB = 1_000_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def big_body(size: int) -> bytes:
    names = [f"f{i}" for i in range(20)]
    row = "[" + ",".join(["1.5"] * 20) + "]"
    rows = max(1, (size - 60) // (len(row) + 1))
    return ('{"data": {"names": %s, "ndarray": [%s]}}' % (json.dumps(names), ",".join([row] * rows))).encode()


def rss(pid: int) -> int:
    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except psutil.Error:
        return 0


def post(port: int, body: bytes) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.sendall(b"POST /api/v1.0/predictions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
            sock.sendall(body)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "no answer"
    except OSError as err:
        return type(err).__name__


def load(pid: int, port: int, size: int, clients: int = 6) -> dict:
    body = big_body(size)
    before = rss(pid)
    peak, statuses, done = before, [], threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: statuses.append(post(port, body))) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    time.sleep(3)
    done.set()
    sampler.join()
    counts = {status: statuses.count(status) for status in sorted(set(statuses))}
    return {"before_mb": round(before / MB), "peak_mb": round(peak / MB), "after_mb": round(rss(pid) / MB),
            "seconds": round(seconds, 1), "answers": counts}


def serve(python: str, model_uri: str, *extra: str, code: str | None = None) -> tuple[subprocess.Popen, int]:
    """The project's model server for ``model_uri`` (the provider's code from ``code``, default this checkout)."""
    port = free_port()
    server = subprocess.Popen([python, "-m", "airflow_mlops.runtime_side.model_server.server", "--model-uri", model_uri,
                               "--port", str(port), *extra],
                              env={**os.environ, "PYTHONPATH": code or str(Path(__file__).resolve().parent.parent)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/status", timeout=5) as response:
                if response.status == 200:
                    return server, port
        except OSError:
            time.sleep(1)
    server.terminate()
    raise RuntimeError("the model server did not become ready in 180 s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-uri", help="a pushed SavedModel; default: train one with the template DAG")
    parser.add_argument("--write", help="append the results to this markdown file")
    args = parser.parse_args()
    from airflow_mlops.hooks.runtime import RuntimeHook

    work = Path(tempfile.mkdtemp(prefix="bench-front-memory-"))
    state = work / "state"
    try:
        model_uri = args.model_uri
        if not model_uri:
            import logging

            from airflow_mlops.hooks.seldon import SeldonHook

            logging.getLogger("airflow.task.hooks").setLevel(logging.WARNING)
            migrate(work / "airflow")
            airflow_run(work / "airflow", state, "mlops_train_deploy", {"train_steps": 200, "deployment_name": "m"})
            seldon = SeldonHook(mlops_conn_id=None, state_dir=str(state))
            model_uri = seldon.get_deployment("m").model_path
            seldon.deployments.undeploy("m")
        python = str(RuntimeHook(runtime="serving", mlops_conn_id=None, state_dir=str(state)).get_runtime().python)
        results = {}
        for label, extra in (("bounded (defaults)", ()),
                             ("unbounded", ("--max-body-bytes", str(1 << 30), "--max-buffered-bytes", str(8 << 30)))):
            server, port = serve(python, model_uri, *extra)
            try:
                results[label] = {f"{size // MB} MB": load(server.pid, port, size) for size in (40 * MB, 30 * MB)}
            finally:
                server.terminate()
                server.wait(30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.write:
        lines = [f"\n### Model server memory under six concurrent large bodies ({time.strftime('%Y-%m-%d')}, "
                 f"{os.cpu_count()} cores, {platform.machine()}, `bench/bench_front_memory.py`)\n",
                 "| front | bodies | RSS before (MB) | peak (MB) | 3 s after (MB) | answers | seconds |",
                 "| --- | --- | ---: | ---: | ---: | --- | ---: |"]
        for label, loads in results.items():
            for size, r in loads.items():
                answers = ", ".join(f"{n}× {status}" for status, n in r["answers"].items())
                lines.append(f"| {label} | 6 × {size} | {r['before_mb']} | {r['peak_mb']} | {r['after_mb']} | "
                             f"{answers} | {r['seconds']} |")
        for size in ("40 MB", "30 MB"):
            bounded, free = results["bounded (defaults)"][size], results["unbounded"][size]
            grown = (bounded["peak_mb"] - bounded["before_mb"]) / max(1, free["peak_mb"] - free["before_mb"])
            lines.append(f"| **peak growth, bounded / unbounded** | 6 × {size} | | **{grown:.2f}×** | | | |")
        append_table(args.write, [*lines, ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
