"""Benchmark: MLOps pages and their API with 1,000 model versions and 10,000 drift reports, against a small state.

    .venv/bin/python bench/bench_ui.py [--requests 20] [--write docs/benchmarks.md]

Generates two provider state directories with ``tests/plugins/sample_state.py``'s ``write_state``:
SMALL (10 versions, 10 drift reports, 200 logged requests) and LARGE (1,000 versions, 10,000 drift
reports, 20,000 logged requests, so the health chart reads a realistic prediction log). For each, a
real ``airflow api-server`` (one worker, SimpleAuthManager, a migrated SQLite ``AIRFLOW_HOME`` of its
own) loads the plugin from the package's entry point, as ``tests/plugins/test_app.py`` does. Both
servers run side by side and are timed alternately, request by request (the order swapped every
round), so machine noise hits both alike: each URL is fetched twice untimed, then ``--requests``
times, wall time per request over a keep-alive connection with a bearer token. Every response must
be 200. Then the two slowest LARGE handlers (a page and its API counted once) are profiled, one
request each, in-process (cProfile in the handler's thread, FastAPI's TestClient, the same state
directory and ``AIRFLOW_HOME``).

The table gives the median and p95 ms per endpoint for SMALL and LARGE, the ratio of the medians
LARGE / SMALL, and whether LARGE's p95 is under the issue's 300 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import BIN, airflow_env  # noqa: E402
from tests.integration.conftest import free_port  # noqa: E402
from tests.plugins.sample_state import DEPLOYMENT, PIPELINE, write_state  # noqa: E402

HEADING = "## MLOps pages: latency with 1,000 versions and 10,000 drift reports"
LIMIT_MS = 300.0
SIZES = {"SMALL": {"versions": 10, "drift_reports": 10, "requests": 200},
         "LARGE": {"versions": 1000, "drift_reports": 10000, "requests": 20000}}

PROFILE = """
import cProfile, io, pstats, sys, time
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
import airflow_mlops.plugins.app as pages

class User:
    def get_name(self):
        return "admin"

app = pages.create_app()
app.dependency_overrides[pages.current_user] = lambda: User()
path = sys.argv[1]
profile, took = cProfile.Profile(), []
for route in app.routes:  # the handler runs in a worker thread: profile it there
    if isinstance(route, APIRoute) and route.path_regex.match(path.split("?")[0]):
        inner = route.dependant.call
        def call(*args, _inner=inner, **kwargs):
            if not took:
                return _inner(*args, **kwargs)
            started = time.perf_counter()
            try:
                return profile.runcall(_inner, *args, **kwargs)
            finally:
                took.append(time.perf_counter() - started)
        route.dependant.call = call
        break
client = TestClient(app, root_path="/mlops")
for _ in range(2):
    assert client.get(path).status_code == 200
took.append(0.0)
started = time.perf_counter()
response = client.get(path)
wall = time.perf_counter() - started
assert response.status_code == 200, response.text[-500:]
print(f"handler {took[-1] * 1000:.0f} ms of {wall * 1000:.0f} ms (profiled)")
out = io.StringIO()
pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
print(out.getvalue())
out = io.StringIO()
pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
print(out.getvalue())
"""

def endpoints(expected: dict, versions: int) -> list[tuple[str, str]]:
    """(label, path) of every timed endpoint; the version and report are the state's newest."""
    return [
        ("page /models", "/mlops/models"),
        ("page /models/taxi/<newest>", f"/mlops/models/{PIPELINE}/{versions}"),
        ("page /deployments", "/mlops/deployments"),
        ("page /deployments/taxi-prod", f"/mlops/deployments/{DEPLOYMENT}"),
        ("page /drift/taxi-prod", f"/mlops/drift/{DEPLOYMENT}"),
        ("page /drift/taxi-prod/<newest>", f"/mlops/drift/{DEPLOYMENT}/{expected['newest_report']}"),
        ("page /data", "/mlops/data"),
        ("api /api/models", "/mlops/api/models"),
        ("api /api/deployments/taxi-prod", f"/mlops/api/deployments/{DEPLOYMENT}"),
        ("api /api/drift/taxi-prod", f"/mlops/api/drift/{DEPLOYMENT}"),
        ("api /api/data", "/mlops/api/data"),
    ]


@dataclass
class Server:
    label: str
    home: Path
    state: Path
    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    token: str = ""
    conn: http.client.HTTPConnection | None = None
    paths: list[tuple[str, str]] = field(default_factory=list)

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise

    def get(self, path: str) -> float:
        """Wall ms of one GET with the bearer token (the connection kept alive); the answer must be 200."""
        started = time.perf_counter()
        status, body = self.request("GET", path, token=self.token)
        ms = (time.perf_counter() - started) * 1000
        if status != 200:
            raise SystemExit(f"{self.label} {path}: HTTP {status}: {body[-500:]!r}")
        return ms


def start(server: Server) -> None:
    with open(server.log, "w") as log:
        server.proc = subprocess.Popen(
            [str(BIN / "airflow"), "api-server", "--port", str(server.port), "--host", "127.0.0.1"],
            env=server.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 300
    while True:
        if server.proc.poll() is not None:
            raise SystemExit(f"the {server.label} API server ended:\n{server.log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if server.request("GET", "/api/v2/monitor/health")[0] == 200:
                break
        if time.monotonic() > deadline:
            raise SystemExit(f"the {server.label} API server did not answer in 300 s:\n{server.log.read_text()[-3000:]}")
        time.sleep(1)
    status, body = server.request("POST", "/auth/token", body={"username": "admin", "password": "admin-pw"})
    if status not in (200, 201):
        raise SystemExit(f"{server.label}: no token: HTTP {status} {body[-500:]!r}")
    server.token = json.loads(body)["access_token"]


def stop(server: Server) -> None:
    if server.conn is not None:
        server.conn.close()
    if server.proc is None or server.proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGTERM)
    try:
        server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=30)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def profile(server: Server, path: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROFILE, path.removeprefix("/mlops")], env=server.env, cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"profiling {path} failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
    return out.stdout


def top_entries(report: str, count: int = 12) -> list[str]:
    """The first ``count`` lines of the profile's statistics (by cumulative time)."""
    lines = [line for line in report.splitlines() if re.match(r"\s*\d+(/\d+)?\s+[\d.]+\s+[\d.]+\s+[\d.]+", line)]
    return lines[:count]


# what the profiled functions do, for the reading (from the code of airflow_mlops/plugins and utils/run_records)
WHY = {
    "health_series": "bins the log's entries; it parses only the lines added since the last view (the first view "
                     "after the API server started parses the last 4 MiB, `HEALTH_TAIL_BYTES`: here all {requests:,} "
                     "logged requests)",
    "render": "Jinja{render_note}",
    "_entries": "lists and stats every report file ({drift_reports:,}) to sort them by modification time, when "
                "the directory changed since the last listing",
    "read": "reads and decodes the shown page's JSON files",
    "dag_runs": "one query of Airflow's database for the runs shown",
    "versions": "lists the registry and reads the shown page's version and run records",
    "schema": "parses the reference schema",
}
RENDER_NOTES = {
    "/deployments/": ", whose deploy history table has a row with links per deploy ({versions:,})",
    "/drift/": ", the page's 50 reports",
    "/models": ", the page's 50 versions",
}


def where_time_goes(path: str, report: str) -> str:
    """A sentence on what dominates one profiled request: the provider functions with the most cumulative time."""
    handler_ms = float(re.search(r"^handler (\d+) ms", report, re.M).group(1))
    found: dict[str, tuple[float, int]] = {}
    for line in top_entries(report, 40):
        fields = line.split(None, 5)
        m = re.search(r"(\w+)\)$", fields[5])
        name = m.group(1) if m else ""
        if name in WHY and name not in found and "airflow_mlops" in fields[5]:
            found[name] = (float(fields[3]) * 1000, int(fields[0].split("/")[-1]))
    note = next((n for k, n in RENDER_NOTES.items() if k in path), "")
    sizes = {**SIZES["LARGE"], "render_note": note.format(**SIZES["LARGE"])}
    parts = [f"`{name}` {ms / handler_ms:.0%}{f' ({calls} calls)' if calls > 1 else ''}: "
             f"{WHY[name].format(**sizes)}"
             for name, (ms, calls) in sorted(found.items(), key=lambda kv: -kv[1][0])[:3] if ms >= 0.05 * handler_ms]
    return f"`{path.removeprefix('/mlops')}` ({handler_ms:.0f} ms under the profiler): " + "; ".join(parts) + "."


def write_section(path: str, lines: list[str]) -> None:
    """Replace the section under HEADING in ``path`` (up to the next ``## `` heading), or append it."""
    text = Path(path).read_text()
    block = "\n".join(lines).strip("\n") + "\n"
    start_at = text.find(HEADING + "\n")
    if start_at < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        following = text.find("\n## ", start_at + len(HEADING))
        rest = text[following + 1:] if following >= 0 else ""
        text = text[:start_at] + block + ("\n" + rest if rest else "")
    Path(path).write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="timed requests per endpoint and state")
    parser.add_argument("--write", nargs="?", const=str(REPO / "docs" / "benchmarks.md"),
                        help="replace (or add) this benchmark's section in this markdown file (docs/benchmarks.md)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    servers: list[Server] = []
    try:
        generated: dict[str, float] = {}
        expected: dict[str, dict] = {}
        for label, size in SIZES.items():
            started = time.monotonic()
            expected[label] = write_state(tmp / label / "state", **size)
            generated[label] = time.monotonic() - started
            print(f"{label}: state generated in {generated[label]:.1f} s", flush=True)
        home = tmp / "home"
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=airflow_env(home, home / "mlops"),
                       check=True, capture_output=True, timeout=600)
        passwords = tmp / "passwords.json"
        passwords.write_text(json.dumps({"admin": "admin-pw"}))
        for label in SIZES:
            own_home = tmp / label / "home"
            shutil.copytree(home, own_home)
            state = tmp / label / "state"
            env = airflow_env(own_home, state, AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
                              AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
                              AIRFLOW__API__WORKERS="1")
            server = Server(label, own_home, state, env, free_port(), tmp / label / "api-server.log")
            server.paths = endpoints(expected[label], SIZES[label]["versions"])
            servers.append(server)
        for server in servers:
            start(server)
        for server in servers:
            wait_ready(server)
        print("servers up; warming up", flush=True)
        load = [os.getloadavg()[0]]
        small, large = servers
        labels = [label for label, _ in small.paths]
        first: dict[str, dict[str, float]] = {s.label: {} for s in servers}  # each URL's first request
        for _ in range(2):
            for i in range(len(labels)):
                for server in servers:
                    took = server.get(server.paths[i][1])
                    first[server.label].setdefault(labels[i], took)
        times: dict[str, dict[str, list[float]]] = {s.label: {label: [] for label in labels} for s in servers}
        for round_no in range(args.requests):
            order = servers if round_no % 2 == 0 else servers[::-1]
            for i, label in enumerate(labels):
                for server in order:
                    times[server.label][label].append(server.get(server.paths[i][1]))
        load.append(os.getloadavg()[0])
        rows = []
        for i, label in enumerate(labels):
            s, g = times["SMALL"][label], times["LARGE"][label]
            rows.append((label, statistics.median(s), pct(s, 0.95), statistics.median(g), pct(g, 0.95),
                         first["LARGE"][label]))
        slowest = max(range(len(rows)), key=lambda i: rows[i][3])
        over = [row[0] for row in rows if row[4] >= LIMIT_MS or row[5] >= LIMIT_MS]
        # profile the two slowest LARGE handlers (a page and its API share one: count them once)
        profiled: dict[str, tuple[str, str]] = {}
        for i in sorted(range(len(rows)), key=lambda i: -rows[i][3]):
            path = large.paths[i][1]
            key = path.replace("/mlops/api/", "/mlops/")
            if key not in profiled and len(profiled) < 2:
                profiled[key] = (path, profile(large, path))
        for path, report in profiled.values():
            print(f"cProfile of LARGE {path} (one request, in-process): "
                  + re.search(r"^handler .*$", report, re.M).group(0))
            print("\n".join(top_entries(report, 30)), flush=True)
    finally:
        for server in servers:
            stop(server)
        shutil.rmtree(tmp, ignore_errors=True)

    table = ["| endpoint | SMALL median / p95 (ms) | LARGE median / p95 (ms) | LARGE / SMALL (medians) "
             f"| LARGE p95 < {LIMIT_MS:.0f} ms | LARGE first request (ms) |",
             "| --- | ---: | ---: | ---: | :---: | ---: |"]
    for label, s_med, s_p95, g_med, g_p95, g_first in rows:
        kind, path = label.split(" ", 1)
        table.append(f"| {kind} `{path}` | {s_med:.1f} / {s_p95:.1f} | {g_med:.1f} / {g_p95:.1f} "
                     f"| {g_med / s_med:.2f}× | {'yes' if g_p95 < LIMIT_MS else '**no**'} "
                     f"| {g_first:.0f}{'' if g_first < LIMIT_MS else ' (over)'} |")
    worst = rows[slowest]
    lines = [
        "",
        HEADING,
        "",
        f"{datetime.now():%Y-%m-%d}, {os.cpu_count()} cores, {platform.machine()}, one run. "
        f"`.venv/bin/python bench/bench_ui.py --write`: two generated state directories "
        f"(`tests/plugins/sample_state.py`), SMALL ({SIZES['SMALL']['versions']} versions, "
        f"{SIZES['SMALL']['drift_reports']} drift reports, {SIZES['SMALL']['requests']} logged requests) and LARGE "
        f"({SIZES['LARGE']['versions']:,} versions, {SIZES['LARGE']['drift_reports']:,} drift reports, "
        f"{SIZES['LARGE']['requests']:,} logged requests; generated in {generated['LARGE']:.0f} s), each served by "
        "its own real `airflow api-server` (one worker, SimpleAuthManager, bearer token). Both servers ran side by "
        f"side and were timed alternately, request by request; per endpoint 2 warm-up and {args.requests} timed "
        "GETs over a keep-alive connection, wall time at the client; every answer 200. p95 is the nearest rank "
        f"of {args.requests}.",
        "",
        *table,
        "",
        READING.format(slowest=f"`{worst[0].split(' ', 1)[1]}`", med=worst[3], p95=worst[4],
                       verdict=("every LARGE p95 and first request is under 300 ms" if not over else
                                "over 300 ms at LARGE (p95 or first request): "
                                + ", ".join(f"`{o.split(' ', 1)[1]}`" for o in over)),
                       load=f"{load[0]:.1f} / {load[1]:.1f}",
                       busy=(f" on {os.cpu_count()} cores: other work shared the machine, which widens the p95s"
                             if max(load) > (os.cpu_count() or 1) else f" on {os.cpu_count()} cores")),
        "",
        "Where the time goes (cProfile of one LARGE request each, in-process, share of the handler's time; "
        "nested calls overlap): " + " ".join(where_time_goes(path, report) for path, report in profiled.values()),
        "",
    ]
    lines = [textwrap.fill(line, 100, break_on_hyphens=False, break_long_words=False)
             if line and not line.startswith(("|", "#")) else line for line in lines]
    print("\n".join(lines))
    if args.write:
        write_section(args.write, lines)
    return 0


READING = ("Reading: {verdict}. The slowest at LARGE is {slowest} (median {med:.0f} ms, p95 {p95:.0f} ms). "
           "The pages whose work grows with the state are the deployment page (prediction log, deploy history) and "
           "the drift list (every report file); the others read one page of 50 or a single file. The first "
           "request of a URL after the servers started (the first warm-up) pays what later ones reuse: the log's "
           "tail parsed, the report directory listed. Load average "
           "(1 min) at the start / end of the timed rounds: {load}{busy}.")


if __name__ == "__main__":
    sys.exit(main())
